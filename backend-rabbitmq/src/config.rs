//! Connection and behaviour settings, validated in `build()`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use waybill_core::secret::mask_url_password as mask_password;
use waybill_core::ConfigError;

use crate::tls::{TlsFiles, TLS_FEATURE_HINT};

/// The default broker-side delivery limit of a group's work queue.
///
/// Deliveries counted by the broker include give-backs (a delivery dropped unsettled, e.g. at
/// shutdown) and those a lost connection returns, not the SDK's retries (each retry is a new
/// copy): so the limit is a backstop for messages that crash or stall their consumer, set well
/// above what restarts and reconnections add up to.
pub const DEFAULT_DELIVERY_LIMIT: u32 = 100;

/// Settings shared by [`crate::RabbitPublisher`] and [`crate::RabbitSubscriber`].
///
/// ```
/// use std::time::Duration;
/// use waybill_rabbitmq::RabbitConfig;
///
/// let config = RabbitConfig::builder("amqp://guest:guest@127.0.0.1:5672/%2f")
///     .prefetch(100)
///     .confirm_timeout(Duration::from_secs(10))
///     .build()
///     .unwrap();
/// assert_eq!(config.prefetch(), 100);
/// let err = RabbitConfig::builder("http://nope").build().unwrap_err();
/// assert_eq!(err.field(), "url");
/// ```
///
/// `Debug` shows the URL with its password masked.
#[derive(Clone)]
pub struct RabbitConfig {
    pub(crate) url: String,
    pub(crate) prefetch: u16,
    pub(crate) max_in_flight: usize,
    pub(crate) channels: usize,
    pub(crate) confirm_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) reconnect_min: Duration,
    pub(crate) reconnect_max: Duration,
    pub(crate) retry_tiers: Vec<Duration>,
    pub(crate) delivery_limit: u32,
    pub(crate) queue_arguments: Vec<(String, String)>,
    pub(crate) stale_consumer_wait: Duration,
    pub(crate) single_active_consumer: bool,
    pub(crate) rebalance_interval: Duration,
    pub(crate) tls: TlsFiles,
}

impl fmt::Debug for RabbitConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitConfig")
            .field("url", &self.display_url())
            .field("prefetch", &self.prefetch)
            .field("max_in_flight", &self.max_in_flight)
            .field("channels", &self.channels)
            .field("confirm_timeout", &self.confirm_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("reconnect_min", &self.reconnect_min)
            .field("reconnect_max", &self.reconnect_max)
            .field("retry_tiers", &self.retry_tiers)
            .field("delivery_limit", &self.delivery_limit)
            .field("queue_arguments", &self.queue_arguments)
            .field("stale_consumer_wait", &self.stale_consumer_wait)
            .field("single_active_consumer", &self.single_active_consumer)
            .field("rebalance_interval", &self.rebalance_interval)
            .field("tls", &self.tls)
            .finish()
    }
}

impl RabbitConfig {
    /// A builder for the broker at `url` (`amqp://user:password@host:port/vhost`).
    pub fn builder(url: impl Into<String>) -> RabbitConfigBuilder {
        RabbitConfigBuilder {
            config: RabbitConfig {
                url: url.into(),
                prefetch: 200,
                max_in_flight: 1_000,
                channels: 4,
                confirm_timeout: Duration::from_secs(30),
                connect_timeout: Duration::from_secs(10),
                reconnect_min: Duration::from_millis(100),
                reconnect_max: Duration::from_secs(5),
                retry_tiers: [250, 1_000, 5_000, 30_000, 120_000, 600_000]
                    .into_iter()
                    .map(Duration::from_millis)
                    .collect(),
                delivery_limit: DEFAULT_DELIVERY_LIMIT,
                queue_arguments: Vec::new(),
                stale_consumer_wait: Duration::from_secs(60),
                single_active_consumer: false,
                rebalance_interval: Duration::from_secs(1),
                tls: TlsFiles::default(),
            },
        }
    }

    /// The broker URL with the password masked, for logs and errors.
    pub fn display_url(&self) -> String {
        mask_password(&self.url)
    }

