//! Durability preflight: what a broker's setup does to the guarantee, as checks that each say
//! PASS, WARN or FAIL with the reason and the fix. Each backend writes its own checks (Kafka:
//! `waybill_kafka::durability_preflight`); `waybill preflight` prints them.

use std::fmt;

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// The setting keeps confirmed messages.
    Pass,
    /// It could not be checked, or it weakens the guarantee in some failures.
    Warn,
    /// A confirmed message can be lost (or dropped) with this setting.
    Fail,
}

impl Verdict {
    /// `PASS`, `WARN` or `FAIL`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Warn => "WARN",
            Self::Fail => "FAIL",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One check of a preflight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// What was checked, e.g. `replication` or `min.insync.replicas`.
    pub name: &'static str,
    /// How it came out.
    pub verdict: Verdict,
    /// What was found.
    pub reason: String,
    /// What to change, when the verdict is not [`Verdict::Pass`].
    pub fix: Option<String>,
}

impl Check {
    /// A passing check.
    pub fn pass(name: &'static str, reason: impl Into<String>) -> Self {
        Self {
            name,
            verdict: Verdict::Pass,
            reason: reason.into(),
            fix: None,
        }
    }

    /// A warning, with its fix.
    pub fn warn(name: &'static str, reason: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            verdict: Verdict::Warn,
            reason: reason.into(),
            fix: Some(fix.into()),
        }
    }

    /// A failure, with its fix.
    pub fn fail(name: &'static str, reason: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            verdict: Verdict::Fail,
            reason: reason.into(),
            fix: Some(fix.into()),
        }
    }
}

/// The checks of one destination (a topic, a queue).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreflightReport {
    /// What was checked (`kafka topic orders`, ...).
    pub target: String,
    /// The checks, in the order they ran.
    pub checks: Vec<Check>,
}

impl PreflightReport {
    /// The worst verdict of the checks ([`Verdict::Pass`] when there are none).
    pub fn verdict(&self) -> Verdict {
        self.checks
            .iter()
            .map(|c| c.verdict)
            .max()
            .unwrap_or(Verdict::Pass)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_takes_its_worst_check() {
        let mut report = PreflightReport {
            target: "kafka topic t".into(),
            checks: vec![Check::pass("a", "fine")],
        };
        assert_eq!(report.verdict(), Verdict::Pass);
        report.checks.push(Check::warn("b", "unknown", "look"));
        assert_eq!(report.verdict(), Verdict::Warn);
        report.checks.push(Check::fail("c", "loses", "change"));
        assert_eq!(report.verdict(), Verdict::Fail);
        assert_eq!(Verdict::Fail.to_string(), "FAIL");
    }
}
