//! Command line, environment and TOML file (flags win, then environment, then file, then
//! defaults).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;
use waybill_outbox::{DeadFilter, RelayConfig};

use crate::secret_file::direct_or_file;
use waybill_core::secret::mask_url_password as masked_url;

/// waybill's command line for operators: relays the transactional outbox of a PostgreSQL,
/// SQLite or MySQL/MariaDB database to a broker and repairs it, redrives a consumer group's
/// dead letters on the broker, and checks what the broker's settings do to the guarantee.
///
/// Exit codes: 0 done; 1 an operation failed (a server unreachable or refusing); 2 invalid
/// usage or settings; 3 a filter matched nothing (or an audit window held no data), so nothing
/// was changed; 4 a check failed (a preflight FAIL, an audit gap above --max-gap, a chaos
/// verdict with violations); 5 a chaos run was incomplete.
#[derive(Debug, Parser)]
#[command(name = "waybill", version)]
pub struct Cli {
    /// Print JSON (an array of objects, or one object) instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Relay the outbox to the broker until SIGTERM or SIGINT (the sidecar).
    ///
    /// Every setting can also come from the environment (WAYBILL_DATABASE_URL, ...) or from
    /// the TOML file given with --config (keys as the long flags, with underscores). The URLs,
    /// which hold passwords, can be read from files instead (--database-url-file,
    /// --broker-url-file, WAYBILL_*_URL_FILE, *_url_file keys); passwords are masked in every
    /// message. On SIGTERM or SIGINT the batch in flight finishes, the shard leases are
    /// released and the process exits 0.
    Relay(RelayArgs),
    /// The outbox: apply the migrations, show the backlog, list, replay or purge dead rows.
    Outbox(OutboxArgs),
    /// A consumer group's dead letters on the broker: list, show, replay, purge.
    ///
    /// A replay sends each selected dead letter back to its group (or --to another topic)
    /// with its original id, the attempt count reset and a waybill-replayed-at header, and
    /// removes the dead letter only after the broker confirmed the copy: a replay that is
    /// killed can bring a message twice (an inbox drops the copy), never lose one. Replayed
    /// messages keep their order per key. RabbitMQ (amqp://, amqps://), Kafka (kafka://,
    /// kafkas://) and RocketMQ (rocketmq://, rocketmqs://).
    Dlq(DlqArgs),
    /// Keys a consumer group holds behind a dead message (key-holding dead letters): list
    /// them, or release one so that its later messages are handled again.
    ///
    /// The holds live in the group's inbox database (the same URL as its SQL idempotency
    /// store). A hold lifts by itself when its dead message is replayed and handled; release
    /// a key only to give that message up.
    Holds(HoldsArgs),
    /// Durability preflight: checks each topic's broker settings, PASS, WARN or FAIL with the
    /// reason and the fix; exits 4 when a check fails. Kafka (kafka://, kafkas://): replication,
    /// min.insync.replicas, unclean leader election. RabbitMQ (amqp://, amqps://), through the
    /// management HTTP API: cluster size, the exchange, and each bound queue's type,
    /// durability, replicas, delivery limit and dead-letter route.
    Preflight(PreflightArgs),
    /// Reconciliation: the messages the relay confirmed (its sent log, kept with
    /// --sent-log-retention-hours) against what each consumer group finished (its SQL
    /// inbox), per topic and group: sent, applied, dead-lettered, missing (not finished after
    /// --grace), unexpected (applied, never sent). Exits 4 when a group's gap, (missing +
    /// unexpected) / sent, is above --max-gap; 3 when the window holds no data. Reads only.
    Audit(AuditArgs),
    /// Chaos runs against your own stack: a scenario file (TOML) names the database, the
    /// broker, the relays, the consumers, fault proxies and the operator's restart commands,
    /// and a seeded fault schedule; the run sends the messages while the faults strike, then
    /// classifies every message from a ledger kept in the database: confirmed and lost,
    /// applied twice, applied but never sent, per-key order violations, recovered. Writes
    /// verdict.json and timeline.svg into --out. Exits 0 when the verdict passed, 4 when it
    /// found violations, 5 when the run was incomplete (a fault or the producer failed).
    Chaos(ChaosArgs),
}

