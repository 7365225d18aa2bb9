//! RabbitMQ's rules for the names waybill declares.

use waybill_core::ConfigError;

/// AMQP 0-9-1 limits exchange and queue names to 255 bytes (a short string).
pub const MAX_NAME_BYTES: usize = 255;

/// Checks a topic (exchange) or consumer group name against RabbitMQ's rules for names this
/// backend declares: 1 to 255 bytes of UTF-8, no control characters, and not starting with
/// `amq.` (RabbitMQ reserves that prefix and refuses to declare such exchanges and queues).
///
/// Dots, spaces and any other printable characters are allowed. The names derived from a
/// topic and group (`<topic>.<group>`, `.dlq`, the retry tiers) must fit the limit too, which
/// [`crate::RabbitSubscriber::connect`] checks.
///
/// ```
/// use waybill_rabbitmq::validate_name;
///
/// assert!(validate_name("topic", "orders.v1").is_ok());
/// assert_eq!(validate_name("topic", "amq.orders").unwrap_err().field(), "topic");
/// assert!(validate_name("group", &"g".repeat(256)).is_err());
/// ```
///
/// # Errors
/// A [`ConfigError`] naming `field` and saying which rule the name breaks.
pub fn validate_name(field: &'static str, name: &str) -> Result<(), ConfigError> {
    validate_target(field, name)?;
    if name.starts_with("amq.") {
        return Err(ConfigError::new(
            field,
            format!("{name:?} starts with \"amq.\", a prefix RabbitMQ reserves for itself"),
        ));
    }
    Ok(())
}

/// Checks the name of an exchange a publisher sends to: as [`validate_name`], except that the
/// broker's own `amq.` exchanges may be published to.
pub(crate) fn validate_target(field: &'static str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(ConfigError::new(field, "must not be empty"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(ConfigError::new(
            field,
            format!(
                "{} bytes is longer than RabbitMQ allows ({MAX_NAME_BYTES} bytes)",
                name.len()
            ),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ConfigError::new(
            field,
            format!("{name:?} contains control characters"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rabbitmq_rules_not_the_strictest_brokers() {
        for ok in [
            "orders",
            "orders.v1",
            "orders v1",
            "zamówienia",
            &"t".repeat(255),
        ] {
            assert!(validate_name("topic", ok).is_ok(), "{ok:?} is valid");
        }
        let refused = |name: &str| {
            validate_name("topic", name)
                .unwrap_err()
                .reason()
                .to_owned()
        };
        assert!(refused("").contains("empty"));
        assert!(refused(&"t".repeat(256)).contains("255"));
        // 128 two-byte characters: 256 bytes.
        assert!(refused(&"é".repeat(128)).contains("256 bytes"));
        assert!(refused("amq.topic").contains("amq."));
        assert!(refused("a\nb").contains("control"));
        assert!(
            validate_name("topic", "xamq.topic").is_ok(),
            "only a prefix"
        );
        assert!(
            validate_target("topic", "amq.fanout").is_ok(),
            "the broker's exchanges can be published to"
        );
        assert!(validate_target("topic", &"t".repeat(256)).is_err());
    }
}
