//! The verdict: every message of a run classified as Jepsen's checkers do.

use std::collections::HashSet;
use std::fmt;

use serde::Serialize;
use waybill_core::testkit::Ledger;

use crate::ledger::LedgerRows;
use crate::schedule::FaultAction;

/// Samples kept of each violation class.
const SAMPLES: usize = 10;

/// A class of violation: how many, and a few of them to look up.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Violations {
    /// How many messages (or keys, for order).
    pub count: usize,
    /// Up to ten message ids (or, for order, keys with the sequence numbers around their first
    /// inversion).
    pub samples: Vec<String>,
}

impl Violations {
    fn of(items: impl IntoIterator<Item = String>) -> Self {
        let mut all: Vec<String> = items.into_iter().collect();
        all.sort();
        let count = all.len();
        all.truncate(SAMPLES);
        Self {
            count,
            samples: all,
        }
    }
}

/// A fault as it happened.
#[derive(Clone, Debug, Serialize)]
pub struct FaultRecord {
    /// What was done.
    pub action: FaultAction,
    /// When it started, seconds from the run's start.
    pub started_s: f64,
    /// When it ended (healed, restarted), seconds from the run's start.
    pub ended_s: f64,
    /// What shows it took effect (a pid killed, connections cut) or why it failed.
    pub detail: String,
    /// Whether it did what it should. A failed fault makes the verdict incomplete.
    pub ok: bool,
}

/// The outcome of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    /// The scenario's name.
    pub scenario: String,
    /// This run's id (the ledger's key).
    pub run_id: String,
    /// The schedule's seed.
    pub seed: u64,
    /// Complete and without a violation.
    pub passed: bool,
    /// Every fault happened as scheduled and every message was sent: a run that is not
    /// complete does not pass, whatever the counts say.
    pub complete: bool,
    /// Why the run is incomplete.
    pub incomplete: Vec<String>,
    /// Messages the producer sent (recorded before the outcome was known).
    pub sent: usize,
    /// Messages confirmed (outbox commit or broker confirm).
    pub confirmed: usize,
    /// Messages with an effect (each counted once).
    pub applied: usize,
    /// Confirmed messages with exactly one effect.
    pub delivered: usize,
    /// Confirmed, and never applied.
    pub lost: Violations,
    /// Applied more than once.
    pub duplicated: Violations,
    /// Applied, and never sent by this run.
    pub unexpected: Violations,
    /// Keys whose effects were applied out of their sequence order.
    pub order_violations: Violations,
    /// Sent without a confirmation, and applied anyway (an ambiguous outcome that made it):
    /// allowed.
    pub recovered: usize,
    /// Confirmed, never applied, and held dead in the outbox by a relay that gave up on it
    /// (its attempts ran out, or the broker refused it for good): not lost — the operator
    /// replays it — and not a violation, but a sign that the relays' retry budget is too small
    /// for the faults of the run.
    pub dead: Violations,
    /// The faults, as they happened.
    pub faults: Vec<FaultRecord>,
    /// Remarks that do not decide the verdict (a role that died on its own and was started
    /// again, a long drain).
    pub remarks: Vec<String>,
    /// Seconds from the first message to the verdict.
    pub duration_s: f64,
}

