//! Broker dead-letter redrive, the part every backend shares: which dead letters a command
//! acts on ([`DeadLetterFilter`]), one dead letter as read back ([`DeadLetter`]), the message
//! a replay sends ([`DeadLetter::replay_message`]), the order and waves it publishes them in
//! ([`ReplayPlan`]) and what a command did ([`RedriveReport`]).
//!
//! Each backend reads its own dead-letter queue (`waybill_rabbitmq::RabbitDeadLetters`,
//! `waybill_kafka::KafkaDeadLetters`, `waybill_rocketmq::RocketDeadLetters`) and keeps the
//! rules every redrive follows:
//!
//! - a dead letter is removed (acknowledged) only after its replay is confirmed, so a redrive
//!   that crashes half way can bring a message twice — with its original id, which an inbox
//!   drops — and never loses one;
//! - replayed messages keep their order per key (one confirmed at a time per key);
//! - a dead letter without a record (sent there by another tool) is never replayed: its
//!   origin is unknown. It is listed, counted as skipped, and purged only by a purge that
//!   names everything (`DeadLetterFilter::everything`).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime};

use crate::dead_letter::{DeadLetterRecord, ErrorClass, RecordError};
use crate::header_names as names;
use crate::message::Message;
use crate::message_id::MessageId;
use crate::wire_time;

mod replay_plan;

pub use replay_plan::{
    markers_written, publish_wave, replay_stopped, ReplayPlan, WaveOutcome, MAX_WAVE,
};

/// Which dead letters a redrive command acts on. Every condition set must hold; an empty
/// filter matches every dead letter (a purge refuses it unless [`DeadLetterFilter::all`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeadLetterFilter {
    /// Only these message ids (none: any id).
    pub message_ids: Vec<MessageId>,
    /// Only dead letters whose last failure was of this class.
    pub error_class: Option<ErrorClass>,
    /// Only dead letters whose last failure is at least this old.
    pub older_than: Option<Duration>,
    /// At most this many dead letters, the oldest first: in the log's order on Kafka and
    /// RocketMQ, by the records' failure times on RabbitMQ (whose queues do not keep the
    /// order of messages a reader gave back).
    pub limit: Option<usize>,
    /// Stated intent to act on every dead letter (a purge refuses an empty filter without
    /// it); it also lets a purge remove dead letters that carry no record.
    pub all: bool,
}

impl DeadLetterFilter {
    /// A filter that names everything: every dead letter, records or not.
    pub fn everything() -> Self {
        Self {
            all: true,
            ..Self::default()
        }
    }

    /// Refuses a filter that would purge every dead letter without saying so.
    ///
    /// # Errors
    /// A message asking for a narrowing condition or `all`.
    pub fn check_purge(&self) -> Result<(), String> {
        if self.is_unnarrowed() && !self.all {
            return Err(
                "a purge needs a filter (message ids, error class, age) or `all`".to_owned(),
            );
        }
        Ok(())
    }

    /// Whether no condition narrows the selection (ids, class, age).
    pub fn is_unnarrowed(&self) -> bool {
        self.message_ids.is_empty() && self.error_class.is_none() && self.older_than.is_none()
    }

    /// Whether `letter` is selected at `now` (the limit is the reader's to count). A dead
    /// letter without a record is selected by its message id, or by a filter with `all` and
    /// nothing narrowing it ([`DeadLetterFilter::everything`]).
    pub fn matches(&self, letter: &DeadLetter, now: SystemTime) -> bool {
        let record = match &letter.record {
            Ok(record) => record,
            // Without a record only the message's id can be asked about.
            Err(_) if !self.message_ids.is_empty() => {
                return self.error_class.is_none()
                    && self.older_than.is_none()
                    && self.message_ids.contains(&letter.message.id());
            }
            Err(_) => return self.all && self.is_unnarrowed(),
        };
        if !self.message_ids.is_empty() && !self.message_ids.contains(&record.message_id) {
            return false;
        }
        if self
            .error_class
            .is_some_and(|class| class != record.error_class)
        {
            return false;
        }
        if let Some(age) = self.older_than {
            let dead_for = now
                .duration_since(record.last_failure_at)
                .unwrap_or_default();
            if dead_for < age {
                return false;
            }
        }
        true
    }
}

