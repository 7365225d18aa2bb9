//! The fault schedule, drawn from the scenario's seed: the same seed and scenario give the
//! same faults, at the same times, on the same targets.
//!
//! The generator is ChaCha8 (`rand_chacha`), whose output for a seed is fixed by its
//! specification, so a schedule stays the same across builds and machines.

use std::fmt;
use std::time::Duration;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::scenario::Scenario;

/// What a proxy fault does; see [`crate::proxy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProxyFaultKind {
    /// Every open connection reset, new ones refused, for the down time.
    Cut,
    /// New connections refused for the down time.
    Refuse,
    /// Nothing forwarded for the down time.
    Blackhole,
    /// The proxy's latency added for the down time.
    Latency,
    /// The server's side of every connection closed.
    HalfClose,
}

/// One fault, its target resolved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum FaultAction {
    /// SIGKILL a relay or consumer process, start it again after the down time.
    Kill {
        /// `relay-1`, `consumer-2`, …
        role: String,
    },
    /// Restart a service with the operator's commands.
    Restart {
        /// The `[[service]]` name.
        service: String,
    },
    /// A fault on a proxy for the down time.
    Proxy {
        /// The `[[proxy]]` name.
        proxy: String,
        /// What it does.
        fault: ProxyFaultKind,
    },
}

impl fmt::Display for FaultAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kill { role } => write!(f, "kill {role}"),
            Self::Restart { service } => write!(f, "restart {service}"),
            Self::Proxy { proxy, fault } => {
                let verb = match fault {
                    ProxyFaultKind::Cut => "cut",
                    ProxyFaultKind::Refuse => "refuse",
                    ProxyFaultKind::Blackhole => "blackhole",
                    ProxyFaultKind::Latency => "latency",
                    ProxyFaultKind::HalfClose => "half-close",
                };
                write!(f, "{verb} {proxy}")
            }
        }
    }
}

/// A fault action as written, before a target is drawn (`kill relay` names any relay).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ActionTemplate {
    /// One of these roles, drawn.
    Kill(Vec<String>),
    Restart(String),
    Proxy(String, ProxyFaultKind),
}

impl ActionTemplate {
    /// Reads `verb target` against the scenario's roles, services and proxies.
    pub(crate) fn parse(text: &str, scenario: &Scenario) -> Result<Self, String> {
        let mut words = text.split_whitespace();
        let (Some(verb), Some(target), None) = (words.next(), words.next(), words.next()) else {
            return Err(format!(
                "fault action {text:?}: write it as \"verb target\" (kill relay, restart <service>, cut <proxy>, …)"
            ));
        };
        let proxy_fault = match verb {
            "kill" => return kill_targets(text, target, scenario).map(Self::Kill),
            "restart" => {
                return if scenario.services.iter().any(|s| s.name == target) {
                    Ok(Self::Restart(target.to_owned()))
                } else {
                    Err(format!(
                        "fault action {text:?}: no [[service]] is named {target:?}"
                    ))
                };
            }
            "cut" => ProxyFaultKind::Cut,
            "refuse" => ProxyFaultKind::Refuse,
            "blackhole" => ProxyFaultKind::Blackhole,
            "latency" => ProxyFaultKind::Latency,
            "half-close" => ProxyFaultKind::HalfClose,
            other => {
                return Err(format!(
                    "fault action {text:?}: unknown verb {other:?} (known: kill, restart, cut, \
                     refuse, blackhole, latency, half-close)"
                ))
            }
        };
        if scenario.proxies.iter().any(|p| p.name == target) {
            Ok(Self::Proxy(target.to_owned(), proxy_fault))
        } else {
            Err(format!(
                "fault action {text:?}: no [[proxy]] is named {target:?}"
            ))
        }
    }

    fn draw(&self, rng: &mut ChaCha8Rng) -> FaultAction {
        match self {
            Self::Kill(roles) => FaultAction::Kill {
                role: roles[below(rng, roles.len() as u64) as usize].clone(),
            },
            Self::Restart(service) => FaultAction::Restart {
                service: service.clone(),
            },
            Self::Proxy(proxy, fault) => FaultAction::Proxy {
                proxy: proxy.clone(),
                fault: *fault,
            },
        }
    }
}

