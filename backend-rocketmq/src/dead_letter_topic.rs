//! A group's dead-letter topic for operators: list, replay, purge (see `waybill_core::redrive`
//! for the rules every backend's redrive keeps).
//!
//! A RocketMQ topic cannot lose a message from the middle of a queue, so "removed" means two
//! things here:
//!
//! - **The floor.** Consumer group `<group>_dlq_reader` (the group
//!   [`RocketSubscriber::dead_letters`](crate::RocketSubscriber::dead_letters) reads with) has
//!   a committed offset per message queue of `<topic>_<group>_DLQ`; every message before it is
//!   gone.
//! - **Redrive markers** for the messages after the floor that a command replayed or purged
//!   while an earlier message of their queue stayed (a filter chose them, not their
//!   neighbours): one small message each in `<topic>_<group>_DLQ_REDRIVEN`, keyed by the dead
//!   letter's queue (broker name and queue id) and offset. Commands hide the messages they
//!   name.
//!
//! A command reads the dead-letter topic from the floor to the end it had when the command
//! began (at most [`MAX_SCAN`] messages), hides the marked ones, selects with its filter, acts,
//! then writes the markers it needs and moves the floor over every leading message that is
//! gone — in that order, each only after what it records was confirmed (markers are
//! confirmed sends, the floor is one answered `UPDATE_CONSUMER_OFFSET` request per queue to
//! its master). A crash in between leaves a replayed dead letter in place, so a later replay
//! sends it again: a duplicate with its original id, which an inbox drops, never a loss.
//!
//! A replay publishes each selected dead letter to its group's retry topic
//! `<topic>_<group>_RETRY` without a not-before time (only that group reads it, at once; the
//! topic itself would reach every other group too), or with [`ReplayOptions::to`] to another
//! topic, through the confirmed [`RocketPublisher`]. It publishes in waves that hold at most
//! one message of a key, each wave confirmed before the next, in the order
//! `waybill_core::redrive::replay_order` gives: a key's replayed messages arrive in the order
//! they failed, and a refused publish stops the replay before any later message of its key.
//!
//! The dead letters are read by a lite pull consumer of group `<group>_dlq_redrive`, assigned
//! the queues (it joins no rebalance and never commits); the floor is read from and written to
//! the brokers through an admin client, so a `dead_letters()` reader of the group is not
//! disturbed. Every command, a listing too, creates both groups on the masters when they are
//! missing (brokers refuse offsets and pulls of unknown groups unless they create groups on
//! the fly), and a replay or purge creates the marker topic (one queue per master) the first
//! time it needs a marker. Still, run one command per group at a time, and not while such a reader runs:
//! it commits its own offsets over the floor, and it reads the raw topic without knowing the
//! markers.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use waybill_core::redrive::{
    markers_written, publish_wave, replay_stopped, DeadLetter, DeadLetterFilter, Pace,
    RedriveReport, ReplayOptions, ReplayPlan,
};
use waybill_core::{BrokerError, Message, Publisher as _};

use crate::admin::RocketAdmin;
use crate::config::RocketConfig;
use crate::names::{check_group, check_topic, GroupTopics};
use crate::publisher::RocketPublisher;
use crate::queue_range::{self, QueueId, QueueRead, QueueRecord};
use crate::route_state::RouteState;
use crate::runtime::RocketFuture;

/// The most dead letters one command reads (they are held in memory until it ends). A larger
/// topic is worked through by running the command again: the floor moves.
pub const MAX_SCAN: usize = 100_000;

/// The header of a redrive marker that says what happened to its dead letter.
const MARKER_ACTION: &str = "waybill-redrive-action";

/// A dead letter's place: broker name, queue id and queue offset.
type Place = (String, i32, i64);

