//! Closing channels and connections without hanging on a dead peer.

use std::future::Future;
use std::time::Duration;

use waybill_core::BrokerError;

use crate::error_class::broker_error;

/// Awaits a close handshake for at most `limit`.
///
/// # Errors
/// [`BrokerError`] when the broker refused the close or did not answer in time (the socket is
/// then dropped, which the broker treats as a close).
pub(crate) async fn bounded_close(
    limit: Duration,
    close: impl Future<Output = Result<(), lapin::Error>>,
) -> Result<(), BrokerError> {
    match tokio::time::timeout(limit, close).await {
        Ok(result) => result.map_err(|e| broker_error("close", e)),
        Err(_) => Err(BrokerError::transient(
            "close",
            format!("no close-ok from the broker within {limit:?}"),
        )),
    }
}
