//! Taking a batch, and taking the next one while the current one is being published.
//!
//! A running relay selects batch N+1 while batch N awaits its confirms, so that the database's
//! share of a batch (select, decode) is hidden behind the broker's. Three rules keep this as
//! safe as one batch after the other:
//! - **No row twice.** Batch N's rows are still in the table while N+1 is selected (N is not
//!   deleted yet): the select leaves them out (on PostgreSQL in the query; SQLite and MySQL
//!   ask for as many more rows as N holds and drop N's).
//! - **No key overtakes its failed row.** A key whose row failed in N is parked, but N+1 may
//!   have been selected before that: N+1's rows of the keys that failed in N are dropped
//!   (they stay pending behind the parked row). A key whose rows in N were all confirmed goes
//!   on in N+1 in `seq` order, because N+1 is published only once N is done.
//! - **Shards held.** N+1 is selected for the shards held when N began; when the leases
//!   changed by the time N+1 is due, it is dropped and selected again.

use tracing::debug;

use super::Relay;
use crate::error::OutboxError;
use crate::row::OutboxRow;
use waybill_core::DeadLetterMode;

/// A batch taken from the store: its decodable rows (the others were marked dead).
pub(super) struct Batch {
    /// The shards it was selected for.
    shards: Vec<i64>,
    /// Rows to publish, in `seq` order.
    pub rows: Vec<OutboxRow>,
    /// Rows taken, the quarantined ones included.
    pub taken: usize,
}

impl Relay {
    /// Takes up to `batch_size` ready rows of `shards` that are not `in_flight`, and marks
    /// those that do not decode dead.
    pub(super) async fn take_batch(
        &self,
        shards: Vec<i64>,
        in_flight: &[i64],
    ) -> Result<Batch, OutboxError> {
        let rows = self
            .store
            .ready(
                self.config.shard_count,
                &shards,
                self.config.batch_size,
                self.config.dead_letter_mode == DeadLetterMode::HoldKey,
                in_flight,
            )
            .await?;
        let taken = rows.len();
        let rows = self.quarantine(rows).await?;
        Ok(Batch {
            shards,
            rows,
            taken,
        })
    }

    /// One batch of a running relay: publishes `prefetched` (or a batch taken now) while the
    /// next one is taken, and leaves the next one in `prefetched`. Returns the rows taken.
    pub(super) async fn relay_overlapped(
        &self,
        prefetched: &mut Option<Batch>,
    ) -> Result<usize, OutboxError> {
        let shards = self.leases.current(&*self.store, &self.config).await?;
        if shards.is_empty() {
            *prefetched = None;
            return Ok(0);
        }
        let batch = match prefetched.take() {
            Some(batch) if batch.shards == shards => batch,
            _ => self.take_batch(shards.clone(), &[]).await?,
        };
        if batch.taken == 0 {
            return Ok(0);
        }
        self.counters
            .batches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let started = std::time::Instant::now();
        let in_flight: Vec<i64> = batch.rows.iter().map(|row| row.seq).collect();
        let taken = batch.taken;
        let (published, next) = tokio::join!(
            self.publish_rows(batch.rows),
            self.take_batch(shards, &in_flight)
        );
        let failed_keys = published?;
        self.instruments.batch_done(started.elapsed());
        *prefetched = match next {
            Ok(mut next) => {
                next.rows.retain(|row| {
                    row.key
                        .as_ref()
                        .is_none_or(|key| !failed_keys.contains(key))
                });
                (!next.rows.is_empty()).then_some(next)
            }
            Err(e) => {
                // Taken again, without overlap, when the next batch is due.
                debug!(error = %e, "taking the next batch failed");
                None
            }
        };
        Ok(taken)
    }
}
