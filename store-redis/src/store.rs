//! The fenced idempotency store held entirely in Redis.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError, ScriptInvocation};
use waybill_core::{Claim, ClaimToken, Completion, IdempotencyStore, MessageId, StoreError};

use crate::config::RedisStoreConfig;
use crate::error::{describe, RedisStoreError};
use crate::keys::{entry_key, outcome_of, outcome_tag, token_text, HELD};
use crate::scripts::{CLAIM, COMPLETE, RELEASE, RENEW, REOPEN};

/// An [`IdempotencyStore`] in Redis, shared by every consumer instance using the same server
/// and key prefix.
///
/// - `claim` is one `SET NX PX` with a new fencing token (in a script that also reads what
///   holds the key when the claim is refused);
/// - `renew`, `complete`, `release` and `reopen` are scripts that check the token first, so
///   a holder whose lease lapsed and was taken over gets [`StoreError::is_not_holder`];
/// - done and dead-letter markers expire with the retention; lapsed claims expire with their
///   lease, so nothing needs purging.
///
/// Durability is Redis's: markers written before a restart of a server that keeps nothing on
/// disk are gone, and a later duplicate is handled again. Where that is not acceptable, put a
/// SQL inbox behind it with [`crate::LayeredIdempotencyStore`].
///
/// The connection reconnects by itself; while the server is unreachable every operation fails
/// with an unavailable [`StoreError`] within the response timeout, and the Processor leaves
/// the message unsettled.
#[derive(Clone)]
pub struct RedisIdempotencyStore {
    connection: ConnectionManager,
    config: RedisStoreConfig,
}

impl fmt::Debug for RedisIdempotencyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisIdempotencyStore")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl RedisIdempotencyStore {
    /// Connects to the configured server and checks that it answers.
    ///
    /// # Errors
    /// [`RedisStoreError::Unreachable`] when the server is down or does not answer within the
    /// connection timeout, [`RedisStoreError::AuthenticationFailed`] when it refuses the
    /// credentials, [`RedisStoreError::Server`] for any other refusal.
    pub async fn connect(config: RedisStoreConfig) -> Result<Self, RedisStoreError> {
        let store = Self::connect_lazy(config)?;
        let mut connection = store.connection.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
            .map_err(|e| RedisStoreError::from_redis(store.config.address(), &e))?;
        Ok(store)
    }

    /// A store that connects on first use: it can be made while Redis is down, and its
    /// operations fail as unavailable until the server answers. The layered store uses it so
    /// that a consumer starts on its SQL inbox alone when Redis is down.
    ///
    /// # Errors
    /// [`RedisStoreError::Server`] when the client cannot be set up from the configuration.
    pub fn connect_lazy(config: RedisStoreConfig) -> Result<Self, RedisStoreError> {
        let client = Client::open(config.url.as_str())
            .map_err(|e| RedisStoreError::from_redis(config.address(), &e))?;
        let manager = ConnectionManagerConfig::new()
            .set_response_timeout(Some(config.response_timeout))
            .set_connection_timeout(Some(config.connection_timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_lazy_with_config(client, manager)
            .map_err(|e| RedisStoreError::from_redis(config.address(), &e))?;
        Ok(Self { connection, config })
    }

    /// The settings the store runs with.
    pub fn config(&self) -> &RedisStoreConfig {
        &self.config
    }

    fn key(&self, group: &str, id: MessageId) -> String {
        entry_key(&self.config.key_prefix, group, id)
    }

    async fn invoke<T: redis::FromRedisValue>(
        &self,
        operation: &'static str,
        invocation: ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut connection = self.connection.clone();
        invocation
            .invoke_async(&mut connection)
            .await
            .map_err(|e| self.store_error(operation, &e))
    }

    fn store_error(&self, operation: &'static str, error: &RedisError) -> StoreError {
        StoreError::new(
            operation,
            format!("Redis at {}: {}", self.config.address(), describe(error)),
        )
    }

    /// The outcome recorded for `id` in `group`, if any; a live claim or nothing gives `None`.
    ///
    /// # Errors
    /// An unavailable [`StoreError`] when the server does not answer.
    pub async fn recorded_outcome(
        &self,
        group: &str,
        id: MessageId,
    ) -> Result<Option<Completion>, StoreError> {
        let mut connection = self.connection.clone();
        let value: Option<String> = redis::cmd("GET")
            .arg(self.key(group, id))
            .query_async(&mut connection)
            .await
            .map_err(|e| self.store_error("claim", &e))?;
        Ok(value.and_then(|v| outcome_of(v.get(..1)?)))
    }

    /// Records `completion` for `id` in `group` without a claim, kept for the retention: how
    /// the layered store caches an outcome its authoritative store recorded.
    ///
    /// # Errors
    /// An unavailable [`StoreError`] when the server does not answer.
    pub async fn record_outcome(
        &self,
        group: &str,
        id: MessageId,
        token: ClaimToken,
        completion: Completion,
    ) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        redis::cmd("SET")
            .arg(self.key(group, id))
            .arg(format!("{}:{}", outcome_tag(completion), token_text(token)))
            .arg("PX")
            .arg(millis(self.config.retention))
            .query_async::<()>(&mut connection)
            .await
            .map_err(|e| self.store_error("complete", &e))
    }

    /// Deletes whatever is recorded for `id` in `group`.
    ///
    /// # Errors
    /// An unavailable [`StoreError`] when the server does not answer.
    pub async fn forget(&self, group: &str, id: MessageId) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        redis::cmd("DEL")
            .arg(self.key(group, id))
            .query_async::<()>(&mut connection)
            .await
            .map_err(|e| self.store_error("reopen", &e))
    }
}

