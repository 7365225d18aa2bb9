//! Classification of lapin errors into what the SDK's callers can act on.

use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::ErrorKind;
use waybill_core::{BrokerError, FailureClass, PublishOutcome};

use crate::tls_failure::tls_rejection;

/// The AMQP reply code of a protocol error (404, 403, 406, ...).
pub(crate) fn reply_code(error: &lapin::Error) -> Option<u16> {
    match error.kind() {
        ErrorKind::ProtocolError(e) => Some(e.get_id()),
        _ => None,
    }
}

/// Whether retrying the same operation may succeed.
pub(crate) fn failure_class(error: &lapin::Error) -> FailureClass {
    match error.kind() {
        ErrorKind::ProtocolError(e) => match e.kind() {
            AMQPErrorKind::Soft(soft) => match soft {
                // Refused for good: missing resources, wrong arguments, forbidden, too large.
                AMQPSoftError::ACCESSREFUSED
                | AMQPSoftError::NOTFOUND
                | AMQPSoftError::PRECONDITIONFAILED
                | AMQPSoftError::CONTENTTOOLARGE
                | AMQPSoftError::NOROUTE => FailureClass::Permanent,
                AMQPSoftError::RESOURCELOCKED | AMQPSoftError::NOCONSUMERS => {
                    FailureClass::Transient
                }
            },
            AMQPErrorKind::Hard(hard) => match hard {
                // The server closed the connection or ran out of resources: reconnect.
                AMQPHardError::CONNECTIONFORCED
                | AMQPHardError::RESOURCEERROR
                | AMQPHardError::INTERNALERROR
                | AMQPHardError::CHANNELERROR
                | AMQPHardError::UNEXPECTEDFRAME
                | AMQPHardError::FRAMEERROR => FailureClass::Transient,
                // Configuration or client bugs: retrying repeats them.
                AMQPHardError::NOTALLOWED
                | AMQPHardError::INVALIDPATH
                | AMQPHardError::SYNTAXERROR
                | AMQPHardError::COMMANDINVALID
                | AMQPHardError::NOTIMPLEMENTED => FailureClass::Permanent,
            },
        },
        // A certificate that fails verification fails the same way on every attempt.
        ErrorKind::IOError(_) if tls_rejection(error).is_some() => FailureClass::Permanent,
        ErrorKind::IOError(_)
        | ErrorKind::RuntimeShutdownError(_)
        | ErrorKind::InvalidChannelState(..)
        | ErrorKind::InvalidConnectionState(_)
        | ErrorKind::MissingHeartbeatError
        | ErrorKind::ChannelsLimitReached
        | ErrorKind::InvalidChannel(_)
        | ErrorKind::FutureCompleted => FailureClass::Transient,
        ErrorKind::InvalidProtocolVersion(_)
        | ErrorKind::ParsingError(_)
        | ErrorKind::SerialisationError(_)
        | ErrorKind::AuthProviderError(_)
        | ErrorKind::NoDefaultRuntime => FailureClass::Permanent,
        // `ErrorKind` is non-exhaustive: a variant added by a later lapin is treated as
        // transient (retry with backoff) until it is classified here.
        _ => FailureClass::Transient,
    }
}

/// The outcome of a publish whose confirm failed with `error` after the frames were sent. A
/// channel closed with 404 NOT_FOUND means the exchange does not exist (yet): nothing was
/// routed, and the publish succeeds once a consumer or the publisher declares it.
pub(crate) fn confirm_outcome(error: &lapin::Error) -> PublishOutcome {
    if reply_code(error) == Some(404) {
        return PublishOutcome::NoDestination;
    }
    match failure_class(error) {
        FailureClass::Permanent => PublishOutcome::Permanent,
        // The frames left; whether the broker stored the message is unknown.
        FailureClass::Transient => PublishOutcome::Ambiguous,
    }
}

/// A [`BrokerError`] for `operation` from a lapin error.
pub(crate) fn broker_error(operation: &'static str, error: lapin::Error) -> BrokerError {
    BrokerError::new(failure_class(&error), operation, describe(&error)).with_source(error)
}

/// A readable description, with the reply code or the TLS failure spelled out.
pub(crate) fn describe(error: &lapin::Error) -> String {
    if let Some(tls) = tls_rejection(error) {
        return format!("TLS with the broker failed: {tls}");
    }
    match reply_code(error) {
        Some(code) => format!("{error} (AMQP reply code {code})"),
        None => error.to_string(),
    }
}
