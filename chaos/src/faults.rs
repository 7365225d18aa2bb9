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
    let before = match &service.pid {
        Some(pid) => Some(process_id(pid).await?),
        None => None,
    };
    let done = if let Some(restart) = &service.restart {
        run_command(restart).await?;
        format!("{:?} succeeded", restart.join(" "))
    } else {
        let (Some(stop), Some(start)) = (&service.stop, &service.start) else {
            return Err("the service has no commands".into());
        };
        run_command(stop).await?;
        tokio::time::sleep(down).await;
        run_command(start).await?;
        format!(
            "stopped and started ({:?}, {:?})",
            stop.join(" "),
            start.join(" ")
        )
    };
    let (Some(pid), Some(before)) = (&service.pid, before) else {
        return Ok(done);
    };
    match process_id(pid).await? {
        after if after == before => Err(format!(
            "{done}, but process {before} still runs: the restart did not replace it"
        )),
        after => Ok(format!("{done}; process {before} replaced by {after}")),
    }
}

/// The process id the operator's `argv` prints.
async fn process_id(argv: &[String]) -> Result<String, String> {
    let printed = run_command(argv).await?;
    match printed.split_whitespace().next() {
        Some(pid) => Ok(pid.to_owned()),
        None => Err(format!("{:?} printed no process id", argv.join(" "))),
    }
}

/// Runs one of the operator's commands and returns what it printed; its failure (or a
/// timeout) is the fault's failure.
pub(crate) async fn run_command(argv: &[String]) -> Result<String, String> {
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
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn service(pid: &[&str]) -> ServiceSection {
        let argv = |words: &[&str]| Some(words.iter().map(|w| (*w).to_owned()).collect());
        ServiceSection {
            name: "broker".into(),
            stop: argv(&["true"]),
            start: argv(&["true"]),
            restart: None,
            pid: argv(pid),
        }
    }

    #[tokio::test]
    async fn a_restart_that_leaves_the_same_process_running_fails() {
        let unchanged = restart(&service(&["echo", "4242"]), Duration::ZERO).await;
        let error = unchanged.expect_err("the process was not replaced");
        assert!(error.contains("process 4242 still runs"), "{error}");
    }

    #[tokio::test]
    async fn a_restart_that_replaces_the_process_names_both_ids() {
        // Each run of the pid command is a new shell: its own id differs every time.
        let replaced = restart(&service(&["sh", "-c", "echo $$"]), Duration::ZERO).await;
        let detail = replaced.expect("the process was replaced");
        assert!(detail.contains("replaced by"), "{detail}");
    }

    #[tokio::test]
    async fn a_pid_command_that_prints_nothing_fails_the_restart() {
        let silent = restart(&service(&["true"]), Duration::ZERO).await;
        assert!(silent.unwrap_err().contains("printed no process id"));
    }
}
