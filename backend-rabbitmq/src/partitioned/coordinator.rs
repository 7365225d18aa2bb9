//! One session of a partitioned member: holds a slot, reads the group's members on an
//! interval, and consumes the partitions assigned to it, handing over those it no longer owns.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use lapin::Connection;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};
use waybill_core::BrokerError;

use super::membership::{assigned, SlotProbe};
use super::partition_consumer::{ForwardTo, PartitionConsumer};
use crate::config::RabbitConfig;
use crate::error_class::broker_error;
use crate::topology_names::QueueNames;

/// The partitions a member consumes now, readable from the subscriber.
pub(crate) type OwnedPartitions = Arc<Mutex<Vec<u16>>>;

/// The state of one session.
pub(crate) struct Coordinator {
    connection: Arc<Connection>,
    names: Arc<QueueNames>,
    config: RabbitConfig,
    partitions: u16,
    to: Arc<ForwardTo>,
    owned: OwnedPartitions,
    slot: Option<u16>,
    consuming: BTreeMap<u16, PartitionConsumer>,
    releasing: BTreeMap<u16, JoinHandle<()>>,
}

impl Coordinator {
    pub fn new(
        connection: Arc<Connection>,
        names: Arc<QueueNames>,
        config: RabbitConfig,
        partitions: u16,
        to: Arc<ForwardTo>,
        owned: OwnedPartitions,
    ) -> Self {
        Self {
            connection,
            names,
            config,
            partitions,
            to,
            owned,
            slot: None,
            consuming: BTreeMap::new(),
            releasing: BTreeMap::new(),
        }
    }

    /// Claims a slot if this member has none, reads the held slots, hands over the partitions
    /// no longer assigned and consumes the newly assigned ones.
    ///
    /// # Errors
    /// The broker's error (the session is then lost).
    pub async fn rebalance(&mut self) -> Result<(), lapin::Error> {
        let mut probe = SlotProbe::new(&self.connection, &self.names);
        if self.slot.is_none() {
            self.slot = probe.claim(self.partitions).await?;
            match self.slot {
                Some(slot) => info!(group = %self.to.group, slot, "joined the partitioned group"),
                None => warn!(
                    group = %self.to.group,
                    partitions = self.partitions,
                    "every member slot is held (as many members as partitions): standing by"
                ),
            }
        }
        let held = probe.held(self.partitions).await?;
        drop(probe);
        let want = self
            .slot
            .map(|slot| assigned(self.partitions, &held, slot))
            .unwrap_or_default();
        self.releasing.retain(|_, release| !release.is_finished());
        let ended: Vec<u16> = self
            .consuming
            .values()
            .filter(|c| c.has_ended())
            .map(PartitionConsumer::partition)
            .collect();
        for partition in ended {
            warn!(
                partition,
                "a partition's consumer ended; consuming it again"
            );
            self.consuming.remove(&partition);
        }
        let unassigned: Vec<u16> = self
            .consuming
            .keys()
            .filter(|p| !want.contains(p))
            .copied()
            .collect();
        for partition in unassigned {
            let consumer = self.consuming.remove(&partition).expect("listed above");
            info!(partition, members = held.len(), "handing over partition");
            let (limit, close_limit) =
                (self.config.stale_consumer_wait, self.config.confirm_timeout);
            self.releasing.insert(
                partition,
                tokio::spawn(consumer.release(limit, close_limit)),
            );
        }
        for partition in want {
            if self.consuming.contains_key(&partition) || self.releasing.contains_key(&partition) {
                continue;
            }
            let queue = self.names.partition(partition);
            let consumer = PartitionConsumer::start(
                &self.connection,
                &queue,
                partition,
                self.config.prefetch,
                Arc::clone(&self.to),
            )
            .await?;
            info!(partition, members = held.len(), "consuming partition");
            self.consuming.insert(partition, consumer);
        }
        *self.owned.lock().expect("not poisoned") = self.consuming.keys().copied().collect();
        Ok(())
    }

    /// Rebalances every interval until `stop` or a lost connection. On `stop` it hands every
    /// partition over (waiting for what is in flight) and closes the connection; on a lost
    /// connection it reports one transient error to the subscriber.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.config.rebalance_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                _ = tick.tick() => {}
            }
            let failure = if self.connection.status().connected() {
                match self.rebalance().await {
                    Ok(()) => continue,
                    Err(e) => broker_error("rebalance", e),
                }
            } else {
                BrokerError::transient(
                    "receive",
                    "the partitioned subscriber's connection was lost",
                )
            };
            warn!(error = %failure, "partitioned subscriber session lost; will reconnect");
            self.to.lose_session();
            self.owned.lock().expect("not poisoned").clear();
            let _ = self.to.deliveries.send(Err(failure)).await;
            return;
        }
        self.hand_over_all().await;
    }

    /// Hands every partition over and closes the connection.
    async fn hand_over_all(mut self) {
        let limit = self.config.stale_consumer_wait;
        let close_limit = self.config.confirm_timeout;
        let releases: Vec<_> = std::mem::take(&mut self.consuming)
            .into_values()
            .map(|c| c.release(limit, close_limit))
            .collect();
        futures_util::future::join_all(releases).await;
        for (_, release) in std::mem::take(&mut self.releasing) {
            let _ = release.await;
        }
        self.owned.lock().expect("not poisoned").clear();
        if self.connection.status().connected() {
            let close = self.connection.close(200, "subscriber closed".into());
            if let Err(e) = crate::closing::bounded_close(close_limit, close).await {
                warn!(error = %e, "closing the partitioned subscriber's connection failed");
            }
        }
    }
}
