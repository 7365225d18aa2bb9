//! Partitioned consumer groups: several subscribers share a group's work while each key stays
//! with one of them.

mod coordinator;
mod membership;
mod partition_consumer;
mod topology;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::{mpsc, watch, Mutex as AsyncMutex};
use tokio::task::JoinHandle;
use waybill_core::{BrokerError, ConfigError, Delivery, LagProbe, Subscriber};

use crate::config::RabbitConfig;
use crate::confirm_channel::ConfirmChannel;
use crate::connect::connect;
use crate::error_class::broker_error;
use crate::lag::RabbitLagProbe;
use crate::name_rules::validate_name;
use crate::settler::SettleLink;
use crate::topology_names::QueueNames;
use coordinator::{Coordinator, OwnedPartitions};
use partition_consumer::ForwardTo;
use topology::{check_partitioned_lengths, declare_partitioned_group};

/// The most partitions a group may have.
pub const MAX_PARTITIONS: u16 = 1_024;

/// A member of a *partitioned* consumer group on RabbitMQ: the group's messages are spread by
/// key over `partitions` queues, and the group's members share the queues, so that several
/// subscribers work in parallel while every key is handled by one of them at a time, in
/// order — across members joining, leaving and crashing.
///
/// **Topology** (topic `T`, group `G`): the topic's fanout exchange `T` is bound to a topic
/// exchange `T.G.partitions`, which routes each message by its routing key onto one of the
/// quorum queues `T.G.p0` … `T.G.p<N-1>`. [`crate::RabbitPublisher`] publishes every message
/// with its key's route ([`crate::key_routing_key`]: CRC-32 bits of the key), so a key always
/// lands in the same partition, across broker restarts too; messages without a key all land
/// in one partition, and so do messages from other producers whose routing key is no key
/// route (through the alternate exchange `T.G.partitions.<N>.unrouted`, to `T.G.p0`). Retry
/// tiers (`T.G.retry.<ms>ms`) send expired copies back through `T.G.partitions`, to the key's
/// partition; dead letters go to `T.G.dlq`, as for [`crate::RabbitSubscriber`]. No broker
/// plugin is needed.
///
/// **One consumer per partition.** Every partition queue has RabbitMQ's single active
/// consumer: however many members consume a partition, the broker delivers it to one, and
/// hands it to the next only when that one has gone, its unacknowledged deliveries first.
///
/// **Sharing the partitions.** Each member holds a *slot*, an exclusive queue
/// `T.G.member.<n>` that the broker deletes when the member's connection closes or dies. Every
/// [`rebalance_interval`](crate::RabbitConfigBuilder::rebalance_interval) (1 s) a member reads
/// the held slots and consumes the partitions whose number modulo the member count is its
/// rank, so counts differ by one at most. A member hands a partition over by taking no more
/// of its deliveries, waiting until those it took are settled, then closing the partition's
/// channel: the next member receives a key's next message only after the earlier ones were
/// settled. A member that crashes holds nothing: the broker gives its deliveries back and
/// deletes its slot, and the others take its partitions at their next reading. More members
/// than partitions leave the extra ones standing by.
///
/// **Guarantees** as for [`crate::RabbitSubscriber`] (acknowledgement, retries, dead letters,
/// reconnection), plus per-key order with any number of members. As everywhere, a message
/// handled by a member that then lost its connection comes again to the next owner: the
/// Processor's idempotency store makes that a duplicate skipped.
///
/// The partition count is fixed when the group is first declared; a member connecting with
/// another count is refused. To change it, drain the group and delete its topology
/// ([`crate::delete_partitioned_group_topology`]), or use a new group.
pub struct RabbitPartitionedSubscriber {
    config: RabbitConfig,
    names: Arc<QueueNames>,
    topic: Arc<str>,
    group: Arc<str>,
    partitions: u16,
    owned: OwnedPartitions,
    session: Option<Session>,
    closed: bool,
}

struct Session {
    deliveries: mpsc::Receiver<Result<Delivery, BrokerError>>,
    to: Arc<ForwardTo>,
    stop: watch::Sender<bool>,
    coordinator: JoinHandle<()>,
}

impl RabbitPartitionedSubscriber {
    /// Joins group `group` of `topic` as a member, the group having `partitions` partitions
    /// (1 to [`MAX_PARTITIONS`]). Declares the group's topology (idempotently), takes a slot,
    /// and starts consuming the partitions assigned to this member before returning.
    ///
    /// # Errors
    /// [`BrokerError`]: permanent for unusable names, a partition count out of range, refused
    /// credentials, or a group declared before with other arguments (unpartitioned, another
    /// partition count, another delivery limit); transient when the broker is down.
    pub async fn connect(
        config: RabbitConfig,
        topic: &str,
        group: &str,
        partitions: u16,
    ) -> Result<Self, BrokerError> {
        let invalid = |e: ConfigError| BrokerError::permanent("subscribe", e.to_string());
        validate_name("topic", topic).map_err(invalid)?;
        validate_name("group", group).map_err(invalid)?;
        if !(1..=MAX_PARTITIONS).contains(&partitions) {
            return Err(invalid(ConfigError::new(
                "partitions",
                format!("must be between 1 and {MAX_PARTITIONS}, not {partitions}"),
            )));
        }
        let names = QueueNames::new(topic, group);
        check_partitioned_lengths(&names, &config, partitions).map_err(invalid)?;
        let mut subscriber = Self {
            config,
            names: Arc::new(names),
            topic: topic.into(),
            group: group.into(),
            partitions,
            owned: Arc::new(Mutex::new(Vec::new())),
            session: None,
            closed: false,
        };
        subscriber.session = Some(subscriber.open().await?);
        Ok(subscriber)
    }

