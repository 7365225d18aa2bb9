//! A consumer in a process of its own, so that a test can SIGKILL it: the running test binary
//! started again with `--exact <test>` and the `WAYBILL_CHAOS_CONSUMER` variable, which makes
//! that test act as the consumer instead of as the orchestrator (see [`role`]).
//!
//! The consumer runs [`effects::start_consumer`] (a PerKey Processor with the PostgreSQL inbox
//! whose handler writes the effects table), until its standard input closes: then it shuts the
//! Processor down cleanly (settled work acknowledged, the group left) and exits.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use waybill_core::Subscriber;

use super::effects;

const ROLE: &str = "WAYBILL_CHAOS_CONSUMER";

/// What a consumer process consumes, and where it writes its effects.
#[derive(Clone, Debug)]
pub struct ConsumerSpec {
    /// The topic.
    pub topic: String,
    /// The consumer group.
    pub group: String,
    /// The effects database's URL.
    pub database_url: String,
}

/// The consumer role of this process, when it was started as a consumer process.
pub struct ConsumerRole {
    name: String,
    spec: ConsumerSpec,
}

/// `Some` when this process is a consumer process a test started ([`ConsumerProcess::spawn`]):
/// the test must then call [`ConsumerRole::serve`] and return.
pub fn role() -> Option<ConsumerRole> {
    let name = std::env::var(ROLE).ok()?;
    let var = |v: &str| std::env::var(v).unwrap_or_else(|_| panic!("{v} is not set"));
    Some(ConsumerRole {
        name,
        spec: ConsumerSpec {
            topic: var("WAYBILL_CHAOS_TOPIC"),
            group: var("WAYBILL_CHAOS_GROUP"),
            database_url: var("WAYBILL_CHAOS_DATABASE_URL"),
        },
    })
}

impl ConsumerRole {
    /// The topic and group to subscribe to.
    pub fn spec(&self) -> &ConsumerSpec {
        &self.spec
    }

    /// Consumes through `subscriber` until standard input closes, then shuts down cleanly.
    /// Panics (and so exits non-zero) when the Processor fails.
    pub async fn serve(self, subscriber: impl Subscriber + 'static) {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
        let running = effects::start_consumer(
            &self.spec.database_url,
            &self.name,
            &self.spec.group,
            subscriber,
        )
        .await;
        eprintln!("consumer {} running", self.name);
        let (closed, stdin_closed) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
            let _ = closed.send(());
        });
        let _ = stdin_closed.await;
        let totals = running.shutdown().await.expect("clean shutdown");
        eprintln!("consumer {} stopped: {totals:?}", self.name);
    }
}

/// A consumer process a test started; SIGKILLed on drop.
pub struct ConsumerProcess {
    name: String,
    child: Child,
    log: PathBuf,
}

impl ConsumerProcess {
    /// Starts this test binary again as consumer `name` running test `test` (its exact name)
    /// in the consumer role. Its standard error goes to a log file, printed when it fails.
    pub fn spawn(test: &str, name: &str, spec: &ConsumerSpec) -> Self {
        let log = std::env::temp_dir().join(format!(
            "wb-consumer-{name}-{}.log",
            &waybill_core::MessageId::new().to_string()[24..]
        ));
        let file = std::fs::File::create(&log).expect("create the consumer's log");
        let child = Command::new(std::env::current_exe().expect("the test binary"))
            .args([test, "--exact", "--nocapture", "--test-threads", "1"])
            .env(ROLE, name)
            .env("WAYBILL_CHAOS_TOPIC", &spec.topic)
            .env("WAYBILL_CHAOS_GROUP", &spec.group)
            .env("WAYBILL_CHAOS_DATABASE_URL", &spec.database_url)
            .env(
                "RUST_LOG",
                std::env::var("WAYBILL_CHAOS_CONSUMER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .expect("start the consumer process");
        eprintln!(
            "consumer {name} started as process {:?}, log {}",
            child.id(),
            log.display()
        );
        Self {
            name: name.to_owned(),
            child,
            log,
        }
    }

    /// SIGKILLs the consumer and proves the kill took effect: it was still running (it had
    /// not died on its own), and SIGKILL is what ended it.
    pub async fn sigkill(mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "consumer {} died on its own before the kill: {status}\n{}",
                self.name,
                self.log_tail()
            );
        }
        self.child.start_kill().expect("SIGKILL");
        let status = self.child.wait().await.unwrap();
        assert_eq!(
            status.signal(),
            Some(9),
            "consumer {} ended with {status}, not by the SIGKILL",
            self.name
        );
        eprintln!("consumer {} SIGKILLed", self.name);
    }

    /// Closes the consumer's standard input and waits (up to 60 s) for its clean exit; panics
    /// with its log when it fails or does not stop.
    pub async fn stop(mut self) {
        drop(self.child.stdin.take());
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("consumer {} did not stop within 60 s", self.name))
            .unwrap();
        assert!(
            status.success(),
            "consumer {} failed ({status}):\n{}",
            self.name,
            self.log_tail()
        );
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}
