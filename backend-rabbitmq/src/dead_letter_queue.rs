//! A group's dead-letter queue for operators: list, replay, purge (see `waybill_core::redrive`
//! for the rules every backend's redrive keeps).
//!
//! A command reads the whole queue first through a consumer (at most 65,535 messages, held
//! in memory; a larger queue is worked through by running the command again; the read ends
//! even while new dead letters arrive, see `queue_snapshot`), holding every message
//! unacknowledged; then it acts on those its filter selects; then it gives the others back by
//! closing its channel, as a crash would. RabbitMQ's quorum queues do not keep the order of
//! messages given back (nor of messages a crashed reader held), so nothing here relies on
//! the queue's order: a listing shows the letters oldest failure first, by their records, and
//! a replay orders each key's letters by their records
//! (`waybill_core::redrive::replay_order`). The dead-letter queue's delivery limit is out of
//! reach, so reading a dead letter again and again never drops it.
//!
//! A replay publishes each selected dead letter to its group's work queue through the
//! default exchange (only that group receives it: the topic's exchange would also reach every
//! other group bound to it) — for a partitioned group, to its partition exchange on the key
//! route, so each message reaches its key's partition —, or with [`ReplayOptions::to`] to
//! another topic's exchange, on one
//! confirm channel, and acknowledges the dead letter only after the broker confirmed the
//! copy. Publishes are pipelined, but never two of one key at once: a message waits for the
//! confirm of its key's previous one, so the replayed messages of a key reach the queue in
//! the order they failed, and a refused publish stops the replay before any later message of
//! its key was sent.

use std::collections::{HashSet, VecDeque};
use std::time::SystemTime;

use lapin::options::{ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ExchangeKind, PublisherConfirm};
use waybill_core::redrive::{
    replay_stopped, DeadLetter, DeadLetterFilter, Pace, RedriveReport, ReplayOptions, ReplayPlan,
};
use waybill_core::{validate_name, BrokerError, ConfigError, MessageId};

use crate::config::RabbitConfig;
use crate::confirm_channel::{confirmed, send, unroutable};
use crate::connect::connect;
use crate::error_class::{broker_error, reply_code};
use crate::handover::queue_counts;
use crate::key_route::key_routing_key;
use crate::queue_snapshot::{give_back, read_held};
use crate::removals::Removals;
use crate::topology::check_lengths;
use crate::topology_names::QueueNames;
use crate::wire;

/// Publishes a replay keeps unconfirmed at once (never two of one key).
const REPLAY_WINDOW: usize = 256;

/// The dead-letter queue `<topic>.<group>.dlq` of one topic and consumer group.
///
/// ```no_run
/// # async fn demo() -> Result<(), waybill_core::BrokerError> {
/// use waybill_core::redrive::{DeadLetterFilter, ReplayOptions};
/// use waybill_rabbitmq::{RabbitConfig, RabbitDeadLetters};
///
/// let config = RabbitConfig::builder("amqp://guest:guest@127.0.0.1:5672/%2f").build().unwrap();
/// let dead = RabbitDeadLetters::new(config, "orders", "billing")?;
/// for letter in dead.list(&DeadLetterFilter::default()).await? {
///     println!("{} {:?}", letter.message.id(), letter.record.map(|r| r.error_message));
/// }
/// let report = dead.replay(&DeadLetterFilter::default(), &ReplayOptions::default()).await?;
/// println!("replayed {}", report.replayed);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct RabbitDeadLetters {
    config: RabbitConfig,
    topic: String,
    group: String,
    names: QueueNames,
}

/// What a scan does with the dead letters its filter selects.
enum Action<'a> {
    List,
    Replay(&'a ReplayOptions),
    Purge,
}

