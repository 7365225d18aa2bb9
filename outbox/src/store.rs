//! What the relay and the inspector need from a database; one implementation per database.

use std::time::Duration;

use async_trait::async_trait;

use crate::error::OutboxError;
use crate::inspect::{DeadFilter, DeadRow, TopicBacklog};
use crate::ready::ReadyRow;

/// Reading and changing outbox rows for inspection and retention.
#[async_trait]
pub(crate) trait InspectStore: Send + Sync {
    /// Pending and dead rows per topic.
    async fn topics(&self) -> Result<Vec<TopicBacklog>, OutboxError>;
    /// Dead rows matching `filter`, oldest first, at most `limit`.
    async fn dead(&self, filter: &DeadFilter, limit: i64) -> Result<Vec<DeadRow>, OutboxError>;
    /// Makes matching dead rows pending again with a fresh attempt count.
    async fn replay(&self, filter: &DeadFilter) -> Result<u64, OutboxError>;
    /// Deletes matching dead rows.
    async fn purge(&self, filter: &DeadFilter) -> Result<u64, OutboxError>;
    /// Whether the database answers.
    async fn ping(&self) -> bool;
}

/// The relay's side: ready rows, confirms, failures, shard leases and wake-ups.
#[async_trait]
pub(crate) trait RelayStore: InspectStore {
    /// Ready rows of the given shards in `seq` order: committed (and, on PostgreSQL and
    /// MySQL, with no older transaction still open), not dead, not parked, and with no earlier
    /// row of their key parked or not yet safe — nor dead, when `held_behind_dead`
    /// ([`DeadLetterMode::HoldKey`](waybill_core::DeadLetterMode::HoldKey)). A row that does
    /// not decode comes back as an [`Undecodable`](crate::ready::Undecodable) among the others.
    /// Rows whose `seq` is in `exclude` (the batch in flight) are left out, and do not count
    /// towards `limit`.
    async fn ready(
        &self,
        shard_count: i64,
        shards: &[i64],
        limit: i64,
        held_behind_dead: bool,
        exclude: &[i64],
    ) -> Result<Vec<ReadyRow>, OutboxError>;
    /// Deletes confirmed rows; with `sent_log`, first records each in the sent log (its id,
    /// topic, key and broker position, confirmed now), both in one transaction.
    async fn delete(&self, confirmed: &[Confirmed], sent_log: bool) -> Result<(), OutboxError>;
    /// Deletes sent-log entries confirmed more than `retention` ago; returns how many.
    async fn purge_sent(&self, retention: Duration) -> Result<u64, OutboxError>;
    /// Records a failed attempt: the row waits `backoff`, or is dead when `dead`; starts (or
    /// keeps) its destination waiting time when the destination was missing, clears it
    /// otherwise.
    async fn park(&self, seq: i64, failure: &Failure<'_>) -> Result<(), OutboxError>;
    /// One lease round for `owner`: renew its leases, then give back or take shards towards a
    /// fair share among the live relays. Returns the shards it holds afterwards.
    async fn lease_round(
        &self,
        owner: &str,
        shard_count: i64,
        ttl: Duration,
    ) -> Result<Vec<i64>, OutboxError>;
    /// Gives up every lease `owner` holds.
    async fn release_leases(&self, owner: &str) -> Result<(), OutboxError>;
    /// Waits until new rows may be there (a notification) or `pause` passed.
    async fn wait_for_rows(&self, pause: Duration);
}

/// A row the broker confirmed, and where the broker put it.
pub(crate) struct Confirmed {
    pub seq: i64,
    /// The broker's position as text ([`waybill_core::BrokerPosition`]'s `Display`).
    pub position: String,
}

/// A failed publish attempt of one row.
pub(crate) struct Failure<'a> {
    pub attempts: i32,
    pub error: &'a str,
    pub dead: bool,
    pub backoff: Duration,
    /// The destination was missing: the row's waiting time starts now unless it already
    /// runs; any other failure ends it.
    pub destination_missing: bool,
}

/// What a lease round does after renewing a relay's own leases, to reach its fair share
/// (`ceil(count / live relays)`, itself included).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LeasePlan {
    /// Give these shards back (the highest ones); the rest stay.
    GiveBack(Vec<i64>),
    /// Take this many free or lapsed shards.
    Take(i64),
    /// Hold what it holds.
    Keep,
}

impl LeasePlan {
    /// The plan for a relay holding `owned` (sorted; trimmed to the fair share when it holds
    /// too many) when `live` relays share `count` shards.
    pub fn for_round(owned: &mut Vec<i64>, count: i64, live: i64) -> Self {
        let live = live.max(1);
        let fair = (count + live - 1) / live;
        let held = i64::try_from(owned.len()).unwrap_or(i64::MAX);
        if held > fair {
            Self::GiveBack(owned.split_off(usize::try_from(fair).unwrap_or(0)))
        } else if held < fair {
            Self::Take(fair - held)
        } else {
            Self::Keep
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relays_move_towards_a_fair_share() {
        let mut owned: Vec<i64> = (0..12).collect();
        assert_eq!(
            LeasePlan::for_round(&mut owned, 12, 3),
            LeasePlan::GiveBack((4..12).collect())
        );
        assert_eq!(owned, vec![0, 1, 2, 3]);
        assert_eq!(LeasePlan::for_round(&mut vec![], 16, 3), LeasePlan::Take(6));
        assert_eq!(LeasePlan::for_round(&mut vec![1, 2], 4, 2), LeasePlan::Keep);
        assert_eq!(LeasePlan::for_round(&mut vec![], 4, 0), LeasePlan::Take(4));
    }
}
