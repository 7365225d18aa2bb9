//! A group's dead-letter topic for operators: list, replay, purge (see `waybill_core::redrive`
//! for the rules every backend's redrive keeps).
//!
//! A Kafka topic cannot lose a record from its middle, so "removed" means two things here:
//!
//! - **The floor.** Consumer group `<group>.dlq-reader` (the group
//!   [`KafkaSubscriber::dead_letters`](crate::KafkaSubscriber::dead_letters) reads with) has a
//!   committed offset per partition of `<topic>.<group>.dlq`; every record before it is gone.
//! - **Redrive markers** for the records after the floor that a command replayed or purged
//!   while an earlier record of their partition stayed (a filter chose them, not their
//!   neighbours): one small record each in `<topic>.<group>.dlq.redriven`, keyed by the dead
//!   letter's partition and offset. Commands hide the records they name.
//!
//! A command reads the dead-letter topic from the floor to the end it had when the command
//! began (at most [`MAX_SCAN`] records), hides the marked ones, selects with its filter, acts,
//! then writes the markers it needs and moves the floor over every leading record that is
//! gone — in that order, each only after what it records was confirmed. A crash in between
//! leaves a replayed dead letter in place, so a later replay sends it again: a duplicate with
//! its original id, which an inbox drops, never a loss.
//!
//! A replay publishes each selected dead letter to its group's retry topic
//! `<topic>.<group>.retry` without a not-before time (only that group reads it, at once; the
//! topic itself would reach every other group too), or with [`ReplayOptions::to`] to another
//! topic, through the idempotent `acks=all` publisher. It publishes in waves that hold at most
//! one message of a key, each wave confirmed before the next, in the order
//! `waybill_core::redrive::replay_order` gives: a key's replayed messages arrive in the order
//! they failed, and a refused publish stops the replay before any later message of its key.
//!
//! Run one command per group at a time, and not while a `dead_letters()` reader of the group
//! runs: the group refuses the floor's commit from outside while it has a member (the command
//! then fails after its replays, which a later run sends again). That reader reads the raw log
//! and does not know the markers.

use std::collections::HashSet;
use std::time::SystemTime;

use waybill_core::redrive::{
    markers_written, publish_wave, replay_stopped, DeadLetter, DeadLetterFilter, Pace,
    RedriveReport, ReplayOptions, ReplayPlan,
};
use waybill_core::{BrokerError, Message, Publisher as _};

use crate::admin::{create_topic, topic_layout};
use crate::config::KafkaConfig;
use crate::log_range::{self, LogRead, LogRecord};
use crate::names::{check_topic, GroupTopics};
use crate::publisher::KafkaPublisher;

/// The most dead letters one command reads (they are held in memory until it ends). A larger
/// topic is worked through by running the command again: the floor moves.
pub const MAX_SCAN: usize = 100_000;

/// The header of a redrive marker that says what happened to its dead letter.
const MARKER_ACTION: &str = "waybill-redrive-action";

/// The dead-letter topic `<topic>.<group>.dlq` of one topic and consumer group.
///
/// ```no_run
/// # async fn demo() -> Result<(), waybill_core::BrokerError> {
/// use waybill_core::redrive::{DeadLetterFilter, ReplayOptions};
/// use waybill_kafka::{KafkaConfig, KafkaDeadLetters};
///
/// let config = KafkaConfig::builder("127.0.0.1:9092").build().unwrap();
/// let dead = KafkaDeadLetters::new(config, "orders", "billing")?;
/// for letter in dead.list(&DeadLetterFilter::default()).await? {
///     println!("{} {:?}", letter.message.id(), letter.record.map(|r| r.error_message));
/// }
/// let report = dead.replay(&DeadLetterFilter::default(), &ReplayOptions::default()).await?;
/// println!("replayed {}", report.replayed);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct KafkaDeadLetters {
    config: KafkaConfig,
    names: GroupTopics,
    group: String,
    /// The group whose committed offsets are the floor.
    reader_group: String,
    /// Where the markers go.
    marker_topic: String,
}

