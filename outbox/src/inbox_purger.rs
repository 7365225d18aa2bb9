//! Deleting expired inbox rows in the background, so the table does not grow without bound.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::error::OutboxError;

/// The shortest purge interval; a shorter (or zero) one is raised to it.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// A background task that deletes the inbox's expired rows (lapsed leases and processed
/// markers past their retention) at a fixed interval.
///
/// Started by [`crate::PgIdempotencyStore::purge_every`],
/// [`crate::SqliteIdempotencyStore::purge_every`] or
/// [`crate::MySqlIdempotencyStore::purge_every`]. A failed purge is logged and tried again at
/// the next tick; it never affects claims, which treat expired rows as absent anyway. The task
/// stops when the purger is dropped or [`InboxPurger::stop`] is called.
#[derive(Debug)]
pub struct InboxPurger {
    task: JoinHandle<()>,
    purged: Arc<AtomicU64>,
    failures: Arc<AtomicU64>,
}

impl InboxPurger {
    /// Rows deleted so far.
    pub fn purged(&self) -> u64 {
        self.purged.load(Ordering::Relaxed)
    }

    /// Purges that failed so far (each logged as a warning).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Stops the task (a purge under way is abandoned; its statement either ran or did not).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for InboxPurger {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs `purge` now and then every `every` on the current tokio runtime.
///
/// # Panics
/// When called outside a tokio runtime.
pub(crate) fn spawn<F, Fut>(every: Duration, purge: F) -> InboxPurger
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Result<u64, OutboxError>> + Send,
{
    let purged = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let task = {
        let (purged, failures) = (Arc::clone(&purged), Arc::clone(&failures));
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every.max(MIN_INTERVAL));
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match purge().await {
                    Ok(rows) => {
                        purged.fetch_add(rows, Ordering::Relaxed);
                        if rows > 0 {
                            tracing::debug!(rows, "purged expired inbox rows");
                        }
                    }
                    Err(e) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "inbox purge failed; trying again at the next interval");
                    }
                }
            }
        })
    };
    InboxPurger {
        task,
        purged,
        failures,
    }
}
