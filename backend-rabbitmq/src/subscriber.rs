//! Consuming a group's queue with manual acknowledgement.

use std::sync::Arc;

use async_trait::async_trait;
use futures_lite::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use tokio::sync::Mutex;
use tracing::warn;
use waybill_core::{
    BrokerError, ConfigError, Delivery, IncomingMessage, LagProbe, Origin, Subscriber,
};

use crate::closing::bounded_close;
use crate::config::RabbitConfig;
use crate::confirm_channel::ConfirmChannel;
use crate::connect::connect;
use crate::error_class::{broker_error, describe};
use crate::handover::{await_previous_consumer_gone, consumer_count};
use crate::lag::RabbitLagProbe;
use crate::name_rules::validate_name;
use crate::settler::{RabbitSettler, SettleLink};
use crate::topology::{check_lengths, declare_dead_letter_queue, declare_group};
use crate::topology_names::QueueNames;
use crate::wire;

/// A [`Subscriber`] of one topic and consumer group on RabbitMQ.
///
/// Creating it declares (idempotently) the topic's exchange, the group's quorum work queue and
/// binding, the retry tier queues and the dead-letter queue, then consumes with manual
/// acknowledgement and `prefetch` unacknowledged deliveries at most.
///
/// Settlement: ack → `basic.ack`; retry → the copy is published (confirmed) to the retry tier
/// whose TTL covers the delay, then the original is acked; dead letter → the message with its
/// record is published (confirmed) to `<topic>.<group>.dlq`, then acked. A delivery dropped
/// unsettled is nacked with requeue. After a lost connection or a broker-side cancel, `receive`
/// returns one transient error and the next call reconnects and consumes again; deliveries of
/// the old connection are redelivered by the broker.
///
/// Order across a lost connection: before consuming again, the subscriber waits (at most
/// [`RabbitConfigBuilder::stale_consumer_wait`](crate::RabbitConfigBuilder::stale_consumer_wait))
/// until the broker has dropped its previous consumer, so the deliveries that consumer held
/// come back before any later message of their keys.
pub struct RabbitSubscriber {
    config: RabbitConfig,
    names: Arc<QueueNames>,
    origin_topic: Arc<str>,
    group: Arc<str>,
    queue: String,
    declare_all: bool,
    session: Option<Session>,
    /// Consumers other than ours on the queue when the lost session began.
    others_before_loss: Option<u32>,
    closed: bool,
    /// Where the lag probe reads the work queue's unacknowledged messages.
    #[cfg(feature = "management")]
    management: Option<crate::ManagementApi>,
}

struct Session {
    channel: Channel,
    consumer: Consumer,
    settle: Arc<SettleLink>,
    connection: Arc<Connection>,
    /// Consumers other than ours on the queue when this session began consuming.
    others: u32,
}

impl RabbitSubscriber {
    /// Subscribes group `group` to `topic`.
    ///
    /// # Errors
    /// [`BrokerError`]: permanent for unusable names, refused credentials or conflicting queue
    /// arguments (an existing queue declared differently), transient when the broker is down.
    pub async fn connect(
        config: RabbitConfig,
        topic: &str,
        group: &str,
    ) -> Result<Self, BrokerError> {
        let names = Self::names(&config, topic, group)?;
        let queue = names.work.clone();
        Self::start(config, names, topic.into(), group.into(), queue, true).await
    }

    /// Reads the dead letters group `group` produced for `topic` (the queue
    /// `<topic>.<group>.dlq`). Its deliveries support ack only; replay republishes them.
    ///
    /// # Errors
    /// As for [`RabbitSubscriber::connect`].
    pub async fn dead_letters(
        config: RabbitConfig,
        topic: &str,
        group: &str,
    ) -> Result<Self, BrokerError> {
        let names = Self::names(&config, topic, group)?;
        let queue = names.dead_letter.clone();
        let origin = queue.as_str().into();
        Self::start(config, names, origin, group.into(), queue, false).await
    }

    fn names(config: &RabbitConfig, topic: &str, group: &str) -> Result<QueueNames, BrokerError> {
        let invalid = |e: ConfigError| BrokerError::permanent("subscribe", e.to_string());
        validate_name("topic", topic).map_err(invalid)?;
        validate_name("group", group).map_err(invalid)?;
        let names = QueueNames::new(topic, group);
        check_lengths(&names, config).map_err(invalid)?;
        Ok(names)
    }

    async fn start(
        config: RabbitConfig,
        names: QueueNames,
        origin_topic: Arc<str>,
        group: Arc<str>,
        queue: String,
        declare_all: bool,
    ) -> Result<Self, BrokerError> {
        let mut subscriber = Self {
            config,
            names: Arc::new(names),
            origin_topic,
            group,
            queue,
            declare_all,
            session: None,
            others_before_loss: None,
            closed: false,
            #[cfg(feature = "management")]
            management: None,
        };
        subscriber.session = Some(subscriber.open().await?);
        Ok(subscriber)
    }

    /// Makes the lag probe count the work queue's *unacknowledged* messages too (those the
    /// group's consumers hold), read from the management HTTP API; AMQP reports only the ready
    /// ones. The API's figures are refreshed on the broker's statistics interval (5 s by
    /// default), so that part of the lag trails by up to that much. When the API does not
    /// answer, a reading falls back to the ready messages and logs a warning.
    #[cfg(feature = "management")]
    pub fn count_unacknowledged(mut self, management: crate::ManagementApi) -> Self {
        self.management = Some(management);
        self
    }

