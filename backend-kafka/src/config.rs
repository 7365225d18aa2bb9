//! Connection and behaviour settings, validated in `build()`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use rdkafka::ClientConfig;
use waybill_core::secret::{Secret, MASK};
use waybill_core::ConfigError;

use crate::security::{
    builtin_features, is_secret_property, KafkaTls, SaslLogin, SaslMechanism, Security,
    TYPED_PROPERTIES,
};

/// Settings shared by [`crate::KafkaPublisher`], [`crate::KafkaSubscriber`] and the admin
/// helpers.
///
/// The producer always runs with `acks=all` and `enable.idempotence=true`, and partitions keys
/// with `murmur2_random` (the Java client's default partitioner); these cannot be overridden.
///
/// ```
/// use std::time::Duration;
/// use waybill_kafka::KafkaConfig;
///
/// let config = KafkaConfig::builder("127.0.0.1:9092")
///     .session_timeout(Duration::from_secs(6))
///     .property("socket.keepalive.enable", "true")
///     .build()
///     .unwrap();
/// assert_eq!(config.brokers(), "127.0.0.1:9092");
/// let err = KafkaConfig::builder("127.0.0.1:9092").property("acks", "1").build().unwrap_err();
/// assert_eq!(err.field(), "property");
/// ```
///
/// Production clusters usually want TLS and SASL, set through typed settings (see
/// [`KafkaConfigBuilder::tls`] and [`KafkaConfigBuilder::sasl`]):
///
/// ```no_run
/// use waybill_kafka::{KafkaConfig, KafkaTls, SaslMechanism};
///
/// let config = KafkaConfig::builder("broker-1.example.com:9093")
///     .tls(KafkaTls::new().ca_file("/etc/kafka/ca.pem"))
///     .sasl(SaslMechanism::ScramSha512, "orders", std::env::var("KAFKA_PASSWORD")?)
///     .build()?;
/// assert!(!format!("{config:?}").contains(&std::env::var("KAFKA_PASSWORD")?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct KafkaConfig {
    pub(crate) brokers: String,
    pub(crate) client_id: String,
    pub(crate) delivery_timeout: Duration,
    pub(crate) max_in_flight: usize,
    pub(crate) message_max_bytes: usize,
    pub(crate) session_timeout: Duration,
    pub(crate) commit_interval: Duration,
    pub(crate) max_delayed: usize,
    pub(crate) security: Security,
    pub(crate) properties: BTreeMap<String, String>,
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| {
                let shown = if is_secret_property(k) { MASK } else { v };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("client_id", &self.client_id)
            .field("security", &self.security)
            .field("delivery_timeout", &self.delivery_timeout)
            .field("max_in_flight", &self.max_in_flight)
            .field("message_max_bytes", &self.message_max_bytes)
            .field("session_timeout", &self.session_timeout)
            .field("commit_interval", &self.commit_interval)
            .field("max_delayed", &self.max_delayed)
            .field("properties", &properties)
            .finish()
    }
}

/// Properties waybill sets itself because its guarantees depend on them.
const RESERVED: [&str; 8] = [
    "acks",
    "enable.idempotence",
    "partitioner",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "group.id",
    "bootstrap.servers",
    "isolation.level",
];

impl KafkaConfig {
    /// A builder for the cluster at `brokers` (`host:port[,host:port...]`).
    pub fn builder(brokers: impl Into<String>) -> KafkaConfigBuilder {
        KafkaConfigBuilder(Self {
            brokers: brokers.into(),
            client_id: "waybill".into(),
            delivery_timeout: Duration::from_secs(30),
            max_in_flight: 10_000,
            message_max_bytes: 1024 * 1024,
            session_timeout: Duration::from_secs(10),
            commit_interval: Duration::from_secs(1),
            max_delayed: 10_000,
            security: Security::default(),
            properties: BTreeMap::new(),
        })
    }

    /// The bootstrap servers.
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// Largest message (payload, key and headers) the publisher accepts.
    pub fn message_max_bytes(&self) -> usize {
        self.message_max_bytes
    }

    /// librdkafka's `security.protocol` for these settings: `plaintext`, `ssl`,
    /// `sasl_plaintext` or `sasl_ssl`.
    pub fn security_protocol(&self) -> &'static str {
        self.security.protocol()
    }

    /// The producer's librdkafka settings.
    pub(crate) fn producer(&self) -> ClientConfig {
        let mut c = self.common();
        c.set("acks", "all")
            .set("enable.idempotence", "true")
            .set("partitioner", "murmur2_random")
            .set(
                "message.timeout.ms",
                self.delivery_timeout.as_millis().to_string(),
            )
            .set(
                "queue.buffering.max.messages",
                self.max_in_flight.max(1).to_string(),
            )
            .set("linger.ms", "2");
        c
    }

    /// A consumer's librdkafka settings for `group`: offsets are stored by waybill only, and
    /// committed by librdkafka every `commit_interval`, on partition revoke and on close.
    pub(crate) fn consumer(&self, group: &str) -> ClientConfig {
        let mut c = self.common();
        c.set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.commit.interval.ms",
                self.commit_interval.as_millis().to_string(),
            )
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .set(
                "session.timeout.ms",
                self.session_timeout.as_millis().to_string(),
            )
            .set(
                "heartbeat.interval.ms",
                (self.session_timeout.as_millis() / 3).max(1).to_string(),
            );
        c
    }

    /// Settings for the admin client.
    pub(crate) fn admin(&self) -> ClientConfig {
        self.common()
    }

    fn common(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            .set("message.max.bytes", self.message_max_bytes.to_string());
        self.security.apply(&mut c);
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }
}

