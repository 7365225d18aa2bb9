//! Handing a queue over from a lost consumer to its successor without reordering.
//!
//! When a subscriber loses its connection, the broker may not have dropped the old consumer
//! yet: after a broker restart, a recovered quorum queue keeps the previous consumer, and the
//! deliveries it held, until it has processed that consumer's exit (about 250 ms on RabbitMQ
//! 3.10); after a half-open connection it keeps them until its heartbeat gives up. A new
//! consumer that attaches meanwhile is served from the rest of the queue first, and the old
//! consumer's deliveries come back only afterwards: a key's earlier message arrives after its
//! successor. So a reconnecting subscriber first waits until the broker counts no more
//! consumers on the queue than other subscribers held before the loss.

use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::Channel;
use tokio::time::Instant;
use tracing::{info, warn};

/// How often the consumer count is asked for while waiting.
const POLL: Duration = Duration::from_millis(100);

/// Consumers the broker counts on `queue` right now (a passive declare).
pub(crate) async fn consumer_count(channel: &Channel, queue: &str) -> Result<u32, lapin::Error> {
    Ok(queue_counts(channel, queue).await?.consumers)
}

/// What a passive declare of a queue reports.
pub(crate) struct QueueCounts {
    /// Messages ready for delivery (not those consumers hold unacknowledged).
    pub ready: u32,
    /// Consumers attached.
    pub consumers: u32,
}

/// The ready messages and consumers of `queue` (a passive declare: fails when the queue does
/// not exist, closing the channel).
pub(crate) async fn queue_counts(
    channel: &Channel,
    queue: &str,
) -> Result<QueueCounts, lapin::Error> {
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(QueueCounts {
        ready: declared.message_count(),
        consumers: declared.consumer_count(),
    })
}

/// Waits, for at most `limit`, until `queue` has no more than `others` consumers, i.e. the
/// broker has dropped this subscriber's previous consumer and given its unacknowledged
/// deliveries back. Returns the consumer count last seen; past `limit` it logs a warning and
/// returns (a competing subscriber may have joined meanwhile: order is not promised then).
///
/// # Errors
/// The broker's error when a passive declare fails (the queue was deleted, the channel closed).
pub(crate) async fn await_previous_consumer_gone(
    channel: &Channel,
    queue: &str,
    others: u32,
    limit: Duration,
) -> Result<u32, lapin::Error> {
    let started = Instant::now();
    loop {
        let count = consumer_count(channel, queue).await?;
        if count <= others {
            if started.elapsed() >= POLL {
                info!(queue, waited = ?started.elapsed(), consumers = count, "previous consumer gone; consuming again");
            }
            return Ok(count);
        }
        if started.elapsed() >= limit {
            warn!(
                queue,
                consumers = count,
                expected = others,
                ?limit,
                "the broker still counts more consumers than before the lost connection; \
                 consuming anyway (per-key order may break if the previous consumer's \
                 deliveries come back later)"
            );
            return Ok(count);
        }
        tokio::time::sleep(POLL).await;
    }
}
