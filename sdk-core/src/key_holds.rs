//! Key-holding dead letters: what a dead letter does to the messages of its key that follow.

use std::time::SystemTime;

use async_trait::async_trait;

use crate::idempotency::StoreError;
use crate::message_id::MessageId;

/// What a dead letter does to the later messages of its key, in the Processor and in the
/// outbox relay.
///
/// **The trade-off.** [`MoveOn`](Self::MoveOn) keeps every key flowing: one poison message
/// costs one dead letter, and its successors are handled at once — but when the operator
/// fixes and replays the dead one, it is applied *after* messages that were sent after it,
/// so per-key order is broken for that key. [`HoldKey`](Self::HoldKey) keeps per-key order
/// through a repair: the key stops at its first dead message until that message is replayed
/// (or the operator releases the key), so a fixed-and-replayed message is applied before its
/// successors — at the price of a stalled key (its other messages pile up as dead letters of
/// class [`ErrorClass::Held`](crate::ErrorClass::Held) in the Processor, as pending rows in the
/// relay) and a few store reads per keyed message. Choose `HoldKey` where a later message is
/// wrong without the earlier one (account balances, state machines, document versions);
/// keep `MoveOn` where messages of a key are independent enough.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeadLetterMode {
    /// A dead message leaves its key free: the next message of the key is handled at once.
    /// The default.
    #[default]
    MoveOn,
    /// Once a message of a key is dead, the later messages of that key are held until the
    /// dead one is replayed and handled, or the key is released:
    /// - the Processor dead-letters them unhandled, with class
    ///   [`ErrorClass::Held`](crate::ErrorClass::Held) and the reason "held behind `<id>`",
    ///   so that a replay of the whole dead-letter queue sends the head first and its
    ///   followers after it (see [`crate::redrive::replay_order`]); it needs a
    ///   [`KeyHoldStore`] shared by the group, and ordering per key;
    /// - the outbox relay leaves them pending behind the dead row (shown as held by the
    ///   outbox inspection) until the dead row is replayed and published, or purged.
    HoldKey,
}

/// A key of a consumer group held behind one of its dead messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyHold {
    /// The message key.
    pub key: String,
    /// The dead message the key waits for.
    pub behind: MessageId,
    /// When the hold began.
    pub since: SystemTime,
}

/// Where a consumer group records its held keys ([`DeadLetterMode::HoldKey`]). It must be
/// shared by every member of the group, and survive restarts, so that a key held by one
/// instance stays held when its partition or queue moves to another: the SQL inboxes of
/// `waybill-outbox` implement it on the same database as their markers.
///
/// Every operation is keyed by group: two groups hold their keys independently.
#[async_trait]
pub trait KeyHoldStore: Send + Sync {
    /// Holds `key` behind the dead message `id` unless it is held already; returns the message
    /// the key is held behind afterwards (an earlier hold is kept).
    ///
    /// # Errors
    /// [`StoreError`] when the store could not answer; the Processor then does not
    /// dead-letter the message (it is delivered again).
    async fn hold(&self, group: &str, key: &str, id: MessageId) -> Result<MessageId, StoreError>;

    /// The message `key` is held behind, if it is held.
    ///
    /// # Errors
    /// [`StoreError`] when the store could not answer.
    async fn held_behind(&self, group: &str, key: &str) -> Result<Option<MessageId>, StoreError>;

    /// Lifts the hold on `key` if it is held behind `id` (that message was handled after a
    /// replay); returns whether it was. A hold behind another message is left alone.
    ///
    /// # Errors
    /// [`StoreError`] when the store could not answer; the key stays held.
    async fn release(&self, group: &str, key: &str, id: MessageId) -> Result<bool, StoreError>;

    /// Lifts the hold on `key` whatever it waits for (the operator gives the dead message
    /// up); returns the message it was held behind, if it was held.
    ///
    /// # Errors
    /// [`StoreError`] when the store could not answer.
    async fn release_key(&self, group: &str, key: &str) -> Result<Option<MessageId>, StoreError>;

    /// The held keys of `group`, oldest hold first, at most `limit`.
    ///
    /// # Errors
    /// [`StoreError`] when the store could not answer.
    async fn holds(&self, group: &str, limit: usize) -> Result<Vec<KeyHold>, StoreError>;
}
