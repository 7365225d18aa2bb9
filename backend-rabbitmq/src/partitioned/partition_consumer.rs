//! Consuming one partition queue of a partitioned group, and handing it over without
//! reordering a key.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_lite::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tracing::{debug, warn};
use waybill_core::{BrokerError, Delivery, IncomingMessage, Origin, Settle, Settlement};

use crate::closing::bounded_close;
use crate::settler::{RabbitSettler, SettleLink};
use crate::wire;

/// What every partition consumer of one session shares.
pub(crate) struct ForwardTo {
    /// Where deliveries go (the subscriber's `receive`).
    pub deliveries: mpsc::Sender<Result<Delivery, BrokerError>>,
    /// The session's settlement link (confirm channel for retries and dead letters).
    pub settle: Arc<SettleLink>,
    /// The topic, as deliveries name it.
    pub topic: Arc<str>,
    /// The group.
    pub group: Arc<str>,
    /// Set when the session's connection failed: deliveries still waiting for `receive` are
    /// then dropped rather than handled, since they can no longer be acknowledged (the broker
    /// gives them to the partition's next owner).
    pub lost: AtomicBool,
}

impl ForwardTo {
    /// Marks the session lost.
    pub fn lose_session(&self) {
        self.lost.store(true, SeqCst);
    }

    /// Whether the session was lost.
    pub fn is_lost(&self) -> bool {
        self.lost.load(SeqCst)
    }
}

/// A partition queue this member consumes: its own channel, so that closing it gives back
/// exactly this partition's unacknowledged deliveries and lets the broker activate the next
/// consumer.
pub(crate) struct PartitionConsumer {
    partition: u16,
    channel: Channel,
    stop: watch::Sender<bool>,
    /// Gives the consumer back when it stops: dropping a lapin consumer cancels it, and a
    /// cancelled single active consumer lets the broker activate the next one at once, before
    /// the deliveries taken are settled. So the consumer lives until the channel closes.
    forwarder: JoinHandle<Option<Consumer>>,
    in_flight: Arc<InFlight>,
}

