//! The processor's fetch loop, start and graceful shutdown.

use std::sync::Arc;

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::batching::BatchingHandler;
use super::coalesced_store::CoalescedStore;
use super::config::{Ordering, ProcessorBuilder, ProcessorConfig};
use super::counters::{Counters, CountersSnapshot, Event};
use super::health_watch::HealthWatch;
use super::key_scheduler::{spawn_single, KeyScheduler};
use super::parked::ParkedSettlements;
use super::pipeline::Shared;
use crate::batch_handler::BatchHandler;
use crate::broker_error::BrokerError;
use crate::handler::Handler;
use crate::health::Health;
use crate::lag::{ConsumerLag, LagProbe};
use crate::subscriber::Subscriber;

/// The consumer runtime. It owns acknowledgement; handlers only return results.
///
/// For every delivery, in this fixed order: receive → claim in the idempotency store (a
/// message already done is acknowledged and skipped) → handle → classify the result → on
/// success record it in the store, then ack; or retry (in process with backoff, re-claiming
/// before each attempt, then broker-side if the policy says so); or dead-letter (the dead
/// letter is published with a confirm **before** the original is acknowledged). A handler
/// panic is caught and counted as a transient failure.
///
/// Under [`Ordering::PerKey`] a key whose message is retrying holds only its own messages back,
/// until `max_buffered` messages wait in all; then fetching pauses for every key. At shutdown
/// a key's messages queued behind one given back are given back too, so order survives.
///
/// ```
/// use std::sync::Arc;
/// use waybill_core::{handler_fn, InMemoryIdempotencyStore, MemoryBroker, Message, Processor, Publisher};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let broker = MemoryBroker::new();
/// let subscriber = broker.subscriber("orders", "billing").unwrap();
/// broker.publisher().publish("orders", Message::new("hello").with_key("o-1")).await.unwrap();
///
/// let running = Processor::builder("billing")
///     .idempotency(Arc::new(InMemoryIdempotencyStore::default()))
///     .build()
///     .unwrap()
///     .start(subscriber, handler_fn(|_message| async { Ok(()) }));
/// while running.counters().handled < 1 {
///     tokio::time::sleep(std::time::Duration::from_millis(5)).await;
/// }
/// let totals = running.shutdown().await.unwrap();
/// assert_eq!(totals.handled, 1);
/// # }
/// ```
#[derive(Debug)]
pub struct Processor {
    config: ProcessorConfig,
}

