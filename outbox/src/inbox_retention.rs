//! The retention check both SQL inboxes make at start.

use std::time::Duration;

/// Below this an inbox forgets messages that brokers and relays can still redeliver.
pub(crate) const REDELIVERY_HORIZON: Duration = Duration::from_secs(24 * 3600);

/// Warns when `retention` is shorter than the redelivery horizon.
pub(crate) fn warn_if_short(retention: Duration) {
    if retention < REDELIVERY_HORIZON {
        tracing::warn!(
            ?retention,
            horizon = ?REDELIVERY_HORIZON,
            "inbox retention is shorter than the redelivery horizon: a duplicate arriving later \
             would be handled again"
        );
    }
}