impl RabbitDeadLetters {
    /// The dead-letter queue of `group` on `topic` (no connection is made yet).
    ///
    /// # Errors
    /// A permanent error for a topic or group name RabbitMQ cannot take.
    pub fn new(config: RabbitConfig, topic: &str, group: &str) -> Result<Self, BrokerError> {
        let invalid = |e: ConfigError| BrokerError::permanent("dead letters", e.to_string());
        validate_name("topic", topic).map_err(invalid)?;
        validate_name("group", group).map_err(invalid)?;
        let names = QueueNames::new(topic, group);
        check_lengths(&names, &config).map_err(invalid)?;
        Ok(Self {
            config,
            topic: topic.to_owned(),
            group: group.to_owned(),
            names,
        })
    }

    /// The queue's name.
    pub fn queue(&self) -> &str {
        &self.names.dead_letter
    }

    /// The dead letters `filter` selects, oldest failure first (by their records; letters
    /// without a record last), up to its limit; nothing is removed.
    ///
    /// # Errors
    /// The broker unreachable, or a permanent error naming the queue when it does not exist.
    pub async fn list(&self, filter: &DeadLetterFilter) -> Result<Vec<DeadLetter>, BrokerError> {
        let mut listed = Vec::new();
        self.scan(filter, Action::List, &mut listed).await?;
        Ok(listed)
    }

    /// Publishes the dead letters `filter` selects again (see the module docs), each removed
    /// only after its copy is confirmed; dead letters without a record are left and counted.
    ///
    /// # Errors
    /// As for [`RabbitDeadLetters::list`]; a refused publish (the destination missing, the
    /// work queue full) stops the replay with the error, after the confirmed ones were
    /// removed, and leaves the rest in the queue.
    pub async fn replay(
        &self,
        filter: &DeadLetterFilter,
        options: &ReplayOptions,
    ) -> Result<RedriveReport, BrokerError> {
        self.scan(filter, Action::Replay(options), &mut Vec::new())
            .await
    }

    /// Removes the dead letters `filter` selects without replaying them.
    ///
    /// # Errors
    /// A permanent error for a filter that narrows nothing without `all` (nothing removed);
    /// otherwise as for [`RabbitDeadLetters::list`].
    pub async fn purge(&self, filter: &DeadLetterFilter) -> Result<RedriveReport, BrokerError> {
        filter
            .check_purge()
            .map_err(|e| BrokerError::permanent("purge", e))?;
        self.scan(filter, Action::Purge, &mut Vec::new()).await
    }

    async fn scan(
        &self,
        filter: &DeadLetterFilter,
        action: Action<'_>,
        listed: &mut Vec<DeadLetter>,
    ) -> Result<RedriveReport, BrokerError> {
        let connection = connect(&self.config, "waybill-dlq").await?;
        let outcome = self.scan_on(&connection, filter, action, listed).await;
        let _ = connection.close(200, "redrive done".into()).await;
        outcome
    }