/// The processor stopped because of an error.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    /// The subscriber failed permanently (bad credentials, missing queue, ...).
    #[error("subscriber failed: {0}")]
    Receive(#[source] BrokerError),
    /// The subscriber could not be closed cleanly after draining.
    #[error("subscriber close failed: {0}")]
    Close(#[source] BrokerError),
    /// The runtime task itself died (a bug: please report it).
    #[error("processor task failed: {0}")]
    Task(String),
}

impl Processor {
    /// A builder for the consumer group `group`.
    pub fn builder(group: impl Into<String>) -> ProcessorBuilder {
        ProcessorBuilder::new(group.into())
    }

    /// A builder named after `subscriber`'s consumer group, so that the group is written only
    /// where the subscriber joins it: idempotency claims and dead-letter records are then
    /// scoped by the same group the broker uses.
    ///
    /// ```
    /// use waybill_core::{MemoryBroker, Processor};
    ///
    /// let broker = MemoryBroker::new();
    /// let subscriber = broker.subscriber("orders", "billing").unwrap();
    /// let builder = Processor::for_subscriber(&subscriber);
    /// let processor = builder.at_least_once_effects().build().unwrap();
    /// assert_eq!(processor.config().group(), "billing");
    /// ```
    ///
    /// A subscriber that names no group gives a builder whose `build()` fails with a
    /// [`crate::ConfigError`] saying to name one with [`Processor::builder`].
    pub fn for_subscriber<S: Subscriber + ?Sized>(subscriber: &S) -> ProcessorBuilder {
        ProcessorBuilder::new(subscriber.group().unwrap_or_default().to_owned())
    }

    pub(crate) fn from_config(config: ProcessorConfig) -> Self {
        Self { config }
    }

    /// The validated configuration.
    pub fn config(&self) -> &ProcessorConfig {
        &self.config
    }

    /// Starts consuming `subscriber` with `handler` on the current tokio runtime.
    ///
    /// With a store that [answers many at once](crate::IdempotencyStore::answers_many_at_once)
    /// (the PostgreSQL inbox), the claims and completions that the messages' tasks ask for at
    /// the same moment go to the store together, one round trip for all of them; an idle
    /// processor waits for nobody.
    ///
    /// # Panics
    /// When called outside a tokio runtime.
    pub fn start<S, H>(self, subscriber: S, handler: H) -> RunningProcessor
    where
        S: Subscriber + 'static,
        H: Handler,
    {
        self.start_with(subscriber, Arc::new(handler))
    }

    /// Starts consuming `subscriber` with a [`BatchHandler`], on the current tokio runtime.
    ///
    /// Every message goes through the same steps as with [`start`](Self::start) (claim,
    /// handle, classify, settle, retry, dead letter, key order), one message at a time; only
    /// the handler call is shared: the messages whose claims are taken at the same moment
    /// (up to [`max_batch`](crate::ProcessorBuilder::max_batch)) are handed to the handler
    /// together. (With a store that
    /// [answers many at once](crate::IdempotencyStore::answers_many_at_once), such as the
    /// PostgreSQL inbox, every processor sends the claims and completions its messages ask for
    /// at the same moment together as well, batch handler or not.) See [`BatchHandler`] for
    /// what a batch holds and how its failures are settled.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use waybill_core::{batch_handler_fn, BatchFailures, InMemoryIdempotencyStore, IncomingMessage,
    ///     MemoryBroker, Message, Processor, Publisher};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let broker = MemoryBroker::new();
    /// let subscriber = broker.subscriber("orders", "billing").unwrap();
    /// for i in 0..10 {
    ///     let message = Message::new("paid").with_key(format!("order-{i}"));
    ///     broker.publisher().publish("orders", message).await.unwrap();
    /// }
    /// let running = Processor::builder("billing")
    ///     .idempotency(Arc::new(InMemoryIdempotencyStore::default()))
    ///     .max_batch(16)
    ///     .build()
    ///     .unwrap()
    ///     .start_batch(subscriber, batch_handler_fn(|batch: Vec<IncomingMessage>| async move {
    ///         // one transaction: the effects of `batch`, and their markers
    ///         assert!(!batch.is_empty());
    ///         Ok(BatchFailures::none())
    ///     }));
    /// while running.counters().handled < 10 {
    ///     tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    /// }
    /// assert_eq!(running.shutdown().await.unwrap().handled, 10);
    /// # }
    /// ```
    ///
    /// # Panics
    /// When called outside a tokio runtime.
    pub fn start_batch<S, B>(self, subscriber: S, handler: B) -> RunningProcessor
    where
        S: Subscriber + 'static,
        B: BatchHandler,
    {
        let max = self.config.max_batch.min(self.config.concurrency);
        let rounds = (self.config.concurrency / max).max(1);
        let handler =
            BatchingHandler::spawn(Arc::new(handler), max, self.config.batch_window, rounds);
        self.start_with(subscriber, Arc::new(handler))
    }

    fn start_with<S>(mut self, subscriber: S, handler: Arc<dyn Handler>) -> RunningProcessor
    where
        S: Subscriber + 'static,
    {
        if let Some(store) = self.config.idempotency.take() {
            self.config.idempotency = Some(if store.answers_many_at_once() {
                let group = Arc::from(self.config.group.as_str());
                let max = self.config.concurrency;
                Arc::new(CoalescedStore::spawn(
                    store,
                    group,
                    self.config.claim_lease,
                    max,
                ))
            } else {
                store
            });
        }
        let (stop, stopping) = watch::channel(false);
        let lag_probe = subscriber.lag_probe();
        if let Some(probe) = &lag_probe {
            tokio::spawn(sample_lag(
                Arc::clone(probe),
                self.config.lag_interval,
                stopping.clone(),
            ));
        }
        let counters = Arc::new(Counters::default());
        if let Some(destination) = subscriber.destination() {
            counters.register(destination, &self.config.group);
        }
        let running = (self.config.max_buffered > self.config.concurrency)
            .then(|| Arc::new(Semaphore::new(self.config.concurrency)));
        let health = Arc::new(HealthWatch::new(self.config.degraded_failure_ratio));
        let shared = Arc::new(Shared {
            group: Arc::from(self.config.group.as_str()),
            config: self.config,
            handler,
            counters: Arc::clone(&counters),
            stopping,
            running,
            parked: ParkedSettlements::default(),
            health: Arc::clone(&health),
        });
        let task = tokio::spawn(fetch_loop(subscriber, shared));
        RunningProcessor {
            counters,
            health,
            lag_probe,
            stop,
            task,
        }
    }
}

/// A started processor. Dropping it stops the processor as [`RunningProcessor::shutdown`]
/// would, without waiting.
pub struct RunningProcessor {
    counters: Arc<Counters>,
    health: Arc<HealthWatch>,
    lag_probe: Option<Arc<dyn LagProbe>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), ProcessorError>>,
}

