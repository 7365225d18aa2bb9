//! Classifying rocketmq-client errors into waybill's outcomes, with readable reasons.

use rocketmq_client_rust::{ClientError, MQClientException};
use waybill_core::{BrokerError, FailureClass, PublishOutcome};

/// Broker and client response codes the classification looks at.
mod code {
    pub const SYSTEM_ERROR: i32 = 1;
    pub const SYSTEM_BUSY: i32 = 2;
    pub const MESSAGE_ILLEGAL: i32 = 13;
    pub const SERVICE_NOT_AVAILABLE: i32 = 14;
    pub const NO_PERMISSION: i32 = 16;
    pub const TOPIC_NOT_EXIST: i32 = 17;
    pub const SUBSCRIPTION_GROUP_NOT_EXIST: i32 = 26;
    pub const FLOW_CONTROL: i32 = 215;
    /// Client-side: no broker serves the topic's route.
    pub const BROKER_NOT_EXIST: i32 = 10003;
    /// Client-side: no name server configured.
    pub const NO_NAME_SERVER: i32 = 10004;
    /// Client-side: the topic has no route.
    pub const NOT_FOUND_TOPIC: i32 = 10005;
}

/// The response code carried by `error`: the broker's, or the client's own.
pub(crate) fn response_code(error: &ClientError) -> Option<i32> {
    error.broker_response_code().or_else(|| {
        error
            .source_ref::<MQClientException>()
            .map(MQClientException::response_code)
            .filter(|c| *c != -1)
    })
}

/// A readable reason: the client's `Display` keeps only a generic text, so the underlying
/// message and the response code are added.
pub(crate) fn describe(error: &ClientError) -> String {
    let mut text = error.to_string();
    if let Some(message) = error
        .source_ref::<MQClientException>()
        .and_then(MQClientException::error_message)
    {
        text.push_str(": ");
        text.push_str(message);
    } else if let Some(remark) = broker_remark(error) {
        text.push_str(": ");
        text.push_str(&remark);
    }
    if let Some(code) = response_code(error) {
        text.push_str(&format!(" (response code {code}"));
        if let Some(meaning) = code_meaning(code) {
            text.push_str(": ");
            text.push_str(meaning);
        }
        text.push(')');
    }
    text
}

/// What a response code means, for codes whose error carries no words of the broker (the
/// client keeps the broker's remark to itself).
fn code_meaning(code: i32) -> Option<&'static str> {
    match code {
        code::SYSTEM_BUSY => Some(
            "the broker refuses writes for now: it is busy or under store back-pressure, \
             e.g. its store's disk is over the used-space limit",
        ),
        code::SERVICE_NOT_AVAILABLE => Some("the broker's store is not available for writes"),
        code::FLOW_CONTROL => Some("the broker is flow-controlling this client"),
        code::NO_PERMISSION => Some("the broker or topic does not permit this operation"),
        _ => None,
    }
}

/// The broker's own words, when it answered with an error.
fn broker_remark(error: &ClientError) -> Option<String> {
    rocketmq_client_rust::MQBrokerException::from_client_error(error)
        .and_then(|b| b.error_message().map(str::to_owned))
        .filter(|m| !m.is_empty())
}

/// Whether `error` says the client could not reach a name server or broker at all.
pub(crate) fn is_unreachable(error: &ClientError) -> bool {
    use rocketmq_error as d;
    error.is(&d::TRANSPORT_CONNECTION_FAILED)
        || error.is(&d::TRANSPORT_CONNECTION_TIMEOUT)
        || error.is(&d::TRANSPORT_DNS_FAILED)
}

/// [`describe`], naming the name servers when nothing could be reached.
pub(crate) fn describe_at(error: &ClientError, name_server: &str) -> String {
    let mut text = describe(error);
    if is_unreachable(error) {
        text.push_str(&format!(" (name servers {name_server})"));
    }
    text
}

fn is_permanent_code(code: i32) -> bool {
    matches!(
        code,
        code::MESSAGE_ILLEGAL
            | code::NO_PERMISSION
            | code::TOPIC_NOT_EXIST
            | code::SUBSCRIPTION_GROUP_NOT_EXIST
            | code::NO_NAME_SERVER
    )
}

/// Whether `error` says the client knows no usable route for the topic: "select message queue
/// return null", "Can not find Message Queue for this topic", "No route info of this topic".
///
/// The client reports these as a generic argument error (`CORE_ARGUMENT_INVALID`), also while
/// a broker restarts or is cut off from the name server, for a topic that exists. Nothing was
/// sent; whether the topic exists only the name server can say (see [`crate::route_state`]).
pub(crate) fn is_no_route(error: &ClientError) -> bool {
    error.is(&rocketmq_error::CORE_ARGUMENT_INVALID)
        || error.is(&rocketmq_error::ROUTE_TOPIC_NOT_FOUND)
        || response_code(error) == Some(code::NOT_FOUND_TOPIC)
}

