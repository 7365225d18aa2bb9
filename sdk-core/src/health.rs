//! How a publisher, processor or relay is doing right now: ready, degraded, not ready or
//! stopped, with the reason and since when.
//!
//! Liveness and readiness follow the usual orchestrator meaning: a component is *live* until it
//! has stopped (restarting the process can help), *ready* while it does its work (`Ready`, or
//! `Degraded`: working, with something an operator should look at). `NotReady` means it cannot
//! work now (the broker or database is unreachable) and says since when, so a probe or an alert
//! can tell a blip from an outage.

use std::fmt;
use std::sync::Mutex;
use std::time::SystemTime;

/// The state part of a [`Health`], from best to worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HealthState {
    /// Working.
    Ready,
    /// Working, with a problem worth an operator's look (handler failures above the limit).
    Degraded,
    /// Cannot work now (broker or database unreachable); recovers by itself when it returns.
    NotReady,
    /// Has stopped for good (shutdown, or an error it cannot recover from).
    Stopped,
}

impl HealthState {
    /// The lower-case name used in health endpoints: `ready`, `degraded`, `not_ready`, `stopped`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Degraded => "degraded",
            Self::NotReady => "not_ready",
            Self::Stopped => "stopped",
        }
    }
}

/// A component's health: its state, why, and since when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    state: HealthState,
    reason: Option<String>,
    since: Option<SystemTime>,
}

impl Health {
    /// Working, nothing to report.
    pub fn ready() -> Self {
        Self {
            state: HealthState::Ready,
            reason: None,
            since: None,
        }
    }

    /// Working, but `reason` deserves a look.
    pub fn degraded(reason: impl Into<String>) -> Self {
        Self {
            state: HealthState::Degraded,
            reason: Some(reason.into()),
            since: None,
        }
    }

    /// Cannot work since `since`, because of `reason`.
    pub fn not_ready(reason: impl Into<String>, since: SystemTime) -> Self {
        Self {
            state: HealthState::NotReady,
            reason: Some(reason.into()),
            since: Some(since),
        }
    }

    /// Stopped for good, because of `reason`.
    pub fn stopped(reason: impl Into<String>) -> Self {
        Self {
            state: HealthState::Stopped,
            reason: Some(reason.into()),
            since: None,
        }
    }

    /// The state.
    pub fn state(&self) -> HealthState {
        self.state
    }

    /// Why the state is not `Ready` (or a note when it is).
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// When a `NotReady` state began.
    pub fn since(&self) -> Option<SystemTime> {
        self.since
    }

    /// Everything but `Stopped`: restarting the process is not called for.
    pub fn is_live(&self) -> bool {
        self.state != HealthState::Stopped
    }

    /// `Ready` or `Degraded`: the component does its work.
    pub fn is_ready(&self) -> bool {
        self.state <= HealthState::Degraded
    }

    /// The worse of two healths, reasons joined when both are equally bad (for a component
    /// made of parts: a relay is as healthy as its database and its broker together).
    pub fn worst(self, other: Self) -> Self {
        match self.state.cmp(&other.state) {
            std::cmp::Ordering::Greater => self,
            std::cmp::Ordering::Less => other,
            std::cmp::Ordering::Equal => Self {
                state: self.state,
                reason: match (self.reason, other.reason) {
                    (Some(a), Some(b)) => Some(format!("{a}; {b}")),
                    (a, b) => a.or(b),
                },
                since: match (self.since, other.since) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                },
            },
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.state.as_str())?;
        if let Some(reason) = &self.reason {
            write!(f, ": {reason}")?;
        }
        if let Some(since) = self.since {
            let seconds = SystemTime::now()
                .duration_since(since)
                .unwrap_or_default()
                .as_secs();
            write!(f, " (for {seconds} s)")?;
        }
        Ok(())
    }
}

/// Remembers when an outage began: the first failed check after a good one.
///
/// Backends and the processor keep one per connection and report
/// [`Health::not_ready`] with its start, so "broker unreachable since T" survives repeated
/// checks.
#[derive(Debug, Default)]
pub struct Outage {
    since: Mutex<Option<SystemTime>>,
}

impl Outage {
    /// Records a good check: any outage is over.
    pub fn recovered(&self) {
        *self.since.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Records a failed check and returns when the outage began (now, for the first one).
    pub fn failed(&self) -> SystemTime {
        *self
            .since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(SystemTime::now)
    }

    /// When the current outage began, if one is going on.
    pub fn since(&self) -> Option<SystemTime> {
        *self.since.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A health from a check's result: `Ready` when it passed, else `NotReady` with the
    /// outage's start and `reason`.
    pub fn judge<E: fmt::Display>(&self, check: Result<(), E>) -> Health {
        match check {
            Ok(()) => {
                self.recovered();
                Health::ready()
            }
            Err(e) => Health::not_ready(e.to_string(), self.failed()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_keeps_its_start_until_a_good_check() {
        let outage = Outage::default();
        let first = outage.judge(Err("down"));
        std::thread::sleep(std::time::Duration::from_millis(5));
        let second = outage.judge(Err("still down"));
        assert_eq!(first.since(), second.since());
        assert_eq!(second.state(), HealthState::NotReady);
        assert!(outage.judge(Ok::<(), &str>(())).is_ready());
        assert_eq!(outage.since(), None);
        let third = outage.judge(Err("down again"));
        assert!(third.since() > first.since());
    }

    #[test]
    fn the_worst_part_decides() {
        let down = Health::not_ready("broker unreachable", SystemTime::now());
        let combined = Health::ready().worst(down.clone());
        assert_eq!(combined, down);
        assert!(!combined.is_ready() && combined.is_live());
        let both = Health::degraded("a").worst(Health::degraded("b"));
        assert_eq!(both.reason(), Some("a; b"));
        assert!(both.is_ready());
        assert!(!Health::stopped("shut down").is_live());
    }
}
