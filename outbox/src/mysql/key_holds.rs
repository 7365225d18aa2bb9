//! Held keys on MySQL and MariaDB (`waybill_key_hold`), beside the inbox markers.

use async_trait::async_trait;
use waybill_core::{KeyHold, KeyHoldStore, MessageId, StoreError};

use crate::key_hold_row::{key_hold, KeyHoldRow};

use super::inbox::{store_error, MySqlIdempotencyStore};

/// Longest key the table holds, in bytes (its primary key must fit InnoDB's index limit).
const MAX_KEY_BYTES: usize = 2048;

/// Held keys live in the inbox's database, so a group's instances share them and they survive
/// restarts. Keys compare byte for byte (trailing spaces included). Keys of up to 2048 bytes
/// can be held; a longer key's hold is refused with a store error (its message is then not
/// dead-lettered but delivered again).
#[async_trait]
impl KeyHoldStore for MySqlIdempotencyStore {
    async fn hold(&self, group: &str, key: &str, id: MessageId) -> Result<MessageId, StoreError> {
        if key.len() > MAX_KEY_BYTES {
            return Err(StoreError::new(
                "hold key",
                format!("keys longer than {MAX_KEY_BYTES} bytes cannot be held on MySQL"),
            ));
        }
        let mut tx = self
            .pool()
            .begin()
            .await
            .map_err(|e| store_error("hold key", e))?;
        sqlx::query(
            "INSERT IGNORE INTO waybill_key_hold (group_name, `key`, behind, since) \
             VALUES (?, ?, ?, UTC_TIMESTAMP(6))",
        )
        .bind(group)
        .bind(key.as_bytes())
        .bind(id.as_uuid())
        .execute(&mut *tx)
        .await
        .map_err(|e| store_error("hold key", e))?;
        let behind: uuid::Uuid = sqlx::query_scalar(
            "SELECT behind FROM waybill_key_hold WHERE group_name = ? AND `key` = ?",
        )
        .bind(group)
        .bind(key.as_bytes())
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| store_error("hold key", e))?;
        tx.commit().await.map_err(|e| store_error("hold key", e))?;
        Ok(MessageId::from_uuid(behind))
    }

    async fn held_behind(&self, group: &str, key: &str) -> Result<Option<MessageId>, StoreError> {
        let behind: Option<uuid::Uuid> = sqlx::query_scalar(
            "SELECT behind FROM waybill_key_hold WHERE group_name = ? AND `key` = ?",
        )
        .bind(group)
        .bind(key.as_bytes())
        .fetch_optional(self.pool())
        .await
        .map_err(|e| store_error("read key hold", e))?;
        Ok(behind.map(MessageId::from_uuid))
    }

    async fn release(&self, group: &str, key: &str, id: MessageId) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "DELETE FROM waybill_key_hold WHERE group_name = ? AND `key` = ? AND behind = ?",
        )
        .bind(group)
        .bind(key.as_bytes())
        .bind(id.as_uuid())
        .execute(self.pool())
        .await
        .map_err(|e| store_error("release key", e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn release_key(&self, group: &str, key: &str) -> Result<Option<MessageId>, StoreError> {
        let mut tx = self
            .pool()
            .begin()
            .await
            .map_err(|e| store_error("release key", e))?;
        let behind: Option<uuid::Uuid> = sqlx::query_scalar(
            "SELECT behind FROM waybill_key_hold WHERE group_name = ? AND `key` = ? FOR UPDATE",
        )
        .bind(group)
        .bind(key.as_bytes())
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| store_error("release key", e))?;
        sqlx::query("DELETE FROM waybill_key_hold WHERE group_name = ? AND `key` = ?")
            .bind(group)
            .bind(key.as_bytes())
            .execute(&mut *tx)
            .await
            .map_err(|e| store_error("release key", e))?;
        tx.commit()
            .await
            .map_err(|e| store_error("release key", e))?;
        Ok(behind.map(MessageId::from_uuid))
    }

    async fn holds(&self, group: &str, limit: usize) -> Result<Vec<KeyHold>, StoreError> {
        let rows: Vec<KeyHoldRow> = sqlx::query_as(
            "SELECT CAST(`key` AS CHAR), behind, \
                    CAST(TIMESTAMPDIFF(MICROSECOND, '1970-01-01', since) DIV 1000 AS SIGNED) \
             FROM waybill_key_hold WHERE group_name = ? ORDER BY since, `key` LIMIT ?",
        )
        .bind(group)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await
        .map_err(|e| store_error("list key holds", e))?;
        Ok(rows.into_iter().map(key_hold).collect())
    }
}