/// What a command does with the dead letters its filter selects.
enum Action<'a> {
    List,
    Replay(&'a ReplayOptions),
    Purge,
}

impl KafkaDeadLetters {
    /// The dead-letter topic of `group` on `topic` (no connection is made yet).
    ///
    /// # Errors
    /// A permanent error for a topic or group name Kafka cannot take.
    pub fn new(config: KafkaConfig, topic: &str, group: &str) -> Result<Self, BrokerError> {
        let invalid =
            |e: waybill_core::ConfigError| BrokerError::permanent("dead letters", e.to_string());
        let names = GroupTopics::new(topic, group).map_err(invalid)?;
        let marker_topic = format!("{}.redriven", names.dead_letter);
        check_topic(&marker_topic).map_err(invalid)?;
        Ok(Self {
            config,
            names,
            group: group.to_owned(),
            reader_group: format!("{group}.dlq-reader"),
            marker_topic,
        })
    }

    /// The dead-letter topic's name.
    pub fn dead_letter_topic(&self) -> &str {
        &self.names.dead_letter
    }

    /// The dead letters `filter` selects, oldest first per partition, up to its limit;
    /// nothing is removed.
    ///
    /// # Errors
    /// The cluster unreachable, or a permanent error naming the topic when it does not exist.
    pub async fn list(&self, filter: &DeadLetterFilter) -> Result<Vec<DeadLetter>, BrokerError> {
        let mut listed = Vec::new();
        self.run(filter, Action::List, &mut listed).await?;
        Ok(listed)
    }

    /// Publishes the dead letters `filter` selects again (see the module docs), each removed
    /// only after its copy is confirmed; dead letters without a record are left and counted.
    ///
    /// # Errors
    /// As for [`KafkaDeadLetters::list`]; a refused publish stops the replay with the error,
    /// after the confirmed ones were removed, and leaves the rest.
    pub async fn replay(
        &self,
        filter: &DeadLetterFilter,
        options: &ReplayOptions,
    ) -> Result<RedriveReport, BrokerError> {
        self.run(filter, Action::Replay(options), &mut Vec::new())
            .await
    }

    /// Removes the dead letters `filter` selects without replaying them.
    ///
    /// # Errors
    /// A permanent error for a filter that narrows nothing without `all` (nothing removed);
    /// otherwise as for [`KafkaDeadLetters::list`].
    pub async fn purge(&self, filter: &DeadLetterFilter) -> Result<RedriveReport, BrokerError> {
        filter
            .check_purge()
            .map_err(|e| BrokerError::permanent("purge", e))?;
        self.run(filter, Action::Purge, &mut Vec::new()).await
    }

    async fn run(
        &self,
        filter: &DeadLetterFilter,
        action: Action<'_>,
        listed: &mut Vec<DeadLetter>,
    ) -> Result<RedriveReport, BrokerError> {
        crate::connect_probe::check_reachable(&self.config).await?;
        let log = self.read_dead_letters().await?;
        let marked = self.read_markers().await?;
        let visible: Vec<(&LogRecord, DeadLetter)> = log
            .records
            .iter()
            .filter(|r| !marked.contains(&(r.partition, r.offset)))
            .map(|r| (r, DeadLetter::read(r.message.clone())))
            .collect();
        let now = SystemTime::now();
        let selected = filter.select(visible.iter().map(|(_, l)| l), now);
        let mut report = RedriveReport {
            scanned: visible.len() as u64,
            matched: selected.len() as u64,
            dry_run: matches!(action, Action::Replay(o) if o.dry_run),
            ..RedriveReport::default()
        };
        match action {
            Action::List => {
                listed.extend(selected.iter().map(|&i| visible[i].1.clone()));
                Ok(report)
            }
            Action::Purge => {
                let mut removal = Removal::open(self, &log, marked, "purged").await?;
                let places = selected.iter().map(|&i| place(visible[i].0));
                removal.gone.extend(places);
                report.purged = removal.gone.len() as u64;
                removal.settle().await?;
                removal.close().await;
                Ok(report)
            }
            Action::Replay(options) => {
                let plan = ReplayPlan::new(
                    selected
                        .iter()
                        .map(|&i| (place(visible[i].0), &visible[i].1)),
                );
                report.skipped_without_record = plan.skipped_without_record;
                if options.dry_run {
                    return Ok(report);
                }
                let mut removal = Removal::open(self, &log, marked, "replayed").await?;
                let replayed = removal.replay(&plan, options, now).await;
                removal.close().await;
                report.replayed = removal.gone.len() as u64;
                replayed
                    .map(|()| report)
                    .map_err(|e| replay_stopped(&e, removal.gone.len(), &self.names.dead_letter))
            }
        }
    }

