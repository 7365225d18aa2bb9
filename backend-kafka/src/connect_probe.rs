//! The check every client runs before it starts: does a broker answer, and if not, why.
//!
//! librdkafka reports a failed TLS handshake or SASL login only through its error callback and
//! keeps retrying, so a plain metadata request would end in a timeout that hides the cause. The
//! probe records those callbacks and turns them into a permanent error that names what failed.

use std::sync::Mutex;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode as Code};
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;
use waybill_core::BrokerError;

use crate::config::KafkaConfig;
use crate::error_class::broker_error;

/// How long the probe waits for a broker's metadata.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Keeps librdkafka's global errors seen during the probe.
#[derive(Default)]
struct ErrorRecorder {
    errors: Mutex<Vec<(Option<Code>, String)>>,
}

impl ClientContext for ErrorRecorder {
    fn error(&self, error: KafkaError, reason: &str) {
        if let Ok(mut errors) = self.errors.lock() {
            errors.push((error.rdkafka_error_code(), reason.to_owned()));
        }
    }
}

impl ProducerContext for ErrorRecorder {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// What the recorded errors say about a failed probe.
fn diagnose(brokers: &str, failure: &KafkaError, errors: &[(Option<Code>, String)]) -> BrokerError {
    let find = |codes: &[Code]| {
        errors
            .iter()
            .find(|(code, _)| code.is_some_and(|c| codes.contains(&c)))
            .map(|(_, reason)| reason.clone())
    };
    if let Some(reason) = find(&[Code::SSL]) {
        return BrokerError::permanent(
            "connect",
            format!("the TLS handshake with the Kafka broker at {brokers} failed: {reason}"),
        );
    }
    if let Some(reason) = find(&[Code::Authentication, Code::SaslAuthenticationFailed]) {
        return BrokerError::permanent(
            "connect",
            format!("the Kafka broker at {brokers} refused the SASL login: {reason}"),
        );
    }
    let last = errors
        .last()
        .map(|(_, reason)| format!(" (last error: {reason})"))
        .unwrap_or_default();
    BrokerError::transient(
        "connect",
        format!("no Kafka broker answered at {brokers}: {failure}{last}"),
    )
}

/// Fetches the cluster's metadata with a short-lived client of `config`'s settings.
///
/// # Errors
/// *Permanent* when the TLS handshake fails (certificate not trusted, host name not in the
/// certificate, expired, protocol mismatch) or the SASL login is refused, naming the cause;
/// *transient* when no broker answers.
pub(crate) async fn check_reachable(config: &KafkaConfig) -> Result<(), BrokerError> {
    let probe: BaseProducer<ErrorRecorder> = config
        .admin()
        .create_with_context(ErrorRecorder::default())
        .map_err(|e| broker_error("connect", &e))?;
    let brokers = config.brokers().to_owned();
    tokio::task::spawn_blocking(move || {
        let answer = probe.client().fetch_metadata(None, PROBE_TIMEOUT);
        // Serves the error callbacks queued while the request was failing.
        probe.poll(Duration::from_millis(100));
        match answer {
            Ok(_) => Ok(()),
            Err(failure) => {
                let errors = probe
                    .context()
                    .errors
                    .lock()
                    .map(|e| e.clone())
                    .unwrap_or_default();
                Err(diagnose(&brokers, &failure, &errors))
            }
        }
    })
    .await
    .map_err(|e| BrokerError::transient("connect", e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use waybill_core::FailureClass;

    const TIMEOUT: KafkaError = KafkaError::MetadataFetch(Code::OperationTimedOut);

    #[test]
    fn a_failed_handshake_is_permanent_and_named() {
        let errors = vec![
            (
                Some(Code::AllBrokersDown),
                "1/1 brokers are down".to_owned(),
            ),
            (
                Some(Code::SSL),
                "ssl://b:9093/bootstrap: SSL handshake failed: certificate verify failed"
                    .to_owned(),
            ),
        ];
        let e = diagnose("b:9093", &TIMEOUT, &errors);
        assert_eq!(e.class(), FailureClass::Permanent);
        assert!(e.to_string().contains("certificate verify failed"), "{e}");
        assert!(e.to_string().contains("TLS handshake"), "{e}");
    }

    #[test]
    fn a_refused_login_is_permanent_and_named() {
        let errors = vec![(
            Some(Code::Authentication),
            "SASL authentication error: invalid credentials".to_owned(),
        )];
        let e = diagnose("b:9093", &TIMEOUT, &errors);
        assert_eq!(e.class(), FailureClass::Permanent);
        assert!(e.to_string().contains("refused the SASL login"), "{e}");
    }

    #[test]
    fn silence_is_transient() {
        let e = diagnose("b:9092", &TIMEOUT, &[]);
        assert_eq!(e.class(), FailureClass::Transient);
        assert!(
            e.to_string().contains("no Kafka broker answered at b:9092"),
            "{e}"
        );
        let e = diagnose(
            "b:9092",
            &TIMEOUT,
            &[(
                Some(Code::BrokerTransportFailure),
                "Connection refused".to_owned(),
            )],
        );
        assert_eq!(e.class(), FailureClass::Transient);
        assert!(e.to_string().contains("Connection refused"), "{e}");
    }
}