    /// Unacknowledged deliveries a subscriber holds at most.
    pub fn prefetch(&self) -> u16 {
        self.prefetch
    }

    /// The broker-side delivery limit of the work queue (see
    /// [`RabbitConfigBuilder::delivery_limit`]).
    pub fn delivery_limit(&self) -> u32 {
        self.delivery_limit
    }

    /// The retry delay tiers, ascending.
    pub fn retry_tiers(&self) -> &[Duration] {
        &self.retry_tiers
    }

    /// The tier a retry with `delay` goes to: the smallest tier at least `delay`, else the
    /// largest. `None` for a zero delay (the copy goes straight back to the work queue).
    pub fn tier_for(&self, delay: Duration) -> Option<Duration> {
        if delay.is_zero() {
            return None;
        }
        self.retry_tiers
            .iter()
            .copied()
            .find(|t| *t >= delay)
            .or_else(|| self.retry_tiers.last().copied())
    }
}

/// Builds a [`RabbitConfig`].
#[derive(Clone, Debug)]
pub struct RabbitConfigBuilder {
    config: RabbitConfig,
}

impl RabbitConfigBuilder {
    /// Unacknowledged deliveries per subscriber (default 200).
    pub fn prefetch(mut self, n: u16) -> Self {
        self.config.prefetch = n;
        self
    }