    /// Connects, declares and consumes. After a lost session, first waits until the broker has
    /// dropped that session's consumer (see [`crate::handover`]).
    async fn open(&self) -> Result<Session, BrokerError> {
        let connection = Arc::new(connect(&self.config, "waybill-subscriber").await?);
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| broker_error("subscribe", e))?;
        let declared = if self.declare_all {
            declare_group(&channel, &self.names, &self.config).await
        } else {
            declare_dead_letter_queue(&channel, &self.names).await
        };
        declared.map_err(|e| broker_error("declare", e))?;
        channel
            .basic_qos(self.config.prefetch, BasicQosOptions::default())
            .await
            .map_err(|e| broker_error("subscribe", e))?;
        let others = match self.others_before_loss {
            Some(others) => {
                await_previous_consumer_gone(
                    &channel,
                    &self.queue,
                    others,
                    self.config.stale_consumer_wait,
                )
                .await
            }
            None => consumer_count(&channel, &self.queue).await,
        }
        .map_err(|e| broker_error("subscribe", e))?;
        if others > 0 && !self.config.single_active_consumer {
            warn!(
                queue = %self.queue,
                competing_consumers = others,
                "another consumer already consumes this group's queue: RabbitMQ shares the \
                 queue's messages between them, so per-key order no longer holds (run one \
                 subscriber per group for per-key order)"
            );
        }
        let consumer = channel
            .basic_consume(
                self.queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| broker_error("subscribe", e))?;
        let settle = Arc::new(SettleLink {
            connection: Arc::clone(&connection),
            channel: Mutex::new(ConfirmChannel::default()),
            names: Arc::clone(&self.names),
            config: self.config.clone(),
            partitioned: false,
        });
        Ok(Session {
            channel,
            consumer,
            settle,
            connection,
            others,
        })
    }

    /// Other consumers the broker counted on this subscriber's queue when it last began
    /// consuming (at [`RabbitSubscriber::connect`] and after each reconnection).
    ///
    /// Zero is what per-key order needs: RabbitMQ hands a queue's messages to its consumers in
    /// turn, so with competing consumers on one group two messages of a key can be handled at
    /// once, and after a lost connection or a broker restart in either order. A subscriber
    /// that finds others logs a warning, unless the group's queue has a single active
    /// consumer ([`crate::RabbitConfigBuilder::single_active_consumer`]), where the others
    /// only stand by. Consumers that join later are not seen here.
    pub fn competing_consumers(&self) -> u32 {
        self.session
            .as_ref()
            .map(|s| s.others)
            .or(self.others_before_loss)
            .unwrap_or_default()
    }

    /// Forgets a session that failed, remembering who else consumed when it began.
    fn lose_session(&mut self) {
        if let Some(lost) = self.session.take() {
            self.others_before_loss = Some(lost.others);
        }
    }
}

#[async_trait]
impl Subscriber for RabbitSubscriber {
    fn group(&self) -> Option<&str> {
        Some(&self.group)
    }

    /// The topic whose exchange the group's work queue is bound to.
    fn destination(&self) -> Option<&str> {
        Some(&self.origin_topic)
    }

    /// The work queue's ready messages (and, with
    /// [`count_unacknowledged`](RabbitSubscriber::count_unacknowledged), its unacknowledged
    /// ones) and the dead-letter queue's depth, on a connection of the probe's own. `None` for
    /// a dead-letter reader.
    fn lag_probe(&self) -> Option<Arc<dyn LagProbe>> {
        self.declare_all.then(|| {
            let probe = RabbitLagProbe::new(
                self.config.clone(),
                Arc::clone(&self.names),
                vec![self.names.work.clone()],
                &self.group,
            );
            #[cfg(feature = "management")]
            let probe = RabbitLagProbe {
                management: self.management.clone(),
                ..probe
            };
            Arc::new(probe) as Arc<dyn LagProbe>
        })
    }

    async fn receive(&mut self) -> Result<Option<Delivery>, BrokerError> {
        if self.closed {
            return Ok(None);
        }
        if self.session.is_none() {
            self.session = Some(self.open().await?);
        }
        let session = self.session.as_mut().expect("opened above");
        match session.consumer.next().await {
            Some(Ok(delivery)) => {
                let message = wire::message(&delivery.properties, delivery.data);
                let origin = Origin {
                    topic: Arc::clone(&self.origin_topic),
                    group: Arc::clone(&self.group),
                    partition: None,
                    offset: None,
                };
                let incoming = IncomingMessage::new(message, origin, delivery.redelivered);
                let settler = RabbitSettler::new(delivery.acker, Arc::clone(&session.settle));
                Ok(Some(Delivery::new(incoming, Box::new(settler))))
            }
            Some(Err(e)) => {
                self.lose_session();
                warn!(error = %e, queue = %self.queue, "rabbitmq consumer failed; will reconnect");
                // Whatever closed the consumer (connection loss, consumer timeout, a channel
                // error), a new connection and consumer may work: never end the stream here.
                Err(BrokerError::transient("receive", describe(&e)).with_source(e))
            }
            None => {
                self.lose_session();
                warn!(queue = %self.queue, "rabbitmq consumer cancelled; will resubscribe");
                Err(BrokerError::transient(
                    "receive",
                    format!(
                        "consumer of {} was cancelled or its channel closed",
                        self.queue
                    ),
                ))
            }
        }
    }

    async fn close(&mut self) -> Result<(), BrokerError> {
        self.closed = true;
        if let Some(session) = self.session.take() {
            // Closing the channel first waits for close-ok: every ack sent on it has been
            // processed, and its unacknowledged deliveries are requeued, before we go.
            if session.channel.status().connected() {
                let close = session.channel.close(200, "subscriber closed".into());
                bounded_close(self.config.confirm_timeout, close).await?;
            }
            if session.connection.status().connected() {
                let close = session.connection.close(200, "subscriber closed".into());
                bounded_close(self.config.confirm_timeout, close).await?;
            }
        }
        Ok(())
    }
}
