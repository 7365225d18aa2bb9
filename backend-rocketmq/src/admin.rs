//! Creating topics and consumer groups explicitly (the broker runs with topic auto-creation
//! off, as production clusters should).

use std::time::Duration;

use cheetah_string::CheetahString;
use rocketmq_client_rust::{ConsumerAdmin, DefaultMQAdminExt, OffsetAdmin, RouteAdmin, TopicAdmin};
use rocketmq_model::common::config::TopicConfig;
use rocketmq_model::common::mix_all::MASTER_ID;
use rocketmq_model::message::MessageQueue;
use rocketmq_protocol::protocol::subscription::subscription_group_config::SubscriptionGroupConfig;
use tokio::sync::Mutex;
use waybill_core::{BrokerError, FailureClass, PartitionLag};

use crate::config::RocketConfig;
use crate::error_class::broker_error_at;
use crate::names::{check_group, check_topic, GroupTopics};
use crate::route_state::{await_route, route_state, RouteState};
use crate::runtime::{client_runtime, Erased, RocketFuture};

/// Read and write permission of a topic.
const PERM_READ_WRITE: u32 = 4 | 2;

/// How long a new topic may take to appear in the name server's routes.
const ROUTE_WAIT: Duration = Duration::from_secs(15);

/// How long each request of a lag reading may take, in milliseconds.
const LAG_REQUEST_TIMEOUT_MS: u64 = 5_000;

/// Administers topics and consumer groups on every master broker of the cluster.
pub struct RocketAdmin {
    admin: Erased<Mutex<DefaultMQAdminExt>>,
    queues: u32,
    name_server: String,
    route_wait: Duration,
}