/// The dead-letter topic `<topic>_<group>_DLQ` of one topic and consumer group.
///
/// ```no_run
/// # async fn demo() -> Result<(), waybill_core::BrokerError> {
/// use waybill_core::redrive::{DeadLetterFilter, ReplayOptions};
/// use waybill_rocketmq::{RocketConfig, RocketDeadLetters};
///
/// let config = RocketConfig::builder("127.0.0.1:9876").build().unwrap();
/// let dead = RocketDeadLetters::new(config, "orders", "billing")?;
/// for letter in dead.list(&DeadLetterFilter::default()).await? {
///     println!("{} {:?}", letter.message.id(), letter.record.map(|r| r.error_message));
/// }
/// let report = dead.replay(&DeadLetterFilter::default(), &ReplayOptions::default()).await?;
/// println!("replayed {}", report.replayed);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct RocketDeadLetters {
    config: RocketConfig,
    names: GroupTopics,
    group: String,
    /// The group whose committed offsets are the floor.
    reader_group: String,
    /// The group the commands read with (never commits).
    reading_group: String,
    /// Where the markers go.
    marker_topic: String,
}

/// What a command does with the dead letters its filter selects.
enum Action<'a> {
    List,
    Replay(&'a ReplayOptions),
    Purge,
}

impl RocketDeadLetters {
    /// The dead-letter topic of `group` on `topic` (no connection is made yet).
    ///
    /// # Errors
    /// A permanent error for a topic or group name RocketMQ cannot take (the derived names
    /// included: topics up to 127 bytes, groups up to 120).
    pub fn new(config: RocketConfig, topic: &str, group: &str) -> Result<Self, BrokerError> {
        let invalid = |e: crate::InvalidName| BrokerError::permanent("dead letters", e.to_string());
        let names = GroupTopics::new(topic, group).map_err(invalid)?;
        let marker_topic = format!("{}_REDRIVEN", names.dead_letter);
        check_topic(&marker_topic).map_err(invalid)?;
        let reader_group = format!("{group}_dlq_reader");
        let reading_group = format!("{group}_dlq_redrive");
        check_group(&reader_group).map_err(invalid)?;
        check_group(&reading_group).map_err(invalid)?;
        Ok(Self {
            config,
            names,
            group: group.to_owned(),
            reader_group,
            reading_group,
            marker_topic,
        })
    }

    /// The dead-letter topic's name.
    pub fn dead_letter_topic(&self) -> &str {
        &self.names.dead_letter
    }

