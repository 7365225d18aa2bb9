//! Commit-order safety on MySQL and MariaDB: the highest `seq` below which no row can still
//! appear.
//!
//! **The hazard.** `seq` is an auto-increment value, handed out when a row is inserted, not
//! when its transaction commits. A slow transaction holding `seq` 5 of key K and a fast one
//! that inserted `seq` 6 of K and committed first leave the relay seeing 6 without 5; relaying
//! 6 then would put K out of order. PostgreSQL answers with transaction ids
//! (`txid < pg_snapshot_xmin`); InnoDB exposes no such horizon, but it lists every started
//! transaction with its start time in `information_schema.innodb_trx`.
//!
//! **The rule.** Each relay round, in one transaction of its own, the relay
//! 1. reads `MAX(seq)` of the committed rows (a consistent read, which also starts the
//!    transaction, so that it is listed in `innodb_trx`);
//! 2. in one statement that carries a fresh nonce in its text, reads the clock `O`
//!    (`UTC_TIMESTAMP(6)`, the statement's start) and scans `innodb_trx` once for the
//!    earliest start `H` of every other listed transaction, and for whether its own entry
//!    shows this very statement (`trx_query` containing the nonce).
//!
//! The pair (`O`, `MAX(seq)`) is an *observation*. A round whose own entry shows the nonce
//! *certifies* every observation so far (its own included) with `O < H`; from then on every
//! row with `seq` up to that observation's `MAX(seq)` may be relayed, and that bound only ever
//! rises. Observations not certified wait for a later round.
//!
//! **Why it is safe.** Take an observation (`O`, `M`) certified by a round whose statement
//! started at `O2 >= O`, and a transaction `T` that still holds an uncommitted row `p` with
//! `p.seq <= M`:
//! - auto-increment values are handed out in increasing order (every
//!   `innodb_autoinc_lock_mode`), so `p` was inserted before the row that gave `M`, which had
//!   committed before the observation's read: `T` started before `O`;
//! - InnoDB starts a transaction (and lists it, with `trx_started`) before it inserts
//!   anything; `trx_started` is truncated to the second, so it is at most the real start:
//!   `trx_started(T) < O`;
//! - `innodb_trx` is served from a cache that is not refreshed for a read within 100 ms of the
//!   previous one, so a scan may show the transactions of long ago (measured: a second scan
//!   within 100 ms shows the previous statement as a session's current one). The certifying scan showed its own
//!   statement's nonce, so the cache was filled while that statement ran, after `O2 >= O`:
//!   `T`, started before `O`, was listed if still running — with `trx_started(T) < O < H`,
//!   impossible by the choice of `H`. So `T` had finished: `p` is committed (and the ready
//!   query, which runs afterwards, sees it) or it never will be.
//!
//! A transaction started after `O` can only insert rows above `M`. Rows are therefore
//! relayed only when nothing earlier can still commit, whatever the isolation level, batch
//! sizes or commit order of the writers. The relay's own session is left out (its reads
//! insert nothing); every other transaction on the server counts, read-only ones included,
//! so — as on PostgreSQL — a transaction left open anywhere holds relaying back until it ends.
//!
//! **What it assumes.** The server's clock does not step backwards (`trx_started` and
//! `UTC_TIMESTAMP` read the same system clock; NTP slewing is fine), the server's system time
//! zone has no daylight-saving fold (`trx_started` is reported in it; UTC servers are never
//! affected), rows get their `seq` from the auto-increment (no explicit `seq` values), and
//! `innodb_trx` is not truncated (it keeps up to 16 MB, thousands of concurrent transactions).
//! A transaction whose start is unknown (a recovered XA transaction) holds everything back.
//!
//! **Latency.** A row becomes relayable in the first round after it committed whose scan
//! refreshes the cache and finds no other transaction started in the same second or earlier
//! (start times have whole seconds). A relay scans only while committed rows lie beyond the
//! certified bound, at most every 150–250 ms, and polls every 200 ms meanwhile. The cache is
//! refreshed only by a read at least 100 ms after the previous read by any session (measured
//! on MariaDB 10.11: a session reading every 50 ms never saw a transaction open for 2.5 s): a
//! tool that reads `innodb_trx` without such pauses keeps every relay waiting (never relaying
//! early), and the relay warns about it after 30 s.
//!
//! Reading `innodb_trx` needs the `PROCESS` privilege; without it the relay refuses to run.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use sqlx::{MySqlPool, Row};
use tokio::sync::Mutex;
use tracing::{debug, warn};

use crate::error::{classify, OutboxError};

