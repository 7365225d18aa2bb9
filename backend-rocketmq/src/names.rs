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

/// Checks a topic name against RocketMQ's rules: `[%|a-zA-Z0-9_-]`, 1 to 127 bytes (no dots,
/// unlike Kafka and RabbitMQ).
///
/// ```
/// use waybill_rocketmq::validate_topic;
///
/// assert!(validate_topic("orders_v1").is_ok());
/// assert!(validate_topic("orders.v1").is_err());
/// ```
///
/// # Errors
/// [`InvalidName`] saying which rule the name breaks.
pub fn validate_topic(name: &str) -> Result<(), InvalidName> {
    check("topic", name, MAX_TOPIC)
}

/// Checks a consumer or producer group name against RocketMQ's rules: `[%|a-zA-Z0-9_-]`,
/// 1 to 120 bytes.
///
/// # Errors
/// [`InvalidName`] saying which rule the name breaks.
pub fn validate_group(name: &str) -> Result<(), InvalidName> {
    check("group", name, MAX_GROUP)
}

/// Checks a topic name against RocketMQ's rules.
pub(crate) fn check_topic(name: &str) -> Result<(), InvalidName> {
    validate_topic(name)
}

/// Checks a group name against RocketMQ's rules.
pub(crate) fn check_group(name: &str) -> Result<(), InvalidName> {
    validate_group(name)
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
        assert!(check_topic(&"t".repeat(127)).is_ok());
        for bad in ["orders v1", "orders/v1", "zamówienia", "a.b"] {
            assert!(validate_topic(bad).is_err(), "{bad:?} is refused");
            assert!(validate_group(bad).is_err(), "{bad:?} is refused");
        }
    }

    #[test]
    fn names_core_accepts_are_refused_when_rocketmq_objects_are_built() {
        // Core's broker-neutral check accepts a dotted name; RocketMQ refuses it wherever a
        // publisher, subscriber or config meets it.
        assert!(waybill_core::validate_name("topic", "orders.v1").is_ok());
        assert!(GroupTopics::new("orders.v1", "g").is_err());
        assert!(GroupTopics::new("orders", "billing.v2").is_err());
        let config = crate::RocketConfig::builder("127.0.0.1:9876")
            .producer_group("producers.v1")
            .build();
        assert_eq!(config.unwrap_err().field(), "producer_group");
    }

    #[test]
    fn group_topics_are_per_group() {
        let g = GroupTopics::new("orders", "billing").unwrap();
        assert_eq!(g.retry, "orders_billing_RETRY");
        assert_eq!(g.dead_letter, "orders_billing_DLQ");
        assert!(GroupTopics::new(&"t".repeat(120), "billing").is_err());
    }
}
