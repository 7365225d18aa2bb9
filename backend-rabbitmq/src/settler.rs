//! Settling RabbitMQ deliveries: ack, retry through a TTL tier, dead letter.

use std::sync::Arc;

use async_trait::async_trait;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::Acker;
use lapin::Connection;
use tokio::sync::Mutex;
use waybill_core::{BrokerError, IncomingMessage, Message, Settle, Settlement};

use crate::config::RabbitConfig;
use crate::confirm_channel::{
    confirmed, send, send_to_queue_keeping_route, unroutable, ConfirmChannel, Refusal,
};
use crate::error_class::broker_error;
use crate::key_route::key_routing_key;
use crate::topology_names::QueueNames;

/// What settlements of one subscriber share: its connection and a confirm channel.
pub(crate) struct SettleLink {
    pub connection: Arc<Connection>,
    pub channel: Mutex<ConfirmChannel>,
    pub names: Arc<QueueNames>,
    pub config: RabbitConfig,
    /// Whether the group is partitioned: a retry then goes back through the group's
    /// partition exchange (at once, or from its retry tier), to the key's partition, rather
    /// than to the work queue.
    pub partitioned: bool,
}

/// Where a settlement publishes its copy of a message.
#[derive(Clone, Copy)]
enum CopyTo<'a> {
    /// A queue, through the default exchange.
    Queue(&'a str),
    /// A queue, through the default exchange, with the message's key route as its routing
    /// key: a partitioned group's retry tier dead-letters the copy on it, to the key's
    /// partition.
    QueueKeepingRoute(&'a str),
    /// An exchange routing on the message's key route (a partitioned group's).
    KeyRoute(&'a str),
}

impl SettleLink {
    /// Publishes `message` to `to` and waits for its confirm.
    async fn publish(
        &self,
        operation: &'static str,
        to: CopyTo<'_>,
        message: &Message,
    ) -> Result<(), BrokerError> {
        let mut slot = self.channel.lock().await;
        let channel = slot
            .open(&self.connection)
            .await
            .map_err(|e| broker_error(operation, e))?;
        let refusal = |r: Refusal| BrokerError::from_publish(operation, r.outcome, r.reason);
        let confirm = match to {
            CopyTo::Queue(queue) => send(channel, "", queue, message, None).await,
            CopyTo::QueueKeepingRoute(queue) => {
                let route = key_routing_key(message.key());
                send_to_queue_keeping_route(channel, queue, &route, message).await
            }
            CopyTo::KeyRoute(exchange) => {
                let route = key_routing_key(message.key());
                send(channel, exchange, &route, message, None).await
            }
        }
        .map_err(refusal)?;
        slot.next_tag();
        let confirmation = confirmed(confirm, self.config.confirm_timeout).await;
        if confirmation.is_err() {
            slot.discard();
        }
        match confirmation.map_err(refusal)? {
            None => Ok(()),
            Some(_) => Err(refusal(match to {
                CopyTo::Queue(queue) | CopyTo::QueueKeepingRoute(queue) => unroutable("", queue),
                CopyTo::KeyRoute(exchange) => unroutable(exchange, &key_routing_key(message.key())),
            })),
        }
    }
}

/// Settles one delivery; dropped unsettled, it nacks with requeue (unless made with
/// [`RabbitSettler::held_until_close`]).
pub(crate) struct RabbitSettler {
    acker: Option<Acker>,
    link: Arc<SettleLink>,
    requeue_on_drop: bool,
}

impl RabbitSettler {
    pub fn new(acker: Acker, link: Arc<SettleLink>) -> Self {
        Self {
            acker: Some(acker),
            link,
            requeue_on_drop: true,
        }
    }

    /// A settler that, dropped unsettled, leaves its delivery unacknowledged until its channel
    /// closes. A nack would make the broker deliver the message again at once, to the same
    /// consumer, behind the later messages it already holds; closing the channel gives all
    /// of them back in their order. For channels closed when their deliveries are abandoned
    /// (a partition handed over, a subscriber closing).
    pub fn held_until_close(acker: Acker, link: Arc<SettleLink>) -> Self {
        Self {
            acker: Some(acker),
            link,
            requeue_on_drop: false,
        }
    }

    async fn ack(&mut self) -> Result<(), BrokerError> {
        let acker = self.acker.take().expect("settled once");
        match tokio::time::timeout(
            self.link.config.confirm_timeout,
            acker.ack(BasicAckOptions::default()),
        )
        .await
        {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err(BrokerError::transient(
                "ack",
                "ack not sent: the channel closed; the broker will deliver the message again",
            )),
            Ok(Err(e)) => Err(broker_error("ack", e)),
            Err(_) => Err(BrokerError::transient(
                "ack",
                "ack did not complete in time",
            )),
        }
    }
}

#[async_trait]
impl Settle for RabbitSettler {
    async fn settle(
        mut self: Box<Self>,
        incoming: &IncomingMessage,
        settlement: Settlement,
    ) -> Result<(), BrokerError> {
        match settlement {
            Settlement::Ack => self.ack().await,
            Settlement::Retry(request) => {
                let mut copy = incoming.message().clone();
                request.apply_to(copy.headers_mut());
                match self.link.config.tier_for(request.delay) {
                    Some(tier) if self.link.partitioned => {
                        let queue = self.link.names.retry_tier(tier);
                        let to = CopyTo::QueueKeepingRoute(&queue);
                        self.link.publish("retry", to, &copy).await?;
                    }
                    Some(tier) => {
                        let queue = self.link.names.retry_tier(tier);
                        self.link
                            .publish("retry", CopyTo::Queue(&queue), &copy)
                            .await?;
                    }
                    None if self.link.partitioned => {
                        let exchange = self.link.names.partition_exchange();
                        self.link
                            .publish("retry", CopyTo::KeyRoute(&exchange), &copy)
                            .await?;
                    }
                    None => {
                        let queue = &self.link.names.work;
                        self.link
                            .publish("retry", CopyTo::Queue(queue), &copy)
                            .await?;
                    }
                }
                self.ack().await
            }
            Settlement::DeadLetter(record) => {
                let mut copy = incoming.message().clone();
                record.write_to(copy.headers_mut());
                let queue = &self.link.names.dead_letter;
                self.link
                    .publish("dead-letter", CopyTo::Queue(queue), &copy)
                    .await?;
                self.ack().await
            }
        }
    }
}

impl Drop for RabbitSettler {
    fn drop(&mut self) {
        let Some(acker) = self.acker.take() else {
            return;
        };
        if !self.requeue_on_drop {
            return;
        }
        // Give the message back at once rather than holding a prefetch slot until the channel
        // closes. Without a runtime (process exiting) the broker requeues it on disconnect.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = acker
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..BasicNackOptions::default()
                    })
                    .await;
            });
        }
    }
}
