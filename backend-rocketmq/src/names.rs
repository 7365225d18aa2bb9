//! RocketMQ's naming rules and the SDK's per-group retry and dead-letter topics.

/// A topic or group name RocketMQ would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} name {name:?} is invalid: {reason}")]
pub struct InvalidName {
    kind: &'static str,
    name: String,
    reason: &'static str,
}

fn check(kind: &'static str, name: &str, max: usize) -> Result<(), InvalidName> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > max {
        Some(if max == MAX_TOPIC {
            "it is longer than 127 bytes"
        } else {
            "it is longer than 120 bytes"
        })
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'%' | b'|' | b'_' | b'-'))
    {
        Some("only ASCII letters, digits, '%', '|', '_' and '-' are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(InvalidName {
            kind,
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

const MAX_TOPIC: usize = 127;
const MAX_GROUP: usize = 120;

/// Checks a topic name against RocketMQ's rules (`[%|a-zA-Z0-9_-]`, at most 127 bytes).
pub(crate) fn check_topic(name: &str) -> Result<(), InvalidName> {
    check("topic", name, MAX_TOPIC)
}

/// Checks a group name against RocketMQ's rules (`[%|a-zA-Z0-9_-]`, at most 120 bytes).
pub(crate) fn check_group(name: &str) -> Result<(), InvalidName> {
    check("group", name, MAX_GROUP)
}

/// The topics one consumer group uses for a topic: `<topic>_<group>_RETRY` and
/// `<topic>_<group>_DLQ`. They are per group, so one group's retries never reach another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupTopics {
    /// The consumed topic.
    pub topic: String,
    /// Retried copies, held by the subscriber until due.
    pub retry: String,
    /// Dead letters with the `waybill-dl-*` record.
    pub dead_letter: String,
}

impl GroupTopics {
    /// The names for `group` on `topic`.
    ///
    /// # Errors
    /// [`InvalidName`] when a name is invalid or the derived names exceed 127 bytes.
    pub fn new(topic: &str, group: &str) -> Result<Self, InvalidName> {
        check_topic(topic)?;
        check_group(group)?;
        let names = Self {
            topic: topic.to_owned(),
            retry: format!("{topic}_{group}_RETRY"),
            dead_letter: format!("{topic}_{group}_DLQ"),
        };
        check_topic(&names.retry)?;
        check_topic(&names.dead_letter)?;
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_rocketmq_rules() {
        assert!(check_topic("orders-v1_%RETRY%|x").is_ok());
        assert!(check_topic("").is_err());
        assert!(check_topic("orders.v1").is_err(), "dots are not allowed");
        assert!(check_topic(&"t".repeat(128)).is_err());
        assert!(check_group(&"g".repeat(121)).is_err());
    }

    #[test]
    fn group_topics_are_per_group() {
        let g = GroupTopics::new("orders", "billing").unwrap();
        assert_eq!(g.retry, "orders_billing_RETRY");
        assert_eq!(g.dead_letter, "orders_billing_DLQ");
        assert!(GroupTopics::new(&"t".repeat(120), "billing").is_err());
    }
}
