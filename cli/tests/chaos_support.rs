//! What the chaos scenarios share: the scenario text, running `waybill chaos run`, reading its
//! verdict.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use super::private_postgres::{free_port, PrivatePostgres};
use super::WAYBILL;

/// Taken by every test that uses RabbitMQ: some of them kill the broker.
pub static RABBITMQ: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// Taken by the tests that kill the Kafka-protocol broker, one at a time.
pub static KAFKA: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// Taken by the tests that kill the RocketMQ broker, one at a time.
pub static ROCKETMQ: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `scripts/brokers` of this workspace.
pub fn brokers_script() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/brokers").to_owned()
}

/// A TOML array of strings.
pub fn toml_array(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// A fresh output folder for run `name`.
pub fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "waybill-chaos-{name}-{}",
        &waybill_core::MessageId::new().to_string()[24..]
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `scenario` into `dir` and runs `waybill chaos run` on it.
pub fn run(dir: &Path, scenario: &str) -> Output {
    let file = dir.join("scenario.toml");
    std::fs::write(&file, scenario).unwrap();
    eprintln!("scenario {}:\n{scenario}", file.display());
    let output = Command::new(WAYBILL)
        .args(["chaos", "run"])
        .arg(&file)
        .arg("--out")
        .arg(dir.join("out"))
        .env("RUST_LOG", "warn,waybill_chaos=info")
        .output()
        .expect("run waybill chaos");
    eprintln!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs `scenario` as run `name` in a fresh output folder (on a blocking thread, so the test's
/// runtime goes on); the folder and how the run ended.
pub async fn run_named(name: &str, scenario: String) -> (PathBuf, Output) {
    let dir = out_dir(name);
    let output = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || run(&dir, &scenario)
    })
    .await
    .unwrap();
    (dir, output)
}

/// The verdict a run wrote.
pub fn verdict(dir: &Path) -> Value {
    let path = dir.join("out").join("verdict.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("{}: {e}", path.display());
    }))
    .unwrap()
}

