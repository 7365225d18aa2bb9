//! The conformance suite: one set of cases every backend runs against its real broker.
//!
//! A backend implements [`ConformanceTarget`] (how to make publishers and subscribers, which
//! capabilities it has, how big the runs may be) and calls [`run`]:
//!
//! ```
//! use waybill_core::testkit::conformance::{run, MemoryTarget};
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() {
//! let report = run(&MemoryTarget::new()).await;
//! report.assert_passed();
//! assert!(report.passed().len() >= 12);
//! # }
//! ```
//!
//! A case whose capability the backend declares missing is reported `UNSUPPORTED`, never passed.

mod cases_consumers;
mod cases_processor;
mod cases_publish;
mod cases_settle;
mod group_drain;
mod memory_target;
mod report;
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::future::BoxFuture;

pub use memory_target::MemoryTarget;
pub use report::{CaseOutcome, CaseResult, ConformanceReport};

use crate::capabilities::Capabilities;
use crate::handler::BoxError;
use crate::publisher::Publisher;
use crate::subscriber::Subscriber;

/// Sizes of the runs, so a slow broker can still finish the suite in reasonable time.
#[derive(Clone, Debug)]
pub struct Scale {
    /// Messages in ordinary cases (default 100).
    pub messages: usize,
    /// Publishers in the many-publishers case (default 50).
    pub publishers: usize,
    /// Subscribers in the many-subscribers case (default 50).
    pub subscribers: usize,
    /// Messages each of those publishers sends (default 100: 5,000 in all).
    pub messages_per_publisher: usize,
    /// Topics used in parallel by the isolation case (default 20).
    pub topics: usize,
    /// How long a case may take before it fails (default 60 s).
    pub case_timeout: Duration,
    /// How long "nothing more arrives" is watched for (default 1 s).
    pub quiet_period: Duration,
    /// Delay used by the retry case (default 500 ms).
    pub retry_delay: Duration,
}

impl Default for Scale {
    fn default() -> Self {
        Self {
            messages: 100,
            publishers: 50,
            subscribers: 50,
            messages_per_publisher: 100,
            topics: 20,
            case_timeout: Duration::from_secs(60),
            quiet_period: Duration::from_secs(1),
            retry_delay: Duration::from_millis(500),
        }
    }
}

/// What a backend provides to be checked.
///
/// Every case uses fresh topic and group names, so targets need no cleanup between cases.
#[async_trait]
pub trait ConformanceTarget: Send + Sync {
    /// Backend name for the report.
    fn name(&self) -> String;

    /// What the backend can do.
    fn capabilities(&self) -> Capabilities;

    /// Run sizes (default [`Scale::default`]).
    fn scale(&self) -> Scale {
        Scale::default()
    }

    /// Creates `topic` and whatever the backend needs with it (retry and dead-letter
    /// destinations). Called once per topic before any subscriber or publisher uses it.
    async fn prepare_topic(&self, topic: &str) -> Result<(), BoxError>;

    /// A publisher (a new connection or a shared one, as the backend prefers).
    async fn publisher(&self) -> Result<Arc<dyn Publisher>, BoxError>;

    /// A subscriber of `topic` in consumer group `group`. Messages published after this returns
    /// must reach the group; messages published earlier may or may not.
    async fn subscriber(&self, topic: &str, group: &str) -> Result<Box<dyn Subscriber>, BoxError>;

    /// A subscriber of the dead letters that group `group` produced for `topic`.
    async fn dead_letter_subscriber(
        &self,
        topic: &str,
        group: &str,
    ) -> Result<Box<dyn Subscriber>, BoxError>;
}

/// A capability check: its name for the report, and the test on [`Capabilities`].
type Needs = (&'static str, fn(&Capabilities) -> bool);

type CaseFn = for<'a> fn(&'a dyn ConformanceTarget) -> BoxFuture<'a, Result<(), String>>;

/// A case: name, the capability it needs (if any), and its body.
struct Case {
    name: &'static str,
    needs: Option<Needs>,
    run: CaseFn,
}

/// Declares a case from an `async fn(&dyn ConformanceTarget) -> Result<(), String>`, optionally
/// gated on a [`Capabilities`] field.
macro_rules! case {
    ($body:ident) => {
        super::Case {
            name: stringify!($body),
            needs: None,
            run: |t| Box::pin($body(t)),
        }
    };
    ($body:ident, needs $cap:ident) => {
        super::Case {
            name: stringify!($body),
            needs: Some((stringify!($cap), |c| c.$cap)),
            run: |t| Box::pin($body(t)),
        }
    };
}
use case;

fn cases() -> Vec<Case> {
    let mut all = Vec::new();
    all.extend(cases_publish::cases());
    all.extend(cases_settle::cases());
    all.extend(cases_consumers::cases());
    all.extend(cases_processor::cases());
    all
}

/// Runs every case against `target`, one after another, and returns the report.
pub async fn run(target: &dyn ConformanceTarget) -> ConformanceReport {
    let capabilities = target.capabilities();
    let timeout = target.scale().case_timeout;
    let mut results = Vec::new();
    for case in cases() {
        let started = Instant::now();
        let outcome = match case.needs {
            Some((capability, has)) if !has(&capabilities) => CaseOutcome::Unsupported(capability),
            _ => match tokio::time::timeout(timeout, (case.run)(target)).await {
                Ok(Ok(())) => CaseOutcome::Passed,
                Ok(Err(why)) => CaseOutcome::Failed(why),
                Err(_) => CaseOutcome::Failed(format!("timed out after {timeout:?}")),
            },
        };
        results.push(CaseResult {
            name: case.name,
            outcome,
            elapsed: started.elapsed(),
        });
    }
    ConformanceReport {
        backend: target.name(),
        cases: results,
    }
}
