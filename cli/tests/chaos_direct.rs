//! Direct publishing through broker crashes, on each broker: the run's producer publishes
//! 10,000 messages over 50 keys itself (no outbox; a failed publish is retried with the same
//! ids until confirmed), one consumer applies them with the SQL inbox, and five faults strike:
//! the broker killed and started again (its process id must change); on RabbitMQ and RocketMQ
//! also the consumer SIGKILLed and started again (the one consumer must itself recover what it
//! held, with no other member to take over); on RabbitMQ also the application stopped and
//! started inside the running node. Nothing confirmed may be lost, no effect doubled, no key
//! reordered.

use std::path::Path;
use std::process::Output;

use waybill_chaos::{FaultSchedule, Scenario};

use super::chaos_support::{
    brokers_script, role_log, run_named, toml_array, verdict, BrokerService, KAFKA, RABBITMQ,
    ROCKETMQ,
};
use super::private_postgres::PrivatePostgres;

const MESSAGES: u64 = 10_000;

/// The scenario's text with `seed` in place.
struct DirectScenario {
    _postgres: PrivatePostgres,
    text: String,
    actions: Vec<String>,
}

impl DirectScenario {
    /// Direct publishing to `broker` with `extra_broker` lines in `[broker]`, and `services`
    /// (TOML) beside the broker's own, faults drawn from `actions`.
    fn new(broker: &BrokerService, extra_broker: &str, services: &str, actions: &[&str]) -> Self {
        let postgres = PrivatePostgres::start();
        let topic = format!(
            "wb-direct-{}-{}",
            broker.name,
            &waybill_core::MessageId::new().to_string()[28..]
        );
        let actions: Vec<String> = actions.iter().map(|a| (*a).to_owned()).collect();
        let text = format!(
            r#"name = "{name}: direct publishing, one consumer, broker and consumer crashes"
messages = {MESSAGES}
keys = 50
rate = 250
drain_timeout = "5m"

[database]
url = "{database}"

[broker]
url = "{url}"
topic = "{topic}"
group = "{topic}-billing"
{extra_broker}

[producer]
mode = "direct"
batch = 50

[relays]
count = 0

[consumers]
count = 1

{broker_service}{services}
[faults]
seed = SEED
count = 5
first = "3s"
gap = ["2s", "5s"]
down = ["1s", "3s"]
actions = {actions}
"#,
            name = broker.name,
            database = postgres.url(),
            url = broker
                .url
                .replace("{addr}", &format!("127.0.0.1:{}", broker.port)),
            broker_service = broker.service(),
            actions = toml_array(&actions),
        );
        Self {
            _postgres: postgres,
            text,
            actions,
        }
    }

    /// The text with the first seed whose schedule draws every action at least once (the
    /// schedule depends on the seed alone, so the run is as repeatable as any other).
    fn with_every_action(&self) -> String {
        (1..)
            .map(|seed| self.text.replace("SEED", &seed.to_string()))
            .find(|text| {
                let scenario = Scenario::from_toml(text).expect("a valid scenario");
                let drawn: Vec<String> = FaultSchedule::draw(&scenario)
                    .faults
                    .iter()
                    .map(|f| f.action.to_string())
                    .collect();
                self.actions.iter().all(|a| drawn.iter().any(|d| d == a))
            })
            .expect("a seed draws every action")
    }
}

/// Asserts that the run in `dir` passed with every fault taking effect: each restart of
/// `broker` replaced its process, each kill was a SIGKILL of the consumer.
fn judge(dir: &Path, output: &Output, broker: &str) {
    let verdict = verdict(dir);
    let faults = verdict["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 5, "{verdict:#}");
    for fault in faults {
        assert_eq!(fault["ok"], true, "fault failed: {fault}");
        let detail = fault["detail"].as_str().unwrap();
        match fault["action"]["kind"].as_str().unwrap() {
            "kill" => assert!(detail.contains("SIGKILLed"), "{fault}"),
            "restart" if fault["action"]["service"] == broker => {
                assert!(detail.contains("replaced by"), "{fault}")
            }
            _ => {}
        }
    }
    assert!(
        output.status.success(),
        "the verdict passed ({}): {verdict:#}\nconsumer-1:\n{}",
        output.status,
        role_log(dir, "consumer-1")
    );
    assert_eq!(verdict["passed"], true);
    assert_eq!(verdict["confirmed"], MESSAGES);
    assert_eq!(verdict["delivered"], MESSAGES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_direct_publishing_survives_broker_kills() {
    let _kafka = KAFKA.lock().await;
    let broker = BrokerService::KAFKA;
    // Broker kills only: tansu 0.6 does not reassign a killed member's partitions
    // (`tests/tests/kafka_tansu_deviations.rs`), and after a broker restart a group whose one
    // member was killed takes no new member (seen here: 7,841 of 10,000 left unapplied).
    let scenario = DirectScenario::new(&broker, "partitions = 4", "", &["restart kafka"]);
    let (dir, output) = run_named("kafka-direct", scenario.with_every_action()).await;
    judge(&dir, &output, "kafka");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rocketmq_direct_publishing_survives_broker_and_consumer_kills() {
    let _rocketmq = ROCKETMQ.lock().await;
    let broker = BrokerService::ROCKETMQ;
    let scenario = DirectScenario::new(
        &broker,
        "partitions = 4",
        "",
        &["restart rocketmq", "kill consumer-1"],
    );
    let (dir, output) = run_named("rocketmq-direct", scenario.with_every_action()).await;
    judge(&dir, &output, "rocketmq");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_direct_publishing_survives_node_kills_app_restarts_and_consumer_kills() {
    let _rabbitmq = RABBITMQ.lock().await;
    let broker = BrokerService::RABBITMQ;
    // The application stopped and started inside the running node: connections are closed
    // by the broker, the node's process stays.
    let app_restart = "rabbitmqctl stop_app && sleep 1 && rabbitmqctl start_app \
                       && rabbitmqctl await_startup";
    let services = format!(
        "\n[[service]]\nname = \"rabbitmq-app\"\nrestart = {}\n",
        toml_array(&["bash".into(), "-c".into(), app_restart.into()])
    );
    let scenario = DirectScenario::new(
        &broker,
        "",
        &services,
        &[
            "restart rabbitmq",
            "restart rabbitmq-app",
            "kill consumer-1",
        ],
    );
    let (dir, output) = run_named("rabbitmq-direct", scenario.with_every_action()).await;
    // Whatever the verdict, leave RabbitMQ healthy for the suites after this one.
    let healed = std::process::Command::new(brokers_script())
        .args(["start", "rabbitmq"])
        .status()
        .expect("run scripts/brokers");
    assert!(healed.success(), "scripts/brokers start rabbitmq failed");
    judge(&dir, &output, "rabbitmq");
}
