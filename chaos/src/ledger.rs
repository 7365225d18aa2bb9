//! The run's ledger, in the scenario's PostgreSQL database so that it survives the faults the
//! run injects: what was sent (and whether it was confirmed), and every effect applied.
//!
//! Producers record a message as sent in the transaction that writes it to the outbox (its
//! commit is the confirmation), or before a direct publish and again once the broker confirmed
//! it. Consumers record an effect with [`record_applied_in`] in the transaction that applies
//! it and writes the inbox marker — a consumer of your own can call it from its handler to be
//! judged by the same verdict. The applied table has no uniqueness on the message id: an
//! effect applied twice shows as two rows.

use serde::Serialize;
use sqlx::{PgPool, Postgres, Transaction};
use waybill_core::{Message, MessageId};

use crate::ChaosError;

/// The header carrying the run's id on every message, so that a consumer records its effects
/// under the right run.
pub const RUN_HEADER: &str = "waybill-chaos-run";
/// The header carrying a message's sequence number within its key.
pub const SEQ_HEADER: &str = "waybill-chaos-seq";

const SCHEMA: [&str; 4] = [
    "CREATE TABLE IF NOT EXISTS waybill_chaos_sent (
        message_id uuid PRIMARY KEY,
        run_id text NOT NULL,
        key text NOT NULL,
        seq bigint NOT NULL,
        confirmed boolean NOT NULL,
        at_ms bigint NOT NULL)",
    "CREATE INDEX IF NOT EXISTS waybill_chaos_sent_run ON waybill_chaos_sent (run_id)",
    "CREATE TABLE IF NOT EXISTS waybill_chaos_applied (
        n bigserial PRIMARY KEY,
        run_id text NOT NULL,
        message_id uuid NOT NULL,
        key text NOT NULL,
        seq bigint NOT NULL,
        consumer text NOT NULL,
        at_ms bigint NOT NULL)",
    "CREATE INDEX IF NOT EXISTS waybill_chaos_applied_message ON waybill_chaos_applied (message_id)",
];

/// Milliseconds since the epoch on the database's clock, for every ledger time.
pub(crate) const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// Creates the ledger's tables when they do not exist.
///
/// # Errors
/// [`ChaosError::Database`] when the statements fail.
pub async fn migrate(pool: &PgPool) -> Result<(), ChaosError> {
    for statement in SCHEMA {
        sqlx::query(statement)
            .execute(pool)
            .await
            .map_err(|e| ChaosError::Database(format!("creating the ledger tables: {e}")))?;
    }
    Ok(())
}

/// A message the producer sends: its id, key and sequence number.
#[derive(Clone, Debug)]
pub struct Sent {
    /// The message id.
    pub id: MessageId,
    /// The key.
    pub key: String,
    /// Its place among its key's messages, from 0.
    pub seq: u64,
}

/// Records `messages` as sent in `tx`; `confirmed` when the transaction's commit is their
/// confirmation (the outbox producer).
///
/// # Errors
/// The database's error; the transaction should then be rolled back.
pub async fn record_sent_in(
    tx: &mut Transaction<'_, Postgres>,
    run_id: &str,
    messages: &[Sent],
    confirmed: bool,
) -> Result<(), sqlx::Error> {
    let ids: Vec<uuid::Uuid> = messages.iter().map(|m| *m.id.as_uuid()).collect();
    let keys: Vec<&str> = messages.iter().map(|m| m.key.as_str()).collect();
    let seqs: Vec<i64> = messages.iter().map(|m| m.seq as i64).collect();
    sqlx::query(&format!(
        "INSERT INTO waybill_chaos_sent (message_id, run_id, key, seq, confirmed, at_ms) \
         SELECT id, $2, key, seq, $5, {NOW_MS} FROM unnest($1::uuid[], $3::text[], $4::bigint[]) \
         AS m(id, key, seq)"
    ))
    .bind(&ids)
    .bind(run_id)
    .bind(&keys)
    .bind(&seqs)
    .bind(confirmed)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Marks `ids` as confirmed by the broker (the direct producer), now.
///
/// # Errors
/// The database's error.
pub async fn confirm(pool: &PgPool, ids: &[MessageId]) -> Result<(), sqlx::Error> {
    let ids: Vec<uuid::Uuid> = ids.iter().map(|id| *id.as_uuid()).collect();
    sqlx::query(&format!(
        "UPDATE waybill_chaos_sent SET confirmed = true, at_ms = {NOW_MS} \
         WHERE message_id = ANY($1) AND NOT confirmed"
    ))
    .bind(&ids)
    .execute(pool)
    .await?;
    Ok(())
}

/// Whether any of `ids` is recorded as sent: after a commit whose outcome is unknown (the
/// connection dropped during COMMIT), this says whether it happened.
///
/// # Errors
/// The database's error.
pub async fn any_sent(pool: &PgPool, ids: &[MessageId]) -> Result<bool, sqlx::Error> {
    let ids: Vec<uuid::Uuid> = ids.iter().map(|id| *id.as_uuid()).collect();
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM waybill_chaos_sent WHERE message_id = ANY($1))",
    )
    .bind(&ids)
    .fetch_one(pool)
    .await
}

