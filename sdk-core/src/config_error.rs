//! Invalid configuration, reported by `build()` with the field at fault.

/// A configuration builder refused its input. Names the field and says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {field}: {reason}")]
pub struct ConfigError {
    field: &'static str,
    reason: String,
}

impl ConfigError {
    /// `field` is invalid because of `reason`.
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }

    /// The field at fault, as named in the builder (`concurrency`, `retry.min_delay`, ...).
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// Why the value was refused.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// Runs a builder's table of `(refused, field, reason)` checks.
    ///
    /// # Errors
    /// The first refused check, in table order.
    pub fn first_refused(
        checks: impl IntoIterator<Item = (bool, &'static str, &'static str)>,
    ) -> Result<(), Self> {
        match checks.into_iter().find(|(refused, _, _)| *refused) {
            Some((_, field, reason)) => Err(Self::new(field, reason)),
            None => Ok(()),
        }
    }
}

/// Checks that a topic, queue or group name is usable anywhere: not empty, no whitespace or
/// control characters, at most 249 bytes.
///
/// This is the broker-neutral minimum, not any broker's rules: a name it accepts may still be
/// refused by a backend, which checks its own broker's rules when its config, publisher or
/// subscriber is built (RocketMQ, for one, refuses dots and names over 127 bytes). Use the
/// backend's check (`waybill_kafka::validate_topic`, `waybill_rabbitmq::validate_name`,
/// `waybill_rocketmq::validate_topic`) to know whether a broker takes a name.
///
/// # Errors
/// A [`ConfigError`] naming `field`.
pub fn validate_name(field: &'static str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(ConfigError::new(field, "must not be empty"));
    }
    if name.len() > 249 {
        return Err(ConfigError::new(field, "must be at most 249 bytes"));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::new(
            field,
            format!("{name:?} contains whitespace or control characters"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_refused_check_is_reported() {
        assert_eq!(ConfigError::first_refused([(false, "a", "fine")]), Ok(()));
        let e = ConfigError::first_refused([
            (false, "a", "fine"),
            (true, "b", "too big"),
            (true, "c", "too small"),
        ])
        .unwrap_err();
        assert_eq!((e.field(), e.reason()), ("b", "too big"));
    }
}