/// One dead letter as read from a dead-letter queue: the message as it sits there, and its
/// record (or why it has none).
#[derive(Clone, Debug)]
pub struct DeadLetter {
    /// The dead-lettered message (its id is the original's).
    pub message: Message,
    /// What happened to it, from the `waybill-dl-*` headers; an error when another tool put
    /// the message there without them.
    pub record: Result<DeadLetterRecord, RecordError>,
}

impl DeadLetter {
    /// A dead letter read from `message`'s headers.
    pub fn read(message: Message) -> Self {
        let record = DeadLetterRecord::read_from(message.headers());
        Self { message, record }
    }

    /// The message a replay publishes: the same id, key, payload and user headers; the
    /// attempt count reset (no `waybill-attempt`, `waybill-first-failure-at`,
    /// `waybill-not-before`), the dead-letter record removed, and `waybill-replayed-at` set
    /// to `now`, which tells an inbox that holds the id as dead-lettered to handle it again.
    pub fn replay_message(&self, now: SystemTime) -> Message {
        let mut message = self.message.clone();
        let headers = message.headers_mut();
        for name in [
            names::ATTEMPT,
            names::FIRST_FAILURE_AT,
            names::NOT_BEFORE,
            names::DL_MESSAGE_ID,
            names::DL_ORIGIN,
            names::DL_PARTITION,
            names::DL_OFFSET,
            names::DL_GROUP,
            names::DL_ATTEMPTS,
            names::DL_FIRST_FAILURE_AT,
            names::DL_LAST_FAILURE_AT,
            names::DL_ERROR_CLASS,
            names::DL_ERROR_MESSAGE,
            names::DL_HELD_BEHIND,
        ] {
            headers.remove(name);
        }
        headers.insert(names::REPLAYED_AT, wire_time::format_millis(now));
        message
    }
}

/// The order in which a replay publishes `letters` (given in the order they were read):
/// indices into `letters`. Each key's dead letters go in the order they failed — by the
/// record's `last_failure_at`, then by message id (ids made by `MessageId::new` grow with
/// their creation in a process) — and take the places the key's letters had in the queue.
/// A letter held behind another one of the selection ([`ErrorClass::Held`], key-holding
/// mode) goes right after it and the letters held before it, whenever that one failed last:
/// a head that was replayed and failed again is still replayed before the messages it held.
///
/// The queue's own order is not enough: a broker that gives a message back after a reader
/// crashed (a replay killed before the message's copy was stored) may put it behind the
/// key's later messages (RabbitMQ quorum queues do). Letters without a record or a key keep
/// their places.
pub fn replay_order(letters: &[&DeadLetter]) -> Vec<usize> {
    let mut by_key: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, letter) in letters.iter().enumerate() {
        if let (Some(key), Ok(_)) = (letter.message.key(), &letter.record) {
            by_key.entry(key).or_default().push(i);
        }
    }
    let failed = |i: usize| {
        let record = letters[i].record.as_ref().ok();
        (
            record.map_or(SystemTime::UNIX_EPOCH, |r| r.last_failure_at),
            letters[i].message.id(),
        )
    };
    let mut sorted: HashMap<&str, VecDeque<usize>> = by_key
        .into_iter()
        .map(|(key, mut places)| {
            let by_id: HashMap<MessageId, usize> = places
                .iter()
                .map(|&i| (letters[i].message.id(), i))
                .collect();
            // A held letter sorts as its head (followed), then by its own failure.
            let anchor = |i: usize| {
                letters[i]
                    .record
                    .as_ref()
                    .ok()
                    .and_then(|r| r.held_behind)
                    .and_then(|head| by_id.get(&head).copied())
                    .filter(|&head| head != i)
            };
            places.sort_by_key(|&i| match anchor(i) {
                Some(head) => (failed(head), true, failed(i)),
                None => (failed(i), false, failed(i)),
            });
            (key, places.into())
        })
        .collect();
    (0..letters.len())
        .map(|i| {
            let letter = letters[i];
            match (letter.message.key(), &letter.record) {
                (Some(key), Ok(_)) => sorted
                    .get_mut(key)
                    .and_then(VecDeque::pop_front)
                    .expect("one place per letter of the key"),
                _ => i,
            }
        })
        .collect()
}