impl PartitionConsumer {
    /// Opens a channel with `prefetch` and consumes `queue`. The partition queue has a single
    /// active consumer: while another member still consumes it, this consumer waits and
    /// receives nothing.
    ///
    /// # Errors
    /// The broker's error when the channel, the prefetch or the consume is refused.
    pub async fn start(
        connection: &Connection,
        queue: &str,
        partition: u16,
        prefetch: u16,
        to: Arc<ForwardTo>,
    ) -> Result<Self, lapin::Error> {
        let channel = connection.create_channel().await?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        let consumer = channel
            .basic_consume(
                queue.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let (stop, stopped) = watch::channel(false);
        let in_flight = Arc::new(InFlight::default());
        let forwarder = tokio::spawn(forward(
            consumer,
            stopped,
            to,
            partition,
            Arc::clone(&in_flight),
        ));
        debug!(queue, partition, "consuming partition");
        Ok(Self {
            partition,
            channel,
            stop,
            forwarder,
            in_flight,
        })
    }

    /// The partition.
    pub fn partition(&self) -> u16 {
        self.partition
    }

    /// Whether the consumer ended by itself (cancelled by the broker, channel closed).
    pub fn has_ended(&self) -> bool {
        self.forwarder.is_finished() || !self.channel.status().connected()
    }

    /// Hands the partition over: stops taking deliveries, waits (at most `limit`) until every
    /// delivery already taken is settled, then closes the channel. Closing gives the
    /// deliveries never taken back to the front of the queue and lets the broker activate the
    /// next consumer, which thus receives a key's next message only after this member settled
    /// the earlier ones. Past `limit` it closes anyway with a warning: the messages still held
    /// come back too, and a key's order may then break (never a loss; the inbox removes
    /// duplicates).
    pub async fn release(self, limit: Duration, close_limit: Duration) {
        let _ = self.stop.send(true);
        let consumer = self.forwarder.await.ok().flatten();
        if tokio::time::timeout(limit, self.in_flight.idle())
            .await
            .is_err()
        {
            warn!(
                partition = self.partition,
                unsettled = self.in_flight.count(),
                ?limit,
                "partition handed over with deliveries still unsettled: they are given back, and \
                 their keys' order may break"
            );
        }
        if self.channel.status().connected() {
            let close = self.channel.close(200, "partition handed over".into());
            if let Err(e) = bounded_close(close_limit, close).await {
                warn!(partition = self.partition, error = %e, "closing a handed-over partition's channel failed");
            }
        }
        drop(consumer);
        debug!(partition = self.partition, "partition released");
    }
}

/// Moves deliveries from the consumer to the subscriber until stopped (then it gives the
/// consumer back, still registered) or ended.
async fn forward(
    mut consumer: Consumer,
    mut stopped: watch::Receiver<bool>,
    to: Arc<ForwardTo>,
    partition: u16,
    in_flight: Arc<InFlight>,
) -> Option<Consumer> {
    loop {
        let next = tokio::select! {
            biased;
            _ = stopped.changed() => return Some(consumer),
            next = consumer.next() => next,
        };
        let delivery = match next {
            Some(Ok(delivery)) => delivery,
            Some(Err(e)) => {
                debug!(partition, error = %e, "partition consumer failed");
                to.lose_session();
                return None;
            }
            None => return None,
        };
        // A place in the subscriber's buffer first: stopped meanwhile, the lapin delivery is
        // dropped unsettled and the channel's close gives it back in its place.
        let place = tokio::select! {
            biased;
            _ = stopped.changed() => return Some(consumer),
            place = to.deliveries.reserve() => match place {
                Ok(place) => place,
                Err(_) => return Some(consumer),
            },
        };
        let message = wire::message(&delivery.properties, delivery.data);
        let origin = Origin {
            topic: Arc::clone(&to.topic),
            group: Arc::clone(&to.group),
            partition: Some(i32::from(partition)),
            offset: None,
        };
        let incoming = IncomingMessage::new(message, origin, delivery.redelivered);
        let settler = TrackedSettler {
            inner: RabbitSettler::held_until_close(delivery.acker, Arc::clone(&to.settle)),
            _taken: in_flight.take(),
        };
        place.send(Ok(Delivery::new(incoming, Box::new(settler))));
    }
}

/// Deliveries of one partition taken and not yet settled.
#[derive(Default)]
struct InFlight {
    count: AtomicUsize,
    settled: Notify,
}

impl InFlight {
    fn take(self: &Arc<Self>) -> Taken {
        self.count.fetch_add(1, SeqCst);
        Taken(Arc::clone(self))
    }

    fn count(&self) -> usize {
        self.count.load(SeqCst)
    }

    /// Resolves once no delivery is unsettled.
    async fn idle(&self) {
        loop {
            let settled = self.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            settled.await;
        }
    }
}

/// One delivery counted in [`InFlight`] until dropped.
struct Taken(Arc<InFlight>);

impl Drop for Taken {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, SeqCst) == 1 {
            self.0.settled.notify_waiters();
        }
    }
}

/// A [`RabbitSettler`] that counts its delivery as taken until it is settled or dropped.
struct TrackedSettler {
    inner: RabbitSettler,
    _taken: Taken,
}

#[async_trait]
impl Settle for TrackedSettler {
    async fn settle(
        self: Box<Self>,
        incoming: &IncomingMessage,
        settlement: Settlement,
    ) -> Result<(), BrokerError> {
        let Self { inner, _taken } = *self;
        Box::new(inner).settle(incoming, settlement).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_waits_for_the_last_taken_delivery() {
        let in_flight = Arc::new(InFlight::default());
        let first = in_flight.take();
        let second = in_flight.take();
        let waiter = tokio::spawn({
            let in_flight = Arc::clone(&in_flight);
            async move { in_flight.idle().await }
        });
        drop(first);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "one delivery is still taken");
        drop(second);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("idle once all are settled")
            .unwrap();
        assert_eq!(in_flight.count(), 0);
    }
}
