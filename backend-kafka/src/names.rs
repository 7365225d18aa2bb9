//! The topics a consumer group uses besides the main one.

use waybill_core::ConfigError;

/// Retry and dead-letter topics of one group of one topic: `<topic>.<group>.retry` and
/// `<topic>.<group>.dlq`. They are per group, so that one group's retries and dead letters
/// never reach another group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupTopics {
    /// The topic the group consumes.
    pub topic: String,
    /// Where retried copies wait for their not-before time.
    pub retry: String,
    /// Where dead letters go, with the record headers.
    pub dead_letter: String,
}

impl GroupTopics {
    /// The names for `topic` and `group`.
    ///
    /// # Errors
    /// [`ConfigError`] when a name is empty, longer than Kafka allows (249 characters) or has
    /// characters other than ASCII letters, digits, `.`, `_` and `-`.
    pub fn new(topic: &str, group: &str) -> Result<Self, ConfigError> {
        check("topic", topic)?;
        check("group", group)?;
        let names = Self {
            topic: topic.to_owned(),
            retry: format!("{topic}.{group}.retry"),
            dead_letter: format!("{topic}.{group}.dlq"),
        };
        check("topic", &names.retry)?;
        Ok(names)
    }
}

/// Checks a topic name as Kafka does: 1 to 249 characters of ASCII letters, digits, `.`, `_`
/// and `-`, and neither `.` nor `..`.
///
/// ```
/// use waybill_kafka::validate_topic;
///
/// assert!(validate_topic("orders.v1").is_ok());
/// assert!(validate_topic("..").is_err());
/// assert!(validate_topic("orders v1").is_err());
/// ```
///
/// # Errors
/// A [`ConfigError`] for the field `topic`, saying which rule the name breaks.
pub fn validate_topic(name: &str) -> Result<(), ConfigError> {
    check("topic", name)
}

/// Checks a topic name as Kafka does.
pub(crate) fn check_topic(name: &str) -> Result<(), ConfigError> {
    validate_topic(name)
}

fn check(field: &'static str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() || name.len() > 249 {
        return Err(ConfigError::new(
            field,
            format!("{name:?} must have 1 to 249 characters (with the retry suffix)"),
        ));
    }
    if name == "." || name == ".." {
        return Err(ConfigError::new(
            field,
            format!("{name:?} is not a valid Kafka name"),
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(ConfigError::new(
            field,
            format!("{name:?} may only hold ASCII letters, digits, '.', '_' and '-'"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_per_group_and_checked() {
        let n = GroupTopics::new("orders", "billing").unwrap();
        assert_eq!(n.retry, "orders.billing.retry");
        assert_eq!(n.dead_letter, "orders.billing.dlq");
        assert_eq!(
            GroupTopics::new("or ders", "g").unwrap_err().field(),
            "topic"
        );
        assert_eq!(GroupTopics::new("t", "").unwrap_err().field(), "group");
        assert!(GroupTopics::new(&"t".repeat(249), "g").is_err());
    }

    #[test]
    fn kafka_rules_are_applied_not_the_core_ones() {
        assert!(
            check_topic("orders.v1_x-y").is_ok(),
            "dots are fine in Kafka"
        );
        assert!(check_topic(&"t".repeat(249)).is_ok());
        for bad in [".", "..", "", "orders/v1", "orders%v1", "zamówienia"] {
            assert_eq!(
                check_topic(bad).unwrap_err().field(),
                "topic",
                "{bad:?} is refused"
            );
        }
        assert!(check_topic(&"t".repeat(250)).is_err());
        assert_eq!(GroupTopics::new("t", "..").unwrap_err().field(), "group");
        assert_eq!(GroupTopics::new("t", "g|h").unwrap_err().field(), "group");
    }
}
