//! The harness catches what it claims: a consumer that acknowledges before its effect commits,
//! and a relay that deletes outbox rows before the broker confirmed them, each make the
//! verdict fail with lost messages (exit 4).

use super::chaos_support::{run_named, toml_array, verdict, RABBITMQ};
use super::private_postgres::{free_port, PrivatePostgres};

/// A small RabbitMQ scenario whose roles are broken as `broken` says, under `actions`.
fn scenario(postgres: &PrivatePostgres, broken: &str, actions: &[&str]) -> String {
    let proxy = free_port();
    let topic = format!(
        "wb-chaos-broken-{}",
        &waybill_core::MessageId::new().to_string()[28..]
    );
    let actions: Vec<String> = actions.iter().map(|a| (*a).to_owned()).collect();
    format!(
        r#"name = "broken on purpose"
messages = 3000
keys = 20
rate = 500
# What a broken role lost never comes: give up waiting soon.
drain_timeout = "15s"

[database]
url = "{url}"

[broker]
url = "amqp://guest:guest@127.0.0.1:{proxy}/%2f"
topic = "{topic}"
group = "{topic}-billing"
single_active_consumer = true

{broken}

[[proxy]]
name = "broker"
listen = "127.0.0.1:{proxy}"
upstream = "127.0.0.1:5672"

[faults]
seed = 5
count = 4
first = "1s"
gap = ["500ms", "1s"]
down = ["500ms", "1s"]
actions = {actions}
"#,
        url = postgres.url(),
        actions = toml_array(&actions),
    )
}

async fn run_broken(name: &str, text: String) -> serde_json::Value {
    let (dir, output) = run_named(name, text).await;
    let verdict = verdict(&dir);
    assert_eq!(
        output.status.code(),
        Some(4),
        "a broken {name} fails the verdict: {verdict:#}"
    );
    assert_eq!(verdict["passed"], false);
    assert_eq!(verdict["complete"], true, "{verdict:#}");
    assert!(
        verdict["lost"]["count"].as_u64().unwrap() > 0,
        "messages lost: {verdict:#}"
    );
    verdict
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_acks_before_its_effect_commits_fails_with_lost_messages() {
    let _rabbitmq = RABBITMQ.lock().await;
    let postgres = PrivatePostgres::start();
    let text = scenario(
        &postgres,
        "[consumers]\ncount = 2\nbroken = \"ack-before-commit\"",
        &["kill consumer"],
    );
    run_broken("consumer", text).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_deletes_before_the_confirm_fails_with_lost_messages() {
    let _rabbitmq = RABBITMQ.lock().await;
    let postgres = PrivatePostgres::start();
    let text = scenario(
        &postgres,
        "[relays]\ncount = 1\nbroken = \"delete-before-confirm\"",
        &["cut broker", "kill relay"],
    );
    run_broken("relay", text).await;
}
