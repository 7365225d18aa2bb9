//! Outbox rows: converting between messages and what the tables hold.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sqlx::types::Json;
use waybill_core::{validate_name, Headers, Message, MessageId};

use crate::error::OutboxError;

/// An outbox row as the relay reads it (the same columns on every database).
#[derive(sqlx::FromRow)]
pub(crate) struct OutboxRow {
    pub seq: i64,
    pub message_id: uuid::Uuid,
    pub topic: String,
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub headers: Json<Headers>,
    pub created_at_ms: i64,
    pub attempts: i32,
    /// How long the row has waited for its destination to exist (since a publish first found
    /// it missing), by the database's clock; `None` when it is not waiting for one.
    pub waited_ms: Option<i64>,
}

impl OutboxRow {
    /// The message the row holds, with its original id and creation time.
    pub fn message(&self) -> Message {
        let created_at = UNIX_EPOCH + Duration::from_millis(self.created_at_ms.max(0) as u64);
        Message::from_parts(
            MessageId::from_uuid(self.message_id),
            self.key.clone(),
            Bytes::from(self.payload.clone()),
            self.headers.0.clone(),
            created_at,
        )
    }
}

/// Creation time of `message` in Unix milliseconds.
pub(crate) fn created_at_ms(message: &Message) -> i64 {
    unix_ms(message.created_at())
}

/// `at` in Unix milliseconds (0 before the epoch).
pub(crate) fn unix_ms(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The current time in Unix milliseconds (the SQLite and MySQL stores keep time as numbers;
/// PostgreSQL asks the server).
#[cfg(any(feature = "sqlite", feature = "mysql"))]
pub(crate) fn now_ms() -> i64 {
    unix_ms(SystemTime::now())
}

/// The stable 32-bit FNV-1a hash of the message key (of its id when it has none); a row's
/// shard is this modulo the shard count. It never changes between versions: rows already in
/// the table keep their shard.
pub(crate) fn shard_hash(message: &Message) -> i64 {
    let id = *message.id().as_uuid();
    let bytes: &[u8] = match message.key() {
        Some(key) => key.as_bytes(),
        None => id.as_bytes(),
    };
    let mut hash: u32 = 0x811c_9dc5;
    for byte in bytes {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    i64::from(hash)
}

/// Refuses an unusable topic or a message above `limit` bytes (payload plus headers).
pub(crate) fn check_enqueue(
    topic: &str,
    message: &Message,
    limit: usize,
) -> Result<(), OutboxError> {
    validate_name("topic", topic)?;
    let size = message.payload().len()
        + message
            .headers()
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>();
    if size > limit {
        return Err(OutboxError::Oversized { size, limit });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shard_hash_is_fnv1a_of_the_key_and_stable() {
        // Reference values of 32-bit FNV-1a.
        assert_eq!(shard_hash(&Message::new("x").with_key("")), 0x811c_9dc5);
        assert_eq!(shard_hash(&Message::new("x").with_key("a")), 0xe40c_292c);
        assert_eq!(
            shard_hash(&Message::new("x").with_key("foobar")),
            0xbf9c_f968
        );
        let unkeyed = Message::new("x");
        assert_eq!(shard_hash(&unkeyed), shard_hash(&unkeyed.clone()));
    }

    #[test]
    fn oversized_and_badly_named_messages_are_refused() {
        let big = Message::new(vec![0u8; 11]);
        assert!(matches!(
            check_enqueue("t", &big, 10),
            Err(OutboxError::Oversized {
                size: 11,
                limit: 10
            })
        ));
        assert!(matches!(
            check_enqueue("", &Message::new("x"), 10),
            Err(OutboxError::Config(_))
        ));
        assert!(check_enqueue("t", &Message::new("x"), 10).is_ok());
    }
}
