//! Reading a topic's message queues from a consumer group's committed offsets to the ends they
//! had when the read began, and moving those offsets: what a redrive needs from a topic it
//! cannot delete from.
//!
//! The committed offsets are read from the brokers' consume stats and written with one
//! `UPDATE_CONSUMER_OFFSET` request per queue to the queue's master, through an admin client:
//! the group's own consumers are not involved, and each write is answered. The records are
//! read by a lite pull consumer of a separate group that is assigned the queues (it joins no
//! rebalance), seeks each to its floor and never commits.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use cheetah_string::CheetahString;
use rocketmq_client_rust::{ConsumerAdmin, DefaultLitePullConsumer, OffsetAdmin, TopicAdmin};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::mix_all::MASTER_ID;
use rocketmq_model::message::MessageQueue;
use tokio::time::Instant;
use waybill_core::{BrokerError, Message};

use crate::admin::RocketAdmin;
use crate::config::RocketConfig;
use crate::error_class::{broker_error, broker_error_at};
use crate::route_state::RouteState;
use crate::runtime::pull_consumer;
use crate::wire;

/// How long one offset or stats request may take, in milliseconds.
const REQUEST_TIMEOUT_MS: u64 = 5_000;

/// How long a read may go without a new record before it gives up on the queues still short
/// of their end.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one poll of the reading consumer waits, in milliseconds.
const POLL_MS: u64 = 500;

/// A message queue of one topic: broker name and queue id.
pub(crate) type QueueId = (String, i32);

/// A record read back, with its place.
#[derive(Clone, Debug)]
pub(crate) struct QueueRecord {
    pub queue: QueueId,
    pub offset: i64,
    pub message: Message,
}

/// What a read found.
#[derive(Debug, Default)]
pub(crate) struct QueueRead {
    /// The topic read.
    pub topic: String,
    /// The records in the order read (each queue's in offset order).
    pub records: Vec<QueueRecord>,
    /// Per queue, where the read began: the group's committed offset, or the queue's min
    /// offset when the group has none (or it lies before what the broker still keeps).
    pub floors: BTreeMap<QueueId, i64>,
    /// The master broker address of each broker name.
    pub masters: HashMap<String, String>,
    /// Whether the read stopped at its limit before every queue's end.
    pub truncated: bool,
}

impl QueueRead {
    /// Per queue, the offset a group may commit once every record for which `done` holds is
    /// gone: the first record from the floor on that is not done (or the end of what was
    /// read). Only queues whose floor moves are listed.
    pub(crate) fn advanced_floors(
        &self,
        done: impl Fn(&QueueRecord) -> bool,
    ) -> BTreeMap<QueueId, i64> {
        let mut by_queue: HashMap<&QueueId, Vec<&QueueRecord>> = HashMap::new();
        for record in &self.records {
            by_queue.entry(&record.queue).or_default().push(record);
        }
        let mut advanced = BTreeMap::new();
        for (queue, &floor) in &self.floors {
            let mut records = by_queue.remove(queue).unwrap_or_default();
            records.sort_by_key(|r| r.offset);
            let mut next = floor;
            for record in records {
                if record.offset != next || !done(record) {
                    break;
                }
                next = record.offset + 1;
            }
            if next > floor {
                advanced.insert(queue.clone(), next);
            }
        }
        advanced
    }
}

/// One queue to read: from `floor` up to (not including) `end`.
struct Span {
    queue: MessageQueue,
    floor: i64,
    end: i64,
}

/// Reads `topic` from `group`'s committed offsets (from each queue's min offset without
/// `group`, or where it has none) up to the end each queue had when the read began, at most
/// `limit` records, with a consumer of `reading_group`; `None` when the name server, knowing
/// brokers, has no route for the topic.
///
/// # Errors
/// Transient when the name server or a broker does not answer, the topic has no route right
/// now without being known missing, or a queue stops giving records before its end for 30 s;
/// permanent when a broker refuses for good.
pub(crate) async fn read(
    config: &RocketConfig,
    admin: &RocketAdmin,
    topic: &str,
    group: Option<&str>,
    reading_group: &str,
    limit: usize,
) -> Result<Option<QueueRead>, BrokerError> {
    let Some((masters, queues)) = layout(admin, topic).await? else {
        return Ok(None);
    };
    let mut read = QueueRead {
        topic: topic.to_owned(),
        masters: masters.clone(),
        ..QueueRead::default()
    };
    let committed = match group {
        Some(group) => committed_offsets(admin, group, topic, &masters).await?,
        None => HashMap::new(),
    };
    let mut spans = Vec::new();
    for queue in queues {
        let addr = CheetahString::from(masters[queue.broker_name().as_str()].as_str());
        let (min, max) = {
            let client = admin.client().lock().await;
            let min = client
                .min_offset(addr.clone(), queue.clone(), REQUEST_TIMEOUT_MS)
                .await
                .map_err(|e| broker_error_at("dead letters", &e, Some(admin.name_server())))?;
            let max = client
                .max_offset(addr, queue.clone(), REQUEST_TIMEOUT_MS)
                .await
                .map_err(|e| broker_error_at("dead letters", &e, Some(admin.name_server())))?;
            (min, max)
        };
        let id = queue_id(&queue);
        let floor = committed.get(&id).copied().unwrap_or(-1).max(min).min(max);
        read.floors.insert(id, floor);
        if floor < max {
            spans.push(Span {
                queue,
                floor,
                end: max,
            });
        }
    }
    if !spans.is_empty() {
        pull(config, reading_group, &spans, limit, &mut read).await?;
    }
    Ok(Some(read))
}

