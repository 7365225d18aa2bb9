//! Polling the consumer at all times, pausing a partition while too much of it waits for the
//! subscriber's reader.
//!
//! librdkafka expects the application to poll a group member at least every
//! `max.poll.interval.ms` (default 5 min); a member that does not is taken for wedged: it
//! leaves the group, its partitions go to others (or back to it, from the last committed
//! offset) and everything it had read but not committed is delivered again. A subscriber that
//! only polls when asked for the next delivery stops polling whenever its reader stops asking:
//! a Processor whose buffer is full of messages waiting behind a slow handler, or an intake
//! holding as many retried copies as it may.
//!
//! So a thread of its own polls the consumer all the time and hands the records over. What it
//! read and the reader has not taken yet is counted **per partition**, in records and bytes; a
//! partition with [`PAUSE_AT_BYTES`] or [`PAUSE_AT_RECORDS`] waiting is **paused** (nothing
//! more of it is fetched, but polls go on: heartbeats, rebalances and the poll interval stay
//! served), and resumed once the reader has taken it down to a quarter of both. librdkafka
//! then fetches again from the position after the last record handed over, so nothing is
//! skipped or read twice.
//!
//! The bounds lie well above what one fetch brings of a partition (`max.partition.fetch.bytes`,
//! 1 MiB by default): a pause drops what librdkafka had fetched ahead and the next fetch waits
//! behind the one in flight (up to `fetch.wait.max.ms`), so a bound that one fetch response
//! reaches pauses a reader that keeps up. With 500 records it did, on every response: a
//! Processor that handles 2,000 records with nothing to do took 0.55x of its time before.
//!
//! Per partition, not the whole assignment: pausing drops what librdkafka had fetched but not
//! yet handed over, and on resume it fetches that again from the partition's position. Paused
//! and resumed together, the partitions whose records happen to come first in librdkafka's
//! queue would fill the reader's share every time while the others were dropped and fetched
//! again, and never advanced (seen: a partition held at offset 0 through a whole run). A
//! partition is paused only for its own backlog, so every partition moves.
//!
//! A partition revoked while paused is resumed when it is assigned again (librdkafka keeps a
//! partition's pause flag across a revoke). Consumer errors are coalesced: while one waits
//! for the reader, later ones are logged and dropped (an outage produces many, and the reader
//! backs off after each).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message as _, TopicPartitionList};
use tokio::sync::mpsc;
use tokio::sync::{oneshot, Notify};
use waybill_core::Message;

use crate::offsets::PartitionKey;
use crate::wire;

/// Bytes (payload, key and headers) of one partition waiting for the reader at which the
/// partition is paused.
pub(crate) const PAUSE_AT_BYTES: usize = 4 << 20;

/// Records of one partition waiting for the reader at which the partition is paused (for
/// small records, whose bookkeeping outweighs their bytes).
pub(crate) const PAUSE_AT_RECORDS: usize = 10_000;

/// What waits for the reader of one partition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Backlog {
    records: usize,
    bytes: usize,
}

impl Backlog {
    /// Whether the partition should be paused.
    fn is_full(self) -> bool {
        self.records >= PAUSE_AT_RECORDS || self.bytes >= PAUSE_AT_BYTES
    }

    /// Whether a paused partition may be resumed: a quarter of both bounds.
    fn is_drained(self) -> bool {
        self.records <= PAUSE_AT_RECORDS / 4 && self.bytes <= PAUSE_AT_BYTES / 4
    }
}

/// A record read by the poller, with the assignment epoch it was read in.
pub(crate) struct Polled {
    pub partition: PartitionKey,
    pub offset: i64,
    pub message: Message,
    epoch: u64,
    /// Counted against the partition's backlog.
    size: usize,
}

/// What the poller hands over: a record or a consumer error.
pub(crate) type PollResult = Result<Polled, KafkaError>;

