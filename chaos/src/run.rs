//! A whole run: check what can be checked before the first message, start the roles, send the
//! messages while the schedule's faults strike, wait for the consumers to catch up, judge the
//! ledger and write the verdict and its picture.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::PgPool;
use tokio::process::Command;
use tokio::sync::Mutex;
use waybill_core::{MessageId, Publisher};

use crate::dead::dead_messages;
use crate::faults::{strike, Targets};
use crate::process::RoleProcess;
use crate::producer::produce;
use crate::proxy::FaultProxy;
use crate::roles::connect;
use crate::scenario::{ProducerMode, Scenario};
use crate::schedule::FaultSchedule;
use crate::timeline::{svg, Series};
use crate::verdict::{FaultRecord, Verdict};
use crate::{ledger, ChaosError};

/// How long the broker may take to answer the reachability check at start.
const BROKER_CHECK_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the run waits, once everything confirmed was applied, for late duplicates.
const SETTLE: Duration = Duration::from_secs(3);

/// What the runner needs from the program that embeds it: the broker clients and the commands
/// of the roles (the `waybill` command line wires the three backends here).
#[async_trait]
pub trait Stack: Send + Sync {
    /// A confirmed publisher to `broker_url`: the reachability check before the run, and the
    /// direct producer.
    async fn publisher(&self, broker_url: &str) -> Result<Arc<dyn Publisher>, String>;

    /// Creates `topic` with `partitions` partitions (queues) and `replication` replicas when it
    /// does not exist (Kafka, RocketMQ).
    async fn create_topic(
        &self,
        broker_url: &str,
        topic: &str,
        partitions: u32,
        replication: u32,
    ) -> Result<(), String>;

    /// The command that runs relay `name` of `scenario` (it must relay the scenario's outbox
    /// to its broker until SIGTERM).
    fn relay(&self, scenario: &Scenario, name: &str) -> Command;

    /// The command that runs consumer `name` of `scenario`: it must print
    /// [`crate::roles::READY_LINE`] once consuming, and record each effect with
    /// [`ledger::record_applied_in`] (as [`crate::roles::serve_consumer`] does).
    fn consumer(&self, scenario: &Scenario, name: &str) -> Command;
}

/// Runs `scenario`, writing the roles' logs, `verdict.json` and `timeline.svg` into `out_dir`.
///
/// # Errors
/// Before the first message: the output folder cannot be created, a proxy cannot listen, the
/// database or the broker cannot be reached, a fault command's program does not exist, a role
/// does not start. A run that started always ends with a verdict (incomplete when a fault or
/// the producer failed), unless the ledger cannot be read at the end.
pub async fn run(
    scenario: &Scenario,
    stack: Arc<dyn Stack>,
    out_dir: &Path,
) -> Result<Verdict, ChaosError> {
    std::fs::create_dir_all(out_dir)
        .map_err(|e| ChaosError::Output(format!("{}: {e}", out_dir.display())))?;
    let schedule = FaultSchedule::draw(scenario);
    check_commands(scenario)?;
    let mut proxies = HashMap::new();
    for p in &scenario.proxies {
        proxies.insert(
            p.name.clone(),
            (FaultProxy::start(p.listen, p.upstream).await?, p.latency),
        );
    }
    let pool = connect(scenario.ledger_url(), 4).await?;
    waybill_outbox::postgres::migrate(&pool)
        .await
        .map_err(|e| ChaosError::Database(format!("applying the outbox migrations: {e}")))?;
    ledger::migrate(&pool).await?;
    let publisher =
        tokio::time::timeout(BROKER_CHECK_TIMEOUT, stack.publisher(&scenario.broker.url))
            .await
            .map_err(|_| ChaosError::Broker(format!("no answer within {BROKER_CHECK_TIMEOUT:?}")))?
            .map_err(ChaosError::Broker)?;
    if let Some(partitions) = scenario.broker.partitions {
        let broker = &scenario.broker;
        stack
            .create_topic(&broker.url, &broker.topic, partitions, broker.replication)
            .await
            .map_err(|e| ChaosError::Broker(format!("creating topic {}: {e}", broker.topic)))?;
    }
    let publisher = match scenario.producer.mode {
        ProducerMode::Direct => Some(publisher),
        ProducerMode::Outbox => {
            let _ = publisher.close().await;
            None
        }
    };
    let run_id = MessageId::new().to_string();
    tracing::info!(%run_id, faults = schedule.faults.len(), "starting the roles");
    let targets = Arc::new(Targets {
        roles: start_roles(scenario, &stack, out_dir).await?,
        proxies,
        services: scenario
            .services
            .iter()
            .map(|s| (s.name.clone(), s.clone()))
            .collect(),
    });
    let start_ms = database_now_ms(&pool).await?;
    let origin = Instant::now();
    let (stop_supervisor, supervisor_stopped) = tokio::sync::oneshot::channel();
    let supervisor = tokio::spawn(supervise(Arc::clone(&targets), supervisor_stopped));
    let (produced, faults) = tokio::join!(
        produce(scenario, &run_id, &pool, publisher.clone()),
        drive_faults(&schedule, &targets, origin),
    );
    let mut remarks = Vec::new();
    let mut incomplete = Vec::new();
    if let Some(reason) = produced.gave_up {
        incomplete.push(format!(
            "the producer stopped after {} of {} messages: {reason}",
            produced.sent, scenario.messages
        ));
    }
    if produced.retries > 0 {
        remarks.push(format!("the producer retried {} times", produced.retries));
    }
    remarks.extend(drain(&pool, &run_id, scenario).await);
    tokio::time::sleep(SETTLE).await;
    let _ = stop_supervisor.send(());
    remarks.extend(supervisor.await.unwrap_or_default());
    for (name, role) in &targets.roles {
        let ended = role.lock().await.stop(Duration::from_secs(30)).await;
        tracing::info!(role = %name, %ended, "stopped");
    }
    if let Some(publisher) = publisher {
        let _ = publisher.close().await;
    }
    let rows = ledger::read(&pool, &run_id, dead_messages(&pool, scenario).await).await?;
    let mut verdict = Verdict::judge(
        &scenario.name,
        &run_id,
        scenario.faults.seed,
        &rows,
        faults.clone(),
        incomplete,
    );
    verdict.remarks = remarks;
    verdict.duration_s = origin.elapsed().as_secs_f64();
    let picture = svg(
        &format!(
            "{} — seed {} — {}",
            scenario.name,
            scenario.faults.seed,
            if verdict.passed { "passed" } else { "FAILED" }
        ),
        &Series::of(&rows, start_ms),
        &faults,
    );
    write(out_dir.join("timeline.svg"), picture)?;
    let json =
        serde_json::to_string_pretty(&verdict).map_err(|e| ChaosError::Output(e.to_string()))?;
    write(out_dir.join("verdict.json"), json)?;
    Ok(verdict)
}

