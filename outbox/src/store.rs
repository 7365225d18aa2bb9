//! What the relay and the inspector need from a database; one implementation per database.

use std::time::Duration;

use async_trait::async_trait;

use crate::error::OutboxError;
use crate::inspect::{DeadFilter, DeadRow, TopicBacklog};
use crate::row::OutboxRow;

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
    /// Ready rows of the given shards in `seq` order: committed (and, on PostgreSQL, with no
    /// older transaction still open), not dead, not parked, and with no earlier row of their
    /// key parked or not yet safe.
    async fn ready(
        &self,
        shard_count: i64,
        shards: &[i64],
        limit: i64,
    ) -> Result<Vec<OutboxRow>, OutboxError>;
    /// Deletes confirmed rows.
    async fn delete(&self, seqs: &[i64]) -> Result<(), OutboxError>;
    /// Records a failed attempt: the row waits `backoff`, or is dead when `dead`.
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

/// A failed publish attempt of one row.
pub(crate) struct Failure<'a> {
    pub attempts: i32,
    pub error: &'a str,
    pub dead: bool,
    pub backoff: Duration,
}

/// How many shards a relay should hold when `live` relays (itself included) share `count`.
pub(crate) fn fair_share(count: i64, live: i64) -> i64 {
    let live = live.max(1);
    (count + live - 1) / live
}
