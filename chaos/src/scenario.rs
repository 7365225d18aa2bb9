//! The scenario file: what runs, how much is sent, and which faults strike.
//!
//! ```toml
//! name = "rabbitmq"
//! messages = 20000
//! keys = 50
//! rate = 400                       # messages per second written by the producer
//! drain_timeout = "5m"             # how long the consumers may take to catch up at the end
//!
//! [database]                       # the outbox, the consumers' inbox and the ledger
//! url = "postgres://postgres@127.0.0.1:15432/chaos"
//!
//! [broker]
//! url = "amqp://guest:guest@127.0.0.1:15672/%2f"
//! topic = "chaos.orders"
//! group = "chaos-billing"
//!
//! [producer]
//! mode = "outbox"                  # or "direct": publish and wait for the broker's confirm
//!
//! [relays]
//! count = 2
//!
//! [consumers]
//! count = 2
//!
//! [[proxy]]
//! name = "broker"
//! listen = "127.0.0.1:15672"
//! upstream = "127.0.0.1:5672"
//!
//! [[service]]
//! name = "rabbitmq"
//! stop = ["scripts/brokers", "kill", "rabbitmq"]
//! start = ["scripts/brokers", "start", "rabbitmq"]
//!
//! [faults]
//! seed = 7
//! count = 12
//! actions = ["restart rabbitmq", "kill relay", "kill consumer", "cut broker", "latency broker"]
//! ```
//!
//! Fault actions are `verb target`: `kill relay`, `kill consumer` or `kill <role name>`
//! (`relay-1`, `consumer-2`: SIGKILL, started again after the fault's down time); `restart
//! <service>` (the service's `restart` command, or `stop`, the down time, then `start`); and,
//! on a proxy, `cut` (every connection reset and new ones refused for the down time),
//! `refuse`, `blackhole`, `latency` (the proxy's `latency`) or `half-close`. Anything else is
//! refused when the file is read, before anything runs.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::roles::{ConsumerBreakage, RelayBreakage};
use crate::ChaosError;

/// A chaos run's description, read from TOML ([`Scenario::from_toml`]) and checked.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Shown in the verdict and the picture.
    pub name: String,
    /// Messages the producer sends.
    pub messages: u64,
    /// Keys they are spread over, round-robin; each key's messages carry ascending sequence
    /// numbers, the order the verdict checks.
    pub keys: u32,
    /// Messages per second the producer writes (or publishes); unlimited when absent.
    #[serde(default)]
    pub rate: Option<u32>,
    /// How long the consumers may take, after the last message was sent and the last fault
    /// healed, to apply everything confirmed [default: 5 minutes].
    #[serde(default = "default_drain_timeout", deserialize_with = "duration")]
    pub drain_timeout: Duration,
    /// The PostgreSQL database.
    pub database: DatabaseSection,
    /// The broker and its destination.
    pub broker: BrokerSection,
    /// How messages are sent.
    #[serde(default)]
    pub producer: ProducerSection,
    /// The outbox relays (`waybill relay` processes).
    #[serde(default)]
    pub relays: RoleSection<RelayBreakage>,
    /// The consumers (`waybill chaos consume` processes: a Processor with the PostgreSQL inbox
    /// whose handler writes the ledger).
    #[serde(default)]
    pub consumers: RoleSection<ConsumerBreakage>,
    /// Fault proxies.
    #[serde(default, rename = "proxy")]
    pub proxies: Vec<ProxySection>,
    /// Services the faults may restart, by the operator's own commands.
    #[serde(default, rename = "service")]
    pub services: Vec<ServiceSection>,
    /// The fault schedule.
    #[serde(default)]
    pub faults: FaultsSection,
}

/// `[database]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSection {
    /// `postgres://…`: the outbox, the inbox and the ledger. Relays and consumers use it as
    /// written (point it at a proxy to put the database's connections under faults); the run
    /// itself uses `ledger_url` when given.
    pub url: String,
    /// Where the runner writes and reads the ledger, when `url` goes through a proxy that the
    /// faults cut (the ledger's own writes should not be the ones cut) [default: `url`].
    #[serde(default)]
    pub ledger_url: Option<String>,
}