fn kill_targets(text: &str, target: &str, scenario: &Scenario) -> Result<Vec<String>, String> {
    let (relays, consumers) = (scenario.relay_names(), scenario.consumer_names());
    let roles = match target {
        "relay" => relays.clone(),
        "consumer" => consumers.clone(),
        named if relays.iter().chain(&consumers).any(|r| r == named) => vec![named.to_owned()],
        _ => Vec::new(),
    };
    if roles.is_empty() {
        return Err(format!(
            "fault action {text:?}: no role {target:?} to kill (roles: {})",
            relays
                .iter()
                .chain(&consumers)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(roles)
}

/// A fault at its time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ScheduledFault {
    /// When it strikes, from the run's first message.
    #[serde(serialize_with = "seconds")]
    pub at: Duration,
    /// How long it lasts.
    #[serde(serialize_with = "seconds")]
    pub down: Duration,
    /// What it does.
    pub action: FaultAction,
}

/// The faults of a run, in time order; one ends before the next starts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FaultSchedule {
    /// The faults.
    pub faults: Vec<ScheduledFault>,
}

impl FaultSchedule {
    /// Draws the schedule of `scenario` (checked already) from its seed.
    ///
    /// # Panics
    /// Never for a scenario that [`Scenario::from_toml`] accepted.
    pub fn draw(scenario: &Scenario) -> Self {
        let section = &scenario.faults;
        let templates: Vec<ActionTemplate> = section
            .actions
            .iter()
            .map(|a| ActionTemplate::parse(a, scenario).expect("checked when read"))
            .collect();
        let mut rng = ChaCha8Rng::seed_from_u64(section.seed);
        let mut at = section.first;
        let mut faults = Vec::new();
        for _ in 0..section.count {
            let template = &templates[below(&mut rng, templates.len() as u64) as usize];
            let action = template.draw(&mut rng);
            let down = between(&mut rng, section.down);
            faults.push(ScheduledFault { at, down, action });
            at += down + between(&mut rng, section.gap);
        }
        Self { faults }
    }

    /// When the last fault has ended.
    pub fn end(&self) -> Duration {
        self.faults.last().map_or(Duration::ZERO, |f| f.at + f.down)
    }
}

/// A number in `0..n` (n ≥ 1); the modulo bias is below 2^-40 for the sizes used here.
fn below(rng: &mut ChaCha8Rng, n: u64) -> u64 {
    rng.next_u64() % n
}

/// A duration in `[from, to]`, to the millisecond.
fn between(rng: &mut ChaCha8Rng, [from, to]: [Duration; 2]) -> Duration {
    let span = (to - from).as_millis() as u64;
    from + Duration::from_millis(below(rng, span + 1))
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(faults: &str) -> Result<Scenario, String> {
        Scenario::from_toml(&format!(
            r#"
            name = "t"
            messages = 10
            keys = 2
            [database]
            url = "postgres://127.0.0.1/x"
            [broker]
            url = "amqp://127.0.0.1"
            topic = "t"
            group = "g"
            [relays]
            count = 2
            [consumers]
            count = 3
            [[proxy]]
            name = "broker"
            listen = "127.0.0.1:1"
            upstream = "127.0.0.1:2"
            [[service]]
            name = "db"
            restart = ["true"]
            [faults]
            {faults}
            "#
        ))
    }

    #[test]
    fn the_same_seed_draws_the_same_schedule_and_another_seed_another() {
        let actions = r#"count = 12
            actions = ["kill relay", "kill consumer", "restart db", "cut broker", "latency broker"]"#;
        let a = FaultSchedule::draw(&scenario(&format!("seed = 7\n{actions}")).unwrap());
        let b = FaultSchedule::draw(&scenario(&format!("seed = 7\n{actions}")).unwrap());
        let c = FaultSchedule::draw(&scenario(&format!("seed = 8\n{actions}")).unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.faults.len(), 12);
        // Every kind is drawn in 12 faults from 5 templates with this seed, and kills pick
        // among the named roles.
        for fault in &a.faults {
            if let FaultAction::Kill { role } = &fault.action {
                assert!(
                    [
                        "relay-1",
                        "relay-2",
                        "consumer-1",
                        "consumer-2",
                        "consumer-3"
                    ]
                    .contains(&role.as_str()),
                    "{role}"
                );
            }
        }
        // One fault ends before the next starts, with a gap of 2 to 5 s.
        for pair in a.faults.windows(2) {
            let gap = pair[1].at - (pair[0].at + pair[0].down);
            assert!(gap >= Duration::from_secs(2) && gap <= Duration::from_secs(5));
        }
        assert_eq!(a.faults[0].at, Duration::from_secs(3));
    }

    #[test]
    fn the_schedule_of_a_seed_never_changes() {
        // Pinned: a change to the generator or the drawing order would change every user's
        // recorded schedules.
        let s = FaultSchedule::draw(
            &scenario(
                r#"seed = 42
                count = 3
                actions = ["kill relay", "cut broker"]"#,
            )
            .unwrap(),
        );
        let shown: Vec<String> = s
            .faults
            .iter()
            .map(|f| format!("{} {}ms {}", f.at.as_millis(), f.down.as_millis(), f.action))
            .collect();
        assert_eq!(shown, PINNED, "{shown:?}");
    }

    const PINNED: [&str; 3] = [
        "3000 2264ms cut broker",
        "7338 2293ms kill relay-1",
        "12397 1891ms kill relay-1",
    ];

    #[test]
    fn unknown_verbs_targets_and_shapes_are_refused_with_what_is_known() {
        for (action, expected) in [
            ("explode relay", "unknown verb \"explode\""),
            ("kill relay-9", "no role \"relay-9\""),
            ("restart kafka", "no [[service]] is named \"kafka\""),
            ("cut database", "no [[proxy]] is named \"database\""),
            ("kill", "write it as \"verb target\""),
        ] {
            let error = scenario(&format!("count = 1\nactions = [{action:?}]")).unwrap_err();
            assert!(error.contains(expected), "{action}: {error}");
        }
        let error = scenario("count = 1\nactions = [\"kill relay\"]\nfrist = \"1s\"").unwrap_err();
        assert!(error.contains("unknown field `frist`"), "{error}");
        let error = scenario("gap = [\"5s\", \"soon\"]").unwrap_err();
        assert!(error.contains("invalid duration \"soon\""), "{error}");
    }
}
