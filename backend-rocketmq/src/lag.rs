//! Consumer lag on RocketMQ: per message queue, the queue's max offset minus the group's
//! committed offset, read through an admin client of the probe's own.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::OnceCell;
use waybill_core::{BrokerError, ConsumerLag, LagProbe};

use crate::admin::RocketAdmin;
use crate::config::RocketConfig;

/// Reads the lag of a subscriber's group on the topics it consumes (the topic and the group's
/// retry topic), without joining or disturbing the group: the brokers' consume stats give
/// each queue's max offset and the group's committed offset.
///
/// - **One line per message queue** of every consumed topic (destination: the topic;
///   partition: `<brokerName>:<queueId>`), read from the master of each broker in the topic's
///   route.
/// - **Never committed**: the broker reports a queue the group never committed on at offset 0,
///   so such a queue counts from its min offset (the oldest message still stored), as does a
///   committed offset the broker's retention already passed. A group that started at the
///   latest offset ([`StartFrom::Latest`](crate::StartFrom::Latest)) therefore counts the
///   messages stored before it joined until it commits on the queue.
/// - **Behind by up to 5 s**: the client persists a consumer's commits to the broker every
///   5 s (and on rebalance and close), so the lag reads up to that much behind what the
///   processor has settled; the first persist comes 10 s after the consumer started, so a
///   new subscriber's progress shows from then on.
/// - **Dead letters**: `dead_letter_depth` is the backlog of the dead-letter reader group
///   (`<group>_dlq_reader`, see [`RocketSubscriber::dead_letters`]) on the group's
///   dead-letter topic: the dead letters nobody read yet (all of them while no reader ever
///   committed). `None` when it cannot be read, and for the dead-letter reader itself.
/// - **Connection**: the admin client starts at the first reading (and again at the next one
///   when starting failed); it is closed when the probe is dropped inside a Tokio runtime.
///
/// [`RocketSubscriber::dead_letters`]: crate::RocketSubscriber::dead_letters
pub(crate) struct RocketLagProbe {
    pub config: RocketConfig,
    pub group: String,
    /// The consumed topics, each with one line per queue.
    pub topics: Vec<String>,
    /// The group's dead-letter topic and the group that reads it, for `dead_letter_depth`.
    pub dead_letters: Option<(String, String)>,
    pub admin: Arc<OnceCell<RocketAdmin>>,
}

impl RocketLagProbe {
    /// A probe for `group` on `topics` that starts its admin client at the first reading.
    pub(crate) fn new(
        config: RocketConfig,
        group: String,
        topics: Vec<String>,
        dead_letters: Option<(String, String)>,
    ) -> Self {
        Self {
            config,
            group,
            topics,
            dead_letters,
            admin: Arc::new(OnceCell::new()),
        }
    }
}

#[async_trait]
impl LagProbe for RocketLagProbe {
    /// One route request and one consume-stats request per broker for each consumed topic,
    /// plus one min-offset request per queue with a backlog; the same again for the
    /// dead-letter depth.
    ///
    /// # Errors
    /// [`BrokerError`]: transient when the admin client cannot start, the name server or a
    /// broker cannot be reached, or a topic has no route right now; permanent when a topic
    /// does not exist or a broker refuses for good (see [`RocketAdmin::consume_lag`]). A
    /// failed dead-letter depth is `None`, not an error.
    async fn lag(&self) -> Result<ConsumerLag, BrokerError> {
        let admin = self
            .admin
            .get_or_try_init(|| RocketAdmin::connect(&self.config))
            .await?;
        let mut partitions = Vec::new();
        for topic in &self.topics {
            partitions.extend(admin.consume_lag(&self.group, topic).await?);
        }
        let dead_letter_depth = match &self.dead_letters {
            Some((topic, reader)) => admin
                .consume_lag(reader, topic)
                .await
                .ok()
                .map(|queues| queues.iter().map(|q| q.lag).sum()),
            None => None,
        };
        Ok(ConsumerLag {
            system: "rocketmq",
            group: self.group.clone(),
            partitions,
            dead_letter_depth,
        })
    }
}

impl Drop for RocketLagProbe {
    /// Closes the admin client in the background, when one was started and a Tokio runtime
    /// is at hand (otherwise it lives on until the process exits).
    fn drop(&mut self) {
        if !self.admin.initialized() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let admin = Arc::clone(&self.admin);
            runtime.spawn(async move {
                if let Some(admin) = admin.get() {
                    admin.close().await;
                }
            });
        }
    }
}