    /// The dead letters `filter` selects, oldest first per queue, up to its limit; nothing is
    /// removed.
    ///
    /// # Errors
    /// Transient when no name server accepts a connection (within 3 s), a broker does not
    /// answer or a queue stops giving messages before its end; a permanent error naming the
    /// topic and group when the dead-letter topic does not exist.
    pub fn list<'a>(
        &'a self,
        filter: &'a DeadLetterFilter,
    ) -> RocketFuture<'a, Result<Vec<DeadLetter>, BrokerError>> {
        crate::runtime::boxed(async move {
            let mut listed = Vec::new();
            self.run(filter, Action::List, &mut listed).await?;
            Ok(listed)
        })
    }

    /// Publishes the dead letters `filter` selects again (see the module docs), each removed
    /// only after its copy is confirmed; dead letters without a record are left and counted.
    ///
    /// # Errors
    /// As for [`RocketDeadLetters::list`]; a refused publish stops the replay with an error
    /// that says how many were replayed, after the confirmed ones were removed, and leaves
    /// the rest.
    pub fn replay<'a>(
        &'a self,
        filter: &'a DeadLetterFilter,
        options: &'a ReplayOptions,
    ) -> RocketFuture<'a, Result<RedriveReport, BrokerError>> {
        crate::runtime::boxed(async move {
            self.run(filter, Action::Replay(options), &mut Vec::new())
                .await
        })
    }

    /// Removes the dead letters `filter` selects without replaying them.
    ///
    /// # Errors
    /// A permanent error for a filter that narrows nothing without `all` (nothing removed);
    /// otherwise as for [`RocketDeadLetters::list`].
    pub fn purge<'a>(
        &'a self,
        filter: &'a DeadLetterFilter,
    ) -> RocketFuture<'a, Result<RedriveReport, BrokerError>> {
        crate::runtime::boxed(async move {
            filter
                .check_purge()
                .map_err(|e| BrokerError::permanent("purge", e))?;
            self.run(filter, Action::Purge, &mut Vec::new()).await
        })
    }

    async fn run(
        &self,
        filter: &DeadLetterFilter,
        action: Action<'_>,
        listed: &mut Vec<DeadLetter>,
    ) -> Result<RedriveReport, BrokerError> {
        crate::name_server_probe::any_name_server_answers(&self.config)
            .await
            .map_err(|reason| BrokerError::transient("dead letters", reason))?;
        let admin = RocketAdmin::connect(&self.config).await?;
        let result = self.run_with(&admin, filter, action, listed).await;
        admin.close().await;
        result
    }

    async fn run_with(
        &self,
        admin: &RocketAdmin,
        filter: &DeadLetterFilter,
        action: Action<'_>,
        listed: &mut Vec<DeadLetter>,
    ) -> Result<RedriveReport, BrokerError> {
        let log = self.read_dead_letters(admin).await?;
        let marked = self.read_markers(admin).await?;
        let visible: Vec<(&QueueRecord, DeadLetter)> = log
            .records
            .iter()
            .filter(|r| !marked.contains(&place(r)))
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
                let mut removal = Removal::open(self, admin, &log, marked, "purged").await?;
                removal
                    .gone
                    .extend(selected.iter().map(|&i| place(visible[i].0)));
                report.purged = removal.gone.len() as u64;
                let settled = removal.settle().await;
                removal.close().await;
                settled.map(|()| report)
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
                let mut removal = Removal::open(self, admin, &log, marked, "replayed").await?;
                let replayed = removal.replay(&plan, options, now).await;
                removal.close().await;
                report.replayed = removal.gone.len() as u64;
                replayed
                    .map(|()| report)
                    .map_err(|e| replay_stopped(&e, removal.gone.len(), &self.names.dead_letter))
            }
        }
    }

    async fn read_dead_letters(&self, admin: &RocketAdmin) -> Result<QueueRead, BrokerError> {
        let missing = || {
            BrokerError::permanent(
                "dead letters",
                format!(
                    "the dead-letter topic {} does not exist: no subscriber of group {:?} on \
                     topic {:?} has created it on this cluster",
                    self.names.dead_letter, self.group, self.names.topic
                ),
            )
        };
        match admin
            .route_state(&self.names.dead_letter, Duration::ZERO)
            .await?
        {
            RouteState::Writable(_) => {}
            absent if absent.is_authoritative_absence() => return Err(missing()),
            unserved => {
                return Err(BrokerError::transient(
                    "dead letters",
                    unserved.explain(&self.names.dead_letter),
                ))
            }
        }
        // The floor's group (its offsets are written) and the reading one, for brokers that
        // do not create groups on the fly; both exist already after the first command.
        admin.create_group(&self.reader_group).await?;
        admin.create_group(&self.reading_group).await?;
        let read = queue_range::read(
            &self.config,
            admin,
            &self.names.dead_letter,
            Some(&self.reader_group),
            &self.reading_group,
            MAX_SCAN,
        )
        .await?;
        read.ok_or_else(missing)
    }

    /// The places of the dead letters marked as gone.
    async fn read_markers(&self, admin: &RocketAdmin) -> Result<HashSet<Place>, BrokerError> {
        let read = queue_range::read(
            &self.config,
            admin,
            &self.marker_topic,
            None,
            &self.reading_group,
            usize::MAX,
        )
        .await?;
        Ok(read
            .map(|r| r.records)
            .unwrap_or_default()
            .iter()
            .filter_map(|r| parse_place(r.message.key()?))
            .collect())
    }
}

/// A record's place.
fn place(record: &QueueRecord) -> Place {
    (record.queue.0.clone(), record.queue.1, record.offset)
}

/// Removing dead letters from one read: what is gone so far, and recording it.
struct Removal<'a> {
    dead: &'a RocketDeadLetters,
    admin: &'a RocketAdmin,
    log: &'a QueueRead,
    publisher: RocketPublisher,
    /// Marked before or by this command.
    marked: HashSet<Place>,
    /// Replayed or purged by this command.
    gone: HashSet<Place>,
    /// What the markers say happened.
    action: &'static str,
    marker_topic_ready: bool,
}

