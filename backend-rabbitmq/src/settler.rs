//! Settling RabbitMQ deliveries: ack, retry through a TTL tier, dead letter.

use std::sync::Arc;

use async_trait::async_trait;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::Acker;
use lapin::Connection;
use tokio::sync::Mutex;
use waybill_core::{BrokerError, IncomingMessage, Message, Settle, Settlement};

use crate::config::RabbitConfig;
use crate::confirm_channel::{confirmed, send, unroutable, ConfirmChannel, Refusal};
use crate::error_class::broker_error;
use crate::topology_names::QueueNames;

/// What settlements of one subscriber share: its connection and a confirm channel.
pub(crate) struct SettleLink {
    pub connection: Arc<Connection>,
    pub channel: Mutex<ConfirmChannel>,
    pub names: Arc<QueueNames>,
    pub config: RabbitConfig,
    /// Whether the group is partitioned: a retry without delay then goes back through the
    /// group's hash exchange, to the key's partition, rather than to the work queue.
    pub partitioned: bool,
}

impl SettleLink {
    /// Publishes `message` to `queue` through the default exchange and waits for its confirm.
    async fn publish_to_queue(
        &self,
        operation: &'static str,
        queue: &str,
        message: &Message,
    ) -> Result<(), BrokerError> {
        self.publish(operation, "", queue, message).await
    }

    /// Publishes `message` to `exchange` with `routing_key` and waits for its confirm.
    async fn publish(
        &self,
        operation: &'static str,
        exchange: &str,
        routing_key: &str,
        message: &Message,
    ) -> Result<(), BrokerError> {
        let mut slot = self.channel.lock().await;
        let channel = slot
            .open(&self.connection)
            .await
            .map_err(|e| broker_error(operation, e))?;
        let refusal = |r: Refusal| BrokerError::from_publish(operation, r.outcome, r.reason);
        let confirm = send(channel, exchange, routing_key, message, None)
            .await
            .map_err(refusal)?;
        slot.next_tag();
        let confirmation = confirmed(confirm, self.config.confirm_timeout).await;
        if confirmation.is_err() {
            slot.discard();
        }
        match confirmation.map_err(refusal)? {
            None => Ok(()),
            Some(_) => Err(refusal(unroutable(exchange, routing_key))),
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
                    Some(tier) => {
                        let queue = self.link.names.retry_tier(tier);
                        self.link.publish_to_queue("retry", &queue, &copy).await?;
                    }
                    None if self.link.partitioned => {
                        let exchange = self.link.names.partition_exchange();
                        self.link.publish("retry", &exchange, "", &copy).await?;
                    }
                    None => {
                        let queue = self.link.names.work.clone();
                        self.link.publish_to_queue("retry", &queue, &copy).await?;
                    }
                }
                self.ack().await
            }
            Settlement::DeadLetter(record) => {
                let mut copy = incoming.message().clone();
                record.write_to(copy.headers_mut());
                let queue = self.link.names.dead_letter.clone();
                self.link
                    .publish_to_queue("dead-letter", &queue, &copy)
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
