//! Carrying out a scheduled fault, and proving it took effect.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::process::Command;
use tokio::sync::Mutex;

use crate::process::RoleProcess;
use crate::proxy::{FaultProxy, ProxyCounters, ProxyFault};
use crate::scenario::ServiceSection;
use crate::schedule::{FaultAction, ProxyFaultKind, ScheduledFault};
use crate::verdict::FaultRecord;

/// How long one of the operator's commands may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);

/// What the faults act on.
pub(crate) struct Targets {
    pub(crate) roles: HashMap<String, Mutex<RoleProcess>>,
    pub(crate) proxies: HashMap<String, (FaultProxy, Duration)>,
    pub(crate) services: HashMap<String, ServiceSection>,
}

/// Carries out `fault` (it lasts its down time) and records what happened; `origin` is the
/// run's start.
pub(crate) async fn strike(
    fault: &ScheduledFault,
    targets: &Targets,
    origin: Instant,
) -> FaultRecord {
    let started_s = origin.elapsed().as_secs_f64();
    tracing::info!(action = %fault.action, "fault");
    let outcome = match &fault.action {
        FaultAction::Kill { role } => kill(targets, role, fault.down).await,
        FaultAction::Restart { service } => restart(&targets.services[service], fault.down).await,
        FaultAction::Proxy { proxy, fault: kind } => {
            let (proxy, latency) = &targets.proxies[proxy];
            proxy_fault(proxy, *kind, *latency, fault.down).await
        }
    };
    let (ok, detail) = match outcome {
        Ok(detail) => (true, detail),
        Err(detail) => (false, detail),
    };
    if !ok {
        tracing::warn!(action = %fault.action, %detail, "fault failed");
    }
    FaultRecord {
        action: fault.action.clone(),
        started_s,
        ended_s: origin.elapsed().as_secs_f64(),
        detail,
        ok,
    }
}

async fn kill(targets: &Targets, role: &str, down: Duration) -> Result<String, String> {
    let mut process = targets.roles[role].lock().await;
    // A role that is down (exited on its own, not yet started again) is started first, so
    // that the kill strikes a running process.
    if let Some(why) = process.down() {
        process
            .start()
            .await
            .map_err(|e| format!("{role} was down ({why}) and could not be started: {e}"))?;
    }
    let killed = process.kill().await?;
    tokio::time::sleep(down).await;
    let pid = process
        .start()
        .await
        .map_err(|e| format!("{killed}; restart failed: {e}"))?;
    Ok(format!("{killed}, started again as pid {pid}"))
}

async fn restart(service: &ServiceSection, down: Duration) -> Result<String, String> {
    if let Some(restart) = &service.restart {
        run_command(restart).await?;
        return Ok(format!("{:?} succeeded", restart.join(" ")));
    }
    let (Some(stop), Some(start)) = (&service.stop, &service.start) else {
        return Err("the service has no commands".into());
    };
    run_command(stop).await?;
    tokio::time::sleep(down).await;
    run_command(start).await?;
    Ok(format!(
        "stopped and started ({:?}, {:?})",
        stop.join(" "),
        start.join(" ")
    ))
}

/// Runs one of the operator's commands; its failure (or a timeout) is the fault's failure.
pub(crate) async fn run_command(argv: &[String]) -> Result<(), String> {
    let (program, args) = argv.split_first().ok_or("an empty command")?;
    let output = tokio::time::timeout(
        COMMAND_TIMEOUT,
        Command::new(program).args(args).kill_on_drop(true).output(),
    )
    .await
    .map_err(|_| {
        format!(
            "{:?} did not finish within {COMMAND_TIMEOUT:?}",
            argv.join(" ")
        )
    })?
    .map_err(|e| format!("cannot run {program:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        Err(format!(
            "{:?} failed ({}): {}",
            argv.join(" "),
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        ))
    }
}

async fn proxy_fault(
    proxy: &FaultProxy,
    kind: ProxyFaultKind,
    latency: Duration,
    down: Duration,
) -> Result<String, String> {
    let before = proxy.counters();
    let cut = match kind {
        ProxyFaultKind::Cut => {
            proxy.set(ProxyFault::Refuse);
            proxy.cut()
        }
        ProxyFaultKind::Refuse => {
            proxy.set(ProxyFault::Refuse);
            0
        }
        ProxyFaultKind::Blackhole => {
            proxy.set(ProxyFault::BlackHole);
            0
        }
        ProxyFaultKind::Latency => {
            proxy.set(ProxyFault::Latency(latency));
            0
        }
        ProxyFaultKind::HalfClose => {
            proxy.set(ProxyFault::HalfClose);
            0
        }
    };
    tokio::time::sleep(down).await;
    proxy.heal();
    Ok(describe(cut, before, proxy.counters()))
}

fn describe(cut: u64, before: ProxyCounters, after: ProxyCounters) -> String {
    format!(
        "{cut} connections cut, {} refused, {} chunks held, {} half-closed",
        after.refused - before.refused,
        after.held - before.held,
        after.half_closed - before.half_closed
    )
}
