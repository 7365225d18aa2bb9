//! A relay running on its own task, with the same shutdown shape as a running Processor.

use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use waybill_core::Health;

use super::{Relay, RelayStats};
use crate::error::OutboxError;
use crate::inspect::Backlog;

/// A relay started with [`Relay::spawn`]: it relays on a tokio task until
/// [`RunningRelay::shutdown`] (or an error that makes relaying impossible).
///
/// Dropping it without a shutdown leaves the task running until the runtime ends; its shard
/// leases then lapse after `lease_ttl` instead of being given back.
pub struct RunningRelay {
    relay: Arc<Relay>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), OutboxError>>,
}

impl Relay {
    /// Starts relaying on a new tokio task (see [`Relay::run`]); must be called within a
    /// tokio runtime.
    pub fn spawn(self) -> RunningRelay {
        let relay = Arc::new(self);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = {
            let relay = Arc::clone(&relay);
            tokio::spawn(async move {
                relay
                    .run(async {
                        // A dropped sender means nobody can ask to stop: keep relaying.
                        if stopped.await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    })
                    .await
            })
        };
        RunningRelay { relay, stop, task }
    }
}

impl RunningRelay {
    /// What the relay did so far.
    pub fn stats(&self) -> RelayStats {
        self.relay.stats()
    }

    /// Pending and dead rows, the oldest pending row's age.
    ///
    /// # Errors
    /// A database error.
    pub async fn backlog(&self) -> Result<Backlog, OutboxError> {
        self.relay.backlog().await
    }

    /// How the relay is doing ([`Relay::health`]), or `Stopped` once its task ended.
    pub async fn health(&self) -> Health {
        if self.task.is_finished() {
            return Health::stopped("the relay has stopped");
        }
        self.relay.health().await
    }

    /// Whether the relay has stopped (after a shutdown or on an error).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops relaying: the batch in flight finishes, the shard leases are given back (other
    /// relays take the shards at once), and the final counts are returned.
    ///
    /// # Errors
    /// The error that had stopped the relay before, if any ([`Relay::run`]'s errors), or
    /// [`OutboxError::Task`] when its task panicked.
    pub async fn shutdown(self) -> Result<RelayStats, OutboxError> {
        let Self { relay, stop, task } = self;
        let _ = stop.send(());
        finish(relay, task).await
    }

    /// Waits until the relay stops by itself (an error that makes relaying impossible).
    ///
    /// # Errors
    /// As for [`RunningRelay::shutdown`].
    pub async fn wait(self) -> Result<RelayStats, OutboxError> {
        let Self { relay, stop, task } = self;
        let outcome = finish(relay, task).await;
        drop(stop); // kept until here: dropping it earlier would not stop the relay either
        outcome
    }
}

/// Waits for the relay's task and returns its final counts.
async fn finish(
    relay: Arc<Relay>,
    task: JoinHandle<Result<(), OutboxError>>,
) -> Result<RelayStats, OutboxError> {
    task.await.map_err(|e| OutboxError::Task(e.to_string()))??;
    Ok(relay.stats())
}
