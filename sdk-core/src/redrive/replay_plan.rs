//! The steps of a redrive that do not depend on how a backend reads or removes dead letters:
//! which letters a command selects, the order and the waves a replay publishes them in, and
//! what a wave's confirms mean.

use std::collections::HashSet;
use std::ops::Range;
use std::time::SystemTime;

use super::{replay_order, DeadLetter, DeadLetterFilter, Pace};
use crate::broker_error::BrokerError;
use crate::publish_error::PublishError;
use crate::publisher::Publisher;
use crate::receipt::Receipt;

/// The most messages a replay publishes before it waits for their confirms and removes them
/// from the dead-letter queue: a crash loses at most this many removals (those messages are
/// replayed again by the next command, with their ids, which an inbox drops).
pub const MAX_WAVE: usize = 256;

impl DeadLetterFilter {
    /// The positions in `letters` (in the order they were read) that this filter selects at
    /// `now`, the first ones up to its limit.
    pub fn select<'a>(
        &self,
        letters: impl IntoIterator<Item = &'a DeadLetter>,
        now: SystemTime,
    ) -> Vec<usize> {
        let mut selected = Vec::new();
        for (i, letter) in letters.into_iter().enumerate() {
            if self.limit.is_some_and(|limit| selected.len() >= limit) {
                break;
            }
            if self.matches(letter, now) {
                selected.push(i);
            }
        }
        selected
    }
}

/// What a replay publishes, in order, and what it leaves.
#[derive(Debug)]
pub struct ReplayPlan<'a, P> {
    /// The selected letters that carry a record, each with its place in the backend's queue,
    /// in [`replay_order`].
    pub order: Vec<(P, &'a DeadLetter)>,
    /// Selected letters left where they are: they carry no record, so their origin is unknown.
    pub skipped_without_record: u64,
}

