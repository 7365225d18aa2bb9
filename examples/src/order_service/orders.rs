//! The business payload: an order with an amount.

use waybill_core::{HandlerError, Message};

/// The topic orders are published to.
pub const TOPIC: &str = "orders";

/// The `i`-th order of a run; every 97th is malformed on purpose (it must be dead-lettered).
pub fn order(i: u64) -> Message {
    let body = if is_malformed(i) {
        "amount=lots".to_owned()
    } else {
        format!("amount={}", 10 + i % 90)
    };
    Message::new(body).with_key(format!("order-{i}"))
}

/// Whether `order(i)` is malformed.
pub fn is_malformed(i: u64) -> bool {
    i % 97 == 13
}

/// Parses an order's amount.
///
/// # Errors
/// A permanent [`HandlerError`] when the payload is not `amount=<number>`.
pub fn amount(payload: &[u8]) -> Result<u64, HandlerError> {
    let body =
        std::str::from_utf8(payload).map_err(|_| HandlerError::permanent("order is not UTF-8"))?;
    body.strip_prefix("amount=")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| HandlerError::permanent(format!("malformed order {body:?}")))
}