    async fn read_dead_letters(&self) -> Result<LogRead, BrokerError> {
        let (config, topic, group) = (
            self.config.clone(),
            self.names.dead_letter.clone(),
            self.reader_group.clone(),
        );
        let read = tokio::task::spawn_blocking(move || {
            log_range::read(&config, &topic, Some(&group), MAX_SCAN)
        })
        .await
        .map_err(|e| BrokerError::transient("dead letters", e.to_string()))??;
        read.ok_or_else(|| {
            BrokerError::permanent(
                "dead letters",
                format!(
                    "the dead-letter topic {} does not exist: no subscriber of group {:?} on \
                     topic {:?} has created it on this cluster",
                    self.names.dead_letter, self.group, self.names.topic
                ),
            )
        })
    }

    /// The places of the dead letters marked as gone.
    async fn read_markers(&self) -> Result<HashSet<(i32, i64)>, BrokerError> {
        let (config, topic) = (self.config.clone(), self.marker_topic.clone());
        let read =
            tokio::task::spawn_blocking(move || log_range::read(&config, &topic, None, usize::MAX))
                .await
                .map_err(|e| BrokerError::transient("dead letters", e.to_string()))??;
        Ok(read
            .map(|r| r.records)
            .unwrap_or_default()
            .iter()
            .filter_map(|r| parse_place(r.message.key()?))
            .collect())
    }
}

/// A record's place: partition and offset.
fn place(record: &LogRecord) -> (i32, i64) {
    (record.partition, record.offset)
}

/// Removing dead letters from one read: what is gone so far, and recording it.
struct Removal<'a> {
    dead: &'a KafkaDeadLetters,
    log: &'a LogRead,
    publisher: KafkaPublisher,
    /// Marked before or by this command.
    marked: HashSet<(i32, i64)>,
    /// Replayed or purged by this command.
    gone: HashSet<(i32, i64)>,
    /// What the markers say happened.
    action: &'static str,
    marker_topic_ready: bool,
}

impl<'a> Removal<'a> {
    async fn open(
        dead: &'a KafkaDeadLetters,
        log: &'a LogRead,
        marked: HashSet<(i32, i64)>,
        action: &'static str,
    ) -> Result<Self, BrokerError> {
        Ok(Self {
            dead,
            log,
            // `run` probed the cluster a moment ago.
            publisher: KafkaPublisher::connect_reached(dead.config.clone())?,
            marked,
            gone: HashSet::new(),
            action,
            marker_topic_ready: false,
        })
    }

    async fn close(&self) {
        let _ = self.publisher.close().await;
    }

