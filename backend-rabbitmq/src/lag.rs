//! Consumer lag on RabbitMQ: the messages ready in a group's work queue, and its dead-letter
//! queue's depth, read with passive declares on a connection of the probe's own.

use std::sync::Arc;

use async_trait::async_trait;
use lapin::{Channel, Connection};
use tokio::sync::Mutex;
use waybill_core::{BrokerError, ConsumerLag, LagProbe, PartitionLag};

use crate::config::RabbitConfig;
use crate::connect::connect;
use crate::error_class::broker_error;
use crate::handover::queue_counts;
use crate::topology_names::QueueNames;

/// Reads a group's queues. AMQP 0-9-1 reports a queue's *ready* messages only; the messages
/// consumers hold unacknowledged are counted by the management plugin's HTTP API, which the
/// probe asks when it has one (`RabbitSubscriber::count_unacknowledged`). Without it the lag
/// leaves out what the group's processors hold right now (their
/// `waybill.processor.in_flight` gauge shows it).
pub(crate) struct RabbitLagProbe {
    pub config: RabbitConfig,
    pub names: Arc<QueueNames>,
    /// The queues the group consumes: its work queue, or a partitioned group's partitions.
    pub queues: Vec<String>,
    pub group: String,
    /// A connection and channel opened at the first reading, opened again after a loss.
    pub link: Mutex<Option<(Connection, Channel)>>,
    /// The management API, for the unacknowledged messages.
    #[cfg(feature = "management")]
    pub management: Option<crate::ManagementApi>,
}

impl RabbitLagProbe {
    /// A probe of `queues` (and the dead-letter queue) of `group`, connecting at its first
    /// reading.
    pub fn new(
        config: RabbitConfig,
        names: Arc<QueueNames>,
        queues: Vec<String>,
        group: &str,
    ) -> Self {
        Self {
            config,
            names,
            queues,
            group: group.to_owned(),
            link: Mutex::new(None),
            #[cfg(feature = "management")]
            management: None,
        }
    }
}

#[async_trait]
impl LagProbe for RabbitLagProbe {
    async fn lag(&self) -> Result<ConsumerLag, BrokerError> {
        let mut link = self.link.lock().await;
        let usable = link
            .as_ref()
            .is_some_and(|(c, ch)| c.status().connected() && ch.status().connected());
        if !usable {
            let connection = connect(&self.config, "waybill-lag").await?;
            let channel = connection
                .create_channel()
                .await
                .map_err(|e| broker_error("lag", e))?;
            *link = Some((connection, channel));
        }
        let (_, channel) = link.as_ref().expect("opened above");
        let mut partitions = Vec::with_capacity(self.queues.len());
        for queue in &self.queues {
            let ready = match ready_messages(channel, queue).await {
                Ok(n) => n,
                Err(e) => {
                    *link = None;
                    return Err(broker_error("lag", e));
                }
            };
            #[cfg(feature = "management")]
            let ready = ready + self.unacknowledged(queue).await;
            partitions.push(PartitionLag {
                destination: self.names.exchange.clone(),
                partition: queue.clone(),
                lag: ready,
            });
        }
        let dead = ready_messages(channel, &self.names.dead_letter).await.ok();
        Ok(ConsumerLag {
            system: "rabbitmq",
            group: self.group.clone(),
            partitions,
            dead_letter_depth: dead,
        })
    }
}

#[cfg(feature = "management")]
impl RabbitLagProbe {
    /// The unacknowledged messages of `queue` by the management API; 0, with a warning, when
    /// there is no API or it does not answer.
    async fn unacknowledged(&self, queue: &str) -> u64 {
        let Some(api) = &self.management else {
            return 0;
        };
        match api.get(&["queues", api.vhost(), queue]).await {
            Ok(Some(queue)) => queue["messages_unacknowledged"].as_u64().unwrap_or(0),
            Ok(None) => 0,
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    queue,
                    "unacknowledged messages not read; the lag counts the ready ones only"
                );
                0
            }
        }
    }
}

/// The ready messages of `queue` (a passive declare: fails when the queue does not exist).
async fn ready_messages(channel: &Channel, queue: &str) -> Result<u64, lapin::Error> {
    Ok(u64::from(queue_counts(channel, queue).await?.ready))
}