/// Records the effect of `message` applied by `consumer`, in the handler's transaction (the
/// one that writes the effect and the inbox marker). Its run and sequence number come from the
/// [`RUN_HEADER`] and [`SEQ_HEADER`] headers.
///
/// # Errors
/// [`sqlx::Error::Protocol`] when the message lacks the headers (not a chaos message);
/// otherwise the database's error.
pub async fn record_applied_in(
    tx: &mut Transaction<'_, Postgres>,
    consumer: &str,
    message: &Message,
) -> Result<(), sqlx::Error> {
    let headers = message.headers();
    let (Some(run_id), Some(seq)) = (
        headers.get(RUN_HEADER),
        headers.get(SEQ_HEADER).and_then(|s| s.parse::<i64>().ok()),
    ) else {
        return Err(sqlx::Error::Protocol(format!(
            "message {} has no {RUN_HEADER} and {SEQ_HEADER} headers: not sent by a chaos run",
            message.id()
        )));
    };
    sqlx::query(&format!(
        "INSERT INTO waybill_chaos_applied (run_id, message_id, key, seq, consumer, at_ms) \
         VALUES ($1, $2, $3, $4, $5, {NOW_MS})"
    ))
    .bind(run_id)
    .bind(*message.id().as_uuid())
    .bind(message.key().unwrap_or_default())
    .bind(seq)
    .bind(consumer)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Confirmed messages of `run_id` without any effect yet, except those in `dead` (held for
/// the operator: no consumer will see them).
///
/// # Errors
/// The database's error.
pub async fn unapplied(
    pool: &PgPool,
    run_id: &str,
    dead: &[MessageId],
) -> Result<i64, sqlx::Error> {
    let dead: Vec<uuid::Uuid> = dead.iter().map(|id| *id.as_uuid()).collect();
    sqlx::query_scalar(
        "SELECT count(*) FROM waybill_chaos_sent s WHERE s.run_id = $1 AND s.confirmed \
         AND s.message_id <> ALL($2) \
         AND NOT EXISTS (SELECT 1 FROM waybill_chaos_applied a WHERE a.message_id = s.message_id)",
    )
    .bind(run_id)
    .bind(&dead)
    .fetch_one(pool)
    .await
}

/// A sent message as the ledger holds it.
#[derive(Clone, Debug, Serialize)]
pub struct SentRow {
    /// The id.
    pub id: MessageId,
    /// Confirmed (committed to the outbox, or confirmed by the broker).
    pub confirmed: bool,
    /// When it was recorded (confirmed, if it was), ms since the epoch.
    pub at_ms: i64,
}

/// An applied effect as the ledger holds it, in the order effects were written.
#[derive(Clone, Debug, Serialize)]
pub struct AppliedRow {
    /// The message id.
    pub id: MessageId,
    /// Its key.
    pub key: String,
    /// Its sequence number.
    pub seq: u64,
    /// The consumer that applied it.
    pub consumer: String,
    /// When, ms since the epoch.
    pub at_ms: i64,
}

/// Everything the ledger holds of a run.
#[derive(Clone, Debug, Default)]
pub struct LedgerRows {
    /// What was sent.
    pub sent: Vec<SentRow>,
    /// Every effect, in the order written.
    pub applied: Vec<AppliedRow>,
    /// Messages the relays gave up on (dead outbox rows of the run's topic, of this run or
    /// older ones), read from the outbox rather than the ledger.
    pub dead: Vec<MessageId>,
}

/// Reads the ledger of `run_id`; `dead` are the messages held dead in the outbox.
///
/// # Errors
/// [`ChaosError::Database`] when the reads fail.
pub async fn read(
    pool: &PgPool,
    run_id: &str,
    dead: Vec<MessageId>,
) -> Result<LedgerRows, ChaosError> {
    let failed = |e: sqlx::Error| ChaosError::Database(format!("reading the ledger: {e}"));
    let sent: Vec<(uuid::Uuid, bool, i64)> = sqlx::query_as(
        "SELECT message_id, confirmed, at_ms FROM waybill_chaos_sent WHERE run_id = $1",
    )
    .bind(run_id)
    .fetch_all(pool)
    .await
    .map_err(failed)?;
    let applied: Vec<(uuid::Uuid, String, i64, String, i64)> = sqlx::query_as(
        "SELECT message_id, key, seq, consumer, at_ms FROM waybill_chaos_applied \
         WHERE run_id = $1 ORDER BY n",
    )
    .bind(run_id)
    .fetch_all(pool)
    .await
    .map_err(failed)?;
    Ok(LedgerRows {
        sent: sent
            .into_iter()
            .map(|(id, confirmed, at_ms)| SentRow {
                id: MessageId::from_uuid(id),
                confirmed,
                at_ms,
            })
            .collect(),
        applied: applied
            .into_iter()
            .map(|(id, key, seq, consumer, at_ms)| AppliedRow {
                id: MessageId::from_uuid(id),
                key,
                seq: u64::try_from(seq).unwrap_or(0),
                consumer,
                at_ms,
            })
            .collect(),
        dead,
    })
}