/// `waybill chaos`.
#[derive(Debug, Args)]
pub struct ChaosArgs {
    #[command(subcommand)]
    pub command: ChaosCommand,
}

/// What `waybill chaos` does.
#[derive(Debug, Subcommand)]
pub enum ChaosCommand {
    /// Run a scenario and print its verdict.
    Run {
        /// The scenario file (TOML; see the README's "Prove it on your stack").
        scenario: PathBuf,
        /// Where the verdict, the timeline and the roles' logs are written.
        #[arg(long, default_value = "waybill-chaos")]
        out: PathBuf,
    },
    /// A consumer of a run (started by `chaos run`): a PerKey Processor with the PostgreSQL
    /// inbox whose handler records each effect in the run's ledger; stops when its standard
    /// input closes or on SIGTERM.
    #[command(hide = true)]
    Consume {
        /// The scenario file.
        scenario: PathBuf,
        /// The consumer's name.
        #[arg(long)]
        name: String,
    },
    /// The relay broken on purpose (deletes before the confirm), to prove the verdict.
    #[command(hide = true)]
    BrokenRelay {
        /// The scenario file.
        scenario: PathBuf,
    },
}

/// `waybill audit`: the databases, what to compare and the window.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The outbox database, which holds the sent log (and the inbox, unless
    /// --inbox-database-url names another).
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The consumer groups' inbox database, when it is not the outbox's.
    #[arg(long, env = "WAYBILL_INBOX_DATABASE_URL", hide_env_values = true)]
    pub inbox_database_url: Option<String>,
    /// A topic whose sent messages every --group must apply (repeatable).
    #[arg(long = "topic", required = true)]
    pub topics: Vec<String>,
    /// A consumer group to audit (repeatable).
    #[arg(long = "group", required = true)]
    pub groups: Vec<String>,
    /// The window's start: an RFC 3339 time (2026-12-04T10:00:00Z) or a time ago (90m, 2h,
    /// 7d).
    #[arg(long)]
    pub since: String,
    /// The window's end, as --since [default: now].
    #[arg(long)]
    pub until: Option<String>,
    /// How long after its confirm a message may still be unfinished without counting as
    /// missing (30s, 5m, 1h).
    #[arg(long, default_value = "5m")]
    pub grace: String,
    /// The largest gap that passes, a fraction (0.001) or a percentage (0.1%).
    #[arg(long, default_value = "0.1%")]
    pub max_gap: String,
    /// Also write the gauges waybill_audit_gap, waybill_audit_missing and
    /// waybill_audit_unexpected in Prometheus's text format to this file (for node_exporter's
    /// textfile collector); the file is replaced whole.
    #[arg(long)]
    pub prometheus_file: Option<PathBuf>,
}

/// `waybill holds`: the inbox database and the group.
#[derive(Debug, Args)]
pub struct HoldsArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The consumer group.
    #[arg(long, global = true)]
    pub group: Option<String>,
    #[command(subcommand)]
    pub command: HoldsCommand,
}

/// Key-hold commands.
#[derive(Debug, Subcommand)]
pub enum HoldsCommand {
    /// The group's held keys, oldest hold first.
    List {
        /// At most this many keys.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Lift the hold on a key: its later messages are handled again as they come (those
    /// already dead-lettered as held stay in the dead-letter queue until replayed).
    Release {
        /// The message key.
        #[arg(long)]
        key: String,
    },
}

/// `waybill preflight`: the broker and the topics to check.
#[derive(Debug, Args)]
pub struct PreflightArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// A topic to check (repeatable).
    #[arg(long = "topic", required = true)]
    pub topics: Vec<String>,
    /// RabbitMQ only: the management HTTP API, http://[USER:PASSWORD@]host:port, or
    /// https://…/?ca_file=PEM (the CA that signed its certificate, if not a public one)
    /// [default: the broker's host on port 15672 over http, with the broker URL's
    /// credentials]
    #[arg(long, env = "WAYBILL_MANAGEMENT_URL", hide_env_values = true)]
    pub management_url: Option<String>,
    /// RocketMQ only: a consumer group whose retry and dead-letter topics must exist
    /// (repeatable).
    #[arg(long = "group")]
    pub groups: Vec<String>,
}

