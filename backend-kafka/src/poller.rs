//! Polling the consumer at all times, pausing its partitions while the subscriber's reader is
//! behind.
//!
//! librdkafka expects the application to poll a group member at least every
//! `max.poll.interval.ms` (default 5 min); a member that does not is taken for wedged: it
//! leaves the group, its partitions go to others (or back to it, from the last committed
//! offset) and everything it had read but not committed is delivered again. A subscriber that
//! only polls when asked for the next delivery stops polling whenever its reader stops asking:
//! a Processor whose buffer is full of messages waiting behind a slow handler, or an intake
//! holding as many retried copies as it may.
//!
//! So a thread of its own polls the consumer all the time and hands the records over a small
//! channel. When the channel is full it **pauses** every assigned partition (no more records
//! are fetched, but polls go on: heartbeats, rebalances and the poll interval stay served) and
//! keeps what it had already read; once the reader caught up (half the channel free) it
//! **resumes** them, and librdkafka fetches again from the position after the last record
//! handed over, so nothing is skipped or read twice. Partitions assigned while paused are
//! paused as they are assigned (see [`Flow::on_assigned`]). Resuming resumes exactly the
//! partitions paused, also those revoked meanwhile: librdkafka keeps a partition's pause flag
//! across a revoke, and a partition reassigned later would otherwise stay paused for good.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message as _, TopicPartitionList};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::sync::oneshot;
use waybill_core::Message;

use crate::offsets::PartitionKey;
use crate::wire;

/// Records the poller may hand over before the reader takes them (then it pauses).
const CHANNEL: usize = 64;

/// A record read by the poller, with the assignment epoch it was read in.
pub(crate) struct Polled {
    pub partition: PartitionKey,
    pub offset: i64,
    pub message: Message,
    epoch: u64,
}

/// What the poller hands over: a record or a consumer error.
pub(crate) type PollResult = Result<Polled, KafkaError>;

/// Pause and revocation state shared by the poller and the consumer's rebalance callbacks.
#[derive(Default)]
pub(crate) struct Flow {
    /// Whether the poller has paused the assignment.
    paused: AtomicBool,
    /// Counts revocations; a record carries the value it was read under.
    epoch: AtomicU64,
    /// The epoch at which each partition was last revoked.
    revoked_at: Mutex<HashMap<PartitionKey, u64>>,
    /// The partitions paused, to resume.
    paused_partitions: Mutex<HashSet<PartitionKey>>,
}

impl Flow {
    /// A rebalance took `partition` away: records of it read before are stale (its next
    /// owner, maybe this consumer again, reads them from the committed offset).
    pub(crate) fn on_revoked(&self, partition: PartitionKey) {
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        lock(&self.revoked_at).insert(partition, epoch);
    }

    /// A rebalance assigned `partitions`: paused at once while the poller holds back.
    pub(crate) fn on_assigned<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        partitions: &TopicPartitionList,
    ) {
        if self.paused.load(Ordering::Acquire) {
            match consumer.pause(partitions) {
                Ok(()) => self.remember_paused(partitions),
                Err(e) => tracing::warn!(error = %e, "newly assigned partitions not paused"),
            }
        }
    }

    fn remember_paused(&self, partitions: &TopicPartitionList) {
        lock(&self.paused_partitions).extend(
            partitions
                .elements()
                .iter()
                .map(|p| (p.topic().to_owned(), p.partition())),
        );
    }

    /// Whether `record` was read before its partition was revoked (drop it: it is read again
    /// from the committed offset by whoever owns the partition now).
    pub(crate) fn is_stale(&self, record: &Polled) -> bool {
        lock(&self.revoked_at)
            .get(&record.partition)
            .is_some_and(|revoked| *revoked > record.epoch)
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
    ) -> std::io::Result<(Self, mpsc::Receiver<PollResult>)> {
        let (tx, rx) = mpsc::channel(CHANNEL);
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
    tx: mpsc::Sender<PollResult>,
) {
    // Read but not yet handed over: the reader is behind, the partitions are paused.
    let mut held: VecDeque<PollResult> = VecDeque::new();
    loop {
        while let Some(item) = held.pop_front() {
            match tx.try_send(item) {
                Ok(()) => {}
                Err(TrySendError::Full(item)) => {
                    held.push_front(item);
                    break;
                }
                Err(TrySendError::Closed(_)) => return,
            }
        }
        if !held.is_empty() && !flow.paused.load(Ordering::Acquire) {
            set_paused(&consumer, &flow, true);
        }
        let paused = flow.paused.load(Ordering::Acquire);
        tokio::select! {
            biased;
            () = tx.closed() => return,
            permit = tx.reserve(), if !held.is_empty() => match permit {
                Ok(permit) => permit.send(held.pop_front().expect("held is not empty")),
                Err(_) => return,
            },
            // Half the channel free again: fetch again.
            room = tx.reserve_many(CHANNEL / 2), if held.is_empty() && paused => match room {
                Ok(room) => {
                    drop(room);
                    set_paused(&consumer, &flow, false);
                }
                Err(_) => return,
            },
            // Polls also while paused (the stream consumer wakes at half the poll interval),
            // which keeps the member in its group.
            received = consumer.recv() => {
                let epoch = flow.epoch.load(Ordering::Acquire);
                held.push_back(received.map(|record| Polled {
                    partition: (record.topic().to_owned(), record.partition()),
                    offset: record.offset(),
                    message: wire::message(&record),
                    epoch,
                }));
            }
        }
    }
}

/// Pauses the whole assignment, or resumes every partition paused.
fn set_paused<C: ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    flow: &Flow,
    pause: bool,
) {
    flow.paused.store(pause, Ordering::Release);
    let partitions = if pause {
        match consumer.assignment() {
            Ok(assignment) => assignment,
            Err(e) => {
                tracing::warn!(error = %e, "assignment unknown; partitions not paused");
                return;
            }
        }
    } else {
        let mut list = TopicPartitionList::new();
        for (topic, partition) in lock(&flow.paused_partitions).drain() {
            list.add_partition(&topic, partition);
        }
        list
    };
    let done = if pause {
        consumer.pause(&partitions)
    } else {
        consumer.resume(&partitions)
    };
    match done {
        Ok(()) => {
            if pause {
                flow.remember_paused(&partitions);
            }
            tracing::debug!(
                partitions = partitions.count(),
                pause,
                "reader behind: partitions paused while polling goes on, or resumed"
            );
        }
        Err(e) => tracing::warn!(error = %e, pause, "partitions not paused or resumed"),
    }
}