    /// The partitions this member consumes now (ascending). Empty while it stands by or
    /// reconnects.
    pub fn owned_partitions(&self) -> Vec<u16> {
        self.owned.lock().expect("not poisoned").clone()
    }

    /// The group's partition count.
    pub fn partitions(&self) -> u16 {
        self.partitions
    }

    /// Connects, declares, takes a slot and its partitions, and starts the session's
    /// coordinator.
    async fn open(&self) -> Result<Session, BrokerError> {
        let connection = Arc::new(connect(&self.config, "waybill-partitioned-subscriber").await?);
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| broker_error("subscribe", e))?;
        declare_partitioned_group(&channel, &self.names, &self.config, self.partitions)
            .await
            .map_err(|e| broker_error("declare", e))?;
        let _ = channel.close(200, "declared".into()).await;
        let (sender, deliveries) = mpsc::channel(usize::from(self.config.prefetch));
        let to = Arc::new(ForwardTo {
            deliveries: sender,
            settle: Arc::new(SettleLink {
                connection: Arc::clone(&connection),
                channel: AsyncMutex::new(ConfirmChannel::default()),
                names: Arc::clone(&self.names),
                config: self.config.clone(),
                partitioned: true,
            }),
            topic: Arc::clone(&self.topic),
            group: Arc::clone(&self.group),
            lost: AtomicBool::new(false),
        });
        let mut coordinator = Coordinator::new(
            connection,
            Arc::clone(&self.names),
            self.config.clone(),
            self.partitions,
            Arc::clone(&to),
            Arc::clone(&self.owned),
        );
        coordinator
            .rebalance()
            .await
            .map_err(|e| broker_error("subscribe", e))?;
        let (stop, stopped) = watch::channel(false);
        let coordinator = tokio::spawn(coordinator.run(stopped));
        Ok(Session {
            deliveries,
            to,
            stop,
            coordinator,
        })
    }
}

#[async_trait]
impl Subscriber for RabbitPartitionedSubscriber {
    fn group(&self) -> Option<&str> {
        Some(&self.group)
    }

    fn destination(&self) -> Option<&str> {
        Some(&self.topic)
    }

    /// Every partition queue's ready messages (one entry per partition, whoever consumes
    /// it) and the dead-letter queue's depth, on a connection of the probe's own.
    fn lag_probe(&self) -> Option<Arc<dyn LagProbe>> {
        Some(Arc::new(RabbitLagProbe::new(
            self.config.clone(),
            Arc::clone(&self.names),
            (0..self.partitions)
                .map(|p| self.names.partition(p))
                .collect(),
            &self.group,
        )))
    }

    async fn receive(&mut self) -> Result<Option<Delivery>, BrokerError> {
        if self.closed {
            return Ok(None);
        }
        if self.session.is_none() {
            self.session = Some(self.open().await?);
        }
        let session = self.session.as_mut().expect("opened above");
        let received = session.deliveries.recv().await;
        if session.to.is_lost() {
            // Whatever waits in the buffer can no longer be acknowledged: drop it with the
            // session (the broker gives it to the partition's next owner).
            self.session = None;
            return Err(BrokerError::transient(
                "receive",
                "the partitioned subscriber's connection was lost",
            ));
        }
        match received {
            Some(Ok(delivery)) => Ok(Some(delivery)),
            Some(Err(e)) => {
                self.session = None;
                Err(e)
            }
            None => {
                self.session = None;
                Err(BrokerError::transient(
                    "receive",
                    "the partitioned subscriber's session ended",
                ))
            }
        }
    }

    /// Hands every partition over (waiting, at most
    /// [`stale_consumer_wait`](crate::RabbitConfigBuilder::stale_consumer_wait), for the
    /// deliveries taken to be settled), gives up the slot and closes the connection.
    async fn close(&mut self) -> Result<(), BrokerError> {
        self.closed = true;
        if let Some(session) = self.session.take() {
            // Deliveries taken but never received are given back now, so the hand-over does
            // not wait for them.
            drop(session.deliveries);
            let _ = session.stop.send(true);
            session
                .coordinator
                .await
                .map_err(|e| BrokerError::transient("close", e.to_string()))?;
        }
        Ok(())
    }
}

impl Drop for RabbitPartitionedSubscriber {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            // Without close(): stop the coordinator; the connection closes with it.
            let _ = session.stop.send(true);
        }
    }
}