/// Where the broker is, for the commands that talk to one without relaying.
#[derive(Debug, Args)]
pub struct BrokerArgs {
    /// amqp://... or amqps://... (RabbitMQ), kafka://host:port[,host:port] or kafkas://...
    /// (Kafka), rocketmq://host:port[;host:port] or rocketmqs://... (RocketMQ); see
    /// `waybill relay --help` for the options
    #[arg(
        long,
        global = true,
        env = "WAYBILL_BROKER_URL",
        hide_env_values = true
    )]
    pub broker_url: Option<String>,
    /// File holding the broker URL (a mounted secret; one trailing line break is ignored).
    #[arg(long, global = true, env = "WAYBILL_BROKER_URL_FILE")]
    pub broker_url_file: Option<PathBuf>,
}

impl BrokerArgs {
    /// The broker URL, from the flag, the environment or the file named.
    ///
    /// # Errors
    /// A message naming what is missing or unreadable.
    pub fn url(&mut self) -> Result<String, String> {
        direct_or_file(
            "broker_url",
            self.broker_url.take(),
            self.broker_url_file.take().as_deref(),
        )?
        .ok_or_else(|| {
            "broker_url is required (--broker-url, --broker-url-file, WAYBILL_BROKER_URL)".into()
        })
    }
}

/// `waybill dlq`: the broker, the topic and group, and what to do.
#[derive(Debug, Args)]
pub struct DlqArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// The topic the group consumes.
    #[arg(long, global = true)]
    pub topic: Option<String>,
    /// The consumer group whose dead letters these are.
    #[arg(long, global = true)]
    pub group: Option<String>,
    #[command(subcommand)]
    pub command: DlqCommand,
}

/// Dead-letter commands.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters, oldest first (nothing is removed).
    List {
        #[command(flatten)]
        filter: DeadLetterFlags,
    },
    /// Everything one dead letter holds: record, headers, payload.
    Show {
        /// The message id.
        #[arg(long)]
        id: waybill_core::MessageId,
    },
    /// Publish dead letters again, then remove them.
    Replay {
        #[command(flatten)]
        filter: DeadLetterFlags,
        /// Publish to this topic instead of the group's own queue.
        #[arg(long)]
        to: Option<String>,
        /// At most this many messages per second [default: as fast as confirms come].
        #[arg(long)]
        rate: Option<u32>,
        /// Show what would move; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Remove dead letters without replaying them (needs a filter or --all).
    Purge {
        #[command(flatten)]
        filter: DeadLetterFlags,
    },
}

/// Which dead letters.
#[derive(Debug, Args)]
pub struct DeadLetterFlags {
    /// Only this message id (repeatable).
    #[arg(long = "id")]
    pub ids: Vec<waybill_core::MessageId>,
    /// Only dead letters whose last failure was of this class: transient, permanent, panic or
    /// held (dead-lettered unhandled behind an earlier dead message of their key).
    #[arg(long)]
    pub error_class: Option<waybill_core::ErrorClass>,
    /// Only dead letters whose last failure is at least this many seconds old.
    #[arg(long)]
    pub older_than_secs: Option<u64>,
    /// At most this many (list: 100 unless given).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Every dead letter, also those without a record (required to purge without a filter).
    #[arg(long)]
    pub all: bool,
}

impl DeadLetterFlags {
    /// The library's filter.
    pub fn to_filter(&self) -> waybill_core::redrive::DeadLetterFilter {
        waybill_core::redrive::DeadLetterFilter {
            message_ids: self.ids.clone(),
            error_class: self.error_class,
            older_than: self.older_than_secs.map(Duration::from_secs),
            limit: self.limit,
            all: self.all,
        }
    }
}

impl DlqArgs {
    /// The broker URL (from the flag, the environment or the file named), the topic and the
    /// group.
    ///
    /// # Errors
    /// A message naming what is missing or unreadable.
    pub fn location(&mut self) -> Result<(String, String, String), String> {
        let url = self.broker.url()?;
        let topic = self.topic.take().ok_or("--topic is required")?;
        let group = self.group.take().ok_or("--group is required")?;
        Ok((url, topic, group))
    }
}

