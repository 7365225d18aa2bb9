//! Held keys kept in this process's memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use async_trait::async_trait;

use crate::idempotency::StoreError;
use crate::key_holds::{KeyHold, KeyHoldStore};
use crate::message_id::MessageId;

/// A [`KeyHoldStore`] in this process's memory: for tests, demos and single-instance
/// consumers. It forgets every hold on restart (the held keys then move on), and it is not
/// shared between processes; a group of several instances needs the SQL stores of
/// `waybill-outbox`. Memory grows with the number of held keys only, which an operator keeps
/// small by replaying or releasing them.
#[derive(Debug, Default)]
pub struct InMemoryKeyHolds {
    holds: Mutex<HashMap<(String, String), (MessageId, SystemTime)>>,
}

impl InMemoryKeyHolds {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(String, String), (MessageId, SystemTime)>> {
        // Inserts and removals only: consistent even after a panic elsewhere.
        self.holds.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl KeyHoldStore for InMemoryKeyHolds {
    async fn hold(&self, group: &str, key: &str, id: MessageId) -> Result<MessageId, StoreError> {
        let mut holds = self.lock();
        let (behind, _) = holds
            .entry((group.to_owned(), key.to_owned()))
            .or_insert((id, SystemTime::now()));
        Ok(*behind)
    }

    async fn held_behind(&self, group: &str, key: &str) -> Result<Option<MessageId>, StoreError> {
        Ok(self
            .lock()
            .get(&(group.to_owned(), key.to_owned()))
            .map(|(id, _)| *id))
    }

    async fn release(&self, group: &str, key: &str, id: MessageId) -> Result<bool, StoreError> {
        let mut holds = self.lock();
        let entry = (group.to_owned(), key.to_owned());
        if holds.get(&entry).is_some_and(|(behind, _)| *behind == id) {
            holds.remove(&entry);
            return Ok(true);
        }
        Ok(false)
    }

    async fn release_key(&self, group: &str, key: &str) -> Result<Option<MessageId>, StoreError> {
        Ok(self
            .lock()
            .remove(&(group.to_owned(), key.to_owned()))
            .map(|(id, _)| id))
    }

    async fn holds(&self, group: &str, limit: usize) -> Result<Vec<KeyHold>, StoreError> {
        let mut holds: Vec<KeyHold> = self
            .lock()
            .iter()
            .filter(|((g, _), _)| g == group)
            .map(|((_, key), (behind, since))| KeyHold {
                key: key.clone(),
                behind: *behind,
                since: *since,
            })
            .collect();
        holds.sort_by(|a, b| (a.since, &a.key).cmp(&(b.since, &b.key)));
        holds.truncate(limit);
        Ok(holds)
    }
}
