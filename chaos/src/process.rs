//! A role (relay or consumer) running as a process of its own, so that a fault can SIGKILL it.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::roles::READY_LINE;
use crate::ChaosError;

/// How long a role may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// Makes the command that runs a role (the runner gets it from its [`crate::Stack`]).
pub type CommandFactory = Box<dyn Fn() -> Command + Send + Sync>;

/// A role's process, started again after each kill.
pub(crate) struct RoleProcess {
    pub(crate) name: String,
    command: CommandFactory,
    waits_for_ready: bool,
    log: PathBuf,
    child: Option<Child>,
}

impl RoleProcess {
    /// A role named `name`, not started yet; its standard error is appended to `log`.
    pub(crate) fn new(
        name: String,
        command: CommandFactory,
        waits_for_ready: bool,
        log: PathBuf,
    ) -> Self {
        Self {
            name,
            command,
            waits_for_ready,
            log,
            child: None,
        }
    }

    /// Starts the process and, for a role that announces it, waits for its ready line.
    pub(crate) async fn start(&mut self) -> Result<u32, ChaosError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| {
                ChaosError::Process(format!("{}: log {}: {e}", self.name, self.log.display()))
            })?;
        let mut child = (self.command)()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ChaosError::Process(format!("cannot start {}: {e}", self.name)))?;
        let pid = child.id().unwrap_or_default();
        let stdout = child.stdout.take();
        self.child = Some(child);
        if let (true, Some(stdout)) = (self.waits_for_ready, stdout) {
            let mut lines = BufReader::new(stdout).lines();
            let ready = tokio::time::timeout(READY_TIMEOUT, async {
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.trim() == READY_LINE {
                        return true;
                    }
                }
                false
            })
            .await;
            if ready != Ok(true) {
                let _ = self.kill().await;
                let why = match ready {
                    Ok(_) => "exited before it was ready".to_owned(),
                    Err(_) => format!("did not become ready within {READY_TIMEOUT:?}"),
                };
                return Err(ChaosError::Process(format!(
                    "{} {why}; the end of its log:\n{}",
                    self.name,
                    self.log_tail()
                )));
            }
            // Keep draining its standard output so that it never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        }
        Ok(pid)
    }

    /// SIGKILLs the process; says which pid died by the signal, or why the kill did nothing.
    pub(crate) async fn kill(&mut self) -> Result<String, String> {
        let Some(mut child) = self.child.take() else {
            return Err(format!("{} was not running", self.name));
        };
        let pid = child.id().unwrap_or_default();
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "{} (pid {pid}) had exited already: {status}",
                self.name
            ));
        }
        child
            .start_kill()
            .map_err(|e| format!("SIGKILL {}: {e}", self.name))?;
        let status = child.wait().await.map_err(|e| e.to_string())?;
        match status.signal() {
            Some(9) => Ok(format!("pid {pid} SIGKILLed")),
            _ => Err(format!(
                "{} (pid {pid}) ended with {status}, not by SIGKILL",
                self.name
            )),
        }
    }

    /// Why the process is not running, when it is not: it exited (how), or its last start
    /// failed.
    pub(crate) fn down(&mut self) -> Option<String> {
        let Some(child) = self.child.as_mut() else {
            return Some("its last start failed".into());
        };
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                Some(format!("exited: {status}"))
            }
            _ => None,
        }
    }

    /// Asks the process to stop cleanly (its standard input closed, then SIGTERM) and waits
    /// up to `grace` before killing it. Returns how it ended.
    pub(crate) async fn stop(&mut self, grace: Duration) -> String {
        let Some(mut child) = self.child.take() else {
            return "not running".into();
        };
        drop(child.stdin.take());
        if let Some(pid) = child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        match tokio::time::timeout(grace, child.wait()).await {
            Ok(Ok(status)) => status.to_string(),
            _ => {
                let _ = child.kill().await;
                format!("killed after {grace:?}")
            }
        }
    }

    /// The last 40 lines of its log.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}
