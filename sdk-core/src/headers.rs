//! String headers that travel with a message on every broker.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Message headers: an ordered map of UTF-8 names to UTF-8 values.
///
/// Values are strings because the three supported brokers agree on strings (Kafka header bytes,
/// AMQP field-table long strings, RocketMQ user properties). Names starting with `waybill-` are
/// reserved for the SDK (see [`crate::header_names`]).
///
/// Cloning is cheap: clones share one map until one of them is changed (a message is copied
/// at each step of its way — into a delivery, to its handler, into a retry — and most copies
/// only read its headers, among them the trace context).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Headers(Arc<BTreeMap<String, String>>);

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name` to `value`, returning the previous value.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) -> Option<String> {
        Arc::make_mut(&mut self.0).insert(name.into(), value.into())
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Removes `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        if !self.0.contains_key(name) {
            return None;
        }
        Arc::make_mut(&mut self.0).remove(name)
    }

    /// Whether `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// Number of headers.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Iterates `(name, value)` pairs in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Copies every header of `other` into `self`, overwriting equal names.
    pub fn merge(&mut self, other: &Headers) {
        for (k, v) in other.iter() {
            self.insert(k, v);
        }
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(Arc::new(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        ))
    }
}

impl IntoIterator for Headers {
    type Item = (String, String);
    type IntoIter = std::collections::btree_map::IntoIter<String, String>;

    fn into_iter(self) -> Self::IntoIter {
        Arc::unwrap_or_clone(self.0).into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_clone_leaves_the_original_as_it_was() {
        let mut original = Headers::new();
        original.insert("a", "1");
        let mut copy = original.clone();
        copy.insert("a", "2");
        copy.insert("b", "3");
        assert_eq!(copy.remove("a").as_deref(), Some("2"));
        assert_eq!(original.get("a"), Some("1"));
        assert!(!original.contains("b"));
        assert_eq!(copy.get("b"), Some("3"));
        assert_eq!(original.len(), 1);
    }

    #[cfg(feature = "json")]
    #[test]
    fn serializes_as_a_plain_map() {
        let headers: Headers = [("x", "y")].into_iter().collect();
        let json = serde_json::to_string(&headers).expect("serializes");
        assert_eq!(json, r#"{"x":"y"}"#);
        let back: Headers = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, headers);
    }
}
