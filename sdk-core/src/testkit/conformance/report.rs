//! Outcomes of conformance cases and the printed report.

use std::fmt;
use std::time::Duration;

/// How one case ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaseOutcome {
    /// The case ran and every assertion held.
    Passed,
    /// The backend declared it lacks the capability this case checks; nothing was run.
    Unsupported(&'static str),
    /// An assertion failed, or the case timed out.
    Failed(String),
}

/// One case's result.
#[derive(Clone, Debug)]
pub struct CaseResult {
    /// Case name.
    pub name: &'static str,
    /// Outcome.
    pub outcome: CaseOutcome,
    /// Wall time the case took.
    pub elapsed: Duration,
}

/// Every case's result for one backend.
#[derive(Clone, Debug)]
pub struct ConformanceReport {
    /// Backend name as the target reported it.
    pub backend: String,
    /// Results in run order.
    pub cases: Vec<CaseResult>,
}

impl ConformanceReport {
    /// Names of passed cases.
    pub fn passed(&self) -> Vec<&'static str> {
        self.filter(|o| matches!(o, CaseOutcome::Passed))
    }

    /// Names of cases skipped because the backend declared the capability missing.
    pub fn unsupported(&self) -> Vec<&'static str> {
        self.filter(|o| matches!(o, CaseOutcome::Unsupported(_)))
    }

    /// Names of failed cases.
    pub fn failed(&self) -> Vec<&'static str> {
        self.filter(|o| matches!(o, CaseOutcome::Failed(_)))
    }

    fn filter(&self, keep: impl Fn(&CaseOutcome) -> bool) -> Vec<&'static str> {
        self.cases
            .iter()
            .filter(|c| keep(&c.outcome))
            .map(|c| c.name)
            .collect()
    }

    /// Panics with the whole report when any case failed; prints it otherwise.
    ///
    /// # Panics
    /// When a case failed.
    pub fn assert_passed(&self) {
        println!("{self}");
        assert!(
            self.failed().is_empty(),
            "conformance failures for {}:\n{self}",
            self.backend
        );
    }
}

impl fmt::Display for ConformanceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "conformance report: {}", self.backend)?;
        for case in &self.cases {
            let (status, detail) = match &case.outcome {
                CaseOutcome::Passed => ("PASS", String::new()),
                CaseOutcome::Unsupported(why) => ("UNSUPPORTED", format!(" (declared: {why})")),
                CaseOutcome::Failed(why) => ("FAIL", format!(": {why}")),
            };
            writeln!(
                f,
                "  {status:<11} {:<58} {:>7.2}s{detail}",
                case.name,
                case.elapsed.as_secs_f64()
            )?;
        }
        writeln!(
            f,
            "cases passed: {}; failed: {}; unsupported: {}",
            self.passed().len(),
            self.failed().len(),
            self.unsupported().len()
        )
    }
}
