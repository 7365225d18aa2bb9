//! Wake-ups from PostgreSQL's `NOTIFY`: a background task keeps the relay's `LISTEN` session
//! drained at all times and folds every notification into one pending wake-up.
//!
//! The server keeps each notification in a queue shared by the whole cluster until every
//! listening session has read it, and it hands notifications to a session only as fast as
//! the session's client reads its socket. A listener read only while the relay is idle would
//! stop reading while the relay publishes (or hangs on a broker): once its socket buffers
//! fill, the queue grows with every commit anywhere on the server, and when it is full
//! `NOTIFY` — and so every enqueueing `COMMIT` — fails. Reading in a task of its own avoids
//! that; the relay only needs to know that something arrived since it last looked.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::warn;

/// The channel the insert trigger notifies.
const CHANNEL: &str = "waybill_outbox";

/// Longest wait before listening again after the session failed.
const RELISTEN_MAX: Duration = Duration::from_secs(5);

/// The relay's notification listener: started on first use, stopped when dropped.
#[derive(Default)]
pub(crate) struct Wakeups {
    wake: Arc<Notify>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Wakeups {
    /// Waits until a notification arrived since the previous wait returned, or `pause`
    /// passed; any number of notifications make one wake-up. Starts the listener task on
    /// first use (and again if it ended). Cancel safe.
    pub async fn wait(&self, pool: &PgPool, pause: Duration) {
        self.ensure_listening(pool);
        let _ = tokio::time::timeout(pause, self.wake.notified()).await;
    }

    fn ensure_listening(&self, pool: &PgPool) {
        let mut task = self.task.lock().unwrap_or_else(|e| e.into_inner());
        if task.as_ref().is_some_and(|t| !t.is_finished()) || pool.is_closed() {
            return;
        }
        *task = Some(tokio::spawn(drain(pool.clone(), Arc::clone(&self.wake))));
    }
}

impl Drop for Wakeups {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
    }
}

/// Reads every notification as soon as it arrives, for as long as the pool is open;
/// listens again (with backoff) when the session fails.
async fn drain(pool: PgPool, wake: Arc<Notify>) {
    let mut failures = 0u32;
    while !pool.is_closed() {
        let mut listener = match listen(&pool).await {
            Ok(listener) => listener,
            Err(e) => {
                failures = failures.saturating_add(1);
                let pause = relisten_pause(failures);
                warn!(error = %e, ?pause, "cannot listen for outbox notifications; polling");
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        // Notifications sent while no session listened are lost: look once.
        wake.notify_one();
        loop {
            match listener.try_recv().await {
                Ok(Some(_)) => {
                    failures = 0;
                    wake.notify_one();
                }
                // The session was lost and listens again; whatever was notified meanwhile
                // is lost, so look once.
                Ok(None) => wake.notify_one(),
                Err(sqlx::Error::PoolClosed) => return,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let pause = relisten_pause(failures);
                    warn!(error = %e, ?pause, "outbox notifications lost; polling");
                    tokio::time::sleep(pause).await;
                    break;
                }
            }
        }
    }
}

async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// 100 ms doubling per failure, at most [`RELISTEN_MAX`].
fn relisten_pause(failures: u32) -> Duration {
    Duration::from_millis(100)
        .saturating_mul(1 << failures.saturating_sub(1).min(10))
        .min(RELISTEN_MAX)
}