/// Builds a [`KafkaConfig`]; `build()` validates.
#[derive(Clone, Debug)]
pub struct KafkaConfigBuilder(KafkaConfig);

impl KafkaConfigBuilder {
    /// Connect over TLS (`security.protocol` `ssl`, or `sasl_ssl` with [`Self::sasl`]).
    /// Needs the cargo feature `tls`; `build()` says so when it is off.
    pub fn tls(mut self, tls: KafkaTls) -> Self {
        self.0.security.tls = Some(tls);
        self
    }

    /// Authenticate with SASL (`sasl_ssl` with [`Self::tls`], else `sasl_plaintext`, which
    /// sends a `PLAIN` password unencrypted). The password is masked in `Debug` output and
    /// never appears in errors or logs. SCRAM needs the cargo feature `tls`.
    pub fn sasl(
        mut self,
        mechanism: SaslMechanism,
        username: impl Into<String>,
        password: impl Into<Secret>,
    ) -> Self {
        self.0.security.sasl = Some(SaslLogin {
            mechanism,
            username: username.into(),
            password: password.into(),
        });
        self
    }

    /// `client.id` reported to the brokers (default `waybill`).
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.0.client_id = id.into();
        self
    }

    /// How long a publish may take from send to confirm, retries included (default 30 s).
    /// Past it the publish fails as ambiguous.
    pub fn delivery_timeout(mut self, d: Duration) -> Self {
        self.0.delivery_timeout = d;
        self
    }

    /// Messages the producer may hold unconfirmed (default 10,000). A `publish` beyond it fails
    /// as not sent; a `publish_batch` larger than the room left waits for its own earlier
    /// messages' confirms, in order, and fails a message as not sent only when none of the
    /// batch is left to wait for.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.0.max_in_flight = n;
        self
    }

    /// Largest message accepted (default 1 MiB, the brokers' default).
    pub fn message_max_bytes(mut self, n: usize) -> Self {
        self.0.message_max_bytes = n;
        self
    }

    /// Consumer group session timeout (default 10 s): how long a dead consumer keeps its
    /// partitions.
    pub fn session_timeout(mut self, d: Duration) -> Self {
        self.0.session_timeout = d;
        self
    }

    /// How often stored offsets are committed (default 1 s); they are also committed on
    /// partition revoke and on close.
    pub fn commit_interval(mut self, d: Duration) -> Self {
        self.0.commit_interval = d;
        self
    }

    /// Retried copies a subscriber holds while waiting for their not-before time
    /// (default 10,000); beyond it, it stops taking records until the earliest is due, and its
    /// partitions pause as their records wait (polling goes on, so the member stays in its
    /// group).
    pub fn max_delayed(mut self, n: usize) -> Self {
        self.0.max_delayed = n;
        self
    }

    /// Any other librdkafka property (timeouts, buffers, OAUTHBEARER, ...). The properties
    /// waybill's guarantees depend on (`acks`, `enable.idempotence`, `partitioner`, offset
    /// handling, `group.id`, `bootstrap.servers`, `isolation.level`) are refused, and so are
    /// those the typed [`Self::tls`] and [`Self::sasl`] settings own (`security.protocol`,
    /// `sasl.mechanism`, `sasl.username`, `sasl.password`, `ssl.ca.location`, the client
    /// certificate and key, `ssl.endpoint.identification.algorithm`). Values of properties
    /// that look secret (`…password`, `…secret`, `…key…`, `…pem`) are masked in `Debug`.
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.0.properties.insert(key.into(), value.into());
        self
    }

    /// Validates.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first unusable setting.
    pub fn build(self) -> Result<KafkaConfig, ConfigError> {
        let c = self.0;
        if c.brokers.trim().is_empty() {
            return Err(ConfigError::new(
                "brokers",
                "at least one host:port is needed",
            ));
        }
        if let Some(key) = c.properties.keys().find(|k| RESERVED.contains(&k.as_str())) {
            return Err(ConfigError::new(
                "property",
                format!("{key} is set by waybill and cannot be overridden"),
            ));
        }
        if let Some(key) = c
            .properties
            .keys()
            .find(|k| TYPED_PROPERTIES.contains(&k.as_str()))
        {
            return Err(ConfigError::new(
                "property",
                format!("{key} is set through KafkaConfigBuilder::tls or ::sasl"),
            ));
        }
        c.security.check(&builtin_features())?;
        let checks = [
            (
                c.delivery_timeout.is_zero(),
                "delivery_timeout",
                "must be greater than zero",
            ),
            (c.max_in_flight == 0, "max_in_flight", "must be at least 1"),
            (
                !(1_000..=1_000_000_000).contains(&c.message_max_bytes),
                "message_max_bytes",
                "must be between 1000 and 1000000000",
            ),
            (
                c.session_timeout < Duration::from_secs(1),
                "session_timeout",
                "must be at least 1 s",
            ),
            (
                c.commit_interval.is_zero(),
                "commit_interval",
                "must be greater than zero",
            ),
            (c.max_delayed == 0, "max_delayed", "must be at least 1"),
        ];
        ConfigError::first_refused(checks)?;
        Ok(c)
    }
}
