//! Converting between messages and outbox rows.

use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use sqlx::types::Json;
use waybill_core::{Headers, Message, MessageId};

/// An outbox row as the relay reads it.
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
    message
        .created_at()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Payload plus header bytes, as counted against the size limit.
pub(crate) fn size_of(message: &Message) -> usize {
    message.payload().len()
        + message
            .headers()
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}