/// The master address of each broker serving `topic`, and its readable queues; `None` when
/// the topic is known missing.
async fn layout(
    admin: &RocketAdmin,
    topic: &str,
) -> Result<Option<(HashMap<String, String>, Vec<MessageQueue>)>, BrokerError> {
    match admin.route_state(topic, Duration::ZERO).await? {
        RouteState::Writable(_) => {}
        absent if absent.is_authoritative_absence() => return Ok(None),
        unserved => {
            return Err(BrokerError::transient(
                "dead letters",
                unserved.explain(topic),
            ))
        }
    }
    let client = admin.client().lock().await;
    let route = client
        .examine_topic_route_info(topic.into())
        .await
        .map_err(|e| broker_error_at("dead letters", &e, Some(admin.name_server())))?
        .ok_or_else(|| {
            BrokerError::transient("dead letters", format!("topic {topic} lost its route"))
        })?;
    let mut masters = HashMap::new();
    for broker in &route.broker_datas {
        let Some(addr) = broker.broker_addrs().get(&MASTER_ID) else {
            return Err(BrokerError::transient(
                "dead letters",
                format!(
                    "broker {} of topic {topic} has no master right now",
                    broker.broker_name()
                ),
            ));
        };
        masters.insert(broker.broker_name().to_string(), addr.to_string());
    }
    let mut queues = Vec::new();
    for data in &route.queue_datas {
        let broker = data.broker_name().to_string();
        if !masters.contains_key(&broker) {
            return Err(BrokerError::transient(
                "dead letters",
                format!("broker {broker} of topic {topic} is not in its route right now"),
            ));
        }
        for id in 0..data.read_queue_nums() {
            let id = i32::try_from(id).unwrap_or(i32::MAX);
            queues.push(MessageQueue::from_parts(topic, broker.as_str(), id));
        }
    }
    Ok(Some((masters, queues)))
}

/// `group`'s committed offset on each queue of `topic`, as the masters' consume stats give
/// them (a queue the group never committed on may be missing or at 0).
async fn committed_offsets(
    admin: &RocketAdmin,
    group: &str,
    topic: &str,
    masters: &HashMap<String, String>,
) -> Result<HashMap<QueueId, i64>, BrokerError> {
    let client = admin.client().lock().await;
    let mut committed = HashMap::new();
    for addr in masters.values() {
        let stats = client
            .examine_consume_stats(
                group.into(),
                Some(topic.into()),
                None,
                Some(addr.as_str().into()),
                Some(REQUEST_TIMEOUT_MS),
            )
            .await
            .map_err(|e| broker_error_at("dead letters", &e, Some(admin.name_server())))?;
        for (queue, offsets) in &stats.offset_table {
            if queue.topic_str() == topic {
                committed.insert(queue_id(queue), offsets.get_consumer_offset());
            }
        }
    }
    Ok(committed)
}

/// Commits `floors` as `group`'s offsets on `read`'s topic, one answered request per queue.
///
/// # Errors
/// As a broker answers; the queues before the failed one are committed.
pub(crate) async fn commit(
    admin: &RocketAdmin,
    read: &QueueRead,
    group: &str,
    floors: &BTreeMap<QueueId, i64>,
) -> Result<(), BrokerError> {
    let client = admin.client().lock().await;
    for ((broker, id), &offset) in floors {
        let addr = read.masters.get(broker).ok_or_else(|| {
            BrokerError::transient("dead letters", format!("no master for broker {broker}"))
        })?;
        client
            .update_consume_offset(
                addr.as_str().into(),
                group.into(),
                MessageQueue::from_parts(read.topic.as_str(), broker.as_str(), *id),
                u64::try_from(offset).unwrap_or(0),
            )
            .await
            .map_err(|e| broker_error_at("dead letters", &e, Some(admin.name_server())))?;
    }
    Ok(())
}