impl<'a> Removal<'a> {
    async fn open(
        dead: &'a RocketDeadLetters,
        admin: &'a RocketAdmin,
        log: &'a QueueRead,
        marked: HashSet<Place>,
        action: &'static str,
    ) -> Result<Self, BrokerError> {
        Ok(Self {
            dead,
            admin,
            log,
            publisher: RocketPublisher::connect(dead.config.clone()).await?,
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
        plan: &ReplayPlan<'_, Place>,
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
            self.gone.extend(confirmed.map(|((at, _), _)| at.clone()));
            self.settle().await?;
            if let Some(refused) = outcome.refused {
                return Err(refused);
            }
        }
        Ok(())
    }

    /// Records that the dead letters in `gone` are gone: markers for those the floor cannot
    /// pass yet, then the floor over every leading message that is marked or gone.
    async fn settle(&mut self) -> Result<(), BrokerError> {
        let done = |r: &QueueRecord| {
            let at = place(r);
            self.gone.contains(&at) || self.marked.contains(&at)
        };
        let floors = self.log.advanced_floors(done);
        let floor_of = |queue: &QueueId| {
            floors
                .get(queue)
                .or_else(|| self.log.floors.get(queue))
                .copied()
                .unwrap_or(0)
        };
        let unmarked: Vec<Place> = self
            .gone
            .iter()
            .filter(|(broker, id, offset)| *offset >= floor_of(&(broker.clone(), *id)))
            .filter(|at| !self.marked.contains(*at))
            .cloned()
            .collect();
        if !unmarked.is_empty() {
            self.write_markers(&unmarked).await?;
            self.marked.extend(unmarked);
        }
        if floors.is_empty() {
            return Ok(());
        }
        queue_range::commit(self.admin, self.log, &self.dead.reader_group, &floors).await
    }

    async fn write_markers(&mut self, places: &[Place]) -> Result<(), BrokerError> {
        if !self.marker_topic_ready {
            if self
                .admin
                .topic_queues(&self.dead.marker_topic)
                .await?
                .is_none()
            {
                self.admin
                    .create_topic_with_queues(&self.dead.marker_topic, 1)
                    .await?;
            }
            self.marker_topic_ready = true;
        }
        let markers = places
            .iter()
            .map(|at| {
                Message::new(self.action)
                    .with_key(marker_key(at))
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

/// `broker:queue:offset`, a marker's key.
fn marker_key((broker, id, offset): &Place) -> String {
    format!("{broker}:{id}:{offset}")
}

/// The place a marker's key names (the broker name may itself hold a `:`).
fn parse_place(key: &str) -> Option<Place> {
    let mut parts = key.rsplitn(3, ':');
    let offset = parts.next()?.parse().ok()?;
    let id = parts.next()?.parse().ok()?;
    let broker = parts.next().filter(|b| !b.is_empty())?;
    Some((broker.to_owned(), id, offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_key_names_its_place() {
        let at = ("broker-a".to_owned(), 3, 1200);
        assert_eq!(marker_key(&at), "broker-a:3:1200");
        assert_eq!(parse_place(&marker_key(&at)), Some(at));
        assert_eq!(
            parse_place("host:10911:0:7"),
            Some(("host:10911".to_owned(), 0, 7))
        );
        for bad in ["3:1200", ":3:1200", "b:x:1", "b:1:y", "b"] {
            assert_eq!(parse_place(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_names_derive_from_topic_and_group() {
        let config = RocketConfig::builder("127.0.0.1:9876").build().unwrap();
        let dead = RocketDeadLetters::new(config.clone(), "orders", "billing").unwrap();
        assert_eq!(dead.dead_letter_topic(), "orders_billing_DLQ");
        assert_eq!(dead.marker_topic, "orders_billing_DLQ_REDRIVEN");
        assert_eq!(dead.reader_group, "billing_dlq_reader");
        assert_eq!(dead.reading_group, "billing_dlq_redrive");
        assert!(RocketDeadLetters::new(config.clone(), "orders.v1", "billing").is_err());
        // The marker topic is 9 bytes longer than the dead-letter topic, 7 longer than the
        // retry topic: a topic whose group topics fit may still leave it too long.
        let long = "t".repeat(127 - "_billing_RETRY".len());
        assert!(GroupTopics::new(&long, "billing").is_ok());
        assert!(RocketDeadLetters::new(config, &long, "billing").is_err());
    }
}
