//! Reading a topic from a consumer group's committed offsets to the end it had when the read
//! began, and moving those offsets: what a redrive needs from a log it cannot delete from.
//!
//! Both run a consumer that is assigned its partitions (it never joins the group, so no
//! rebalance moves anything while a command runs) and never commits on its own. Blocking
//! calls: run them on a blocking thread.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use waybill_core::{BrokerError, Message};

use crate::config::KafkaConfig;
use crate::error_class::broker_error;
use crate::wire;

/// How long one metadata, offset or watermark request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a read may go without a record before it gives up on the partitions still short
/// of their end.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A record read back, with its place in the log.
#[derive(Clone, Debug)]
pub(crate) struct LogRecord {
    pub partition: i32,
    pub offset: i64,
    pub message: Message,
}

/// What a read found.
#[derive(Debug, Default)]
pub(crate) struct LogRead {
    /// The records in the order read (each partition's in offset order).
    pub records: Vec<LogRecord>,
    /// Per partition, where the read began: the group's committed offset, or the log's start
    /// when the group has none (or it lies before what the log still keeps).
    pub floors: BTreeMap<i32, i64>,
    /// Whether the read stopped at its limit before every partition's end.
    pub truncated: bool,
}

impl LogRead {
    /// Per partition, the offset a group may commit once every record for which `done` holds
    /// is gone: the first record from the floor on that is not done (or the end of what was
    /// read). Only partitions whose floor moves are listed.
    pub(crate) fn advanced_floors(&self, done: impl Fn(&LogRecord) -> bool) -> BTreeMap<i32, i64> {
        let mut by_partition: HashMap<i32, Vec<&LogRecord>> = HashMap::new();
        for record in &self.records {
            by_partition
                .entry(record.partition)
                .or_default()
                .push(record);
        }
        let mut advanced = BTreeMap::new();
        for (&partition, &floor) in &self.floors {
            let mut records = by_partition.remove(&partition).unwrap_or_default();
            records.sort_by_key(|r| r.offset);
            let mut next = floor;
            for record in records {
                if !done(record) {
                    break;
                }
                next = record.offset + 1;
            }
            if next > floor {
                advanced.insert(partition, next);
            }
        }
        advanced
    }
}

/// A consumer for `group` that reads by assignment and commits only when told.
fn reader(config: &KafkaConfig, group: &str) -> Result<BaseConsumer, BrokerError> {
    let mut settings = config.consumer(group);
    settings
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    settings
        .create()
        .map_err(|e| broker_error("dead letters", &e))
}

/// The partitions of `topic`, or `None` when the cluster does not know the topic.
fn partitions(consumer: &BaseConsumer, topic: &str) -> Result<Option<Vec<i32>>, BrokerError> {
    let metadata = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(|e| broker_error("dead letters", &e))?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    if found.error().is_some() || found.partitions().is_empty() {
        return Ok(None);
    }
    Ok(Some(found.partitions().iter().map(|p| p.id()).collect()))
}