impl<'a, P: Clone> ReplayPlan<'a, P> {
    /// Plans the replay of `selected` (letters with their places, in the order they were
    /// read).
    pub fn new(selected: impl IntoIterator<Item = (P, &'a DeadLetter)>) -> Self {
        let (with_record, without): (Vec<_>, Vec<_>) = selected
            .into_iter()
            .partition(|(_, letter)| letter.record.is_ok());
        let letters: Vec<&DeadLetter> = with_record.iter().map(|(_, l)| *l).collect();
        let order = replay_order(&letters)
            .into_iter()
            .map(|i| with_record[i].clone())
            .collect();
        Self {
            order,
            skipped_without_record: without.len() as u64,
        }
    }

    /// The waves of this plan, as ranges of [`ReplayPlan::order`]: runs of consecutive letters
    /// with at most one letter per key (a key's next letter goes only after the one before it
    /// was confirmed) and at most [`MAX_WAVE`] letters, or a second's worth at `rate`
    /// messages per second, so that the pace holds per message.
    pub fn waves(&self, rate: Option<u32>) -> Vec<Range<usize>> {
        let size = rate
            .filter(|r| *r > 0)
            .map_or(MAX_WAVE, |r| (r as usize).clamp(1, MAX_WAVE));
        let mut waves = Vec::new();
        let mut start = 0;
        let mut keys: HashSet<&str> = HashSet::new();
        for (i, (_, letter)) in self.order.iter().enumerate() {
            let key = letter.message.key();
            if i - start >= size || key.is_some_and(|k| keys.contains(k)) {
                waves.push(start..i);
                start = i;
                keys.clear();
            }
            if let Some(k) = key {
                keys.insert(k);
            }
        }
        if start < self.order.len() {
            waves.push(start..self.order.len());
        }
        waves
    }
}

/// What publishing one wave of a replay did.
#[derive(Debug)]
pub struct WaveOutcome {
    /// For each letter of the wave, whether its replay was confirmed (it may be removed).
    pub confirmed: Vec<bool>,
    /// The first refusal, if any: the replay stops after the confirmed ones are removed (the
    /// others of the wave hold other keys, so nothing overtook a refused letter).
    pub refused: Option<BrokerError>,
}

/// Waits for `pace` to allow the wave's letters, then publishes their replay messages to
/// `target` (with `now` as `waybill-replayed-at`) and reports what was confirmed.
pub async fn publish_wave<Pub: Publisher + ?Sized>(
    publisher: &Pub,
    pace: &mut Pace,
    target: &str,
    wave: &[&DeadLetter],
    now: SystemTime,
) -> WaveOutcome {
    for _ in wave {
        pace.next().await;
    }
    let messages = wave.iter().map(|l| l.replay_message(now)).collect();
    let results = publisher.publish_batch(target, messages).await;
    let mut refused = None;
    let confirmed = wave
        .iter()
        .zip(results)
        .map(|(letter, result)| match result {
            Ok(_) => true,
            Err(e) => {
                refused.get_or_insert(BrokerError::from_publish(
                    "replay",
                    e.outcome(),
                    format!(
                        "the replay of {} to {target} was refused: {}",
                        letter.message.id(),
                        e.reason()
                    ),
                ));
                false
            }
        })
        .collect();
    WaveOutcome { confirmed, refused }
}

/// The error a replay that stopped on `error` returns: what stopped it, how many letters were
/// replayed and removed before, and where the rest stay. Keeps "the destination is not there
/// yet" recognisable.
pub fn replay_stopped(error: &BrokerError, replayed: usize, dead_letters: &str) -> BrokerError {
    let reason = format!(
        "{}; {replayed} dead letters were replayed and removed before it, the rest stay in \
         {dead_letters}",
        error.reason()
    );
    if error.is_destination_missing() {
        BrokerError::destination_missing("replay", reason)
    } else {
        BrokerError::new(error.class(), "replay", reason)
    }
}

/// The first failure among the confirms of redrive markers (the records of letters removed
/// by a redrive where the broker cannot remove them yet), as the error the command returns.
///
/// # Errors
/// The first refused marker, classified by its publish outcome.
pub fn markers_written(results: Vec<Result<Receipt, PublishError>>) -> Result<(), BrokerError> {
    for result in results {
        result.map_err(|e| {
            BrokerError::from_publish(
                "dead letters",
                e.outcome(),
                format!("a redrive marker was not written: {}", e.reason()),
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dead_letter::{DeadLetterRecord, ErrorClass};
    use crate::message::Message;

    fn letter(key: Option<&str>, with_record: bool) -> DeadLetter {
        let mut message = Message::new("x");
        if let Some(key) = key {
            message = message.with_key(key);
        }
        if with_record {
            let at = SystemTime::UNIX_EPOCH;
            let record = DeadLetterRecord {
                message_id: message.id(),
                origin: "orders".into(),
                partition: None,
                offset: None,
                group: "g".into(),
                attempts: 1,
                first_failure_at: at,
                last_failure_at: at,
                error_class: ErrorClass::Permanent,
                error_message: "boom".into(),
                held_behind: None,
            };
            record.write_to(message.headers_mut());
        }
        DeadLetter::read(message)
    }

    #[test]
    fn a_wave_holds_one_letter_per_key_and_letters_without_a_key_anywhere() {
        let letters = [
            letter(Some("a"), true),
            letter(Some("b"), true),
            letter(None, true),
            letter(Some("a"), true),
            letter(None, true),
            letter(Some("b"), true),
            letter(Some("c"), true),
        ];
        let plan = ReplayPlan::new(letters.iter().enumerate());
        assert_eq!(plan.waves(None), vec![0..3, 3..7]);
    }

    #[test]
    fn a_rate_makes_waves_of_a_second_s_worth_and_the_size_is_capped() {
        let letters: Vec<DeadLetter> = (0..600)
            .map(|i| letter(Some(&format!("k{i}")), true))
            .collect();
        let plan = ReplayPlan::new(letters.iter().enumerate());
        assert_eq!(plan.waves(Some(250)), vec![0..250, 250..500, 500..600]);
        assert_eq!(plan.waves(None), vec![0..256, 256..512, 512..600]);
        assert_eq!(plan.waves(Some(0)), plan.waves(None), "0 is no rate");
    }

    #[test]
    fn letters_without_a_record_are_skipped_and_counted() {
        let letters = [
            letter(Some("a"), false),
            letter(Some("a"), true),
            letter(None, false),
        ];
        let plan = ReplayPlan::new(letters.iter().enumerate());
        assert_eq!(plan.skipped_without_record, 2);
        assert_eq!(
            plan.order
                .iter()
                .map(|(place, _)| *place)
                .collect::<Vec<_>>(),
            vec![1]
        );
    }

    #[test]
    fn a_filter_selects_up_to_its_limit() {
        let letters: Vec<DeadLetter> = (0..5).map(|_| letter(None, true)).collect();
        let filter = DeadLetterFilter {
            limit: Some(3),
            ..DeadLetterFilter::default()
        };
        assert_eq!(filter.select(&letters, SystemTime::now()), vec![0, 1, 2]);
        assert_eq!(
            DeadLetterFilter::default().select(&letters, SystemTime::now()),
            vec![0, 1, 2, 3, 4]
        );
    }
}
