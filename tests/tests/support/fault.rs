//! Proof that a fault a chaos test injected took effect: the broker's process was replaced,
//! and the client saw the outage while it lasted.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;

/// What a broker restart did to the broker's process.
#[derive(Clone, Debug)]
pub struct Restart {
    /// What was done, for messages ("SIGKILL and start of rocketmq-broker").
    pub fault: String,
    /// The server's process id before the fault and after the restart, when known (a cluster
    /// of your own restarted by commands of your own has none): a kill that took effect
    /// replaced the process.
    pub pids: Option<(u32, u32)>,
}

impl Restart {
    /// Panics unless the broker's process was replaced (when its id is known).
    pub fn assert_replaced_process(&self) {
        if let Some((before, after)) = self.pids {
            assert_ne!(
                before, after,
                "{}: the broker is still process {before}; the kill did nothing",
                self.fault
            );
        }
    }
}

/// A fault and what the client saw while it lasted.
#[derive(Clone, Debug)]
pub struct FaultProof {
    /// What the fault did to the broker.
    pub restart: Restart,
    /// Errors the client saw (failed publishes, receive and settle errors) between the
    /// fault's start and the end of its restart.
    pub client_errors: u64,
}

impl FaultProof {
    /// Panics unless the fault took effect: the broker process changed (when its id is
    /// known), and the client saw at least one error while the fault lasted.
    pub fn assert_took_effect(&self) {
        self.restart.assert_replaced_process();
        assert!(
            self.client_errors > 0,
            "{}: the client saw no error while it lasted; the fault did nothing the client \
             noticed ({self:?})",
            self.restart.fault
        );
        eprintln!("fault took effect: {self:?}");
    }
}

/// A fault running beside the workload, started when the client had seen `errors_at_start`
/// errors.
pub struct InFlightFault {
    task: JoinHandle<Restart>,
    errors_at_start: u64,
}

impl InFlightFault {
    /// Starts `fault` 20 ms from now (so it strikes while the work in flight goes on), with
    /// the client's error count at this moment.
    pub fn start<F>(fault: F, errors_at_start: u64) -> Self
    where
        F: Future<Output = Restart> + Send + 'static,
    {
        let task = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            fault.await
        });
        Self {
            task,
            errors_at_start,
        }
    }

    /// Whether the fault (and its restart) finished.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits for the fault to finish, then proves it took effect, reading the client's error
    /// count with `client_errors`. Panics with the fault task's own panic when it failed, and
    /// as [`FaultProof::assert_took_effect`] does.
    pub async fn finish(self, client_errors: impl Fn() -> u64) -> FaultProof {
        let restart = match self.task.await {
            Ok(restart) => restart,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("the fault task did not finish: {e}"),
        };
        let proof = FaultProof {
            restart,
            client_errors: client_errors() - self.errors_at_start,
        };
        proof.assert_took_effect();
        proof
    }
}

/// Runs `command` with bash; returns its standard output, or panics with its output when it
/// fails.
pub async fn run_checked(command: &str) -> String {
    let out = tokio::process::Command::new("bash")
        .args(["-c", command])
        .output()
        .await
        .expect("run bash");
    assert!(
        out.status.success(),
        "`{command}` failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The process id `command` prints; panics when it fails or prints no number.
pub async fn pid_from(command: &str) -> u32 {
    let out = run_checked(command).await;
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("`{command}` printed {out:?}, not a process id"))
}

/// Held by each fault test of a test binary for its whole run: the tests of one binary run
/// in parallel threads, and one test's broker restart would strike the others' runs.
static EXCLUSIVE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits until no other fault test of this binary runs; the guard lets the next one start.
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    EXCLUSIVE.lock().await
}
