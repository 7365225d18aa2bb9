//! Settings of the Redis idempotency store, validated in `build()`.

use std::fmt;
use std::time::Duration;

use redis::IntoConnectionInfo;
use waybill_core::ConfigError;

/// Where the Redis store connects and how long it keeps what.
///
/// The URL may carry a password (`redis://:secret@host:6379`, `rediss://` for TLS where the
/// `redis` crate is built with it); it is never printed: `Debug` and every error show only the
/// server's address.
#[derive(Clone)]
pub struct RedisStoreConfig {
    pub(crate) url: String,
    pub(crate) address: String,
    pub(crate) key_prefix: String,
    pub(crate) retention: Duration,
    pub(crate) response_timeout: Duration,
    pub(crate) connection_timeout: Duration,
}

impl RedisStoreConfig {
    /// Starts a configuration for the server at `url` (`redis://[:password@]host[:port][/db]`).
    pub fn builder(url: impl Into<String>) -> RedisStoreConfigBuilder {
        RedisStoreConfigBuilder {
            url: url.into(),
            key_prefix: "waybill".to_owned(),
            retention: Duration::from_secs(7 * 24 * 3600),
            response_timeout: Duration::from_secs(2),
            connection_timeout: Duration::from_secs(2),
        }
    }

    /// The server's address (`host:port`), without credentials.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The key prefix.
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// How long done and dead-letter markers are kept.
    pub fn retention(&self) -> Duration {
        self.retention
    }
}

impl fmt::Debug for RedisStoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreConfig")
            .field("address", &self.address)
            .field("key_prefix", &self.key_prefix)
            .field("retention", &self.retention)
            .field("response_timeout", &self.response_timeout)
            .field("connection_timeout", &self.connection_timeout)
            .finish_non_exhaustive()
    }
}

/// Builds a [`RedisStoreConfig`]; defaults: prefix `waybill`, retention 7 days, response and
/// connection timeouts 2 s.
#[derive(Clone)]
pub struct RedisStoreConfigBuilder {
    url: String,
    key_prefix: String,
    retention: Duration,
    response_timeout: Duration,
    connection_timeout: Duration,
}

impl fmt::Debug for RedisStoreConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreConfigBuilder")
            .field("key_prefix", &self.key_prefix)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

impl RedisStoreConfigBuilder {
    /// The first part of every key (default `waybill`): give each application its own when
    /// several share a server and could use the same consumer group names.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// How long done and dead-letter markers are kept (default 7 days). It must exceed how
    /// late a duplicate can arrive (broker redelivery horizon, relay retries).
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// How long one command may wait for its answer (default 2 s); past it the operation
    /// fails as unavailable.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// How long one connection attempt may take (default 2 s).
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`ConfigError`] naming the field: `url` that does not parse (the message leaves the
    /// password out), an empty `key_prefix` or one with whitespace or `:` at its end, a
    /// `retention` under one second, or a zero timeout.
    pub fn build(self) -> Result<RedisStoreConfig, ConfigError> {
        let info =
            self.url.as_str().into_connection_info().map_err(|e| {
                ConfigError::new("url", format!("not a Redis URL ({:?})", e.kind()))
            })?;
        let address = info.addr().to_string();
        let prefix = &self.key_prefix;
        ConfigError::first_refused([
            (prefix.is_empty(), "key_prefix", "must not be empty"),
            (
                prefix.chars().any(|c| c.is_whitespace() || c.is_control()),
                "key_prefix",
                "must not contain whitespace or control characters",
            ),
            (
                prefix.ends_with(':'),
                "key_prefix",
                "must not end with ':' (the store adds the separator)",
            ),
            (
                self.retention < Duration::from_secs(1),
                "retention",
                "must be at least one second",
            ),
            (
                self.response_timeout.is_zero(),
                "response_timeout",
                "must not be zero",
            ),
            (
                self.connection_timeout.is_zero(),
                "connection_timeout",
                "must not be zero",
            ),
        ])?;
        Ok(RedisStoreConfig {
            url: self.url,
            address,
            key_prefix: self.key_prefix,
            retention: self.retention,
            response_timeout: self.response_timeout,
            connection_timeout: self.connection_timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_never_shows() {
        let config = RedisStoreConfig::builder("redis://:hunter2-secret@10.0.0.7:6380/2")
            .build()
            .unwrap();
        assert_eq!(config.address(), "10.0.0.7:6380");
        assert!(!format!("{config:?}").contains("hunter2"), "{config:?}");
        let refused = RedisStoreConfig::builder("redis://:hunter2-secret@[bad")
            .build()
            .unwrap_err();
        assert_eq!(refused.field(), "url");
        assert!(!refused.to_string().contains("hunter2"), "{refused}");
    }

    #[test]
    fn invalid_settings_name_their_field() {
        let url = "redis://127.0.0.1:6379";
        let cases = [
            (RedisStoreConfig::builder(url).key_prefix(""), "key_prefix"),
            (
                RedisStoreConfig::builder(url).key_prefix("a b"),
                "key_prefix",
            ),
            (
                RedisStoreConfig::builder(url).key_prefix("app:"),
                "key_prefix",
            ),
            (
                RedisStoreConfig::builder(url).retention(Duration::from_millis(10)),
                "retention",
            ),
            (
                RedisStoreConfig::builder(url).response_timeout(Duration::ZERO),
                "response_timeout",
            ),
            (RedisStoreConfig::builder("http://x"), "url"),
        ];
        for (builder, field) in cases {
            assert_eq!(builder.build().unwrap_err().field(), field);
        }
    }
}
