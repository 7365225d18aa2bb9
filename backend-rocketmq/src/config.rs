//! Connection and behaviour settings, validated in `build()`.

use std::time::Duration;

use rocketmq_client_rust::ClientConfig;
use waybill_core::secret::Secret;
use waybill_core::ConfigError;

use crate::security::{RocketAcl, RocketTls, Security};

/// Where a new consumer group starts reading a queue that has no committed offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartFrom {
    /// The oldest message still stored (the default: nothing published before the group's
    /// first subscriber is skipped).
    Earliest,
    /// Only messages published after the group joined.
    Latest,
}

/// Which non-OK send statuses count as confirmed.
///
/// A RocketMQ broker answers a synchronous send with `SEND_OK` or with a status saying the
/// message was stored but not flushed (`FLUSH_DISK_TIMEOUT`) or not replicated
/// (`FLUSH_SLAVE_TIMEOUT`, `SLAVE_NOT_AVAILABLE`). By default only `SEND_OK` confirms; the
/// others are *ambiguous* publish errors (the message may survive, or be lost with the
/// master's disk). Accepting one trades durability for availability, knowingly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcceptedStatuses {
    /// Accept `FLUSH_DISK_TIMEOUT` (stored in memory, not yet on disk).
    pub flush_disk_timeout: bool,
    /// Accept `FLUSH_SLAVE_TIMEOUT` (not yet on the replica).
    pub flush_slave_timeout: bool,
    /// Accept `SLAVE_NOT_AVAILABLE` (no replica to copy to).
    pub slave_not_available: bool,
}

/// Settings shared by [`crate::RocketPublisher`], [`crate::RocketSubscriber`],
/// [`crate::RocketTransactionalProducer`] and [`crate::RocketAdmin`].
///
/// ```
/// use std::time::Duration;
/// use waybill_rocketmq::RocketConfig;
///
/// let config = RocketConfig::builder("127.0.0.1:9876")
///     .send_timeout(Duration::from_secs(5))
///     .build()
///     .unwrap();
/// assert_eq!(config.name_server(), "127.0.0.1:9876");
/// let err = RocketConfig::builder("").build().unwrap_err();
/// assert_eq!(err.field(), "name_server");
/// ```
#[derive(Clone, Debug)]
pub struct RocketConfig {
    pub(crate) name_server: String,
    pub(crate) producer_group: String,
    pub(crate) send_timeout: Duration,
    pub(crate) accepted: AcceptedStatuses,
    pub(crate) max_message_bytes: usize,
    pub(crate) queues_per_topic: u32,
    pub(crate) start_from: StartFrom,
    pub(crate) pull_batch_size: i32,
    pub(crate) poll_timeout: Duration,
    pub(crate) max_delayed: usize,
    pub(crate) route_wait: Duration,
    pub(crate) security: Security,
}

impl RocketConfig {
    /// A builder for the cluster whose name servers are at `name_server`
    /// (`host:port[;host:port...]`).
    pub fn builder(name_server: impl Into<String>) -> RocketConfigBuilder {
        RocketConfigBuilder(Self {
            name_server: name_server.into(),
            producer_group: "waybill_producer".into(),
            send_timeout: Duration::from_secs(3),
            accepted: AcceptedStatuses::default(),
            max_message_bytes: 4 * 1024 * 1024,
            queues_per_topic: 8,
            start_from: StartFrom::Earliest,
            pull_batch_size: 32,
            poll_timeout: Duration::from_millis(500),
            max_delayed: 10_000,
            route_wait: Duration::from_secs(15),
            security: Security::default(),
        })
    }

    /// The name server addresses.
    pub fn name_server(&self) -> &str {
        &self.name_server
    }

    /// Largest message (body plus properties) the publisher accepts.
    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    /// Whether the clients connect over TLS.
    pub fn uses_tls(&self) -> bool {
        self.security.uses_tls()
    }

    /// The access key the clients sign their requests with, if ACL credentials are set.
    pub fn access_key(&self) -> Option<&str> {
        self.security.acl.as_ref().map(RocketAcl::access_key)
    }

    /// The name servers as error messages name them. Over TLS it says that a refused
    /// certificate looks like an unreachable server: rocketmq-client-rust reports a failed
    /// handshake as a plain connection failure, without its cause.
    pub(crate) fn described_name_servers(&self) -> String {
        if self.security.uses_tls() {
            format!(
                "{} over TLS; the client reports a refused certificate as this same connection \
                 failure, so check the CA file and the host names in the server's certificate",
                self.name_server
            )
        } else {
            self.name_server.clone()
        }
    }

    /// A rocketmq-client-rust configuration with the name servers and the TLS settings.
    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::default();
        config.set_namesrv_addr(self.name_server.as_str().into());
        self.security.apply_tls(&mut config);
        config
    }
}

