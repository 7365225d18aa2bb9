//! Classifying rdkafka errors into waybill's outcomes.

use rdkafka::error::{KafkaError, RDKafkaErrorCode as Code};
use waybill_core::secret::MASK;
use waybill_core::{BrokerError, FailureClass, PublishOutcome};

use crate::security::is_secret_property;

/// The outcome of a publish that failed with `error`.
///
/// - *not sent*: the message never left this process (local queue full, producer closed
///   before sending);
/// - *no destination*: the topic (or partition) does not exist yet; nothing was written, and
///   the same publish succeeds once the topic is created;
/// - *permanent*: the broker or client will refuse it again (too large, not authorised,
///   invalid topic name or record, refused by policy);
/// - *ambiguous*: anything that may have reached the log (a delivery timeout, a fatal
///   idempotence error, a purge of in-flight messages, unknown codes).
pub(crate) fn publish_outcome(error: &KafkaError) -> PublishOutcome {
    let Some(code) = error.rdkafka_error_code() else {
        return match error {
            KafkaError::Canceled => PublishOutcome::Ambiguous,
            _ => PublishOutcome::NotSent,
        };
    };
    match code {
        Code::QueueFull | Code::PurgeQueue => PublishOutcome::NotSent,
        Code::UnknownTopicOrPartition | Code::UnknownTopic | Code::UnknownPartition => {
            PublishOutcome::NoDestination
        }
        Code::MessageSizeTooLarge
        | Code::InvalidMessageSize
        | Code::InvalidMessage
        | Code::InvalidRecord
        | Code::TopicAuthorizationFailed
        | Code::ClusterAuthorizationFailed
        | Code::InvalidTopic
        | Code::InvalidRequiredAcks
        | Code::PolicyViolation => PublishOutcome::Permanent,
        _ => PublishOutcome::Ambiguous,
    }
}

/// A [`BrokerError`] for a consumer or admin operation.
pub(crate) fn broker_error(operation: &'static str, error: &KafkaError) -> BrokerError {
    let permanent = matches!(
        error.rdkafka_error_code(),
        Some(
            Code::TopicAuthorizationFailed
                | Code::GroupAuthorizationFailed
                | Code::ClusterAuthorizationFailed
                | Code::SaslAuthenticationFailed
                | Code::Authentication
                | Code::InvalidConfig
                | Code::InvalidArgument
                | Code::UnknownTopicOrPartition
                | Code::UnknownTopic
                | Code::Fatal
        )
    ) || matches!(
        error,
        KafkaError::ClientCreation(_) | KafkaError::ClientConfig(..)
    );
    let class = if permanent {
        FailureClass::Permanent
    } else {
        FailureClass::Transient
    };
    BrokerError::new(class, operation, describe(error))
}

/// `error` as text, with the value of a secret property masked: librdkafka's configuration
/// errors quote the value they refused.
pub(crate) fn describe(error: &KafkaError) -> String {
    match error {
        KafkaError::ClientConfig(_, desc, key, _) if is_secret_property(key) => {
            format!("Client config error: {desc} {key} {MASK}")
        }
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_errors_never_quote_a_secret_value() {
        let refused = |key: &str| {
            KafkaError::ClientConfig(
                rdkafka::types::RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
                "Invalid value".into(),
                key.into(),
                "s3cret-value".into(),
            )
        };
        let masked = describe(&refused("ssl.key.password"));
        assert!(!masked.contains("s3cret-value"), "{masked}");
        assert!(masked.contains("ssl.key.password"), "{masked}");
        let e = broker_error("connect", &refused("sasl.password"));
        assert!(!e.to_string().contains("s3cret-value"), "{e}");
        assert!(describe(&refused("linger.ms")).contains("s3cret-value"));
    }

    #[test]
    fn outcomes_follow_what_may_have_reached_the_log() {
        let p = |c| publish_outcome(&KafkaError::MessageProduction(c));
        assert_eq!(p(Code::QueueFull), PublishOutcome::NotSent);
        assert_eq!(p(Code::MessageSizeTooLarge), PublishOutcome::Permanent);
        assert_eq!(
            p(Code::UnknownTopicOrPartition),
            PublishOutcome::NoDestination
        );
        assert_eq!(p(Code::UnknownTopic), PublishOutcome::NoDestination);
        assert_eq!(p(Code::TopicAuthorizationFailed), PublishOutcome::Permanent);
        assert_eq!(p(Code::MessageTimedOut), PublishOutcome::Ambiguous);
        assert_eq!(p(Code::Fatal), PublishOutcome::Ambiguous);
        assert_eq!(
            broker_error(
                "x",
                &KafkaError::MessageConsumption(Code::BrokerTransportFailure)
            )
            .class(),
            FailureClass::Transient
        );
    }
}