/// The least time between two scans of `innodb_trx` by one relay (plus up to 100 ms of
/// jitter). The server refreshes the table's cache only on a read that comes at least 100 ms
/// after the previous read: scans one after the other from several sessions (several relays,
/// or a monitoring tool polling the table) keep it from ever being refreshed. A round that
/// finds the cache stale certifies nothing, so stale data never lets a row out early, but a
/// relay scanning in a tight loop would wait forever.
const PROBE_GAP: Duration = Duration::from_millis(150);

/// How long scans may find the cache stale before the relay warns (and then how often).
const STALE_WARNING: Duration = Duration::from_secs(30);

/// Observations kept while waiting for certification (one per round at most; a long-open
/// transaction stops them being certified). Beyond this, new ones are dropped: that only
/// delays rows until the kept ones are certified and a new observation is made.
const MAX_OBSERVATIONS: usize = 4096;

/// One scan of `innodb_trx`, its text starting with a nonce (`{nonce}`, inlined): the clock,
/// whether this session's entry shows this statement (so the cache was filled while it ran),
/// and the earliest start of every other listed transaction (0 for one without a known
/// start), all in UTC microseconds. `trx_started` is in the server's system time zone.
fn probe(nonce: &str) -> String {
    format!(
        "SELECT '{nonce}', \
           TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6)), \
           CAST(COALESCE(MAX(trx_mysql_thread_id = CONNECTION_ID() \
                             AND LOCATE('{nonce}', trx_query) > 0), 0) AS SIGNED), \
           MIN(CASE WHEN trx_mysql_thread_id <> CONNECTION_ID() THEN \
                 COALESCE(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', \
                                        CONVERT_TZ(trx_started, 'SYSTEM', '+00:00')), 0) END) \
         FROM information_schema.innodb_trx"
    )
}

/// MySQL's "needs the PROCESS privilege" (ER_SPECIFIC_ACCESS_DENIED_ERROR) and
/// ER_ACCESS_DENIED_ERROR for information_schema tables.
const ACCESS_DENIED: [u16; 2] = [1227, 1045];

/// The relay's commit-order horizon on one database.
#[derive(Default)]
pub(crate) struct Horizon {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Every row with `seq` up to this is committed or will never exist.
    safe: i64,
    /// Observations not certified yet: (clock in UTC µs, highest committed `seq` then).
    observed: VecDeque<(i64, i64)>,
    /// Committed rows lie beyond `safe`.
    behind: bool,
    /// When this relay last scanned `innodb_trx`, and how long until it may again.
    last_scan: Option<Instant>,
    probe_gap: Duration,
    /// When a scan last found the cache refreshed for it, and when that was last warned
    /// about.
    last_fresh: Option<Instant>,
    warned: Option<Instant>,
}

impl State {
    /// Warns (at most every [`STALE_WARNING`]) when no scan found a refreshed cache for that
    /// long: something else reads `innodb_trx` without pause, and rows wait meanwhile.
    fn warn_if_stale(&mut self) {
        let now = Instant::now();
        let since = *self.last_fresh.get_or_insert(now);
        let quiet = self.warned.is_none_or(|at| now - at >= STALE_WARNING);
        if now - since >= STALE_WARNING && quiet {
            self.warned = Some(now);
            warn!(
                stale_for_secs = (now - since).as_secs(),
                "information_schema.innodb_trx has not been refreshed for this relay: outbox \
                 rows wait. Something reads it without 100 ms pauses (a monitoring tool \
                 polling it?); the server refreshes it only after such a pause"
            );
        }
    }
}