/// How a replay publishes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayOptions {
    /// Publish to this topic instead of the dead letter's origin.
    pub to: Option<String>,
    /// At most this many messages per second (none: as fast as confirms come).
    pub rate: Option<u32>,
    /// Read and count what would move, change nothing.
    pub dry_run: bool,
}

/// What a redrive command did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RedriveReport {
    /// Dead letters still in the queue that the command read (a letter an earlier redrive
    /// removed is not counted, also where the broker keeps it until older letters go).
    pub scanned: u64,
    /// Dead letters the filter selected (within its limit).
    pub matched: u64,
    /// Selected dead letters published again and then removed.
    pub replayed: u64,
    /// Selected dead letters removed without a replay.
    pub purged: u64,
    /// Selected dead letters left where they were because they carry no record (a replay
    /// needs the record's origin).
    pub skipped_without_record: u64,
    /// Whether nothing was changed because this was a dry run.
    pub dry_run: bool,
}

/// Paces a redrive at `rate` messages per second (none: as fast as confirms come).
#[derive(Debug)]
pub struct Pace {
    rate: Option<f64>,
    started: tokio::time::Instant,
    sent: u64,
}

impl Pace {
    /// A pace of `rate` messages per second; `None` or 0 does not wait.
    pub fn new(rate: Option<u32>) -> Self {
        Self {
            rate: rate.filter(|r| *r > 0).map(f64::from),
            started: tokio::time::Instant::now(),
            sent: 0,
        }
    }

    /// Waits until one more message may go.
    pub async fn next(&mut self) {
        if let Some(rate) = self.rate {
            let due = self.started + Duration::from_secs_f64(self.sent as f64 / rate);
            tokio::time::sleep_until(due).await;
        }
        self.sent += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::Headers;

    fn dead(class: ErrorClass, dead_for: Duration) -> DeadLetter {
        let message = Message::new("body")
            .with_key("k")
            .with_header("user", "kept")
            .with_header(names::ATTEMPT, "5");
        let now = SystemTime::now();
        let record = DeadLetterRecord {
            message_id: message.id(),
            origin: "orders".into(),
            partition: None,
            offset: None,
            group: "billing".into(),
            attempts: 5,
            first_failure_at: now - dead_for - Duration::from_secs(1),
            last_failure_at: now - dead_for,
            error_class: class,
            error_message: "boom".into(),
            held_behind: None,
        };
        let mut headers = message.headers().clone();
        record.write_to(&mut headers);
        DeadLetter::read(message.with_headers(headers))
    }

    #[test]
    fn filters_select_by_id_class_and_age() {
        let now = SystemTime::now();
        let old = dead(ErrorClass::Permanent, Duration::from_secs(3600));
        let new = dead(ErrorClass::Transient, Duration::from_secs(1));
        assert!(DeadLetterFilter::default().matches(&old, now));
        let by_class = DeadLetterFilter {
            error_class: Some(ErrorClass::Transient),
            ..DeadLetterFilter::default()
        };
        assert!(!by_class.matches(&old, now) && by_class.matches(&new, now));
        let by_age = DeadLetterFilter {
            older_than: Some(Duration::from_secs(60)),
            ..DeadLetterFilter::default()
        };
        assert!(by_age.matches(&old, now) && !by_age.matches(&new, now));
        let by_id = DeadLetterFilter {
            message_ids: vec![new.message.id()],
            ..DeadLetterFilter::default()
        };
        assert!(!by_id.matches(&old, now) && by_id.matches(&new, now));
    }

    #[test]
    fn a_dead_letter_without_a_record_is_selected_only_by_everything() {
        let foreign = DeadLetter::read(Message::new("from another tool"));
        assert!(foreign.record.is_err());
        let now = SystemTime::now();
        assert!(!DeadLetterFilter::default().matches(&foreign, now));
        assert!(DeadLetterFilter::everything().matches(&foreign, now));
        let narrowed = DeadLetterFilter {
            error_class: Some(ErrorClass::Panic),
            ..DeadLetterFilter::everything()
        };
        assert!(!narrowed.matches(&foreign, now));
        let by_id = DeadLetterFilter {
            message_ids: vec![foreign.message.id()],
            ..DeadLetterFilter::default()
        };
        assert!(by_id.matches(&foreign, now));
    }

    #[test]
    fn the_replay_keeps_the_id_and_user_headers_and_resets_the_attempts() {
        let letter = dead(ErrorClass::Permanent, Duration::from_secs(5));
        let replay = letter.replay_message(SystemTime::now());
        assert_eq!(replay.id(), letter.message.id());
        assert_eq!(replay.key(), Some("k"));
        assert_eq!(replay.payload(), letter.message.payload());
        let headers: &Headers = replay.headers();
        assert_eq!(headers.get("user"), Some("kept"));
        assert!(headers.get(names::ATTEMPT).is_none());
        assert!(headers.iter().all(|(n, _)| !n.starts_with("waybill-dl-")));
        assert!(headers.get(names::REPLAYED_AT).is_some());
    }

    /// A dead letter of `key` that failed at second `secs` (of an arbitrary epoch), held
    /// behind `behind` when given.
    fn failed_at(key: &str, secs: u64, behind: Option<MessageId>) -> DeadLetter {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000 + secs);
        let message = Message::new("x").with_key(key);
        let record = DeadLetterRecord {
            message_id: message.id(),
            origin: "orders".into(),
            partition: None,
            offset: None,
            group: "g".into(),
            attempts: 1,
            first_failure_at: at,
            last_failure_at: at,
            error_class: behind.map_or(ErrorClass::Permanent, |_| ErrorClass::Held),
            error_message: "boom".into(),
            held_behind: behind,
        };
        let mut headers = message.headers().clone();
        record.write_to(&mut headers);
        DeadLetter::read(message.with_headers(headers))
    }