/// Where the database is (flags, environment or the TOML file).
#[derive(Debug, Default, Args)]
pub struct DatabaseArgs {
    /// TOML file with settings (database_url, broker_url, batch_size, ...).
    #[arg(long, global = true, env = "WAYBILL_CONFIG")]
    pub config: Option<PathBuf>,
    /// postgres://..., mysql://... (MySQL 8.0+, MariaDB 10.6+) or sqlite://path/to/file.db
    #[arg(
        long,
        global = true,
        env = "WAYBILL_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// File holding the database URL (a mounted secret; one trailing line break is ignored).
    #[arg(long, global = true, env = "WAYBILL_DATABASE_URL_FILE")]
    pub database_url_file: Option<PathBuf>,
}

/// `waybill relay`: the database, the broker and the relay's settings.
#[derive(Debug, Args)]
pub struct RelayArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub relay: RelayFlags,
}

/// `waybill outbox`: the database and what to do with its outbox.
#[derive(Debug, Args)]
pub struct OutboxArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(subcommand)]
    pub command: OutboxCommand,
}

/// Outbox commands.
#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// Apply the migrations and exit.
    Migrate,
    /// Pending and dead rows per topic, with the oldest pending age.
    Pending,
    /// Dead rows: list, replay or purge.
    #[command(subcommand)]
    Dead(DeadCommand),
}

/// Dead-row commands.
#[derive(Debug, Subcommand)]
pub enum DeadCommand {
    /// List dead rows (oldest first).
    List {
        #[command(flatten)]
        filter: FilterFlags,
        /// At most this many rows.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Make dead rows pending again with a fresh attempt count.
    Replay {
        #[command(flatten)]
        filter: FilterFlags,
    },
    /// Delete dead rows.
    Purge {
        #[command(flatten)]
        filter: FilterFlags,
    },
}

/// Which dead rows.
#[derive(Debug, Args)]
pub struct FilterFlags {
    /// Only this topic.
    #[arg(long)]
    pub topic: Option<String>,
    /// Only this message id (repeatable).
    #[arg(long = "id")]
    pub ids: Vec<waybill_core::MessageId>,
    /// Only rows dead for longer than this many seconds.
    #[arg(long)]
    pub older_than_secs: Option<u64>,
    /// Required to replay or purge without --topic or --id.
    #[arg(long)]
    pub all: bool,
}

impl FilterFlags {
    /// The filter, refusing an unfiltered change without --all.
    pub fn to_filter(&self, changes: bool) -> Result<DeadFilter, String> {
        if changes && !self.all && self.topic.is_none() && self.ids.is_empty() {
            return Err("name the rows with --topic or --id, or pass --all".into());
        }
        Ok(DeadFilter {
            topic: self.topic.clone(),
            ids: self.ids.clone(),
            older_than: self.older_than_secs.map(Duration::from_secs),
        })
    }
}

/// The relay's settings as flags (each optional: the file and the defaults fill in).
#[derive(Debug, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayFlags {
    /// amqp://... or amqps://... (RabbitMQ); kafka://host:port with more brokers after commas,
    /// USER:PASSWORD@ before the hosts for SASL, kafkas://... over TLS, options
    /// ?sasl_mechanism=SCRAM-SHA-512, ca_file, cert_file, key_file (Kafka); rocketmq://host:port
    /// with more name servers after semicolons, ACCESS_KEY:SECRET_KEY@ before them for ACL,
    /// rocketmqs://... over TLS (RocketMQ)
    #[arg(
        long,
        global = true,
        env = "WAYBILL_BROKER_URL",
        hide_env_values = true
    )]
    pub broker_url: Option<String>,
    /// File holding the broker URL (a mounted secret; one trailing line break is ignored).
    #[arg(long, global = true, env = "WAYBILL_BROKER_URL_FILE")]
    pub broker_url_file: Option<PathBuf>,
    /// Rows per batch [default: 500].
    #[arg(long, global = true, env = "WAYBILL_BATCH_SIZE")]
    pub batch_size: Option<usize>,
    /// Longest wait between polls in ms [default: 1000; PostgreSQL notifications wake sooner].
    #[arg(long, global = true, env = "WAYBILL_POLL_INTERVAL_MS")]
    pub poll_interval_ms: Option<u64>,
    /// Publish attempts before a row is dead [default: 10].
    #[arg(long, global = true, env = "WAYBILL_MAX_ATTEMPTS")]
    pub max_attempts: Option<u32>,
    /// Shards the keys hash into; the same on every relay of a database [default: 16].
    #[arg(long, global = true, env = "WAYBILL_SHARD_COUNT")]
    pub shard_count: Option<u32>,
    /// Shard lease time in ms [default: 30000].
    #[arg(long, global = true, env = "WAYBILL_LEASE_TTL_MS")]
    pub lease_ttl_ms: Option<u64>,
    /// Name leases are held under [default: generated, unique].
    #[arg(long, global = true, env = "WAYBILL_RELAY_NAME")]
    pub relay_name: Option<String>,
    /// Hours dead rows are kept; 0 keeps them until purged [default: 168].
    #[arg(long, global = true, env = "WAYBILL_DEAD_RETENTION_HOURS")]
    pub dead_retention_hours: Option<u64>,
    /// Hours the sent log keeps each confirmed message (id, topic, key, broker position) for
    /// `waybill audit`; 0 keeps no sent log [default: 0].
    #[arg(long, global = true, env = "WAYBILL_SENT_LOG_RETENTION_HOURS")]
    pub sent_log_retention_hours: Option<u64>,
    /// Seconds a row may wait for a destination (topic, exchange, queue) that does not exist
    /// yet before it is dead; its key waits meanwhile; 0 makes such rows dead at once
    /// [default: 3600].
    #[arg(long, global = true, env = "WAYBILL_DESTINATION_WAIT_SECS")]
    pub destination_wait_secs: Option<u64>,
    /// Key-holding dead rows: the rows of a key after a dead one stay pending until the dead
    /// row is replayed (`waybill outbox dead replay`) or purged, so a repaired row is
    /// published before its successors; dead rows are then never deleted by age [default:
    /// off, a dead row lets its key move on].
    #[arg(long, global = true, env = "WAYBILL_HOLD_KEYS")]
    #[serde(default)]
    pub hold_keys: bool,
    /// Address for /livez, /readyz (alias /healthz) and /metrics [default: 127.0.0.1:9464].
    #[arg(long, global = true, env = "WAYBILL_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Apply the migrations before relaying.
    #[arg(long, global = true, env = "WAYBILL_MIGRATE")]
    #[serde(default)]
    pub migrate: bool,
    /// Only in the file: the database URL.
    #[arg(skip)]
    #[serde(default)]
    pub database_url: Option<String>,
    /// Only in the file: a file holding the database URL.
    #[arg(skip)]
    #[serde(default)]
    pub database_url_file: Option<PathBuf>,
}