impl Horizon {
    /// Returns the highest `seq` that is safe to relay. When committed rows lie beyond it and
    /// the last scan is older than the probe gap, first runs a round: makes a new observation
    /// and certifies what observations it can. Rounds of one horizon run one at a time.
    /// Cancel safe (a cancelled round changes nothing or only adds an observation; sqlx rolls
    /// its transaction back when the connection returns to the pool).
    ///
    /// # Errors
    /// [`OutboxError::Unsupported`] when the user may not read `innodb_trx` (the `PROCESS`
    /// privilege), [`OutboxError::NotMigrated`] without the outbox table, or a database error.
    pub async fn advance(&self, pool: &MySqlPool) -> Result<i64, OutboxError> {
        let mut state = self.state.lock().await;
        let highest = highest_seq(pool).await?;
        state.behind = highest > state.safe;
        let due = state
            .last_scan
            .is_none_or(|at| at.elapsed() >= state.probe_gap);
        if !state.behind || !due {
            return Ok(state.safe);
        }
        let mut tx = pool.begin().await.map_err(db)?;
        let highest = highest_seq(&mut *tx).await?;
        // A fresh nonce per round, inlined (so not kept in the statement cache).
        let nonce = format!("waybill-horizon-{}", uuid::Uuid::new_v4().simple());
        let sql = probe(&nonce);
        let scan = match sqlx::query(&sql)
            .persistent(false)
            .fetch_one(&mut *tx)
            .await
        {
            Ok(scan) => scan,
            // The list could not be read this round (another session's statement text is
            // not UTF-8): no observation, the horizon stays where it is, try again after the
            // gap. Only rows wait meanwhile.
            Err(e) if is_unconvertible_text(&e) => {
                debug!(error = %e, "innodb_trx unreadable this round: no observation");
                state.last_scan = Some(Instant::now());
                state.probe_gap = PROBE_GAP;
                return Ok(state.safe);
            }
            Err(e) => return Err(privilege(e)),
        };
        let now: i64 = scan.try_get(1).map_err(db)?;
        let fresh: i64 = scan.try_get(2).map_err(db)?;
        let oldest: Option<i64> = scan.try_get(3).map_err(db)?;
        tx.commit().await.map_err(db)?;
        state.last_scan = Some(Instant::now());
        // 150 to 250 ms, so that relays scanning side by side leave the cache the 100 ms
        // pauses it needs to be refreshed.
        let jitter = (uuid::Uuid::new_v4().as_u128() % 100) as u64;
        state.probe_gap = PROBE_GAP + Duration::from_millis(jitter);
        let news = state.observed.back().map_or(state.safe, |(_, seq)| *seq);
        if highest > news && state.observed.len() < MAX_OBSERVATIONS {
            state.observed.push_back((now, highest));
        }
        if fresh == 0 {
            state.warn_if_stale();
        } else {
            state.last_fresh = Some(Instant::now());
            let horizon = oldest.unwrap_or(i64::MAX);
            while let Some(&(at, seq)) = state.observed.front() {
                if at >= horizon {
                    break;
                }
                state.safe = state.safe.max(seq);
                state.observed.pop_front();
            }
        }
        state.behind = highest > state.safe;
        Ok(state.safe)
    }

    /// Whether committed rows wait beyond the safe `seq` (as of the last round).
    pub async fn waiting(&self) -> bool {
        self.state.lock().await.behind
    }
}

/// `MAX(seq)` of the committed rows (0 when there are none).
async fn highest_seq<'e, E>(executor: E) -> Result<i64, OutboxError>
where
    E: sqlx::Executor<'e, Database = sqlx::MySql>,
{
    sqlx::query_scalar("SELECT CAST(COALESCE(MAX(seq), 0) AS SIGNED) FROM waybill_outbox")
        .fetch_one(executor)
        .await
        .map_err(db)
}

/// Checks that the user may read `innodb_trx`.
///
/// # Errors
/// [`OutboxError::Unsupported`] naming the `PROCESS` privilege, or a database error.
pub(crate) async fn check_access(pool: &MySqlPool) -> Result<(), OutboxError> {
    match sqlx::query("SELECT 1 FROM information_schema.innodb_trx LIMIT 0")
        .execute(pool)
        .await
    {
        // Past the privilege check: the table was read, one of its rows was not.
        Err(e) if is_unconvertible_text(&e) => Ok(()),
        Err(e) => Err(privilege(e)),
        Ok(_) => Ok(()),
    }
}

/// MySQL's ER_CANNOT_CONVERT_STRING (3854): MySQL (not MariaDB) refuses every read of
/// `innodb_trx` while any transaction runs a statement whose text holds bytes that are not
/// UTF-8 — and a prepared statement's text there carries its bound values, so an enqueue of a
/// binary message id is one. Such a refusal lasts as long as that statement.
fn is_unconvertible_text(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>())
        .is_some_and(|d| d.number() == 3854)
}

fn db(e: sqlx::Error) -> OutboxError {
    classify(e, None)
}

/// Names the missing privilege when `innodb_trx` may not be read.
fn privilege(e: sqlx::Error) -> OutboxError {
    let denied = e
        .as_database_error()
        .and_then(|d| d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>())
        .is_some_and(|d| ACCESS_DENIED.contains(&d.number()));
    if denied {
        return OutboxError::Unsupported(format!(
            "the relay's database user needs the PROCESS privilege to read \
             information_schema.innodb_trx, which keeps rows in commit order \
             (GRANT PROCESS ON *.* TO the relay's user): {e}"
        ));
    }
    db(e)
}
