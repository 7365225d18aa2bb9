//! Bad scenarios: refused before any message is sent with a clear error, or, when a fault
//! fails in the middle of a run, a verdict marked incomplete (exit 5) rather than a pass.

use std::process::Output;

use super::chaos_support::{run_named, verdict, RABBITMQ};
use super::private_postgres::{free_port, PrivatePostgres};

fn scenario(database: &str, broker: &str, tail: &str) -> String {
    let topic = format!(
        "wb-chaos-bad-{}",
        &waybill_core::MessageId::new().to_string()[28..]
    );
    format!(
        r#"name = "bad"
messages = 200
keys = 4
rate = 200

[database]
url = "{database}"

[broker]
url = "{broker}"
topic = "{topic}"
group = "{topic}-billing"
single_active_consumer = true

{tail}
"#
    )
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const RABBIT: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_scenarios_are_refused_before_anything_is_sent() {
    let postgres = PrivatePostgres::start();
    let url = postgres.url();
    // An unknown action: exit 2, nothing started.
    let (dir, out) = run_named(
        "unknown-action",
        scenario(
            &url,
            RABBIT,
            "[faults]\ncount = 1\nactions = [\"explode broker\"]",
        ),
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("unknown verb \"explode\""),
        "{}",
        stderr(&out)
    );
    assert!(!dir.join("out").exists(), "nothing was started");

    // A proxy port already taken: exit 1.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (_, out) = run_named(
        "port-taken",
        scenario(
            &url,
            RABBIT,
            &format!("[[proxy]]\nname = \"broker\"\nlisten = \"127.0.0.1:{port}\"\nupstream = \"127.0.0.1:5672\""),
        ),
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is the port taken"),
        "{}",
        stderr(&out)
    );

    // A fault command whose program does not exist: exit 1 before any message.
    let (_, out) = run_named(
        "missing-program",
        scenario(
            &url,
            RABBIT,
            "[[service]]\nname = \"x\"\nrestart = [\"/nonexistent/restart-it\"]\n[faults]\ncount = 1\nactions = [\"restart x\"]",
        ),
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));

    // A broker nobody answers on: exit 1 naming the broker, and no message in the ledger.
    let nowhere = format!("amqp://guest:guest@127.0.0.1:{}/%2f", free_port());
    let (_, out) = run_named("no-broker", scenario(&url, &nowhere, "")).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("broker:"), "{}", stderr(&out));
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let sent: i64 = sqlx::query_scalar("SELECT count(*) FROM waybill_chaos_sent")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(sent, 0, "nothing was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_command_that_fails_mid_run_makes_the_verdict_incomplete() {
    let _rabbitmq = RABBITMQ.lock().await;
    let postgres = PrivatePostgres::start();
    let (dir, out) = run_named(
        "failing-fault",
        scenario(
            &postgres.url(),
            RABBIT,
            "[[service]]\nname = \"broker\"\nstop = [\"false\"]\nstart = [\"true\"]\n\
             [faults]\ncount = 1\nfirst = \"200ms\"\nactions = [\"restart broker\"]",
        ),
    )
    .await;
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let verdict = verdict(&dir);
    assert_eq!(verdict["complete"], false);
    assert_eq!(verdict["passed"], false);
    let reason = verdict["incomplete"][0].as_str().unwrap();
    assert!(reason.contains("\"false\" failed"), "{reason}");
    // Nothing was lost meanwhile: the run itself went on.
    assert_eq!(verdict["lost"]["count"], 0);
}