/// Backlog, pause and revocation state shared by the poller, the reader and the consumer's
/// rebalance callbacks.
#[derive(Default)]
pub(crate) struct Flow {
    /// Counts revocations; a record carries the value it was read under.
    epoch: AtomicU64,
    /// The epoch at which each partition was last revoked.
    revoked_at: Mutex<HashMap<PartitionKey, u64>>,
    /// Records handed over and not taken by the reader yet, per partition.
    waiting: Mutex<HashMap<PartitionKey, Backlog>>,
    /// The partitions the poller paused.
    paused: Mutex<HashSet<PartitionKey>>,
    /// Woken when a paused partition's backlog fell to a quarter of the bounds.
    resume: Notify,
    /// Whether an error waits for the reader.
    error_waiting: AtomicBool,
}

impl Flow {
    /// A rebalance took `partition` away: records of it read before are stale (its next
    /// owner, maybe this consumer again, reads them from the committed offset).
    pub(crate) fn on_revoked(&self, partition: PartitionKey) {
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        lock(&self.waiting).remove(&partition);
        lock(&self.revoked_at).insert(partition, epoch);
    }

    /// A rebalance assigned `partitions`: any of them this consumer had paused before a
    /// revoke is resumed (librdkafka keeps the flag; its backlog was dropped with the revoke).
    pub(crate) fn on_assigned<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        partitions: &TopicPartitionList,
    ) {
        let mut paused = lock(&self.paused);
        let mut resume = TopicPartitionList::new();
        for p in partitions.elements() {
            if paused.remove(&(p.topic().to_owned(), p.partition())) {
                resume.add_partition(p.topic(), p.partition());
            }
        }
        if resume.count() > 0 {
            if let Err(e) = consumer.resume(&resume) {
                tracing::warn!(error = %e, "reassigned partitions not resumed");
            }
        }
    }

    /// Whether `record` was read before its partition was revoked (drop it: it is read again
    /// from the committed offset by whoever owns the partition now).
    pub(crate) fn is_stale(&self, record: &Polled) -> bool {
        lock(&self.revoked_at)
            .get(&record.partition)
            .is_some_and(|revoked| *revoked > record.epoch)
    }

    /// The reader took `result` from the poller: one record less waiting (the poller is woken
    /// when its partition may be resumed), or the waiting error gone.
    pub(crate) fn taken(&self, result: &PollResult) {
        let Ok(record) = result else {
            self.error_waiting.store(false, Ordering::Release);
            return;
        };
        let mut waiting = lock(&self.waiting);
        if let Some(backlog) = waiting.get_mut(&record.partition) {
            backlog.records = backlog.records.saturating_sub(1);
            backlog.bytes = backlog.bytes.saturating_sub(record.size);
            if backlog.is_drained() && lock(&self.paused).contains(&record.partition) {
                self.resume.notify_one();
            }
        }
    }

    /// One more record of `partition`, of `size` bytes, handed over; whether the partition
    /// should be paused.
    fn handed_over(&self, partition: &PartitionKey, size: usize) -> bool {
        let mut waiting = lock(&self.waiting);
        let backlog = waiting.entry(partition.clone()).or_default();
        backlog.records += 1;
        backlog.bytes += size;
        backlog.is_full() && !lock(&self.paused).contains(partition)
    }

    /// The partitions paused now, sorted.
    pub(crate) fn paused(&self) -> Vec<PartitionKey> {
        let mut paused: Vec<PartitionKey> = lock(&self.paused).iter().cloned().collect();
        paused.sort();
        paused
    }

    /// The paused partitions whose backlog fell to a quarter of the bounds, no longer marked
    /// paused.
    fn take_resumable(&self) -> Vec<PartitionKey> {
        let waiting = lock(&self.waiting);
        let mut paused = lock(&self.paused);
        let resumable: Vec<PartitionKey> = paused
            .iter()
            .filter(|p| waiting.get(*p).copied().unwrap_or_default().is_drained())
            .cloned()
            .collect();
        for p in &resumable {
            paused.remove(p);
        }
        resumable
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The poll loop of one subscriber, on a thread of its own; stops when told, when dropped, or
/// when the reader is gone.
///
/// A thread rather than a task of the caller's runtime: the rebalance callbacks run inside
/// the poll and commit synchronously on revoke, which may wait for the group coordinator.
/// On a runtime task that would block a worker thread; with a few subscribers on a small
/// runtime, every worker, so the other members could not poll, rejoin, or be read.
pub(crate) struct Poller {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Poller {
    /// Starts polling `consumer`; records arrive on the returned receiver.
    ///
    /// # Errors
    /// The operating system refused a thread.
    pub(crate) fn spawn<C: ConsumerContext + 'static>(
        consumer: Arc<StreamConsumer<C>>,
        flow: Arc<Flow>,
    ) -> std::io::Result<(Self, mpsc::UnboundedReceiver<PollResult>)> {
        // Unbounded: what waits is bounded per partition by pausing it.
        let (tx, rx) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("waybill-kafka-poll".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        tracing::error!(error = %e, "Kafka poll thread has no runtime; not polling");
                        return;
                    }
                };
                runtime.block_on(async move {
                    tokio::select! {
                        _ = stopped => {}
                        () = run(consumer, flow, tx) => {}
                    }
                });
            })?;
        Ok((
            Self {
                stop: Some(stop),
                thread: Some(thread),
            },
            rx,
        ))
    }

    /// Stops polling; returns the thread to join (it ends at its next wake-up).
    pub(crate) fn stop(&mut self) -> Option<std::thread::JoinHandle<()>> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.thread.take()
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        // Not joined: the thread ends by itself once told (or once the reader is gone).
        drop(self.stop());
    }
}