impl RocketAdmin {
    /// Starts an admin client for the name servers in `config`.
    ///
    /// # Errors
    /// [`BrokerError`] when the admin client cannot start.
    pub fn connect(config: &RocketConfig) -> RocketFuture<'_, Result<Self, BrokerError>> {
        crate::runtime::boxed(async move {
            let timeout = Duration::from_secs(5);
            let mut admin = match config.security.rpc_hook() {
                Some(hook) => {
                    DefaultMQAdminExt::with_rpc_hook_and_timeout(client_runtime()?, hook, timeout)
                }
                None => DefaultMQAdminExt::with_timeout(client_runtime()?, timeout),
            };
            admin.set_namesrv_addr(config.name_server.as_str());
            config.security.apply_tls(admin.client_config_mut());
            admin.start().await.map_err(|e| {
                broker_error_at("admin connect", &e, Some(&config.described_name_servers()))
            })?;
            Ok(Self {
                admin: Erased::new(Mutex::new(admin)),
                queues: config.queues_per_topic,
                name_server: config.described_name_servers(),
                route_wait: config.route_wait,
            })
        })
    }

    /// The admin client, for the other administrative reads of this crate.
    pub(crate) fn client(&self) -> &Mutex<DefaultMQAdminExt> {
        self.admin.get()
    }

    /// The name servers, as error messages name them.
    pub(crate) fn name_server(&self) -> &str {
        &self.name_server
    }

    /// Addresses of the master brokers.
    async fn masters(&self) -> Result<Vec<CheetahString>, BrokerError> {
        let admin = self.admin.get().lock().await;
        let cluster = admin
            .examine_broker_cluster_info()
            .await
            .map_err(|e| broker_error_at("cluster info", &e, Some(&self.name_server)))?;
        let masters: Vec<CheetahString> = cluster
            .broker_addr_table
            .iter()
            .flat_map(|table| table.values())
            .filter_map(|b| b.broker_addrs().get(&MASTER_ID).cloned())
            .collect();
        if masters.is_empty() {
            return Err(BrokerError::transient(
                "cluster info",
                "no master broker is registered with the name server",
            ));
        }
        Ok(masters)
    }

    /// Creates `topic` with the configured number of queues on every master (or updates it),
    /// then waits until the name server routes it.
    ///
    /// # Errors
    /// [`BrokerError`]: permanent for an invalid name, transient when the cluster does not
    /// answer or the route does not appear.
    pub fn create_topic<'a>(&'a self, topic: &'a str) -> RocketFuture<'a, Result<(), BrokerError>> {
        crate::runtime::boxed(
            async move { self.create_topic_with_queues(topic, self.queues).await },
        )
    }

    /// As [`RocketAdmin::create_topic`], with `queues` queues.
    ///
    /// # Errors
    /// As for [`RocketAdmin::create_topic`].
    pub fn create_topic_with_queues<'a>(
        &'a self,
        topic: &'a str,
        queues: u32,
    ) -> RocketFuture<'a, Result<(), BrokerError>> {
        crate::runtime::boxed(async move {
            check_topic(topic)
                .map_err(|e| BrokerError::permanent("create topic", e.to_string()))?;
            for addr in self.masters().await? {
                let config = TopicConfig::with_perm(topic, queues, queues, PERM_READ_WRITE);
                self.admin
                    .get()
                    .lock()
                    .await
                    .create_and_update_topic_config(addr, config)
                    .await
                    .map_err(|e| broker_error_at("create topic", &e, Some(&self.name_server)))?;
            }
            let deadline = tokio::time::Instant::now() + ROUTE_WAIT;
            loop {
                if self.topic_queues(topic).await? == Some(queues) {
                    return Ok(());
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(BrokerError::transient(
                        "create topic",
                        format!("{topic} was created but the name server did not route it within {ROUTE_WAIT:?}"),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    }

    /// The number of writable queues of `topic`, or `None` when the name server has no route
    /// for it.
    ///
    /// # Errors
    /// [`BrokerError`] (transient) when the name server does not answer.
    pub fn topic_queues<'a>(
        &'a self,
        topic: &'a str,
    ) -> RocketFuture<'a, Result<Option<u32>, BrokerError>> {
        crate::runtime::boxed(async move {
            let route = self
                .admin
                .get()
                .lock()
                .await
                .examine_topic_route_info(topic.into())
                .await;
            match route {
                Ok(Some(route)) if !route.queue_datas.is_empty() => Ok(Some(
                    route.queue_datas.iter().map(|q| q.write_queue_nums()).sum(),
                )),
                Ok(_) => Ok(None),
                Err(e) if crate::error_class::response_code(&e) == Some(17) => Ok(None),
                Err(e) => Err(broker_error_at("topic route", &e, Some(&self.name_server))),
            }
        })
    }

    /// Creates (or updates) consumer group `group` on every master, as a clustering group.
    ///
    /// # Errors
    /// [`BrokerError`]: permanent for an invalid name, transient when the cluster does not
    /// answer.
    pub fn create_group<'a>(&'a self, group: &'a str) -> RocketFuture<'a, Result<(), BrokerError>> {
        crate::runtime::boxed(async move {
            check_group(group)
                .map_err(|e| BrokerError::permanent("create group", e.to_string()))?;
            for addr in self.masters().await? {
                let mut config = SubscriptionGroupConfig::new(group.into());
                config.set_consume_broadcast_enable(false);
                self.admin
                    .get()
                    .lock()
                    .await
                    .create_and_update_subscription_group_config(addr, config)
                    .await
                    .map_err(|e| broker_error_at("create group", &e, Some(&self.name_server)))?;
            }
            Ok(())
        })
    }

    /// What the name server knows of `topic`'s route, asked again for up to `wait` while the
    /// topic has no writable queue.
    ///
    /// # Errors
    /// [`BrokerError`] (transient) when the name server does not answer.
    pub(crate) async fn route_state(
        &self,
        topic: &str,
        wait: Duration,
    ) -> Result<RouteState, BrokerError> {
        crate::runtime::boxed(async move {
            let admin = self.admin.get().lock().await;
            await_route(&admin, topic, &self.name_server, wait).await
        })
        .await
    }

    /// Prepares `group` to consume `topic`: the topic must exist; the group and its retry and
    /// dead-letter topics (with the topic's queue count) are created when missing.
    ///
    /// While the topic has no route (its broker restarting, or cut off from the name server),
    /// the name server is asked again for up to the configured
    /// [`route_wait`](crate::RocketConfigBuilder::route_wait).
    ///
    /// # Errors
    /// [`BrokerError`]: permanent when a name is invalid or, after the wait, the name server
    /// still says that `topic` does not exist while it knows brokers (the reason then says
    /// "does not exist"); transient when no broker serves the topic's route after the wait or
    /// the cluster does not answer.
    pub fn ensure_group_topics<'a>(
        &'a self,
        topic: &'a str,
        group: &'a str,
    ) -> RocketFuture<'a, Result<GroupTopics, BrokerError>> {
        crate::runtime::boxed(async move {
            let names = GroupTopics::new(topic, group)
                .map_err(|e| BrokerError::permanent("subscribe", e.to_string()))?;
            let queues = match self.route_state(topic, self.route_wait).await? {
                RouteState::Writable(queues) => queues,
                absent if absent.is_authoritative_absence() => {
                    return Err(BrokerError::permanent("subscribe", absent.explain(topic)));
                }
                unserved => {
                    return Err(BrokerError::transient("subscribe", unserved.explain(topic)))
                }
            };
            for derived in [&names.retry, &names.dead_letter] {
                if self.topic_queues(derived).await?.is_none() {
                    self.create_topic_with_queues(derived, queues).await?;
                }
            }
            self.create_group(group).await?;
            Ok(names)
        })
    }

    /// The backlog of consumer group `group` on every message queue of `topic`: the queue's
    /// max offset minus the group's committed offset, one line per queue (partition
    /// `<brokerName>:<queueId>`), ordered by broker name and queue id.
    ///
    /// The brokers are those of the topic's route; each master is asked for the group's
    /// consume stats of `topic` (one request per broker). A queue the group never committed
    /// on is reported by the broker at committed offset 0, and a committed offset below the
    /// queue's min offset points at messages the broker already deleted: in both cases the
    /// backlog counts from the queue's min offset, the oldest message the group can still
    /// read (one more request for each queue with a backlog; none for a caught-up queue).
    /// The committed offset is what the broker holds: the client persists a consumer's
    /// commits every 5 s (the first time 10 s after it started), so a backlog reads up to
    /// that much behind what was settled.
    ///
    /// # Errors
    /// [`BrokerError`]: permanent when the name server, knowing brokers, says `topic` does
    /// not exist, or a broker refuses the request for good (e.g. no permission); transient
    /// when the name server or a broker cannot be reached, the topic has no route right now
    /// (a broker restarting or cut off from the name server), or one of its brokers has no
    /// master. A reading is never partial: any failed request fails it.
    pub(crate) fn consume_lag<'a>(
        &'a self,
        group: &'a str,
        topic: &'a str,
    ) -> RocketFuture<'a, Result<Vec<PartitionLag>, BrokerError>> {
        crate::runtime::boxed(async move {
            let admin = self.admin.get().lock().await;
            let route = match admin.examine_topic_route_info(topic.into()).await {
                Ok(Some(route)) if !route.broker_datas.is_empty() => route,
                Ok(_) => {
                    return Err(no_route(
                        route_state(&admin, topic, &self.name_server).await?,
                        topic,
                    ))
                }
                Err(e) if crate::error_class::response_code(&e) == Some(17) => {
                    return Err(no_route(
                        route_state(&admin, topic, &self.name_server).await?,
                        topic,
                    ))
                }
                Err(e) => return Err(broker_error_at("lag", &e, Some(&self.name_server))),
            };
            let mut lines = Vec::new();
            for broker in &route.broker_datas {
                let Some(addr) = broker.broker_addrs().get(&MASTER_ID).cloned() else {
                    return Err(BrokerError::transient(
                        "lag",
                        format!(
                            "broker {} of topic {topic} has no master right now",
                            broker.broker_name()
                        ),
                    ));
                };
                let stats = admin
                    .examine_consume_stats(
                        group.into(),
                        Some(topic.into()),
                        None,
                        Some(addr.clone()),
                        Some(LAG_REQUEST_TIMEOUT_MS),
                    )
                    .await
                    .map_err(|e| broker_error_at("lag", &e, Some(&self.name_server)))?;
                let mut queues: Vec<(&MessageQueue, i64, i64)> = stats
                    .offset_table
                    .iter()
                    .filter(|(queue, _)| queue.topic_str() == topic)
                    .map(|(queue, o)| (queue, o.get_broker_offset(), o.get_consumer_offset()))
                    .collect();
                queues.sort_by_key(|(queue, _, _)| queue.queue_id());
                for (queue, max, committed) in queues {
                    let max = max.max(0);
                    let from = if committed < max {
                        let min = admin
                            .min_offset(addr.clone(), queue.clone(), LAG_REQUEST_TIMEOUT_MS)
                            .await
                            .map_err(|e| broker_error_at("lag", &e, Some(&self.name_server)))?;
                        committed.max(min).min(max)
                    } else {
                        max
                    };
                    let lag = u64::try_from(max - from).unwrap_or(0);
                    lines.push((queue.broker_name().to_string(), queue.queue_id(), lag));
                }
            }
            lines.sort();
            Ok(lines
                .into_iter()
                .map(|(broker, queue_id, lag)| PartitionLag {
                    destination: topic.to_owned(),
                    partition: format!("{broker}:{queue_id}"),
                    lag,
                })
                .collect())
        })
    }

    /// Stops the admin client.
    pub fn close(&self) -> RocketFuture<'_, ()> {
        crate::runtime::boxed(async move {
            self.admin.get().lock().await.shutdown().await;
        })
    }
}

/// The error of a lag reading for a topic without a route: permanent only when the name
/// server, knowing brokers, says the topic does not exist.
fn no_route(state: RouteState, topic: &str) -> BrokerError {
    let class = if state.is_authoritative_absence() {
        FailureClass::Permanent
    } else {
        FailureClass::Transient
    };
    let reason = match state {
        RouteState::Writable(_) => format!("the route of topic {topic} changed while read"),
        other => other.explain(topic),
    };
    BrokerError::new(class, "lag", reason)
}