impl RelayFlags {
    /// Resolves `broker_url_file` and `database_url_file` into the URLs they hold.
    fn read_url_files(mut self) -> Result<Self, String> {
        self.broker_url = direct_or_file(
            "broker_url",
            self.broker_url.take(),
            self.broker_url_file.take().as_deref(),
        )?;
        self.database_url = direct_or_file(
            "database_url",
            self.database_url.take(),
            self.database_url_file.take().as_deref(),
        )?;
        Ok(self)
    }

    /// Fills every unset setting from `file` (whose URL files are read already).
    fn or(self, file: RelayFlags) -> Self {
        Self {
            broker_url: self.broker_url.or(file.broker_url),
            broker_url_file: None,
            batch_size: self.batch_size.or(file.batch_size),
            poll_interval_ms: self.poll_interval_ms.or(file.poll_interval_ms),
            max_attempts: self.max_attempts.or(file.max_attempts),
            shard_count: self.shard_count.or(file.shard_count),
            lease_ttl_ms: self.lease_ttl_ms.or(file.lease_ttl_ms),
            relay_name: self.relay_name.or(file.relay_name),
            dead_retention_hours: self.dead_retention_hours.or(file.dead_retention_hours),
            sent_log_retention_hours: self
                .sent_log_retention_hours
                .or(file.sent_log_retention_hours),
            destination_wait_secs: self.destination_wait_secs.or(file.destination_wait_secs),
            hold_keys: self.hold_keys || file.hold_keys,
            listen: self.listen.or(file.listen),
            migrate: self.migrate || file.migrate,
            database_url: self.database_url.or(file.database_url),
            database_url_file: None,
        }
    }
}