/// Reads `topic` from `group`'s committed offsets (from the log's start without `group`, or
/// where it has none) up to the end each partition had when the read began, at most `limit`
/// records; `None` when the topic does not exist.
///
/// # Errors
/// The cluster unreachable, or a partition that stops answering before its end for
/// 30 seconds (transient).
pub(crate) fn read(
    config: &KafkaConfig,
    topic: &str,
    group: Option<&str>,
    limit: usize,
) -> Result<Option<LogRead>, BrokerError> {
    // Without a group the consumer still needs an id; it never commits.
    let consumer = reader(config, group.unwrap_or("waybill-log-reader"))?;
    let Some(partitions) = partitions(&consumer, topic)? else {
        return Ok(None);
    };
    let committed = match group {
        Some(_) => {
            let mut asked = TopicPartitionList::new();
            for &p in &partitions {
                asked.add_partition(topic, p);
            }
            Some(
                consumer
                    .committed_offsets(asked, REQUEST_TIMEOUT)
                    .map_err(|e| broker_error("dead letters", &e))?,
            )
        }
        None => None,
    };
    let mut read = LogRead::default();
    let mut ends = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for &p in &partitions {
        let (start, end) = consumer
            .fetch_watermarks(topic, p, REQUEST_TIMEOUT)
            .map_err(|e| broker_error("dead letters", &e))?;
        let floor = match committed
            .as_ref()
            .and_then(|c| c.find_partition(topic, p))
            .map(|e| e.offset())
        {
            Some(Offset::Offset(n)) => n.max(start),
            _ => start,
        };
        read.floors.insert(p, floor);
        if floor < end {
            ends.insert(p, end);
            assignment
                .add_partition_offset(topic, p, Offset::Offset(floor))
                .map_err(|e| broker_error("dead letters", &e))?;
        }
    }
    if ends.is_empty() {
        return Ok(Some(read));
    }
    consumer
        .assign(&assignment)
        .map_err(|e| broker_error("dead letters", &e))?;
    let mut last_progress = Instant::now();
    while !ends.is_empty() {
        if read.records.len() >= limit {
            read.truncated = true;
            break;
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(record)) => {
                last_progress = Instant::now();
                let p = record.partition();
                if ends.get(&p).is_some_and(|&end| record.offset() < end) {
                    read.records.push(LogRecord {
                        partition: p,
                        offset: record.offset(),
                        message: wire::message(&record),
                    });
                }
                if ends.get(&p).is_some_and(|&end| record.offset() + 1 >= end) {
                    ends.remove(&p);
                }
            }
            Some(Err(e)) => return Err(broker_error("dead letters", &e)),
            None => {
                // A partition may end in records a reader never sees (transaction markers):
                // its position then reaches the end without a record.
                if let Ok(positions) = consumer.position() {
                    ends.retain(|&p, &mut end| {
                        !matches!(
                            positions.find_partition(topic, p).map(|e| e.offset()),
                            Some(Offset::Offset(n)) if n >= end
                        )
                    });
                }
                if !ends.is_empty() && last_progress.elapsed() > STALL_TIMEOUT {
                    return Err(BrokerError::transient(
                        "dead letters",
                        format!(
                            "{topic}: partitions {:?} stopped answering before their end",
                            ends.keys().collect::<Vec<_>>()
                        ),
                    ));
                }
            }
        }
    }
    Ok(Some(read))
}

/// Commits `floors` (partition → next offset to read) for `group` on `topic`.
///
/// # Errors
/// The cluster unreachable, or the group refusing a commit from outside it (a member of the
/// group is running).
pub(crate) fn commit(
    config: &KafkaConfig,
    topic: &str,
    group: &str,
    floors: &BTreeMap<i32, i64>,
) -> Result<(), BrokerError> {
    if floors.is_empty() {
        return Ok(());
    }
    let consumer = reader(config, group)?;
    let mut offsets = TopicPartitionList::new();
    for (&p, &next) in floors {
        offsets
            .add_partition_offset(topic, p, Offset::Offset(next))
            .map_err(|e| broker_error("dead letters", &e))?;
    }
    consumer.commit(&offsets, CommitMode::Sync).map_err(|e| {
        BrokerError::transient(
            "dead letters",
            format!(
                "group {group} did not take the offsets of {topic} ({e}); is a reader of it \
                 running? Stop it and run the command again"
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(partition: i32, offset: i64) -> LogRecord {
        LogRecord {
            partition,
            offset,
            message: Message::new("x"),
        }
    }

    #[test]
    fn a_floor_moves_over_the_done_records_it_starts_with_only() {
        let read = LogRead {
            records: vec![
                record(0, 5),
                record(1, 0),
                record(0, 6),
                record(0, 8),
                record(1, 1),
            ],
            floors: BTreeMap::from([(0, 5), (1, 0), (2, 3)]),
            truncated: false,
        };
        // Partition 0: 5 and 6 done, 8 not; the gap at 7 (a marker) is passed over.
        // Partition 1: 0 not done, so 1 stays behind it. Partition 2: nothing read.
        let done = |r: &LogRecord| matches!((r.partition, r.offset), (0, 5) | (0, 6) | (1, 1));
        assert_eq!(read.advanced_floors(done), BTreeMap::from([(0, 7)]));
        let all = read.advanced_floors(|_| true);
        assert_eq!(all, BTreeMap::from([(0, 9), (1, 2)]));
    }
}