/// Every fault command's program exists (as a path, or on `PATH`).
fn check_commands(scenario: &Scenario) -> Result<(), ChaosError> {
    for service in &scenario.services {
        for argv in [
            &service.stop,
            &service.start,
            &service.restart,
            &service.pid,
        ]
        .into_iter()
        .flatten()
        {
            let program = argv.first().map(String::as_str).unwrap_or_default();
            if !program_exists(program) {
                return Err(ChaosError::Process(format!(
                    "service {:?}: the program {program:?} of {:?} does not exist",
                    service.name,
                    argv.join(" ")
                )));
            }
        }
    }
    Ok(())
}

fn program_exists(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).exists();
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

async fn start_roles(
    scenario: &Scenario,
    stack: &Arc<dyn Stack>,
    out_dir: &Path,
) -> Result<HashMap<String, Mutex<RoleProcess>>, ChaosError> {
    let mut roles = HashMap::new();
    // Consumers first: the broker's queues and groups exist before anything is relayed.
    for name in scenario.consumer_names() {
        let command = {
            let (stack, scenario, name) = (Arc::clone(stack), scenario.clone(), name.clone());
            Box::new(move || stack.consumer(&scenario, &name))
        };
        let mut role = RoleProcess::new(name.clone(), command, true, log_path(out_dir, &name));
        role.start().await?;
        roles.insert(name, Mutex::new(role));
    }
    for name in scenario.relay_names() {
        let command = {
            let (stack, scenario, name) = (Arc::clone(stack), scenario.clone(), name.clone());
            Box::new(move || stack.relay(&scenario, &name))
        };
        let waits = scenario.relays.broken.is_some();
        let mut role = RoleProcess::new(name.clone(), command, waits, log_path(out_dir, &name));
        role.start().await?;
        roles.insert(name, Mutex::new(role));
    }
    Ok(roles)
}

fn log_path(out_dir: &Path, name: &str) -> PathBuf {
    out_dir.join(format!("{name}.log"))
}

async fn drive_faults(
    schedule: &FaultSchedule,
    targets: &Targets,
    origin: Instant,
) -> Vec<FaultRecord> {
    let mut records = Vec::new();
    for fault in &schedule.faults {
        tokio::time::sleep(fault.at.saturating_sub(origin.elapsed())).await;
        records.push(strike(fault, targets, origin).await);
    }
    records
}

/// Starts again, every second, any role that is down without a fault holding it (it exited
/// on its own, e.g. a relay that found the database unreachable at start, or its restart
/// after a kill failed), as a process supervisor would; returns what it did, once `stop`
/// fires.
async fn supervise(
    targets: Arc<Targets>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> Vec<String> {
    let mut remarks = Vec::new();
    loop {
        tokio::select! {
            _ = &mut stop => return remarks,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        for (name, role) in &targets.roles {
            // A role a fault holds is down on purpose.
            let Ok(mut role) = role.try_lock() else {
                continue;
            };
            let Some(why) = role.down() else {
                continue;
            };
            let restarted = match role.start().await {
                Ok(pid) => format!("pid {pid}"),
                Err(e) => format!("failed: {e}"),
            };
            tracing::warn!(role = %name, %why, %restarted, "started a role that was down");
            remarks.push(format!(
                "{name} was down ({why}) and was started again ({restarted})"
            ));
        }
    }
}

/// Waits until every confirmed message has an effect or is held dead in the outbox, or the
/// scenario's drain timeout; says how it ended.
async fn drain(pool: &PgPool, run_id: &str, scenario: &Scenario) -> Vec<String> {
    let timeout = scenario.drain_timeout;
    let started = Instant::now();
    loop {
        let dead = dead_messages(pool, scenario).await;
        match ledger::unapplied(pool, run_id, &dead).await {
            Ok(0) => {
                return vec![format!(
                    "the consumers caught up {:.1} s after the last message and fault",
                    started.elapsed().as_secs_f64()
                )]
            }
            Ok(left) if started.elapsed() > timeout => {
                return vec![format!(
                    "{left} confirmed messages were still unapplied after the drain timeout ({timeout:?})"
                )]
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

async fn database_now_ms(pool: &PgPool) -> Result<i64, ChaosError> {
    sqlx::query_scalar(&format!("SELECT {}", ledger::NOW_MS))
        .fetch_one(pool)
        .await
        .map_err(|e| ChaosError::Database(e.to_string()))
}

fn write(path: PathBuf, text: String) -> Result<(), ChaosError> {
    std::fs::write(&path, text).map_err(|e| ChaosError::Output(format!("{}: {e}", path.display())))
}