/// The outcome of a send that failed with `error`.
///
/// - *no destination*: the broker says the topic does not exist (yet); nothing was stored;
/// - *permanent*: the broker will refuse it again (illegal or oversized message, no
///   permission, no name server configured);
/// - *not sent*: refused before anything was stored (no connection could be made, the broker
///   is busy or flow-controlled, no route is known for the topic right now — the publisher
///   asks the name server whether the topic exists at all —, the local queue is full);
/// - *ambiguous*: anything that may have been stored (timeouts after the request was
///   written, system errors, unknown failures).
pub(crate) fn publish_outcome(error: &ClientError) -> PublishOutcome {
    use rocketmq_error as d;
    if let Some(code) = response_code(error) {
        if code == code::TOPIC_NOT_EXIST {
            return PublishOutcome::NoDestination;
        }
        if is_permanent_code(code) {
            return PublishOutcome::Permanent;
        }
        if matches!(
            code,
            code::SYSTEM_BUSY
                | code::SERVICE_NOT_AVAILABLE
                | code::FLOW_CONTROL
                | code::BROKER_NOT_EXIST
        ) {
            return PublishOutcome::NotSent;
        }
        if code == code::SYSTEM_ERROR {
            return PublishOutcome::Ambiguous;
        }
    }
    if error.is(&d::PROTOCOL_MESSAGE_PROPERTY_INVALID) {
        return PublishOutcome::Permanent;
    }
    if is_no_route(error)
        || is_unreachable(error)
        || error.is(&d::TRANSPORT_ADMISSION_QUEUE_SATURATED)
        || error.is(&d::TRANSPORT_REMOTE_RATE_LIMITED)
        || error.is(&d::BROKER_LOOKUP_NOT_FOUND)
        || error.is(&d::CLIENT_LIFECYCLE_NOT_STARTED)
    {
        return PublishOutcome::NotSent;
    }
    PublishOutcome::Ambiguous
}

/// A [`BrokerError`] for a consumer or admin operation.
pub(crate) fn broker_error(operation: &'static str, error: &ClientError) -> BrokerError {
    broker_error_at(operation, error, None)
}

/// [`broker_error`], naming the name servers when nothing could be reached.
pub(crate) fn broker_error_at(
    operation: &'static str,
    error: &ClientError,
    name_server: Option<&str>,
) -> BrokerError {
    // A missing route is "not there right now" (a broker restarting, cut off from the name
    // server): callers that can tell a topic that does not exist ask the name server.
    let permanent = response_code(error).is_some_and(is_permanent_code) && !is_no_route(error);
    let class = if permanent {
        FailureClass::Permanent
    } else {
        FailureClass::Transient
    };
    let reason = match name_server {
        Some(ns) => describe_at(error, ns),
        None => describe(error),
    };
    BrokerError::new(class, operation, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_response_code() {
        let e = ClientError::broker_operation_failed("SEND", code::TOPIC_NOT_EXIST, "no topic");
        assert_eq!(publish_outcome(&e), PublishOutcome::NoDestination);
        let e = ClientError::broker_operation_failed("SEND", code::NO_PERMISSION, "refused");
        assert_eq!(publish_outcome(&e), PublishOutcome::Permanent);
        let e = ClientError::broker_operation_failed("SEND", code::SYSTEM_BUSY, "busy");
        assert_eq!(publish_outcome(&e), PublishOutcome::NotSent);
        let e = ClientError::broker_operation_failed("SEND", code::SYSTEM_ERROR, "oops");
        assert_eq!(publish_outcome(&e), PublishOutcome::Ambiguous);
        let e = ClientError::timeout("send", 3000);
        assert_eq!(publish_outcome(&e), PublishOutcome::Ambiguous);
        let e: ClientError = MQClientException::new_with_code(
            code::NOT_FOUND_TOPIC,
            "No route info of this topic: t",
        )
        .into();
        assert_eq!(publish_outcome(&e), PublishOutcome::NotSent);
        assert_eq!(
            broker_error("subscribe", &e).class(),
            FailureClass::Transient
        );
        let e: ClientError =
            MQClientException::new("Unknow why, Can not find Message Queue for this topic, t")
                .into();
        assert!(is_no_route(&e), "{e:?}");
        assert_eq!(publish_outcome(&e), PublishOutcome::NotSent);
        assert_eq!(
            broker_error("subscribe", &e).class(),
            FailureClass::Transient
        );
        let e: ClientError =
            MQClientException::new_with_code(code::MESSAGE_ILLEGAL, "too big").into();
        assert_eq!(publish_outcome(&e), PublishOutcome::Permanent);
        assert!(describe(&e).contains("too big"), "{}", describe(&e));
    }

    #[test]
    fn a_busy_broker_is_explained_though_the_client_drops_its_remark() {
        let e = ClientError::broker_operation_failed("SEND", code::SYSTEM_BUSY, "disk full");
        let text = describe(&e);
        assert!(text.contains("response code 2: "), "{text}");
        assert!(text.contains("store back-pressure"), "{text}");
        let e = ClientError::broker_operation_failed("SEND", code::SYSTEM_ERROR, "oops");
        assert!(
            describe(&e).ends_with("(response code 1)"),
            "{}",
            describe(&e)
        );
    }
}
