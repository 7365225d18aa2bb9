//! Finding the RabbitMQ server the tests use, and the conformance target over it.

use std::time::Duration;

use waybill_rabbitmq::{RabbitConfig, RabbitPublisher, RabbitTarget};

use super::fault::{pid_from, run_checked, Restart};

/// The broker URL: `WAYBILL_RABBITMQ_URL`, or the local default.
pub fn url() -> String {
    std::env::var("WAYBILL_RABBITMQ_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// A config for tests: short retry tiers, so few queues per group.
pub fn config() -> RabbitConfig {
    RabbitConfig::builder(url())
        .retry_tiers([Duration::from_millis(250), Duration::from_secs(1)])
        .confirm_timeout(Duration::from_secs(15))
        .build()
        .expect("valid test config")
}

/// Fails the test with a clear message when no broker answers.
pub async fn require_broker() {
    if let Err(e) = RabbitPublisher::connect(config()).await {
        panic!(
            "RabbitMQ is not reachable at {} ({e}). Start it with `scripts/brokers start rabbitmq` \
             or point WAYBILL_RABBITMQ_URL at a running broker.",
            url()
        );
    }
}

/// The conformance target over the test server (it remembers what it declared, for
/// `cleanup`).
pub fn target() -> RabbitTarget {
    RabbitTarget::new(config())
}

/// Runs a `rabbitmqctl` command, failing the test with its output if it fails or takes over
/// 150 s (rabbitmqctl has no time limit of its own for most commands).
pub fn rabbitmqctl(args: &[&str]) {
    let out = bounded_rabbitmqctl(args);
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?} failed (exit status 124 is the 150 s bound): {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `rabbitmqctl` under coreutils' `timeout` (150 s) and returns what it printed.
fn bounded_rabbitmqctl(args: &[&str]) -> std::process::Output {
    std::process::Command::new("timeout")
        .arg("150")
        .arg("rabbitmqctl")
        .args(args)
        .output()
        .expect(
            "timeout (coreutils) and rabbitmqctl (Debian package rabbitmq-server) are installed",
        )
}

/// The command printing the RabbitMQ node's process id: WAYBILL_RABBITMQ_PID, or (unless
/// WAYBILL_RABBITMQ_KILL names a kill of your own) the oldest local `beam.smp` running rabbit.
fn pid_command() -> Option<String> {
    match (
        std::env::var("WAYBILL_RABBITMQ_PID"),
        std::env::var("WAYBILL_RABBITMQ_KILL"),
    ) {
        (Ok(command), _) => Some(command),
        (Err(_), Ok(_)) => None,
        (Err(_), Err(_)) => Some("pgrep -o -f '[b]eam.smp.*rabbit'".to_owned()),
    }
}

/// Restarts the rabbit application when RabbitMQ lost its dead-letter worker supervisor, as
/// `scripts/brokers start rabbitmq` does. RabbitMQ 3.10 loses it when a quorum queue with
/// at-least-once dead-lettering is deleted while it still recovers after a restart (the
/// worker crashes twice and the supervisor gives up); every such queue declared afterwards,
/// by any later test, then fails with INTERNAL_ERROR. Tests that restart the broker call this
/// after deleting their queues.
pub async fn heal_after_restart() {
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::task::spawn_blocking(|| {
        let out = bounded_rabbitmqctl(&["eval", "whereis(rabbit_fifo_dlx_sup)."]);
        if String::from_utf8_lossy(&out.stdout).trim() == "undefined" {
            eprintln!("RabbitMQ lost its dead-letter worker supervisor; restarting the app");
            rabbitmqctl(&["stop_app"]);
            rabbitmqctl(&["start_app"]);
            rabbitmqctl(&["await_startup"]);
        }
    })
    .await
    .unwrap();
}

/// Stops and starts the RabbitMQ application inside the running node, or runs the command in
/// WAYBILL_RABBITMQ_RESTART_APP instead. The node's process stays, so the proof holds no
/// process ids: the client seeing the outage is the proof.
pub async fn restart_app() -> Restart {
    if let Ok(command) = std::env::var("WAYBILL_RABBITMQ_RESTART_APP") {
        run_checked(&command).await;
    } else {
        tokio::task::spawn_blocking(|| {
            rabbitmqctl(&["stop_app"]);
            std::thread::sleep(Duration::from_secs(1));
            rabbitmqctl(&["start_app"]);
            rabbitmqctl(&["await_startup"]);
        })
        .await
        .unwrap();
    }
    Restart {
        fault: "stop_app and start_app of RabbitMQ".to_owned(),
        pids: None,
    }
}

/// SIGKILLs the broker's Erlang VM and returns its process id before the kill (when known),
/// for [`start_again`]. WAYBILL_RABBITMQ_KILL and WAYBILL_RABBITMQ_START replace the kill and
/// the start with commands of your own (WAYBILL_RABBITMQ_PID prints the process id).
pub async fn kill() -> Option<u32> {
    let before = match pid_command() {
        Some(command) => Some(pid_from(&command).await),
        None => None,
    };
    eprintln!("SIGKILL to the RabbitMQ node");
    match std::env::var("WAYBILL_RABBITMQ_KILL") {
        Ok(command) => drop(run_checked(&command).await),
        Err(_) => tokio::task::spawn_blocking(kill_node).await.unwrap(),
    }
    before
}

/// Starts the node killed by [`kill`], whose process id was `before`; returns the process ids
/// before and after.
pub async fn start_again(before: Option<u32>) -> Restart {
    match std::env::var("WAYBILL_RABBITMQ_START") {
        Ok(command) => drop(run_checked(&command).await),
        Err(_) => tokio::task::spawn_blocking(start_node).await.unwrap(),
    }
    let pids = match (pid_command(), before) {
        (Some(command), Some(before)) => Some((before, pid_from(&command).await)),
        _ => None,
    };
    Restart {
        fault: "SIGKILL and start of the RabbitMQ node".to_owned(),
        pids,
    }
}

/// SIGKILLs the local node's Erlang VM and waits until it is gone.
fn kill_node() {
    let status = std::process::Command::new("pkill")
        .args(["-9", "-f", "beam.smp.*rabbit"])
        .status()
        .expect("pkill");
    assert!(status.success(), "no RabbitMQ node to kill");
    for _ in 0..100 {
        let alive = std::process::Command::new("pgrep")
            .args(["-f", "beam.smp.*rabbit"])
            .status()
            .is_ok_and(|s| s.success());
        if !alive {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts the local node and waits until it runs.
fn start_node() {
    let status = std::process::Command::new("rabbitmq-server")
        .arg("-detached")
        .status()
        .expect("rabbitmq-server");
    assert!(status.success(), "rabbitmq-server -detached failed");
    std::thread::sleep(Duration::from_secs(2));
    rabbitmqctl(&["await_startup", "--timeout", "120"]);
}