    async fn scan_on(
        &self,
        connection: &Connection,
        filter: &DeadLetterFilter,
        action: Action<'_>,
        listed: &mut Vec<DeadLetter>,
    ) -> Result<RedriveReport, BrokerError> {
        let reader = connection
            .create_channel()
            .await
            .map_err(|e| broker_error("dead letters", e))?;
        let depth = match queue_counts(&reader, &self.names.dead_letter).await {
            Ok(counts) => counts.ready,
            Err(e) => {
                return Err(match reply_code(&e) {
                    Some(404) => BrokerError::permanent(
                        "dead letters",
                        format!(
                            "the dead-letter queue {} does not exist: no subscriber of group {:?} \
                         on topic {:?} has declared it on this broker",
                            self.names.dead_letter, self.group, self.topic
                        ),
                    ),
                    _ => broker_error("dead letters", e),
                })
            }
        };
        // Everything is read (and held) before anything is removed: a replay orders each
        // key's letters over the whole queue. The queue's own order means nothing (see
        // `queue_snapshot`): the letters are taken oldest failure first, by their records.
        let mut read: Vec<(u64, DeadLetter)> = read_held(&reader, &self.names.dead_letter, depth)
            .await
            .map_err(|e| broker_error("dead letters", e))?
            .into_iter()
            .map(|delivery| {
                let message = wire::message(&delivery.properties, delivery.data);
                (delivery.delivery_tag, DeadLetter::read(message))
            })
            .collect();
        oldest_failure_first(&mut read);
        let now = SystemTime::now();
        let selected = filter.select(read.iter().map(|(_, l)| l), now);
        let mut report = RedriveReport {
            scanned: read.len() as u64,
            matched: selected.len() as u64,
            dry_run: matches!(action, Action::Replay(o) if o.dry_run),
            ..RedriveReport::default()
        };
        let mut removals = Removals::new(reader.clone(), read.len());
        let mut failure = None;
        match action {
            Action::List => listed.extend(selected.iter().map(|&i| read[i].1.clone())),
            Action::Purge => {
                removals
                    .removed(selected.iter().map(|&i| (i, read[i].0)))
                    .await
                    .map_err(|e| broker_error("dead letters", e))?;
                report.purged = selected.len() as u64;
            }
            Action::Replay(options) => {
                let plan = ReplayPlan::new(selected.iter().map(|&i| (i, &read[i].1)));
                report.skipped_without_record = plan.skipped_without_record;
                if !options.dry_run {
                    let target = self.target(connection, options.to.as_deref()).await?;
                    let mut replayer =
                        Replayer::open(connection, &self.config, options, target).await?;
                    for &(i, letter) in &plan.order {
                        let sent = replayer
                            .send(letter, read[i].0, i, now, &mut report, &mut removals)
                            .await;
                        if let Err(e) = sent {
                            failure = Some(e);
                            break;
                        }
                    }
                    if let Err(e) = replayer.drain(&mut report, &mut removals).await {
                        failure.get_or_insert(e);
                    }
                }
            }
        }
        if let Err(e) = removals.finish().await {
            failure.get_or_insert(broker_error("dead letters", e));
        }
        give_back(connection, reader, &self.names.dead_letter, removals.kept()).await;
        match failure {
            Some(e) => Err(replay_stopped(
                &e,
                report.replayed as usize,
                &self.names.dead_letter,
            )),
            None => Ok(report),
        }
    }

    /// Where a replay publishes: `(exchange, routing key)`. To another topic, its exchange;
    /// otherwise the group's work queue, or, for a partitioned group (which has a partition
    /// exchange and no work queue), its partition exchange, on which each message takes its
    /// key's partition ([`Replayer::send`] sets the key route for any exchange).
    async fn target(
        &self,
        connection: &Connection,
        to: Option<&str>,
    ) -> Result<(String, String), BrokerError> {
        if let Some(topic) = to {
            return Ok((topic.to_owned(), String::new()));
        }
        let work_queue = (String::new(), self.names.work.clone());
        if exists(connection, Declared::Queue(&self.names.work)).await? {
            return Ok(work_queue);
        }
        let partitions = self.names.partition_exchange();
        if exists(connection, Declared::Exchange(&partitions)).await? {
            return Ok((partitions, String::new()));
        }
        // Neither: the replay is refused as unroutable, naming the work queue.
        Ok(work_queue)
    }
}

