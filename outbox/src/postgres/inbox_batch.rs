//! The PostgreSQL inbox's statements for many messages at once: claims, completions and
//! transactional markers of a batch, each one round trip.
//!
//! Every statement takes its rows in message-id order, so two batches that share messages lock
//! their rows in the same order and cannot deadlock each other.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use sqlx::{PgExecutor, PgPool, Row};
use uuid::Uuid;
use waybill_core::{Claim, ClaimToken, Completion, FirstCopies, MessageId, StoreError};

use super::inbox::store_error;

/// Takes every row of `$2` (with the tokens `$4`) for group `$1` for `$3` seconds that is new,
/// lapsed or past its retention; returns the ids taken.
const CLAIM_MANY: &str = "INSERT INTO waybill_inbox \
       (group_name, message_id, done, dead, expires_at, token) \
     SELECT $1, w.message_id, false, false, now() + make_interval(secs => $3), w.token \
       FROM UNNEST($2::uuid[], $4::uuid[]) AS w(message_id, token) ORDER BY w.message_id \
     ON CONFLICT (group_name, message_id) DO UPDATE \
       SET done = false, dead = false, expires_at = excluded.expires_at, token = excluded.token \
       WHERE waybill_inbox.expires_at < now() \
     RETURNING message_id";

/// Records the outcomes (`$5`: dead-lettered) of the claims `$4` on `$2` for group `$1`, kept
/// for `$3` seconds; returns the ids whose token was the current holder's.
const FINISH_MANY: &str = "INSERT INTO waybill_inbox \
       (group_name, message_id, done, dead, expires_at, token, done_at) \
     SELECT $1, o.message_id, true, o.dead, now() + make_interval(secs => $3), o.token, now() \
       FROM UNNEST($2::uuid[], $4::uuid[], $5::bool[]) AS o(message_id, token, dead) \
       ORDER BY o.message_id \
     ON CONFLICT (group_name, message_id) DO UPDATE \
       SET done = true, dead = excluded.dead, expires_at = excluded.expires_at, \
         done_at = excluded.done_at \
       WHERE waybill_inbox.token IS NOT DISTINCT FROM excluded.token \
     RETURNING message_id";

/// [`waybill_core::IdempotencyStore::claim_many`] in two statements: the claim of every new
/// or lapsed id, then the state of the others.
pub(super) async fn claim_many(
    pool: &PgPool,
    group: &str,
    ids: &[MessageId],
    lease: Duration,
) -> Vec<Result<Claim, StoreError>> {
    let copies = FirstCopies::of(ids);
    let answers = match claim_unique(pool, group, copies.unique(), lease).await {
        Ok(answers) => answers.into_iter().map(Ok).collect(),
        Err(e) => copies.unique().iter().map(|_| Err(e.copy())).collect(),
    };
    copies.spread(answers, lease)
}

async fn claim_unique(
    pool: &PgPool,
    group: &str,
    ids: &[MessageId],
    lease: Duration,
) -> Result<Vec<Claim>, StoreError> {
    let tokens: Vec<ClaimToken> = ids.iter().map(|_| ClaimToken::new()).collect();
    let uuids: Vec<Uuid> = ids.iter().map(|id| *id.as_uuid()).collect();
    let token_uuids: Vec<Uuid> = tokens.iter().map(ClaimToken::as_uuid).collect();
    let taken: HashSet<Uuid> = sqlx::query(CLAIM_MANY)
        .bind(group)
        .bind(&uuids)
        .bind(lease.as_secs_f64())
        .bind(&token_uuids)
        .fetch_all(pool)
        .await
        .map_err(|e| store_error("claim", e))?
        .iter()
        .map(|row| row.get::<Uuid, _>(0))
        .collect();
    let others: Vec<Uuid> = uuids
        .iter()
        .filter(|id| !taken.contains(id))
        .copied()
        .collect();
    let mut states = HashMap::with_capacity(others.len());
    if !others.is_empty() {
        let rows = sqlx::query(
            "SELECT message_id, done, dead, \
               GREATEST(EXTRACT(EPOCH FROM expires_at - now()), 0)::float8 AS left_s \
             FROM waybill_inbox WHERE group_name = $1 AND message_id = ANY($2)",
        )
        .bind(group)
        .bind(&others)
        .fetch_all(pool)
        .await
        .map_err(|e| store_error("claim", e))?;
        for row in rows {
            let state = match (row.get::<bool, _>("done"), row.get::<bool, _>("dead")) {
                (true, true) => Claim::DeadLettered,
                (true, false) => Claim::AlreadyDone,
                (false, _) => Claim::InFlight {
                    lease_remaining: Duration::from_secs_f64(row.get::<f64, _>("left_s")),
                },
            };
            states.insert(row.get::<Uuid, _>("message_id"), state);
        }
    }
    Ok(uuids
        .iter()
        .zip(tokens)
        .map(|(id, token)| {
            if taken.contains(id) {
                Claim::Acquired(token)
            } else {
                // Released between the two statements: the caller claims again at once.
                states.get(id).copied().unwrap_or(Claim::InFlight {
                    lease_remaining: Duration::ZERO,
                })
            }
        })
        .collect())
}

/// [`waybill_core::IdempotencyStore::complete_many`] in one statement.
pub(super) async fn complete_many(
    pool: &PgPool,
    group: &str,
    retention: Duration,
    outcomes: &[(MessageId, ClaimToken, Completion)],
) -> Vec<Result<(), StoreError>> {
    let finished = finish_many(pool, group, retention, outcomes.iter().copied())
        .await
        .map_err(|e| store_error("complete", e));
    outcomes
        .iter()
        .map(|(id, _, _)| match &finished {
            Ok(recorded) if recorded.contains(id.as_uuid()) => Ok(()),
            Ok(_) => Err(StoreError::not_holder("complete")),
            Err(e) => Err(e.copy()),
        })
        .collect()
}

/// Records each outcome for its claim's holder, first copy of each id only; returns the ids
/// recorded.
pub(super) async fn finish_many<'e>(
    executor: impl PgExecutor<'e>,
    group: &str,
    retention: Duration,
    outcomes: impl Iterator<Item = (MessageId, ClaimToken, Completion)>,
) -> Result<HashSet<Uuid>, sqlx::Error> {
    let mut seen = HashSet::new();
    let (mut ids, mut tokens, mut dead) = (Vec::new(), Vec::new(), Vec::new());
    for (id, token, completion) in outcomes {
        if seen.insert(id) {
            ids.push(*id.as_uuid());
            tokens.push(token.as_uuid());
            dead.push(completion == Completion::DeadLettered);
        }
    }
    let rows = sqlx::query(FINISH_MANY)
        .bind(group)
        .bind(&ids)
        .bind(retention.as_secs_f64())
        .bind(&tokens)
        .bind(&dead)
        .fetch_all(executor)
        .await?;
    Ok(rows.iter().map(|row| row.get::<Uuid, _>(0)).collect())
}
