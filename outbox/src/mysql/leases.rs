//! Shard lease rounds on MySQL and MariaDB.

use sqlx::{MySql, MySqlPool, QueryBuilder, Transaction};

use crate::error::{classify, OutboxError};
use crate::store::LeasePlan;

/// The lowest DATETIME: a lease that lapsed long ago.
pub(super) const LAPSED: &str = "1000-01-01 00:00:00";

fn db(e: sqlx::Error) -> OutboxError {
    classify(e, None)
}

/// One lease round for `owner` (see `RelayStore::lease_round`), with leases lasting
/// `ttl_us` microseconds.
///
/// The round first locks every lease row (`SELECT ... FOR UPDATE` in `shard` order), so
/// rounds of different relays run one after the other instead of deadlocking.
pub(super) async fn round(
    pool: &MySqlPool,
    owner: &str,
    shard_count: i64,
    ttl_us: i64,
) -> Result<Vec<i64>, OutboxError> {
    let present: i64 = sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS SIGNED) FROM waybill_shard_lease WHERE shard < ?",
    )
    .bind(shard_count)
    .fetch_one(pool)
    .await
    .map_err(db)?;
    if present < shard_count {
        create_shards(pool, shard_count).await?;
    }
    let mut tx = pool.begin().await.map_err(db)?;
    sqlx::query("SELECT shard FROM waybill_shard_lease ORDER BY shard FOR UPDATE")
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
    let foreign: i64 = sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS SIGNED) FROM waybill_shard_lease \
         WHERE expires_at > UTC_TIMESTAMP(6) AND owner <> ? \
           AND (shard_count <> ? OR shard >= ?)",
    )
    .bind(owner)
    .bind(shard_count)
    .bind(shard_count)
    .fetch_one(&mut *tx)
    .await
    .map_err(db)?;
    if foreign > 0 {
        return Err(OutboxError::ShardLayout { shard_count });
    }
    // Lapsed leases of an older layout follow this one.
    sqlx::query("DELETE FROM waybill_shard_lease WHERE shard >= ?")
        .bind(shard_count)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    sqlx::query("UPDATE waybill_shard_lease SET shard_count = ? WHERE shard_count <> ?")
        .bind(shard_count)
        .bind(shard_count)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    sqlx::query(
        "UPDATE waybill_shard_lease SET expires_at = UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND \
         WHERE owner = ?",
    )
    .bind(ttl_us)
    .bind(owner)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    let mut owned: Vec<i64> = sqlx::query_scalar(
        "SELECT CAST(shard AS SIGNED) FROM waybill_shard_lease WHERE owner = ? ORDER BY shard",
    )
    .bind(owner)
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?;
    sqlx::query(
        "INSERT INTO waybill_relay (name, expires_at) \
         VALUES (?, UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND) \
         ON DUPLICATE KEY UPDATE expires_at = VALUES(expires_at)",
    )
    .bind(owner)
    .bind(ttl_us)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    sqlx::query("DELETE FROM waybill_relay WHERE expires_at <= UTC_TIMESTAMP(6)")
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    let live: i64 = sqlx::query_scalar("SELECT CAST(COUNT(*) AS SIGNED) FROM waybill_relay")
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
    match LeasePlan::for_round(&mut owned, shard_count, live) {
        LeasePlan::GiveBack(extra) => {
            let mut query = QueryBuilder::<MySql>::new(
                "UPDATE waybill_shard_lease SET owner = '', expires_at = ",
            );
            query
                .push_bind(LAPSED)
                .push(" WHERE owner = ")
                .push_bind(owner)
                .push(" AND shard IN (");
            let mut list = query.separated(", ");
            for shard in &extra {
                list.push_bind(*shard);
            }
            query.push(")");
            query.build().execute(&mut *tx).await.map_err(db)?;
        }
        LeasePlan::Take(wanted) => {
            owned.extend(take(&mut tx, owner, ttl_us, wanted).await?);
            owned.sort_unstable();
        }
        LeasePlan::Keep => {}
    }
    tx.commit().await.map_err(db)?;
    Ok(owned)
}

/// Takes up to `wanted` free or lapsed shards (already locked by the round) for `owner`.
async fn take(
    tx: &mut Transaction<'_, MySql>,
    owner: &str,
    ttl_us: i64,
    wanted: i64,
) -> Result<Vec<i64>, OutboxError> {
    let free: Vec<i64> = sqlx::query_scalar(
        "SELECT CAST(shard AS SIGNED) FROM waybill_shard_lease \
         WHERE expires_at <= UTC_TIMESTAMP(6) ORDER BY shard LIMIT ?",
    )
    .bind(wanted)
    .fetch_all(&mut **tx)
    .await
    .map_err(db)?;
    if free.is_empty() {
        return Ok(free);
    }
    let mut query = QueryBuilder::<MySql>::new("UPDATE waybill_shard_lease SET owner = ");
    query
        .push_bind(owner)
        .push(", expires_at = UTC_TIMESTAMP(6) + INTERVAL ")
        .push_bind(ttl_us)
        .push(" MICROSECOND WHERE shard IN (");
    let mut list = query.separated(", ");
    for shard in &free {
        list.push_bind(*shard);
    }
    query.push(")");
    query.build().execute(&mut **tx).await.map_err(db)?;
    Ok(free)
}

/// Creates the lease rows of shards `0..shard_count` that are missing (free, lapsed).
async fn create_shards(pool: &MySqlPool, shard_count: i64) -> Result<(), OutboxError> {
    let mut query = QueryBuilder::<MySql>::new(
        "INSERT IGNORE INTO waybill_shard_lease (shard, owner, expires_at, shard_count) ",
    );
    query.push_values(0..shard_count, |mut row, shard| {
        row.push_bind(shard)
            .push_bind("")
            .push_bind(LAPSED)
            .push_bind(shard_count);
    });
    query.build().execute(pool).await.map_err(db)?;
    Ok(())
}