async fn run<C: ConsumerContext + 'static>(
    consumer: Arc<StreamConsumer<C>>,
    flow: Arc<Flow>,
    tx: mpsc::UnboundedSender<PollResult>,
) {
    loop {
        tokio::select! {
            biased;
            () = tx.closed() => return,
            () = flow.resume.notified() => resume(&consumer, &flow),
            // Polls also while partitions are paused, which keeps the member in its group.
            received = consumer.recv() => {
                let item = match received {
                    Ok(record) => {
                        let partition = (record.topic().to_owned(), record.partition());
                        let message = wire::message(&record);
                        let size = wire_size(&message);
                        if flow.handed_over(&partition, size) {
                            pause(&consumer, &flow, partition.clone());
                        }
                        Ok(Polled {
                            epoch: flow.epoch.load(Ordering::Acquire),
                            offset: record.offset(),
                            message,
                            partition,
                            size,
                        })
                    }
                    Err(e) => {
                        if flow.error_waiting.swap(true, Ordering::AcqRel) {
                            tracing::debug!(error = %e, "consumer error while another waits; dropped");
                            continue;
                        }
                        Err(e)
                    }
                };
                if tx.send(item).is_err() {
                    return;
                }
            }
        }
    }
}

/// Bytes a record holds while it waits: payload, key and headers.
fn wire_size(message: &Message) -> usize {
    message.payload().len()
        + message.key().map_or(0, str::len)
        + message
            .headers()
            .iter()
            .map(|(name, value)| name.len() + value.len())
            .sum::<usize>()
}

/// Pauses `partition`: its reader is a bound behind.
fn pause<C: ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    flow: &Flow,
    partition: PartitionKey,
) {
    let mut list = TopicPartitionList::new();
    list.add_partition(&partition.0, partition.1);
    match consumer.pause(&list) {
        Ok(()) => {
            tracing::debug!(topic = %partition.0, partition = partition.1, "reader behind: partition paused, polling goes on");
            lock(&flow.paused).insert(partition);
        }
        Err(e) => tracing::warn!(error = %e, "partition not paused"),
    }
}

/// Resumes the paused partitions the reader caught up with.
fn resume<C: ConsumerContext + 'static>(consumer: &StreamConsumer<C>, flow: &Flow) {
    let resumable = flow.take_resumable();
    if resumable.is_empty() {
        return;
    }
    let mut list = TopicPartitionList::new();
    for (topic, partition) in &resumable {
        list.add_partition(topic, *partition);
    }
    match consumer.resume(&list) {
        Ok(()) => tracing::debug!(
            partitions = resumable.len(),
            "reader caught up: partitions resumed"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "partitions not resumed; trying again at the next wake-up");
            lock(&flow.paused).extend(resumable);
        }
    }
}