/// Everything a command needs, merged and validated.
pub struct Settings {
    pub database_url: String,
    pub broker_url: Option<String>,
    pub relay: RelayConfig,
    pub listen: SocketAddr,
    pub migrate: bool,
}

/// Which database a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatabaseKind {
    /// `postgres://` or `postgresql://`.
    Postgres,
    /// `sqlite:` (a file).
    Sqlite,
    /// `mysql://` or `mariadb://` (MySQL 8.0+ or MariaDB 10.6+).
    Mysql,
}

impl DatabaseKind {
    /// The database `url` names.
    ///
    /// # Errors
    /// A message listing the accepted schemes for any other URL (which it names with the
    /// password masked).
    pub fn of(url: &str) -> Result<Self, String> {
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme {
            "postgres" | "postgresql" => Ok(Self::Postgres),
            "sqlite" => Ok(Self::Sqlite),
            "mysql" | "mariadb" => Ok(Self::Mysql),
            _ => Err(format!(
                "unsupported database URL {:?}: use postgres://..., mysql://... or \
                 sqlite://path/to/file.db",
                masked_url(url)
            )),
        }
    }
}

impl DatabaseArgs {
    /// Merges these and the relay's flags and environment with the file, applies defaults and
    /// validates.
    pub fn settings(self, relay: RelayFlags) -> Result<Settings, String> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
                toml::from_str::<RelayFlags>(&text)
                    .map_err(|e| format!("invalid config file {}: {e}", path.display()))?
            }
            None => RelayFlags::default(),
        }
        .read_url_files()?;
        let given = RelayFlags {
            database_url: self.database_url,
            database_url_file: self.database_url_file,
            ..relay
        }
        .read_url_files()?;
        let flags = given.or(file);
        let database_url = flags.database_url.ok_or(
            "database_url is required (--database-url, --database-url-file, \
             WAYBILL_DATABASE_URL, WAYBILL_DATABASE_URL_FILE or the file)",
        )?;
        let mut relay = RelayConfig::builder();
        if let Some(n) = flags.batch_size {
            relay = relay.batch_size(n);
        }
        if let Some(ms) = flags.poll_interval_ms {
            relay = relay.poll_interval(Duration::from_millis(ms));
        }
        if let Some(n) = flags.max_attempts {
            relay = relay.max_attempts(n);
        }
        if let Some(n) = flags.shard_count {
            relay = relay.shard_count(n);
        }
        if let Some(ms) = flags.lease_ttl_ms {
            relay = relay.lease_ttl(Duration::from_millis(ms));
        }
        if let Some(name) = flags.relay_name {
            relay = relay.name(name);
        }
        if let Some(hours) = flags.dead_retention_hours {
            relay = relay.dead_retention((hours > 0).then(|| Duration::from_secs(hours * 3600)));
        }
        if let Some(hours) = flags.sent_log_retention_hours {
            relay =
                relay.sent_log_retention((hours > 0).then(|| Duration::from_secs(hours * 3600)));
        }
        if let Some(secs) = flags.destination_wait_secs {
            relay = relay.destination_wait(Duration::from_secs(secs));
        }
        if flags.hold_keys {
            relay = relay.dead_letter_mode(waybill_core::DeadLetterMode::HoldKey);
        }
        Ok(Settings {
            database_url,
            broker_url: flags.broker_url,
            relay: relay.build().map_err(|e| e.to_string())?,
            listen: flags
                .listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9464))),
            migrate: flags.migrate,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The settings `waybill relay ARGS` runs with.
    fn relay_settings(args: &[&str]) -> Result<Settings, String> {
        let cli = Cli::parse_from(["waybill", "relay"].iter().chain(args));
        match cli.command {
            Command::Relay(relay) => relay.database.settings(relay.relay),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn flags_win_over_the_file_and_defaults_fill_in() {
        let dir = std::env::temp_dir().join(format!("waybill-relay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("relay.toml");
        std::fs::write(
            &file,
            "database_url = \"sqlite://x.db\"\nbatch_size = 7\nshard_count = 4\n\
             destination_wait_secs = 90\nhold_keys = true\n",
        )
        .unwrap();
        let s =
            relay_settings(&["--config", file.to_str().unwrap(), "--shard-count", "8"]).unwrap();
        assert_eq!(s.database_url, "sqlite://x.db");
        assert!(!s.relay.name().is_empty());
        assert_eq!(s.relay.shard_count(), 8, "the flag wins over the file");
        assert_eq!(s.relay.batch_size(), 7, "the file fills in");
        assert_eq!(s.relay.destination_wait(), Duration::from_secs(90));
        assert_eq!(
            s.relay.dead_letter_mode(),
            waybill_core::DeadLetterMode::HoldKey
        );
        assert_eq!(s.listen.port(), 9464);
        let moving_on = relay_settings(&["--database-url", "sqlite://x.db"]).unwrap();
        assert_eq!(
            moving_on.relay.dead_letter_mode(),
            waybill_core::DeadLetterMode::MoveOn,
            "dead rows let their key move on unless asked"
        );
    }

    #[test]
    fn urls_come_from_files_named_by_flags_or_the_toml_file() {
        let dir = std::env::temp_dir().join(format!("waybill-relay-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let database = dir.join("database-url");
        std::fs::write(&database, "postgres://relay:from-file@db/shop\n").unwrap();
        let broker = dir.join("broker-url");
        std::fs::write(&broker, "amqps://relay:also-secret@mq/%2f\n").unwrap();
        let config = dir.join("relay.toml");
        std::fs::write(
            &config,
            format!(
                "database_url = \"sqlite://ignored.db\"\nbroker_url_file = {:?}\n",
                broker.display().to_string()
            ),
        )
        .unwrap();
        let s = relay_settings(&[
            "--config",
            config.to_str().unwrap(),
            "--database-url-file",
            database.to_str().unwrap(),
        ])
        .unwrap();
        assert_eq!(s.database_url, "postgres://relay:from-file@db/shop");
        assert_eq!(
            s.broker_url.as_deref(),
            Some("amqps://relay:also-secret@mq/%2f")
        );

        let missing = dir.join("no-such-file");
        let err = relay_settings(&["--database-url-file", missing.to_str().unwrap()])
            .err()
            .unwrap();
        assert!(err.contains("no-such-file"), "{err}");
    }

    #[test]
    fn an_unsupported_database_url_is_named_without_its_password() {
        let err = DatabaseKind::of("redis://app:hunter2@127.0.0.1").unwrap_err();
        assert!(err.contains("redis://app:***@127.0.0.1"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn database_urls_name_their_database() {
        let s = relay_settings(&["--database-url", "mysql://relay:secret@127.0.0.1:3306/shop"])
            .unwrap();
        assert_eq!(DatabaseKind::of(&s.database_url), Ok(DatabaseKind::Mysql));
        assert_eq!(
            DatabaseKind::of("mariadb://127.0.0.1/shop"),
            Ok(DatabaseKind::Mysql)
        );
        assert_eq!(
            DatabaseKind::of("postgresql://127.0.0.1/shop"),
            Ok(DatabaseKind::Postgres)
        );
        assert_eq!(
            DatabaseKind::of("sqlite://shop.db"),
            Ok(DatabaseKind::Sqlite)
        );
        let refused = DatabaseKind::of("redis://127.0.0.1").unwrap_err();
        assert!(refused.contains("mysql://"), "{refused}");
    }

    #[test]
    fn bad_values_are_refused_with_the_setting_named() {
        let err = relay_settings(&["--database-url", "x", "--batch-size", "0"])
            .err()
            .unwrap();
        assert!(err.contains("batch_size"), "{err}");
        assert!(Cli::try_parse_from(["waybill", "relay", "--batch-size", "lots"]).is_err());
        assert!(
            Cli::try_parse_from(["waybill", "outbox", "pending", "--batch-size", "5"]).is_err(),
            "relay settings are refused where they mean nothing"
        );
        let unfiltered = FilterFlags {
            topic: None,
            ids: vec![],
            older_than_secs: None,
            all: false,
        };
        assert!(unfiltered.to_filter(true).is_err());
        assert!(unfiltered.to_filter(false).is_ok());
    }
}