/// The last lines of a role's log, for failure messages.
pub fn role_log(dir: &Path, role: &str) -> String {
    let text =
        std::fs::read_to_string(dir.join("out").join(format!("{role}.log"))).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// A broker's kill and start commands.
pub struct BrokerService {
    /// As in `scripts/brokers` (`rabbitmq`, `kafka`, `rocketmq`).
    pub name: &'static str,
    /// The broker's port on 127.0.0.1, put behind the proxy.
    pub port: u16,
    /// Its URL with `{addr}` where the proxy's address goes.
    pub url: &'static str,
    /// What `scripts/brokers kill` takes to kill it.
    pub kill: &'static str,
    /// Whether the clients reach it through the fault proxy. Kafka and RocketMQ clients learn
    /// the brokers' own addresses (advertised listeners, name server routes) and connect
    /// there, so a proxy in front of the bootstrap address would see almost none of their
    /// connections: their scenarios cut the database's connections only.
    pub proxied: bool,
}

impl BrokerService {
    /// Its `[[service]]` section: killed and started by `scripts/brokers`, each restart
    /// checked by `scripts/brokers pid`.
    pub fn service(&self) -> String {
        let script = brokers_script();
        let argv = |verb: &str, target: &str| {
            toml_array(&[script.clone(), verb.to_owned(), target.to_owned()])
        };
        format!(
            "[[service]]\nname = \"{}\"\nstop = {}\nstart = {}\npid = {}\n",
            self.name,
            argv("kill", self.kill),
            argv("start", self.name),
            argv("pid", self.kill),
        )
    }

    /// The local Kafka-protocol broker (tansu), reached directly.
    pub const KAFKA: Self = Self {
        name: "kafka",
        port: 9092,
        url: "kafka://{addr}",
        kill: "kafka",
        proxied: false,
    };
    /// The local RocketMQ broker (the name server stays up), reached directly.
    pub const ROCKETMQ: Self = Self {
        name: "rocketmq",
        port: 9876,
        url: "rocketmq://{addr}",
        kill: "rocketmq-broker",
        proxied: false,
    };
    /// The local RabbitMQ node, reached through the fault proxy (where a scenario has one).
    pub const RABBITMQ: Self = Self {
        name: "rabbitmq",
        port: 5672,
        url: "amqp://guest:guest@{addr}/%2f",
        kill: "rabbitmq",
        proxied: true,
    };
}

/// The CI scenario for `broker`: the outbox, the inbox and the ledger in a PostgreSQL cluster
/// of the test's own (so that restarting it disturbs no other suite), two relays and two
/// consumers reaching the database and the broker through fault proxies, 20,000 messages over
/// 100 keys, 12 faults drawn from broker kills, relay and consumer SIGKILLs, PostgreSQL
/// immediate restarts and connection cuts.
pub struct CiScenario {
    /// The database cluster (kept alive for the run).
    pub _postgres: PrivatePostgres,
    /// The scenario's text.
    pub text: String,
}

impl CiScenario {
    /// The scenario for `broker`, with `extra` lines added to `[broker]`.
    pub fn new(broker: &BrokerService, extra_broker: &str, rate: u32) -> Self {
        let postgres = PrivatePostgres::start();
        let (broker_proxy, database_proxy) = (free_port(), free_port());
        let broker_addr = if broker.proxied {
            format!("127.0.0.1:{broker_proxy}")
        } else {
            format!("127.0.0.1:{}", broker.port)
        };
        let cut_broker = if broker.proxied {
            ", \"cut broker\""
        } else {
            ""
        };
        let topic = format!(
            "wb-chaos-{}-{}",
            broker.name,
            &waybill_core::MessageId::new().to_string()[28..]
        );
        let restart_broker = format!("\"restart {}\", ", broker.name);
        let broker_service = broker.service();
        let text = format!(
            r#"name = "{name} with two relays and two consumers"
messages = 20000
keys = 100
rate = {rate}
drain_timeout = "5m"

[database]
url = "postgres://postgres@127.0.0.1:{database_proxy}/postgres"
ledger_url = "{ledger}"

[broker]
url = "{url}"
topic = "{topic}"
group = "{topic}-billing"
{extra_broker}

[producer]
mode = "outbox"
batch = 20

[relays]
count = 2

[consumers]
count = 2

[[proxy]]
name = "broker"
listen = "127.0.0.1:{broker_proxy}"
upstream = "127.0.0.1:{port}"

[[proxy]]
name = "database"
listen = "127.0.0.1:{database_proxy}"
upstream = "127.0.0.1:{pg_port}"

{broker_service}
[[service]]
name = "postgres"
restart = {restart_pg}

[faults]
seed = 20261205
count = 12
first = "3s"
gap = ["1s", "3s"]
down = ["1s", "3s"]
actions = [{restart_broker}"kill relay", "kill consumer", "restart postgres", "cut database"{cut_broker}]
"#,
            name = broker.name,
            ledger = postgres.url(),
            url = broker.url.replace("{addr}", &broker_addr),
            port = broker.port,
            pg_port = postgres.port,
            restart_pg = toml_array(&postgres.restart_immediately()),
        );
        Self {
            _postgres: postgres,
            text,
        }
    }
}

/// Asserts that the run passed, that every fault took effect, and that the schedule drew
/// every kind of fault, the kill and restart of `broker` among them.
pub fn assert_passed_with_every_fault(dir: &Path, output: &Output, broker: &str) {
    let verdict = verdict(dir);
    let faults = verdict["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 12, "{verdict:#}");
    for fault in faults {
        assert_eq!(fault["ok"], true, "fault failed: {fault}");
    }
    let done = |kind: &str| {
        faults
            .iter()
            .filter(|f| f["action"]["kind"] == kind)
            .map(|f| f["detail"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let kills = done("kill");
    assert!(
        !kills.is_empty() && kills.iter().all(|d| d.contains("SIGKILLed")),
        "{kills:?}"
    );
    let restarts: Vec<_> = faults
        .iter()
        .filter(|f| f["action"]["kind"] == "restart")
        .map(|f| f["action"]["service"].as_str().unwrap())
        .collect();
    assert!(
        restarts.contains(&broker),
        "the broker was killed: {restarts:?}"
    );
    assert!(
        restarts.contains(&"postgres"),
        "PostgreSQL restarted: {restarts:?}"
    );
    let cuts = done("proxy");
    assert!(
        cuts.iter().any(|d| !d.starts_with("0 connections cut")),
        "a cut reset open connections: {cuts:?}"
    );
    assert!(
        output.status.success(),
        "the verdict passed ({}): {verdict:#}\nconsumer-1:\n{}\nrelay-1:\n{}",
        output.status,
        role_log(dir, "consumer-1"),
        role_log(dir, "relay-1")
    );
    assert_eq!(verdict["passed"], true);
    assert_eq!(verdict["confirmed"], 20000);
    assert_eq!(verdict["delivered"], 20000);
}