/// `[broker]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSection {
    /// The broker URL, as `waybill relay --broker-url` takes it.
    pub url: String,
    /// The topic (Kafka, RocketMQ) or exchange (RabbitMQ) the messages go to.
    pub topic: String,
    /// The consumers' group.
    pub group: String,
    /// RabbitMQ only: declare the group's queue with a single active consumer (the others
    /// stand by), which per-key order with several consumers in a group needs on RabbitMQ;
    /// competing consumers share keys [default: false].
    #[serde(default)]
    pub single_active_consumer: bool,
    /// Kafka and RocketMQ: create the topic before the run, with this many partitions
    /// (queues), when it does not exist [default: the topic must exist].
    #[serde(default)]
    pub partitions: Option<u32>,
    /// Kafka: the replication factor of a topic created with `partitions` [default: 1].
    #[serde(default = "one")]
    pub replication: u32,
}

/// How the producer sends.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProducerMode {
    /// Business transactions write the outbox (and the ledger) in PostgreSQL; the relays publish.
    #[default]
    Outbox,
    /// The runner publishes each message itself and records it as confirmed once the broker
    /// confirms it; a publish that fails is retried with the same id.
    Direct,
}

/// `[producer]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerSection {
    /// Outbox or direct.
    #[serde(default)]
    pub mode: ProducerMode,
    /// Messages per transaction (outbox) or per batch publish (direct) [default: 20].
    #[serde(default = "default_batch")]
    pub batch: u32,
}

impl Default for ProducerSection {
    fn default() -> Self {
        Self {
            mode: ProducerMode::default(),
            batch: default_batch(),
        }
    }
}

/// `[relays]` or `[consumers]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "B: Deserialize<'de>"))]
pub struct RoleSection<B> {
    /// How many processes [default: 1].
    #[serde(default = "one")]
    pub count: u32,
    /// Extra arguments given to each process (`waybill relay` flags for relays).
    #[serde(default)]
    pub args: Vec<String>,
    /// Only to prove the harness: run a role broken on purpose (`delete-before-confirm` for
    /// relays, `ack-before-commit` for consumers), whose run must then fail.
    #[serde(default)]
    pub broken: Option<B>,
}

impl<B> Default for RoleSection<B> {
    fn default() -> Self {
        Self {
            count: 1,
            args: Vec::new(),
            broken: None,
        }
    }
}

/// `[[proxy]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySection {
    /// Named by fault actions (`cut broker`).
    pub name: String,
    /// Where clients connect: the address to write in the URLs above.
    pub listen: SocketAddr,
    /// The real server.
    pub upstream: SocketAddr,
    /// The delay a `latency` fault adds to each chunk [default: 300 ms].
    #[serde(default = "default_latency", deserialize_with = "duration")]
    pub latency: Duration,
}

/// `[[service]]`: a server the faults restart with the operator's commands.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSection {
    /// Named by fault actions (`restart rabbitmq`).
    pub name: String,
    /// Stops (kills) the service; run at the fault's start.
    #[serde(default)]
    pub stop: Option<Vec<String>>,
    /// Starts it again; run after the fault's down time. Must return once the service
    /// accepts connections (or the run waits for its clients to reconnect).
    #[serde(default)]
    pub start: Option<Vec<String>>,
    /// Restarts it in one command (`pg_ctlcluster 15 main restart -m immediate`), instead of
    /// `stop` and `start`.
    #[serde(default)]
    pub restart: Option<Vec<String>>,
    /// Prints the service's process id (`scripts/brokers pid kafka`). When given, it runs
    /// before and after each restart, and a restart that leaves the same process running
    /// (a stop command that did nothing) fails the fault, so the verdict is incomplete.
    #[serde(default)]
    pub pid: Option<Vec<String>>,
}