impl RunningProcessor {
    /// The counters right now.
    pub fn counters(&self) -> CountersSnapshot {
        self.counters.snapshot()
    }

    /// How the processor is doing: `Stopped` once its task ended (shutdown, end of the
    /// subscription, or an error it cannot recover from; [`wait`](Self::wait) tells which),
    /// `NotReady` with the outage's start while receiving fails (the broker is unreachable;
    /// the processor keeps retrying), `Degraded` while at least the
    /// [`degraded_failure_ratio`](crate::ProcessorBuilder::degraded_failure_ratio) of the
    /// recent handler runs failed, else `Ready`. Cheap: it reads state, it sends nothing.
    pub fn health(&self) -> Health {
        if self.task.is_finished() {
            return Health::stopped("the processor has stopped");
        }
        self.health.health()
    }

    /// The consumer group's lag, read from the broker now (and recorded in the
    /// `waybill.consumer.lag` gauges).
    ///
    /// # Errors
    /// [`BrokerError`]: permanent when the subscriber offers no
    /// [`lag_probe`](crate::Subscriber::lag_probe), else the probe's error.
    pub async fn lag(&self) -> Result<ConsumerLag, BrokerError> {
        let probe = self.lag_probe.as_ref().ok_or_else(|| {
            BrokerError::permanent("lag", "this subscriber cannot report consumer lag")
        })?;
        let lag = probe.lag().await?;
        lag.record();
        Ok(lag)
    }

    /// Whether the processor has stopped (shutdown finished, subscription ended, or a fatal error).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Graceful shutdown: stop fetching, let in-flight messages finish (up to the drain timeout;
    /// in-process retry waits are cut short and those messages left for redelivery), close the
    /// subscriber, and return the final counters.
    ///
    /// # Errors
    /// [`ProcessorError`] if the processor had stopped on an error, or closing failed.
    pub async fn shutdown(self) -> Result<CountersSnapshot, ProcessorError> {
        let _ = self.stop.send(true);
        self.wait().await
    }

    /// Waits until the processor stops by itself (subscription closed or fatal error).
    ///
    /// # Errors
    /// As for [`RunningProcessor::shutdown`].
    pub async fn wait(self) -> Result<CountersSnapshot, ProcessorError> {
        let Self {
            counters,
            stop: _stop,
            task,
            health: _,
            lag_probe: _,
        } = self;
        task.await
            .map_err(|e| ProcessorError::Task(e.to_string()))??;
        Ok(counters.snapshot())
    }
}