    /// Publishes `plan` in its waves, removing each wave's confirmed letters before the next
    /// wave goes; stops at the first wave with a refused publish.
    async fn replay(
        &mut self,
        plan: &ReplayPlan<'_, (i32, i64)>,
        options: &ReplayOptions,
        now: SystemTime,
    ) -> Result<(), BrokerError> {
        let target = options
            .to
            .clone()
            .unwrap_or_else(|| self.dead.names.retry.clone());
        check_topic(&target).map_err(|e| BrokerError::permanent("replay", e.to_string()))?;
        let mut pace = Pace::new(options.rate);
        for wave in plan.waves(options.rate) {
            let wave = &plan.order[wave];
            let letters: Vec<&DeadLetter> = wave.iter().map(|(_, l)| *l).collect();
            let outcome = publish_wave(&self.publisher, &mut pace, &target, &letters, now).await;
            let confirmed = wave.iter().zip(&outcome.confirmed).filter(|(_, ok)| **ok);
            self.gone.extend(confirmed.map(|((at, _), _)| *at));
            self.settle().await?;
            if let Some(refused) = outcome.refused {
                return Err(refused);
            }
        }
        Ok(())
    }

    /// Records that the dead letters in `gone` are gone: markers for those the floor cannot
    /// pass yet, then the floor over every leading record that is marked or gone.
    async fn settle(&mut self) -> Result<(), BrokerError> {
        let floors = self
            .log
            .advanced_floors(|r| self.gone.contains(&place(r)) || self.marked.contains(&place(r)));
        let floor_of = |partition: i32| {
            floors
                .get(&partition)
                .or_else(|| self.log.floors.get(&partition))
                .copied()
                .unwrap_or(0)
        };
        let unmarked: Vec<(i32, i64)> = self
            .gone
            .iter()
            .filter(|&&(partition, offset)| offset >= floor_of(partition))
            .filter(|place| !self.marked.contains(place))
            .copied()
            .collect();
        if !unmarked.is_empty() {
            self.write_markers(&unmarked).await?;
            self.marked.extend(unmarked);
        }
        let (config, topic, group) = (
            self.dead.config.clone(),
            self.dead.names.dead_letter.clone(),
            self.dead.reader_group.clone(),
        );
        tokio::task::spawn_blocking(move || log_range::commit(&config, &topic, &group, &floors))
            .await
            .map_err(|e| BrokerError::transient("dead letters", e.to_string()))?
    }

    async fn write_markers(&mut self, places: &[(i32, i64)]) -> Result<(), BrokerError> {
        let config = &self.dead.config;
        if !self.marker_topic_ready {
            let replication = topic_layout(config, &self.dead.names.dead_letter)
                .await?
                .map_or(1, |layout| layout.replication);
            create_topic(config, &self.dead.marker_topic, 1, replication).await?;
            self.marker_topic_ready = true;
        }
        let markers = places
            .iter()
            .map(|(partition, offset)| {
                Message::new("")
                    .with_key(format!("{partition}:{offset}"))
                    .with_header(MARKER_ACTION, self.action)
            })
            .collect();
        markers_written(
            self.publisher
                .publish_batch(&self.dead.marker_topic, markers)
                .await,
        )
    }
}

/// `partition:offset` as written in a marker's key.
fn parse_place(key: &str) -> Option<(i32, i64)> {
    let (partition, offset) = key.split_once(':')?;
    Some((partition.parse().ok()?, offset.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_key_names_its_place() {
        assert_eq!(parse_place("3:1200"), Some((3, 1200)));
        assert_eq!(parse_place("3"), None);
        assert_eq!(parse_place("x:1"), None);
    }

    #[test]
    fn the_names_derive_from_topic_and_group() {
        let config = KafkaConfig::builder("127.0.0.1:9092").build().unwrap();
        let dead = KafkaDeadLetters::new(config.clone(), "orders", "billing").unwrap();
        assert_eq!(dead.dead_letter_topic(), "orders.billing.dlq");
        assert_eq!(dead.marker_topic, "orders.billing.dlq.redriven");
        assert_eq!(dead.reader_group, "billing.dlq-reader");
        assert!(KafkaDeadLetters::new(config, "orders v1", "billing").is_err());
    }
}
