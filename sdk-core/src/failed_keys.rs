//! The keys of a batch that already failed, for backends that keep a key's order in a batch.

use std::collections::HashSet;

use crate::message::Message;
use crate::publish_error::PublishError;

/// The keys of one [`crate::Publisher::publish_batch`] call whose messages already failed.
///
/// A backend that answers `true` to [`crate::Publisher::keeps_key_order_in_batch`] must not
/// hand a key's message to the broker once an earlier message of that key in the same call
/// failed: it could be stored ahead of the one the caller will send again. Record every
/// failed result with [`FailedKeys::record`] and pass every message through
/// [`FailedKeys::admit`] before it is handed over. Unkeyed messages are always admitted.
#[derive(Debug, Default)]
pub struct FailedKeys(HashSet<String>);

impl FailedKeys {
    /// No key failed yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Hands `message` back when no earlier message of its key failed.
    ///
    /// # Errors
    /// A *not sent* [`PublishError`] carrying `message` when an earlier message of its key
    /// failed.
    pub fn admit(&self, topic: &str, message: Message) -> Result<Message, PublishError> {
        if self.holds(&message) {
            return Err(PublishError::not_sent(topic, message, Self::REFUSAL));
        }
        Ok(message)
    }

    /// Why [`FailedKeys::admit`] refuses a message.
    pub const REFUSAL: &'static str = "not handed over: an earlier message of its key in this \
                                        batch failed, and this one must not overtake it";

    /// Whether an earlier message of `message`'s key failed.
    pub fn holds(&self, message: &Message) -> bool {
        // No hashing while nothing failed, the common case.
        !self.0.is_empty() && message.key().is_some_and(|key| self.0.contains(key))
    }

    /// Records the key of a failed result; an `Ok` changes nothing.
    pub fn record<T>(&mut self, result: &Result<T, PublishError>) {
        if let Err(e) = result {
            self.fail(e.message());
        }
    }

    /// Records that `message` failed.
    pub fn fail(&mut self, message: &Message) {
        if let Some(key) = message.key() {
            if !self.0.contains(key) {
                self.0.insert(key.to_owned());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_key_refuses_its_later_messages_and_nothing_else() {
        let mut keys = FailedKeys::new();
        let failed: Result<(), PublishError> = Err(PublishError::ambiguous(
            "t",
            Message::new("a").with_key("k"),
            "lost",
        ));
        keys.record(&failed);
        keys.record(&Ok::<(), PublishError>(()));
        let refused = keys
            .admit("t", Message::new("b").with_key("k"))
            .unwrap_err();
        assert_eq!(refused.outcome(), crate::PublishOutcome::NotSent);
        assert_eq!(&refused.message().payload()[..], b"b");
        assert!(keys.admit("t", Message::new("c").with_key("other")).is_ok());
        assert!(keys.admit("t", Message::new("d")).is_ok());
    }
}