impl Verdict {
    /// Classifies `rows`; `incomplete` lists what kept the run from being complete.
    pub fn judge(
        scenario: &str,
        run_id: &str,
        seed: u64,
        rows: &LedgerRows,
        faults: Vec<FaultRecord>,
        incomplete: Vec<String>,
    ) -> Self {
        let ledger = Ledger::new();
        for sent in &rows.sent {
            if sent.confirmed {
                ledger.confirmed(sent.id);
            } else {
                ledger.attempted(sent.id);
            }
        }
        for effect in &rows.applied {
            ledger.effect(effect.id, Some((&effect.key, effect.seq)));
        }
        let report = ledger.report();
        let mut incomplete = incomplete;
        incomplete.extend(
            faults
                .iter()
                .filter(|f| !f.ok)
                .map(|f| format!("fault \"{}\" failed: {}", f.action, f.detail)),
        );
        let complete = incomplete.is_empty();
        let held: HashSet<_> = rows.dead.iter().collect();
        let (dead, lost): (Vec<_>, Vec<_>) = report.lost.iter().partition(|id| held.contains(id));
        let lost = Violations::of(lost.into_iter().map(ToString::to_string));
        let dead = Violations::of(dead.into_iter().map(ToString::to_string));
        let duplicated = Violations::of(report.duplicated.iter().map(ToString::to_string));
        let unexpected = Violations::of(report.unexpected.iter().map(ToString::to_string));
        let order_violations = Violations {
            count: report.order_violations.len(),
            samples: report.inversion_samples.clone(),
        };
        let clean = lost.count == 0
            && duplicated.count == 0
            && unexpected.count == 0
            && order_violations.count == 0;
        Self {
            scenario: scenario.to_owned(),
            run_id: run_id.to_owned(),
            seed,
            passed: complete && clean,
            complete,
            incomplete,
            sent: rows.sent.len(),
            confirmed: rows.sent.iter().filter(|s| s.confirmed).count(),
            applied: ledger.effects(),
            delivered: report.delivered,
            lost,
            duplicated,
            unexpected,
            order_violations,
            recovered: report.unconfirmed_delivered,
            dead,
            faults,
            remarks: Vec::new(),
            duration_s: 0.0,
        }
    }