/// A queue or an exchange whose existence a passive declare tells.
enum Declared<'a> {
    Queue(&'a str),
    Exchange(&'a str),
}

/// Whether `what` exists, asked with a passive declare on a channel of its own (a refusal
/// closes the channel).
async fn exists(connection: &Connection, what: Declared<'_>) -> Result<bool, BrokerError> {
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| broker_error("replay", e))?;
    let passive = match what {
        Declared::Queue(queue) => queue_counts(&channel, queue).await.map(|_| ()),
        Declared::Exchange(exchange) => {
            channel
                .exchange_declare(
                    exchange.into(),
                    ExchangeKind::Topic,
                    ExchangeDeclareOptions {
                        passive: true,
                        ..ExchangeDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
        }
    };
    match passive {
        Ok(()) => {
            let _ = channel.close(200, "checked".into()).await;
            Ok(true)
        }
        Err(e) if reply_code(&e) == Some(404) => Ok(false),
        Err(e) => Err(broker_error("replay", e)),
    }
}

/// Puts `read` in the order a listing shows: oldest failure first (by the record's last
/// failure, then by message id), the letters without a record last, in the order they were
/// read (their failure time is unknown).
fn oldest_failure_first(read: &mut [(u64, DeadLetter)]) {
    read.sort_by_cached_key(|(_, letter)| match &letter.record {
        Ok(record) => (false, record.last_failure_at, Some(letter.message.id())),
        Err(_) => (true, SystemTime::UNIX_EPOCH, None),
    });
}

/// One publish awaiting its confirm, and the dead letter it removes once confirmed.
struct InFlight {
    confirm: PublisherConfirm,
    delivery_tag: u64,
    place: usize,
    key: Option<String>,
    id: MessageId,
}

/// The confirm channel of a replay and its pipeline.
struct Replayer {
    channel: Channel,
    confirm_timeout: std::time::Duration,
    exchange: String,
    routing_key: String,
    pace: Pace,
    in_flight: VecDeque<InFlight>,
    keys: HashSet<String>,
}

impl Replayer {
    async fn open(
        connection: &Connection,
        config: &RabbitConfig,
        options: &ReplayOptions,
        (exchange, routing_key): (String, String),
    ) -> Result<Self, BrokerError> {
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| broker_error("replay", e))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| broker_error("replay", e))?;
        Ok(Self {
            channel,
            confirm_timeout: config.confirm_timeout,
            exchange,
            routing_key,
            pace: Pace::new(options.rate),
            in_flight: VecDeque::new(),
            keys: HashSet::new(),
        })
    }

    /// Publishes the replay of `letter`, first waiting for the confirms in flight when its
    /// key has one of them or the window is full.
    async fn send(
        &mut self,
        letter: &DeadLetter,
        delivery_tag: u64,
        place: usize,
        now: SystemTime,
        report: &mut RedriveReport,
        removals: &mut Removals,
    ) -> Result<(), BrokerError> {
        let key = letter.message.key().map(str::to_owned);
        let busy_key = key.as_ref().is_some_and(|k| self.keys.contains(k));
        if busy_key || self.in_flight.len() >= REPLAY_WINDOW {
            self.drain(report, removals).await?;
        }
        self.pace.next().await;
        let message = letter.replay_message(now);
        // To a topic: the key route, which partitioned groups of the topic route on.
        let routing_key = match self.exchange.as_str() {
            "" => self.routing_key.clone(),
            _ => key_routing_key(message.key()),
        };
        let confirm = send(&self.channel, &self.exchange, &routing_key, &message, None)
            .await
            .map_err(|r| BrokerError::from_publish("replay", r.outcome, r.reason))?;
        if let Some(k) = &key {
            self.keys.insert(k.clone());
        }
        self.in_flight.push_back(InFlight {
            confirm,
            delivery_tag,
            place,
            key,
            id: message.id(),
        });
        Ok(())
    }

    /// Waits for every confirm in flight, removing each confirmed message's dead letter; the
    /// first refusal is returned after the others were settled (they hold other keys).
    async fn drain(
        &mut self,
        report: &mut RedriveReport,
        removals: &mut Removals,
    ) -> Result<(), BrokerError> {
        let mut first_failure = None;
        let mut copied = Vec::with_capacity(self.in_flight.len());
        while let Some(sent) = self.in_flight.pop_front() {
            if let Some(k) = &sent.key {
                self.keys.remove(k);
            }
            let refusal = match confirmed(sent.confirm, self.confirm_timeout).await {
                Ok(None) => None,
                Ok(Some(_returned)) => Some(unroutable(&self.exchange, &self.routing_key)),
                Err(refusal) => Some(refusal),
            };
            match refusal {
                None => copied.push((sent.place, sent.delivery_tag)),
                Some(refusal) => {
                    first_failure.get_or_insert(BrokerError::from_publish(
                        "replay",
                        refusal.outcome,
                        format!("the replay of {} was refused: {}", sent.id, refusal.reason),
                    ));
                }
            }
        }
        report.replayed += copied.len() as u64;
        removals
            .removed(copied)
            .await
            .map_err(|e| broker_error("dead letters", e))?;
        first_failure.map_or(Ok(()), Err)
    }
}
