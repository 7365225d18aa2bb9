//! The producer a publisher hands messages to, replaced after a fatal error.
//!
//! librdkafka raises a *fatal error* when the idempotent producer can no longer keep its
//! guarantees (an `OutOfOrderSequenceNumber` at the head of a partition's line, an
//! `UnknownProducerId` with requests outstanding, a fenced transactional producer, ...). From
//! then on the instance refuses every produce call with `__FATAL`, for good: it has to be
//! destroyed and created again.
//!
//! What the messages of the failed instance became (librdkafka's INTRODUCTION.md, "Fatal
//! producer errors"): the ones still in its local queue are purged and fail with
//! `__PURGE_QUEUE` (never sent: *not sent*); the ones already sent keep waiting for the
//! broker's answer and fail or succeed with it (a failure of a sent message may or may not
//! be in the log: *ambiguous*); every produce call after the error is refused before the
//! message is queued (*not sent*).
//!
//! **Per-key order across the replacement.** The new producer is used only once the failed
//! one has *drained*: every message handed to it has its final delivery report. Until then
//! each publish is refused as *not sent*, so no message can be written by the new instance
//! while an earlier one is still unresolved in the old. A caller that publishes a key's next
//! message only after the previous one was confirmed (the outbox relay does, and so does one
//! `publish_batch` call for the messages of a key) therefore retries the failed message
//! before anything later of its key is written.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rdkafka::producer::{FutureProducer, Producer as _};

use crate::config::KafkaConfig;

/// The producer in use, or the fatal error it is being replaced for.
struct Current {
    producer: FutureProducer,
    replacing: Option<String>,
}

/// Holds a publisher's producer and replaces it after a fatal error (unless told not to).
pub(crate) struct ProducerSlot {
    current: RwLock<Current>,
    config: KafkaConfig,
    recreate: bool,
}

impl ProducerSlot {
    /// Holds `producer`; `recreate` says whether a fatal error replaces it (the idempotent
    /// publisher) or leaves it failing (a transactional producer, whose fencing by a newer
    /// instance with the same `transactional.id` must stop it for good).
    pub(crate) fn new(producer: FutureProducer, config: KafkaConfig, recreate: bool) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(Current {
                producer,
                replacing: None,
            }),
            config,
            recreate,
        })
    }

    /// The producer to hand a message to now.
    ///
    /// # Errors
    /// Why no message may be handed over now (the producer hit a fatal error and is being
    /// replaced, or, for a transactional producer, is unusable for good): the message is
    /// *not sent*.
    pub(crate) fn producer(self: &Arc<Self>) -> Result<FutureProducer, String> {
        let producer = {
            let current = self.read();
            if let Some(reason) = &current.replacing {
                return Err(format!(
                    "not handed over: the producer is being recreated after a fatal error \
                     ({reason}); publish again shortly"
                ));
            }
            current.producer.clone()
        };
        match self.check(&producer) {
            Some(reason) => Err(reason),
            None => Ok(producer),
        }
    }

    /// The producer in use (for flushing on close).
    pub(crate) fn current(&self) -> FutureProducer {
        self.read().producer.clone()
    }

    /// Whether `producer` has raised a fatal error; if so, starts its replacement (when this
    /// slot recreates) and returns a text naming the error.
    pub(crate) fn check(self: &Arc<Self>, producer: &FutureProducer) -> Option<String> {
        let (code, reason) = producer.client().fatal_error()?;
        let text = if self.recreate {
            format!("fatal producer error {code:?} ({reason}); the producer is being recreated")
        } else {
            format!(
                "fatal producer error {code:?} ({reason}); a transactional producer is not \
                 recreated (fenced by a newer instance with the same transactional.id, it must \
                 stop): create a new TransactionalPublisher if this instance is still the owner"
            )
        };
        if self.recreate {
            self.replace(producer, &text);
        }
        Some(text)
    }

    /// Marks `failed` as being replaced (once) and replaces it in the background.
    fn replace(self: &Arc<Self>, failed: &FutureProducer, reason: &str) {
        {
            let mut current = self.write();
            let same = current.producer.client().native_ptr() == failed.client().native_ptr();
            if !same || current.replacing.is_some() {
                return;
            }
            current.replacing = Some(reason.to_owned());
        }
        tracing::error!(error = %reason, "Kafka producer hit a fatal error; recreating it once its messages drained");
        let slot = Arc::clone(self);
        let failed = failed.clone();
        tokio::spawn(async move { slot.swap_after_drain(failed).await });
    }

    /// Waits until every message handed to `failed` has its delivery report, then puts a new
    /// producer in its place.
    async fn swap_after_drain(self: Arc<Self>, failed: FutureProducer) {
        let timeout = self.config.delivery_timeout;
        while failed.in_flight_count() > 0 {
            let flushing = failed.clone();
            let _ = tokio::task::spawn_blocking(move || flushing.flush(timeout)).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(failed);
        loop {
            match self.config.producer().create::<FutureProducer>() {
                Ok(producer) => {
                    let mut current = self.write();
                    current.producer = producer;
                    current.replacing = None;
                    tracing::info!("Kafka producer recreated after a fatal error");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Kafka producer not recreated yet; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Current> {
        self.current.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Current> {
        self.current.write().unwrap_or_else(|p| p.into_inner())
    }
}