/// `[faults]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsSection {
    /// The seed the schedule is drawn from: the same seed gives the same schedule.
    #[serde(default)]
    pub seed: u64,
    /// Faults drawn from `actions`.
    #[serde(default)]
    pub count: u32,
    /// The actions drawn from (each as likely as the others).
    #[serde(default)]
    pub actions: Vec<String>,
    /// When the first fault strikes, from the first message [default: 3 s].
    #[serde(default = "default_first", deserialize_with = "duration")]
    pub first: Duration,
    /// The pause between one fault's end and the next one's start, drawn between these two
    /// [default: 2 s and 5 s].
    #[serde(default = "default_gap", deserialize_with = "duration_range")]
    pub gap: [Duration; 2],
    /// How long a fault lasts (a killed role or a stopped service stays down, a proxy fault
    /// stays in force), drawn between these two [default: 1 s and 4 s].
    #[serde(default = "default_down", deserialize_with = "duration_range")]
    pub down: [Duration; 2],
}

impl Default for FaultsSection {
    fn default() -> Self {
        Self {
            seed: 0,
            count: 0,
            actions: Vec::new(),
            first: default_first(),
            gap: default_gap(),
            down: default_down(),
        }
    }
}

impl Scenario {
    /// Reads and checks the scenario file at `path`.
    ///
    /// # Errors
    /// [`ChaosError::Scenario`] when the file cannot be read or [`Scenario::from_toml`] refuses
    /// it.
    pub fn from_file(path: &Path) -> Result<Self, ChaosError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ChaosError::Scenario(format!("cannot read {}: {e}", path.display())))?;
        Self::from_toml(&text).map_err(|e| ChaosError::Scenario(format!("{}: {e}", path.display())))
    }

    /// Parses and checks a scenario.
    ///
    /// # Errors
    /// A message naming the problem: invalid TOML, an unknown key, a missing field, an invalid
    /// duration, no messages or keys, a relay count of 0 with the outbox producer, no
    /// consumer, two proxies or services of one name, a service without commands, a fault
    /// action with an unknown verb or target.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let scenario: Scenario = toml::from_str(text).map_err(|e| e.to_string())?;
        scenario.check()?;
        Ok(scenario)
    }

    fn check(&self) -> Result<(), String> {
        if self.messages == 0 || self.keys == 0 {
            return Err("messages and keys must be at least 1".into());
        }
        if self.rate == Some(0) || self.producer.batch == 0 {
            return Err("rate and producer.batch must be at least 1".into());
        }
        if self.producer.mode == ProducerMode::Outbox && self.relays.count == 0 {
            return Err("the outbox producer needs at least one relay ([relays] count)".into());
        }
        if self.consumers.count == 0 {
            return Err("at least one consumer is needed ([consumers] count)".into());
        }
        if !self.database.url.starts_with("postgres://")
            && !self.database.url.starts_with("postgresql://")
        {
            return Err("database.url must be a postgres:// URL (the ledger lives there)".into());
        }
        if self.broker.single_active_consumer && !self.broker.url.starts_with("amqp") {
            return Err(
                "broker.single_active_consumer is a RabbitMQ setting (amqp:// URLs)".into(),
            );
        }
        if self.broker.partitions.is_some() && self.broker.url.starts_with("amqp") {
            return Err("broker.partitions is for Kafka and RocketMQ topics".into());
        }
        if self.broker.partitions == Some(0) || self.broker.replication == 0 {
            return Err("broker.partitions and broker.replication must be at least 1".into());
        }
        unique("proxy", self.proxies.iter().map(|p| p.name.as_str()))?;
        unique("service", self.services.iter().map(|s| s.name.as_str()))?;
        for service in &self.services {
            let has = |c: &Option<Vec<String>>| c.as_ref().is_some_and(|c| !c.is_empty());
            let stop_and_start = has(&service.stop) && has(&service.start);
            if !(has(&service.restart) || stop_and_start) {
                return Err(format!(
                    "service {:?} needs a restart command, or both stop and start",
                    service.name
                ));
            }
            if service.pid.as_ref().is_some_and(Vec::is_empty) {
                return Err(format!(
                    "service {:?}: pid is an empty command",
                    service.name
                ));
            }
        }
        if self.faults.count > 0 && self.faults.actions.is_empty() {
            return Err("faults.count is set but faults.actions is empty".into());
        }
        for range in [&self.faults.gap, &self.faults.down] {
            if range[0] > range[1] {
                return Err(format!("the range {range:?} ends before it starts"));
            }
        }
        for action in &self.faults.actions {
            crate::schedule::ActionTemplate::parse(action, self)?;
        }
        Ok(())
    }

    /// The relays' names: `relay-1`, `relay-2`, …
    pub fn relay_names(&self) -> Vec<String> {
        (1..=self.relays_running())
            .map(|i| format!("relay-{i}"))
            .collect()
    }

    /// The consumers' names: `consumer-1`, `consumer-2`, …
    pub fn consumer_names(&self) -> Vec<String> {
        (1..=self.consumers.count)
            .map(|i| format!("consumer-{i}"))
            .collect()
    }

    fn relays_running(&self) -> u32 {
        match self.producer.mode {
            ProducerMode::Outbox => self.relays.count,
            ProducerMode::Direct => 0,
        }
    }

    /// Where the runner keeps the ledger.
    pub fn ledger_url(&self) -> &str {
        self.database
            .ledger_url
            .as_deref()
            .unwrap_or(&self.database.url)
    }
}

