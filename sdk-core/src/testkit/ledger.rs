//! A Jepsen-style ledger: what was confirmed versus what arrived.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use crate::message_id::MessageId;

/// Records confirmed publishes and observed effects, then classifies every message.
///
/// Thread safe; share it behind an `Arc` between publishers and handlers.
#[derive(Debug, Default)]
pub struct Ledger {
    state: Mutex<LedgerState>,
}

#[derive(Debug, Default)]
struct LedgerState {
    confirmed: HashSet<MessageId>,
    attempted: HashSet<MessageId>,
    effects: HashMap<MessageId, u32>,
    order: HashMap<String, Vec<u64>>,
}

/// The classification of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerReport {
    /// Confirmed messages whose effect happened exactly once.
    pub delivered: usize,
    /// Confirmed messages with no effect.
    pub lost: Vec<MessageId>,
    /// Messages whose effect happened more than once.
    pub duplicated: Vec<MessageId>,
    /// Effects of messages nobody tried to publish.
    pub unexpected: Vec<MessageId>,
    /// Effects of messages whose publish was not confirmed (ambiguous outcomes that made it).
    pub unconfirmed_delivered: usize,
    /// Keys whose effects did not follow their sequence numbers.
    pub order_violations: Vec<String>,
    /// For the first few violating keys, the sequence numbers around the first inversion
    /// (`key: … 22, 24, 23, 25 …`): which message came late, and after what.
    pub inversion_samples: Vec<String>,
}

impl LedgerReport {
    /// Whether nothing confirmed was lost, nothing duplicated, nothing unexpected, order held.
    pub fn is_clean(&self) -> bool {
        self.lost.is_empty()
            && self.duplicated.is_empty()
            && self.unexpected.is_empty()
            && self.order_violations.is_empty()
    }
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LedgerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A publish of `id` is about to be attempted.
    pub fn attempted(&self, id: MessageId) {
        self.lock().attempted.insert(id);
    }

    /// The broker confirmed `id`.
    pub fn confirmed(&self, id: MessageId) {
        let mut state = self.lock();
        state.attempted.insert(id);
        state.confirmed.insert(id);
    }

    /// A handler's effect for `id` happened; `key`/`sequence` (if given) are checked for order.
    pub fn effect(&self, id: MessageId, key_and_sequence: Option<(&str, u64)>) {
        let mut state = self.lock();
        *state.effects.entry(id).or_default() += 1;
        if let Some((key, seq)) = key_and_sequence {
            state.order.entry(key.to_owned()).or_default().push(seq);
        }
    }

    /// Number of distinct messages with an effect.
    pub fn effects(&self) -> usize {
        self.lock().effects.len()
    }

    /// Classifies the run.
    pub fn report(&self) -> LedgerReport {
        let state = self.lock();
        let mut report = LedgerReport::default();
        for id in &state.confirmed {
            match state.effects.get(id) {
                None => report.lost.push(*id),
                Some(1) => report.delivered += 1,
                Some(_) => {}
            }
        }
        for (id, count) in &state.effects {
            if *count > 1 {
                report.duplicated.push(*id);
            }
            if !state.attempted.contains(id) {
                report.unexpected.push(*id);
            } else if !state.confirmed.contains(id) {
                report.unconfirmed_delivered += 1;
            }
        }
        for (key, seqs) in &state.order {
            if let Some(at) = seqs.windows(2).position(|w| w[0] >= w[1]) {
                report.order_violations.push(key.clone());
                if report.inversion_samples.len() < INVERSION_SAMPLES {
                    report
                        .inversion_samples
                        .push(inversion_sample(key, seqs, at));
                }
            }
        }
        report.order_violations.sort();
        report.inversion_samples.sort();
        report
    }
}

/// Violating keys described in a report, at most.
const INVERSION_SAMPLES: usize = 5;

/// `key: … a, b, c …` around the inversion between `seqs[at]` and `seqs[at + 1]`.
fn inversion_sample(key: &str, seqs: &[u64], at: usize) -> String {
    let from = at.saturating_sub(3);
    let to = (at + 5).min(seqs.len());
    let shown: Vec<String> = seqs[from..to].iter().map(u64::to_string).collect();
    let before = if from > 0 { "… " } else { "" };
    let after = if to < seqs.len() { " …" } else { "" };
    format!("{key}: {before}{}{after}", shown.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inversion_is_shown_with_its_neighbours() {
        let seqs: Vec<u64> = (0..10).chain([4]).chain(10..20).collect();
        assert_eq!(
            inversion_sample("k", &seqs, 9),
            "k: … 6, 7, 8, 9, 4, 10, 11, 12 …"
        );
    }

    #[test]
    fn classifies_every_kind() {
        let ledger = Ledger::new();
        let (ok, lost, dup, stranger, ambiguous) = (
            MessageId::new(),
            MessageId::new(),
            MessageId::new(),
            MessageId::new(),
            MessageId::new(),
        );
        for id in [ok, lost, dup] {
            ledger.confirmed(id);
        }
        ledger.attempted(ambiguous);
        ledger.effect(ok, Some(("k", 1)));
        ledger.effect(dup, Some(("k", 2)));
        ledger.effect(dup, None);
        ledger.effect(stranger, Some(("j", 2)));
        ledger.effect(ambiguous, Some(("j", 1)));
        let r = ledger.report();
        assert_eq!(r.delivered, 1);
        assert_eq!(r.lost, vec![lost]);
        assert_eq!(r.duplicated, vec![dup]);
        assert_eq!(r.unexpected, vec![stranger]);
        assert_eq!(r.unconfirmed_delivered, 1);
        assert_eq!(r.order_violations, vec!["j".to_owned()]);
        assert_eq!(r.inversion_samples, vec!["j: 2, 1".to_owned()]);
        assert!(!r.is_clean());
    }
}