/// Builds a [`RocketConfig`]; every setting has a default except the name server.
#[derive(Clone, Debug)]
pub struct RocketConfigBuilder(RocketConfig);

impl RocketConfigBuilder {
    /// Sign every request with these ACL credentials (RocketMQ ACL: the access key and an
    /// HMAC under the secret key travel with each request; the secret key never does). The
    /// secret key is masked in `Debug` output and never appears in errors or logs.
    pub fn acl(mut self, access_key: impl Into<String>, secret_key: impl Into<Secret>) -> Self {
        self.0.security.acl = Some(RocketAcl::new(access_key, secret_key));
        self
    }

    /// Connect to name servers and brokers over TLS.
    pub fn tls(mut self, tls: RocketTls) -> Self {
        self.0.security.tls = Some(tls);
        self
    }

    /// Producer group of publishers (default `waybill_producer`). A transactional producer's
    /// group is the one the broker asks in its check-back, so it must be stable across
    /// restarts.
    pub fn producer_group(mut self, group: impl Into<String>) -> Self {
        self.0.producer_group = group.into();
        self
    }

    /// How long a synchronous send waits for the broker's answer (default 3 s). A send that
    /// times out after it was written is *ambiguous*.
    pub fn send_timeout(mut self, timeout: Duration) -> Self {
        self.0.send_timeout = timeout;
        self
    }

    /// Which non-OK send statuses count as confirmed (default: none).
    pub fn accept_statuses(mut self, accepted: AcceptedStatuses) -> Self {
        self.0.accepted = accepted;
        self
    }

    /// Largest message (body plus properties) a publisher accepts (default 4 MiB, the broker's
    /// default `maxMessageSize`). Larger ones are refused as *permanent* before sending.
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.0.max_message_bytes = bytes;
        self
    }

    /// Queues of the topics [`crate::RocketAdmin`] creates (default 8).
    pub fn queues_per_topic(mut self, queues: u32) -> Self {
        self.0.queues_per_topic = queues;
        self
    }

    /// Where a new consumer group starts (default [`StartFrom::Earliest`]).
    pub fn start_from(mut self, start: StartFrom) -> Self {
        self.0.start_from = start;
        self
    }

    /// Messages fetched per pull of one queue (default 32, at most 1024).
    pub fn pull_batch_size(mut self, n: i32) -> Self {
        self.0.pull_batch_size = n;
        self
    }

    /// How long one poll of the subscriber waits for messages (default 500 ms).
    pub fn poll_timeout(mut self, timeout: Duration) -> Self {
        self.0.poll_timeout = timeout;
        self
    }

    /// Retried copies a subscriber holds until they are due (default 10,000); beyond it, it
    /// stops reading until the earliest is due.
    pub fn max_delayed(mut self, n: usize) -> Self {
        self.0.max_delayed = n;
        self
    }

    /// How long [`crate::RocketSubscriber::connect`] keeps asking the name server for a
    /// topic's route before it gives up (default 15 s).
    ///
    /// While a broker restarts, or after its connection to the name server was cut, the name
    /// server has no route for the topics of that broker and may call them nonexistent; a
    /// subscriber started in that window waits for the route instead of failing, and a
    /// publisher that saw the cluster unable to route less than this long ago does not take a
    /// name server's "does not exist" at its word (the send fails as *not sent*, not as *no
    /// destination*).
    pub fn route_wait(mut self, wait: Duration) -> Self {
        self.0.route_wait = wait;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first unusable setting.
    pub fn build(self) -> Result<RocketConfig, ConfigError> {
        let c = self.0;
        if c.name_server.split(';').all(|a| a.trim().is_empty()) {
            return Err(ConfigError::new(
                "name_server",
                "at least one host:port is needed",
            ));
        }
        crate::names::check_group(&c.producer_group)
            .map_err(|e| ConfigError::new("producer_group", e.to_string()))?;
        c.security.check()?;
        let checks = [
            (
                c.send_timeout < Duration::from_millis(100),
                "send_timeout",
                "must be at least 100 ms",
            ),
            (
                !(1024..=128 * 1024 * 1024).contains(&c.max_message_bytes),
                "max_message_bytes",
                "must be between 1 KiB and 128 MiB",
            ),
            (
                !(1..=1024).contains(&c.queues_per_topic),
                "queues_per_topic",
                "must be between 1 and 1024",
            ),
            (
                !(1..=1024).contains(&c.pull_batch_size),
                "pull_batch_size",
                "must be between 1 and 1024",
            ),
            (
                c.poll_timeout < Duration::from_millis(10),
                "poll_timeout",
                "must be at least 10 ms",
            ),
            (c.max_delayed == 0, "max_delayed", "must be at least 1"),
            (
                c.route_wait > Duration::from_secs(600),
                "route_wait",
                "must be at most 10 minutes",
            ),
        ];
        ConfigError::first_refused(checks)?;
        Ok(c)
    }
}