    /// Whether a violation was found (as opposed to a run that could not finish).
    pub fn violated(&self) -> bool {
        self.lost.count
            + self.duplicated.count
            + self.unexpected.count
            + self.order_violations.count
            > 0
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let outcome = match (self.passed, self.complete) {
            (true, _) => "PASSED",
            (false, true) => "FAILED",
            (false, false) if self.violated() => "FAILED (and incomplete)",
            (false, false) => "INCOMPLETE",
        };
        writeln!(
            f,
            "scenario {} (run {}, seed {}): {outcome} after {:.1} s",
            self.scenario, self.run_id, self.seed, self.duration_s
        )?;
        writeln!(
            f,
            "  sent {}, confirmed {}, applied {}, delivered once {}, recovered (unconfirmed, applied) {}",
            self.sent, self.confirmed, self.applied, self.delivered, self.recovered
        )?;
        for (name, class) in [
            ("confirmed and lost", &self.lost),
            ("applied twice", &self.duplicated),
            ("applied, never sent", &self.unexpected),
            ("keys out of order", &self.order_violations),
            ("dead in the outbox (held, not lost)", &self.dead),
        ] {
            writeln!(f, "  {name}: {}", class.count)?;
            for sample in &class.samples {
                writeln!(f, "    {sample}")?;
            }
        }
        let failed = self.faults.iter().filter(|fault| !fault.ok).count();
        writeln!(f, "  faults: {} ({failed} failed)", self.faults.len())?;
        for fault in &self.faults {
            writeln!(
                f,
                "    {:>8} – {:<8} {:<24} {}{}",
                format!("{:.1}s", fault.started_s),
                format!("{:.1}s", fault.ended_s),
                fault.action.to_string(),
                if fault.ok { "" } else { "FAILED: " },
                fault.detail
            )?;
        }
        for reason in &self.incomplete {
            writeln!(f, "  incomplete: {reason}")?;
        }
        for remark in &self.remarks {
            writeln!(f, "  remark: {remark}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{AppliedRow, SentRow};
    use waybill_core::MessageId;

    fn sent(id: MessageId, confirmed: bool) -> SentRow {
        SentRow {
            id,
            confirmed,
            at_ms: 0,
        }
    }

    fn applied(id: MessageId, key: &str, seq: u64) -> AppliedRow {
        AppliedRow {
            id,
            key: key.into(),
            seq,
            consumer: "c".into(),
            at_ms: 0,
        }
    }

    #[test]
    fn every_class_is_counted_and_decides_the_verdict() {
        let ids: Vec<MessageId> = (0..6).map(|_| MessageId::new()).collect();
        let stranger = MessageId::new();
        let rows = LedgerRows {
            sent: vec![
                sent(ids[0], true),
                sent(ids[1], true),
                sent(ids[2], true),
                sent(ids[3], false),
                sent(ids[4], false),
                sent(ids[5], true),
            ],
            applied: vec![
                applied(ids[0], "a", 0),
                applied(ids[2], "a", 2),
                applied(ids[1], "a", 1), // after 2: key a out of order
                applied(ids[2], "a", 2), // twice
                applied(ids[3], "b", 0), // unconfirmed, applied: recovered
                applied(stranger, "c", 0),
            ],
            dead: Vec::new(),
        };
        let verdict = Verdict::judge("s", "r", 1, &rows, Vec::new(), Vec::new());
        assert!(verdict.complete);
        assert!(!verdict.passed);
        assert_eq!(verdict.lost.count, 1);
        assert_eq!(verdict.lost.samples, vec![ids[5].to_string()]);
        assert_eq!(verdict.duplicated.count, 1);
        assert_eq!(verdict.unexpected.samples, vec![stranger.to_string()]);
        assert_eq!(verdict.order_violations.count, 1);
        assert_eq!(verdict.recovered, 1);
        assert_eq!(verdict.delivered, 2);
        assert_eq!(
            (verdict.sent, verdict.confirmed, verdict.applied),
            (6, 4, 5)
        );
        let text = verdict.to_string();
        assert!(
            text.contains("FAILED") && text.contains("confirmed and lost: 1"),
            "{text}"
        );
    }

    #[test]
    fn a_message_held_dead_in_the_outbox_is_not_lost_but_counted() {
        let (kept, held, gone) = (MessageId::new(), MessageId::new(), MessageId::new());
        let older_run = MessageId::new();
        let rows = LedgerRows {
            sent: vec![sent(kept, true), sent(held, true), sent(gone, true)],
            applied: vec![applied(kept, "a", 0)],
            dead: vec![held, older_run],
        };
        let verdict = Verdict::judge("s", "r", 1, &rows, Vec::new(), Vec::new());
        assert_eq!(verdict.dead.samples, vec![held.to_string()]);
        assert_eq!(verdict.lost.samples, vec![gone.to_string()]);
        assert!(!verdict.passed, "the lost message still fails the run");

        let rows = LedgerRows {
            sent: vec![sent(kept, true), sent(held, true)],
            applied: vec![applied(kept, "a", 0)],
            dead: vec![held],
        };
        let verdict = Verdict::judge("s", "r", 1, &rows, Vec::new(), Vec::new());
        assert!(verdict.passed && verdict.lost.count == 0 && verdict.dead.count == 1);
        assert!(
            verdict
                .to_string()
                .contains("dead in the outbox (held, not lost): 1"),
            "{verdict}"
        );
    }

    #[test]
    fn a_clean_run_passes_only_when_complete() {
        let id = MessageId::new();
        let rows = LedgerRows {
            sent: vec![sent(id, true)],
            applied: vec![applied(id, "a", 0)],
            dead: Vec::new(),
        };
        assert!(Verdict::judge("s", "r", 1, &rows, Vec::new(), Vec::new()).passed);
        let failed_fault = FaultRecord {
            action: FaultAction::Restart {
                service: "db".into(),
            },
            started_s: 1.0,
            ended_s: 2.0,
            detail: "exit status 1".into(),
            ok: false,
        };
        let verdict = Verdict::judge("s", "r", 1, &rows, vec![failed_fault], Vec::new());
        assert!(!verdict.passed && !verdict.complete && !verdict.violated());
        assert_eq!(
            verdict.incomplete,
            vec!["fault \"restart db\" failed: exit status 1".to_string()]
        );
        assert!(verdict.to_string().contains("INCOMPLETE"));
    }
}