    /// Publishes awaiting their confirm per publisher, at most (default 1,000).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.config.max_in_flight = n;
        self
    }

    /// Confirm-mode channels a publisher spreads single publishes over (default 4).
    pub fn channels(mut self, n: usize) -> Self {
        self.config.channels = n;
        self
    }

    /// How long a confirm may take before the publish counts as ambiguous (default 30 s).
    pub fn confirm_timeout(mut self, timeout: Duration) -> Self {
        self.config.confirm_timeout = timeout;
        self
    }

    /// How long connecting may take before it fails (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// Backoff bounds between reconnection attempts (default 100 ms to 5 s).
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.config.reconnect_min = min;
        self.config.reconnect_max = max;
        self
    }

    /// Retry delay tiers; each becomes a queue whose message TTL routes back to the work queue.
    pub fn retry_tiers(mut self, tiers: impl IntoIterator<Item = Duration>) -> Self {
        self.config.retry_tiers = tiers.into_iter().collect();
        self
    }

    /// Broker-side poison cap (default [`DEFAULT_DELIVERY_LIMIT`]): past this many deliveries
    /// of one copy, the quorum work queue moves the message into the group's dead-letter queue
    /// (`x-delivery-limit` with the dead-letter queue as its dead-letter route, at-least-once).
    ///
    /// The limit and the route are always declared, so RabbitMQ 3.x (no limit unless one is
    /// declared) and 4.x (a default limit of 20, past which a queue without a dead-letter route
    /// *drops* the message) behave alike. The broker writes no waybill record on such a dead
    /// letter: the broker, not the SDK, gave up on it.
    pub fn delivery_limit(mut self, n: u32) -> Self {
        self.config.delivery_limit = n;
        self
    }

    /// How long a subscriber that lost its connection waits, before consuming again, for the
    /// broker to drop its previous consumer (default 60 s, RabbitMQ's default heartbeat).
    ///
    /// Until the broker has dropped it, the previous consumer holds its unacknowledged
    /// deliveries; consuming meanwhile would hand out later messages of the same keys first.
    /// The wait ends as soon as the broker counts no more consumers on the queue than other
    /// subscribers held before the loss: after a broker restart that takes a fraction of a
    /// second, after a half-open connection up to the broker's heartbeat timeout. Zero consumes
    /// at once, giving up per-key order across reconnections.
    pub fn stale_consumer_wait(mut self, limit: Duration) -> Self {
        self.config.stale_consumer_wait = limit;
        self
    }

    /// Declares the group's work queue with RabbitMQ's single active consumer
    /// (`x-single-active-consumer`): of the group's subscribers one receives, the others stand
    /// by and the broker hands the queue to one of them when the active one goes away (its
    /// unacknowledged messages are given back first). This keeps per-key order with several
    /// subscribers in a group (competing consumers share keys and do not), at the price of
    /// one subscriber's throughput: the standbys only take over.
    ///
    /// The argument is fixed when the queue is first declared: a group whose queue exists
    /// without it fails to subscribe with the broker's `PRECONDITION_FAILED` (delete the
    /// group's queue, or use a new group, to change it). Default off.
    pub fn single_active_consumer(mut self, on: bool) -> Self {
        self.config.single_active_consumer = on;
        self
    }

    /// How often a member of a partitioned group
    /// ([`RabbitPartitionedSubscriber`](crate::RabbitPartitionedSubscriber)) reads who else is
    /// in the group and takes or hands over partitions accordingly (default 1 s). A member that
    /// crashed leaves its partitions unconsumed for up to this long after the broker noticed
    /// (at once for a closed socket, after the heartbeat timeout for a silent peer).
    pub fn rebalance_interval(mut self, every: Duration) -> Self {
        self.config.rebalance_interval = every;
        self
    }

    /// Trusts the CA certificates in the PEM file at `path` for `amqps://`, in addition to
    /// the webpki roots (needs the `tls` feature). Read when `build()` validates and again at
    /// every connection, so a renewed bundle is picked up on reconnection.
    pub fn tls_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.tls.ca_file = Some(path.into());
        self
    }

    /// Presents the client certificate chain in the PEM file `cert` with the private key in
    /// the PEM file `key` (PKCS#8, PKCS#1 or SEC1), for brokers that require mutual TLS
    /// (needs the `tls` feature and an `amqps://` URL). Read like [`Self::tls_ca_file`].
    pub fn tls_client_identity(
        mut self,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.config.tls.client_identity = Some((cert.into(), key.into()));
        self
    }

    /// Verifies the broker's certificate for `name` instead of the URL's host (needs the `tls`
    /// feature and an `amqps://` URL): for a broker reached by an address its certificate
    /// does not list, e.g. an IP address or a tunnel. The TCP connection still goes to the
    /// URL's host; the certificate must still come from a trusted CA and name `name`.
    pub fn tls_server_name(mut self, name: impl Into<String>) -> Self {
        self.config.tls.server_name = Some(name.into());
        self
    }

    /// Escape hatch: an extra string argument on every work-queue declaration.
    pub fn queue_argument(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.config
            .queue_arguments
            .push((name.into(), value.into()));
        self
    }

    /// Validates and returns the configuration.
    ///
    /// # Errors
    /// [`ConfigError`] naming the field: `url` (not `amqp://` or `amqps://`), `prefetch`,
    /// `max_in_flight`, `channels` (zero), `confirm_timeout`, `connect_timeout` (zero),
    /// `reconnect_backoff` (zero or inverted), `retry_tiers` (empty or containing zero),
    /// `delivery_limit` (zero); `url` also for an `amqps://` URL in a build without the `tls`
    /// feature (naming the feature); `tls` for TLS settings with a plain `amqp://` URL (they
    /// would silently not apply); `tls_ca_file` and `tls_client_identity` for a file that
    /// cannot be read or holds no PEM certificate (key); `tls_server_name` for a name that is
    /// not a DNS name or IP address. Messages never contain the password.
    pub fn build(self) -> Result<RabbitConfig, ConfigError> {
        let mut c = self.config;
        let tls = c.url.starts_with("amqps://");
        if !(c.url.starts_with("amqp://") || tls) {
            return Err(ConfigError::new(
                "url",
                format!(
                    "{} is not an amqp:// or amqps:// URL",
                    mask_password(&c.url)
                ),
            ));
        }
        if tls && !cfg!(feature = "tls") {
            return Err(ConfigError::new("url", TLS_FEATURE_HINT));
        }
        if c.tls.is_set() && !tls {
            return Err(ConfigError::new(
                "tls",
                format!(
                    "TLS settings (CA file, client certificate, server name) need an amqps:// \
                     URL, not {}",
                    mask_password(&c.url)
                ),
            ));
        }
        c.tls.validate()?;
        if c.prefetch == 0 {
            return Err(ConfigError::new("prefetch", "must be at least 1"));
        }
        if c.max_in_flight == 0 {
            return Err(ConfigError::new("max_in_flight", "must be at least 1"));
        }
        if c.channels == 0 {
            return Err(ConfigError::new("channels", "must be at least 1"));
        }
        if c.confirm_timeout.is_zero() {
            return Err(ConfigError::new(
                "confirm_timeout",
                "must be greater than zero",
            ));
        }
        if c.rebalance_interval.is_zero() {
            return Err(ConfigError::new(
                "rebalance_interval",
                "must be greater than zero",
            ));
        }
        if c.connect_timeout.is_zero() {
            return Err(ConfigError::new(
                "connect_timeout",
                "must be greater than zero",
            ));
        }
        if c.reconnect_min.is_zero() || c.reconnect_max < c.reconnect_min {
            return Err(ConfigError::new(
                "reconnect_backoff",
                "min must be greater than zero and max at least min",
            ));
        }
        if c.retry_tiers.is_empty() || c.retry_tiers.iter().any(|t| t.is_zero()) {
            return Err(ConfigError::new(
                "retry_tiers",
                "needs at least one tier, none of them zero",
            ));
        }
        if c.delivery_limit == 0 {
            return Err(ConfigError::new("delivery_limit", "must be at least 1"));
        }
        c.retry_tiers.sort();
        c.retry_tiers.dedup();
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_pick_the_smallest_sufficient_delay() {
        let c = RabbitConfig::builder("amqp://localhost")
            .retry_tiers([Duration::from_secs(5), Duration::from_secs(1)])
            .build()
            .unwrap();
        assert_eq!(
            c.retry_tiers(),
            &[Duration::from_secs(1), Duration::from_secs(5)]
        );
        assert_eq!(c.tier_for(Duration::ZERO), None);
        assert_eq!(
            c.tier_for(Duration::from_millis(10)),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            c.tier_for(Duration::from_secs(2)),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            c.tier_for(Duration::from_secs(60)),
            Some(Duration::from_secs(5))
        );
    }

    #[test]
    fn build_names_the_bad_field() {
        let b = || RabbitConfig::builder("amqp://localhost");
        let field = |b: RabbitConfigBuilder| b.build().unwrap_err().field();
        assert_eq!(field(RabbitConfig::builder("")), "url");
        assert_eq!(field(b().prefetch(0)), "prefetch");
        assert_eq!(field(b().max_in_flight(0)), "max_in_flight");
        assert_eq!(field(b().channels(0)), "channels");
        assert_eq!(
            field(b().confirm_timeout(Duration::ZERO)),
            "confirm_timeout"
        );
        assert_eq!(field(b().retry_tiers([])), "retry_tiers");
        assert_eq!(field(b().retry_tiers([Duration::ZERO])), "retry_tiers");
        assert_eq!(field(b().delivery_limit(0)), "delivery_limit");
        assert_eq!(
            field(b().reconnect_backoff(Duration::from_secs(2), Duration::from_secs(1))),
            "reconnect_backoff"
        );
    }

    #[test]
    fn debug_output_masks_the_password() {
        let builder = RabbitConfig::builder("amqp://app:hunter2@host:5672/%2f");
        assert!(!format!("{builder:?}").contains("hunter2"));
        let config = builder.build().unwrap();
        let debug = format!("{config:?}");
        assert!(debug.contains("app:***@host"), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn tls_urls_and_settings_are_checked() {
        let amqps = RabbitConfig::builder("amqps://app:hunter2@host/%2f").build();
        if cfg!(feature = "tls") {
            assert!(amqps.is_ok());
        } else {
            let err = amqps.unwrap_err();
            assert_eq!(err.field(), "url");
            assert!(err.to_string().contains("feature `tls`"), "{err}");
        }
        let err = RabbitConfig::builder("amqp://app:hunter2@host/%2f")
            .tls_ca_file("/etc/ssl/certs/ca-certificates.crt")
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "tls");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