/// A duration in whole milliseconds, at least 1 (Redis refuses an expiry of 0).
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

#[async_trait]
impl IdempotencyStore for RedisIdempotencyStore {
    fn retention(&self) -> Option<Duration> {
        Some(self.config.retention)
    }

    async fn claim(
        &self,
        group: &str,
        id: MessageId,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        let token = ClaimToken::new();
        let mut invocation = CLAIM.key(self.key(group, id));
        invocation.arg(token_text(token)).arg(millis(lease));
        let (tag, left_ms): (String, i64) = self.invoke("claim", invocation).await?;
        Ok(match (tag.as_str(), outcome_of(&tag)) {
            ("a", _) => Claim::Acquired(token),
            (_, Some(Completion::Handled)) => Claim::AlreadyDone,
            (_, Some(Completion::DeadLettered)) => Claim::DeadLettered,
            (HELD, None) => Claim::InFlight {
                lease_remaining: Duration::from_millis(left_ms.max(0).unsigned_abs()),
            },
            (other, None) => {
                return Err(StoreError::new(
                    "claim",
                    format!(
                        "Redis at {} holds an entry this store did not write (tag {other:?}): \
                         is another application using the key prefix {:?}?",
                        self.config.address(),
                        self.config.key_prefix
                    ),
                ))
            }
        })
    }

    async fn renew(
        &self,
        group: &str,
        id: MessageId,
        token: ClaimToken,
        lease: Duration,
    ) -> Result<(), StoreError> {
        let mut invocation = RENEW.key(self.key(group, id));
        invocation.arg(token_text(token)).arg(millis(lease));
        match self.invoke::<i64>("renew", invocation).await? {
            1 => Ok(()),
            _ => Err(StoreError::not_holder("renew")),
        }
    }

    async fn complete(
        &self,
        group: &str,
        id: MessageId,
        token: ClaimToken,
        completion: Completion,
    ) -> Result<(), StoreError> {
        let mut invocation = COMPLETE.key(self.key(group, id));
        invocation
            .arg(token_text(token))
            .arg(outcome_tag(completion))
            .arg(millis(self.config.retention));
        match self.invoke::<i64>("complete", invocation).await? {
            1 => Ok(()),
            _ => Err(StoreError::not_holder("complete")),
        }
    }

    async fn release(
        &self,
        group: &str,
        id: MessageId,
        token: ClaimToken,
    ) -> Result<(), StoreError> {
        let mut invocation = RELEASE.key(self.key(group, id));
        invocation.arg(token_text(token));
        self.invoke::<i64>("release", invocation).await.map(drop)
    }

    async fn reopen(&self, group: &str, id: MessageId) -> Result<bool, StoreError> {
        let invocation = REOPEN.key(self.key(group, id));
        Ok(self.invoke::<i64>("reopen", invocation).await? == 1)
    }
}