    /// The ids of `read` in the order a replay publishes them.
    fn replayed(read: &[&DeadLetter]) -> Vec<MessageId> {
        replay_order(read)
            .into_iter()
            .map(|i| read[i].message.id())
            .collect()
    }

    fn ids(letters: &[&DeadLetter]) -> Vec<MessageId> {
        letters.iter().map(|l| l.message.id()).collect()
    }

    #[test]
    fn a_letter_given_back_behind_its_successors_is_replayed_before_them() {
        // a1 was given back behind a2 and a3; b1 and the foreign letter keep their places.
        let a1 = failed_at("a", 1, None);
        let a2 = failed_at("a", 2, None);
        let a3 = failed_at("a", 3, None);
        let b1 = failed_at("b", 1, None);
        let foreign = DeadLetter::read(Message::new("y").with_key("a"));
        assert_eq!(
            replayed(&[&a2, &b1, &foreign, &a3, &a1]),
            ids(&[&a1, &b1, &foreign, &a2, &a3])
        );
        // Equal failure times fall back to the ids' creation order.
        let c1 = failed_at("c", 5, None);
        let c2 = failed_at("c", 5, None);
        assert!(c1.message.id() < c2.message.id());
        assert_eq!(replay_order(&[&c2, &c1]), vec![1, 0]);
    }

    #[test]
    fn letters_held_behind_a_head_are_replayed_after_it_even_when_it_failed_again_later() {
        // v died first; x died, held y and z, was replayed and died again at 10; w was held
        // behind a head that is not in the selection (replayed on its own).
        let v = failed_at("k", 1, None);
        let x = failed_at("k", 10, None);
        let y = failed_at("k", 3, Some(x.message.id()));
        let z = failed_at("k", 4, Some(x.message.id()));
        let w = failed_at("k", 12, Some(MessageId::new()));
        assert_eq!(replayed(&[&z, &w, &y, &x, &v]), ids(&[&v, &x, &y, &z, &w]));
    }

    #[tokio::test(start_paused = true)]
    async fn the_pace_spreads_messages_over_time() {
        let started = tokio::time::Instant::now();
        let mut pace = Pace::new(Some(10));
        for _ in 0..11 {
            pace.next().await;
        }
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        let mut unpaced = Pace::new(None);
        let again = tokio::time::Instant::now();
        for _ in 0..100 {
            unpaced.next().await;
        }
        assert_eq!(again.elapsed(), Duration::ZERO);
    }
}