/// Reads the lag every `interval` into the gauges until the processor stops.
async fn sample_lag(
    probe: Arc<dyn LagProbe>,
    interval: std::time::Duration,
    mut stopping: watch::Receiver<bool>,
) {
    loop {
        match probe.lag().await {
            Ok(lag) => lag.record(),
            Err(e) => debug!(error = %e, "consumer lag sample failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
    }
}

async fn fetch_loop<S: Subscriber>(
    mut subscriber: S,
    shared: Arc<Shared>,
) -> Result<(), ProcessorError> {
    let config = &shared.config;
    let buffered = Arc::new(Semaphore::new(config.max_buffered));
    let keys = Arc::new(KeyScheduler::default());
    let mut stopping = shared.stopping.clone();
    let mut receive_failures = 0u32;
    let mut group_checked = false;
    info!(group = %config.group, concurrency = config.concurrency, ordering = ?config.ordering, "processor started");

    let outcome = loop {
        if *stopping.borrow() {
            break Ok(());
        }
        let permit = match Arc::clone(&buffered).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => tokio::select! {
                biased;
                _ = stopping.wait_for(|s| *s) => break Ok(()),
                permit = Arc::clone(&buffered).acquire_owned() => permit.expect("semaphore never closed"),
            },
        };
        let received = tokio::select! {
            biased;
            _ = stopping.wait_for(|s| *s) => break Ok(()),
            received = subscriber.receive() => received,
        };
        match received {
            Ok(Some(delivery)) => {
                if *stopping.borrow() {
                    // Shutdown began while this receive completed: give the delivery back
                    // unsettled (the broker delivers it again) rather than start new work.
                    drop(delivery);
                    break Ok(());
                }
                receive_failures = 0;
                // Ready is set when the gauge is registered; only the end of an outage sets it.
                if shared.health.received() {
                    if let Some(i) = shared.counters.instruments() {
                        i.ready.set(1.0);
                    }
                }
                let from_group = &delivery.message().origin().group;
                if config.idempotency.is_some() && !group_checked && **from_group != *config.group {
                    // Claims are scoped by the Processor's name: members of one broker group
                    // running under different names would not share them.
                    warn!(
                        processor = %config.group,
                        subscriber_group = %from_group,
                        "the Processor's name differs from its subscriber's consumer group; \
                         idempotency claims are scoped by the Processor's name, so give every \
                         member of the group the same one"
                    );
                }
                group_checked = true;
                match config.ordering {
                    Ordering::PerKey => keys.dispatch(&shared, delivery, permit),
                    Ordering::Unordered => spawn_single(&shared, delivery, permit),
                }
            }
            Ok(None) => break Ok(()),
            Err(e) if e.is_transient() => {
                shared.counters.bump(Event::ReceiveError);
                shared.health.receive_failed(&e);
                if let Some(i) = shared.counters.instruments() {
                    i.ready.set(0.0);
                }
                receive_failures = receive_failures.saturating_add(1);
                let wait = config.retry.delay_for(receive_failures);
                warn!(error = %e, ?wait, "receive failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stopping.wait_for(|s| *s) => break Ok(()),
                }
            }
            Err(e) => break Err(ProcessorError::Receive(e)),
        }
    };

    let all = u32::try_from(config.max_buffered).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(config.drain_timeout, buffered.acquire_many(all)).await;
    if drained.is_err() {
        warn!(
            timeout = ?config.drain_timeout,
            "drain timed out; unfinished messages will be delivered again"
        );
    }
    let closed = subscriber.close().await.map_err(ProcessorError::Close);
    if let Some(i) = shared.counters.instruments() {
        i.ready.set(0.0);
    }
    info!(group = %config.group, "processor stopped");
    outcome.and(closed)
}