fn queue_id(queue: &MessageQueue) -> QueueId {
    (queue.broker_name().to_string(), queue.queue_id())
}

/// Pulls every span to its end (or `limit` records in all) into `read`.
async fn pull(
    config: &RocketConfig,
    reading_group: &str,
    spans: &[Span],
    limit: usize,
    read: &mut QueueRead,
) -> Result<(), BrokerError> {
    let consumer = pull_consumer(config, reading_group)?
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .poll_timeout_millis(POLL_MS)
        .broker_suspend_max_time_millis(1_000)
        .consumer_timeout_millis_when_suspend(3_000)
        .consumer_pull_timeout_millis(REQUEST_TIMEOUT_MS)
        .build()
        .map_err(|e| broker_error("dead letters", &e))?;
    consumer
        .start()
        .await
        .map_err(|e| broker_error("dead letters", &e))?;
    let pulled = pull_started(&consumer, spans, limit, read).await;
    consumer.shutdown().await;
    pulled
}

async fn pull_started(
    consumer: &DefaultLitePullConsumer,
    spans: &[Span],
    limit: usize,
    read: &mut QueueRead,
) -> Result<(), BrokerError> {
    // An assigned consumer learns no route by itself: without this its client instance knows
    // no address for the queues' brokers, and every pull and seek fails.
    let topics: std::collections::BTreeSet<&str> =
        spans.iter().map(|s| s.queue.topic_str()).collect();
    for topic in topics {
        consumer
            .fetch_message_queues(topic)
            .await
            .map_err(|e| broker_error("dead letters", &e))?;
    }
    consumer
        .assign(spans.iter().map(|s| s.queue.clone()).collect())
        .await
        .map_err(|e| broker_error("dead letters", &e))?;
    for span in spans {
        consumer
            .seek(&span.queue, span.floor)
            .await
            .map_err(|e| broker_error("dead letters", &e))?;
    }
    // Per queue: the next offset wanted and the end.
    let mut next: HashMap<QueueId, (i64, i64)> = spans
        .iter()
        .map(|s| (queue_id(&s.queue), (s.floor, s.end)))
        .collect();
    let mut progress = Instant::now();
    while next.values().any(|(at, end)| at < end) {
        if read.records.len() >= limit {
            read.truncated = true;
            return Ok(());
        }
        let batch: Vec<MessageExt> = consumer.poll_with_timeout(POLL_MS).await;
        for ext in batch {
            let id = (ext.broker_name.to_string(), ext.queue_id);
            let Some((at, end)) = next.get_mut(&id) else {
                continue;
            };
            // Records before the floor (a pull that began before the seek) or read twice are
            // passed over; records appended after the read began are not read.
            if ext.queue_offset != *at || *at >= *end || read.records.len() >= limit {
                continue;
            }
            *at += 1;
            progress = Instant::now();
            read.records.push(QueueRecord {
                queue: id,
                offset: ext.queue_offset,
                message: wire::message(&ext),
            });
        }
        if progress.elapsed() >= STALL_TIMEOUT {
            let short: Vec<String> = next
                .iter()
                .filter(|(_, (at, end))| at < end)
                .map(|((broker, id), (at, end))| format!("{broker}:{id} at {at} of {end}"))
                .collect();
            return Err(BrokerError::transient(
                "dead letters",
                format!(
                    "{} stopped giving records before the end it had when the read began ({})",
                    read.topic,
                    short.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(broker: &str, id: i32, offset: i64) -> QueueRecord {
        QueueRecord {
            queue: (broker.to_owned(), id),
            offset,
            message: Message::new("x"),
        }
    }

    #[test]
    fn the_floor_passes_the_leading_records_that_are_done_and_stops_at_a_gap() {
        let read = QueueRead {
            records: vec![
                record("b", 0, 5),
                record("b", 0, 6),
                record("b", 0, 7),
                record("b", 1, 0),
                record("b", 1, 1),
            ],
            floors: BTreeMap::from([
                (("b".to_owned(), 0), 5),
                (("b".to_owned(), 1), 0),
                (("b".to_owned(), 2), 9),
            ]),
            ..QueueRead::default()
        };
        let done = |r: &QueueRecord| r.offset != 7 && !(r.queue.1 == 1 && r.offset == 0);
        let floors = read.advanced_floors(done);
        assert_eq!(floors, BTreeMap::from([(("b".to_owned(), 0), 7)]));
        let all = read.advanced_floors(|_| true);
        assert_eq!(all[&("b".to_owned(), 0)], 8);
        assert_eq!(all[&("b".to_owned(), 1)], 2);
        assert!(
            !all.contains_key(&("b".to_owned(), 2)),
            "nothing read there"
        );
    }
}
