//! `waybill chaos`: runs a chaos scenario against the operator's own stack and prints its
//! verdict; also the roles a run starts (`chaos consume`, and the relay broken on purpose).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use tokio::process::Command;
use waybill_chaos::roles::{serve_broken_relay, serve_consumer};
use waybill_chaos::{ChaosError, Scenario, Stack};
use waybill_core::Publisher;

use crate::broker::{create_topic, publisher_for, subscriber_for};
use crate::exit::{Failure, Outcome};
use crate::settings::{ChaosArgs, ChaosCommand};

/// Runs `waybill chaos …`.
pub async fn run(args: ChaosArgs, json: bool) -> Outcome {
    match args.command {
        ChaosCommand::Run { scenario, out } => run_scenario(&scenario, &out, json).await,
        ChaosCommand::Consume { scenario, name } => consume(&scenario, &name).await,
        ChaosCommand::BrokenRelay { scenario } => broken_relay(&scenario).await,
    }
}

async fn run_scenario(path: &Path, out: &Path, json: bool) -> Outcome {
    let scenario = Scenario::from_file(path).map_err(failure)?;
    let path = std::fs::canonicalize(path).map_err(|e| Failure::Usage(e.to_string()))?;
    let stack = Arc::new(CliStack {
        exe: std::env::current_exe().map_err(|e| e.to_string())?,
        scenario: path,
    });
    let verdict = waybill_chaos::run(&scenario, stack, out)
        .await
        .map_err(failure)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&verdict).map_err(|e| e.to_string())?
        );
    } else {
        print!("{verdict}");
        println!(
            "  written: {} and {}",
            out.join("verdict.json").display(),
            out.join("timeline.svg").display()
        );
    }
    if verdict.passed {
        Ok(())
    } else if verdict.violated() {
        Err(Failure::CheckFailed(
            "the verdict found violations of the guarantee".into(),
        ))
    } else {
        Err(Failure::Incomplete(
            "the run is incomplete: it proves nothing (see why above)".into(),
        ))
    }
}

fn failure(error: ChaosError) -> Failure {
    match error {
        ChaosError::Scenario(_) => Failure::Usage(error.to_string()),
        other => Failure::Failed(other.to_string()),
    }
}

/// The `waybill` program's own roles: relays are `waybill relay`, consumers `waybill chaos
/// consume`.
struct CliStack {
    exe: PathBuf,
    scenario: PathBuf,
}

#[async_trait]
impl Stack for CliStack {
    async fn publisher(&self, broker_url: &str) -> Result<Arc<dyn Publisher>, String> {
        publisher_for(broker_url).await.map_err(|f| f.to_string())
    }

    async fn create_topic(
        &self,
        broker_url: &str,
        topic: &str,
        partitions: u32,
        replication: u32,
    ) -> Result<(), String> {
        create_topic(broker_url, topic, partitions, replication)
            .await
            .map_err(|f| f.to_string())
    }

    fn relay(&self, scenario: &Scenario, name: &str) -> Command {
        let mut command = Command::new(&self.exe);
        if scenario.relays.broken.is_some() {
            command.arg("chaos").arg("broken-relay").arg(&self.scenario);
            return command;
        }
        // The URLs go through the environment, not the command line that `ps` shows.
        command
            .arg("relay")
            .args(["--listen", "127.0.0.1:0", "--relay-name", name])
            .args(["--lease-ttl-ms", "5000", "--poll-interval-ms", "250"])
            .args(&scenario.relays.args)
            .env("WAYBILL_DATABASE_URL", &scenario.database.url)
            .env("WAYBILL_BROKER_URL", &scenario.broker.url);
        command
    }

    fn consumer(&self, _scenario: &Scenario, name: &str) -> Command {
        let mut command = Command::new(&self.exe);
        command
            .args(["chaos", "consume", "--name", name])
            .arg(&self.scenario);
        command
    }
}

async fn consume(path: &Path, name: &str) -> Outcome {
    let scenario = Scenario::from_file(path).map_err(failure)?;
    let broker = &scenario.broker;
    let subscriber = subscriber_for(
        &broker.url,
        &broker.topic,
        &broker.group,
        broker.single_active_consumer,
    )
    .await?;
    let totals = serve_consumer(
        subscriber,
        &scenario.database.url,
        &broker.group,
        name,
        scenario.consumers.broken,
        stop_requested(),
    )
    .await
    .map_err(failure)?;
    tracing::info!(?totals, "consumer {name} stopped");
    Ok(())
}

async fn broken_relay(path: &Path) -> Outcome {
    let scenario = Scenario::from_file(path).map_err(failure)?;
    let publisher = publisher_for(&scenario.broker.url).await?;
    serve_broken_relay(
        publisher,
        &scenario.database.url,
        &scenario.broker.topic,
        stop_requested(),
    )
    .await
    .map_err(failure)
}

/// Completes on SIGTERM, SIGINT or when standard input closes (the runner's way to stop a
/// role).
async fn stop_requested() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let (closed, stdin_closed) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        let _ = closed.send(());
    });
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        _ = stdin_closed => {}
    }
}