fn unique<'a>(what: &str, names: impl Iterator<Item = &'a str>) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(format!("two of the {what}s are named {name:?}"));
        }
    }
    Ok(())
}

fn default_drain_timeout() -> Duration {
    Duration::from_secs(300)
}

fn default_batch() -> u32 {
    20
}

fn one() -> u32 {
    1
}

fn default_latency() -> Duration {
    Duration::from_millis(300)
}

fn default_first() -> Duration {
    Duration::from_secs(3)
}

fn default_gap() -> [Duration; 2] {
    [Duration::from_secs(2), Duration::from_secs(5)]
}

fn default_down() -> [Duration; 2] {
    [Duration::from_secs(1), Duration::from_secs(4)]
}

/// A duration written as humantime text: `"300ms"`, `"5s"`, `"2m"`.
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text)
        .map_err(|e| serde::de::Error::custom(format!("invalid duration {text:?}: {e}")))
}

/// Two durations, `["1s", "4s"]`.
fn duration_range<'de, D: Deserializer<'de>>(d: D) -> Result<[Duration; 2], D::Error> {
    let [from, to] = <[String; 2]>::deserialize(d)?;
    let parse = |text: &str| {
        humantime::parse_duration(text)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {text:?}: {e}")))
    };
    Ok([parse(&from)?, parse(&to)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_scenarios_are_valid() {
        for (name, text) in [
            ("rabbitmq", include_str!("../scenarios/rabbitmq.toml")),
            ("kafka", include_str!("../scenarios/kafka.toml")),
            ("rocketmq", include_str!("../scenarios/rocketmq.toml")),
        ] {
            let scenario = Scenario::from_toml(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(scenario.name, name);
            assert_eq!(scenario.faults.count, 12);
            assert_eq!(scenario.messages, 20_000);
        }
    }

    #[test]
    fn invalid_settings_are_named() {
        let base = include_str!("../scenarios/kafka.toml");
        for (change, expected) in [
            (("messages = 20000", "messages = 0"), "messages and keys"),
            (
                ("[relays]\ncount = 2", "[relays]\ncount = 0"),
                "needs at least one relay",
            ),
            (
                (
                    "postgres://postgres@127.0.0.1:15432",
                    "mysql://root@127.0.0.1:3306",
                ),
                "postgres:// URL",
            ),
            (
                (
                    "group = \"chaos-billing\"",
                    "group = \"g\"\nsingle_active_consumer = true",
                ),
                "RabbitMQ setting",
            ),
            (
                ("restart = [\"pg_ctlcluster\"", "stop = [\"pg_ctlcluster\""),
                "needs a restart command",
            ),
        ] {
            let text = base.replacen(change.0, change.1, 1);
            assert_ne!(text, base, "{change:?}");
            let error = Scenario::from_toml(&text).unwrap_err();
            assert!(error.contains(expected), "{change:?}: {error}");
        }
    }
}
