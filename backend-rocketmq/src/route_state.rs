//! What the name server knows of a topic's route, and what its absence means.
//!
//! While a broker restarts, or after its connection to the name server was cut, the name
//! server drops the broker's queues from every route; a topic served by that broker alone then
//! has no route at all, and the name server answers "topic does not exist" for a topic that
//! exists. So a missing route means "not there" only while the name server knows brokers, and
//! even then a topic may be about to appear (a deployment that creates it later): callers wait
//! a bounded time before they call it permanent.

use std::sync::Mutex;
use std::time::Duration;

use rocketmq_client_rust::{DefaultMQAdminExt, RouteAdmin, TopicAdmin};
use rocketmq_model::common::mix_all::MASTER_ID;
use tokio::time::Instant;
use waybill_core::BrokerError;

use crate::error_class::{describe_at, response_code};

/// The name server's answer for a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RouteState {
    /// Routed, with this many writable queues.
    Writable(u32),
    /// Routed, but no broker serves a writable queue right now.
    NoWritableQueue,
    /// No route: the name server says the topic does not exist while it knows this many
    /// master brokers. With none, it cannot know the topic.
    Missing {
        /// Master brokers registered with the name server.
        masters: usize,
    },
}

impl RouteState {
    /// Whether the name server's "does not exist" can be taken at its word: it knows brokers.
    pub(crate) fn is_authoritative_absence(self) -> bool {
        matches!(self, Self::Missing { masters } if masters > 0)
    }

    /// What an unusable route means, for an error's reason.
    pub(crate) fn explain(self, topic: &str) -> String {
        match self {
            Self::Writable(n) => format!("topic {topic} has {n} writable queues"),
            Self::NoWritableQueue => format!(
                "no broker serves a writable queue of topic {topic} right now (a broker is \
                 restarting or cut off from the name server)"
            ),
            Self::Missing { masters: 0 } => format!(
                "no route for topic {topic}: no broker is registered with the name server \
                 (restarting or cut off), so it cannot know the topic"
            ),
            Self::Missing { masters } => format!(
                "topic {topic} does not exist: the name server, with {masters} master \
                 broker(s) registered, has no route for it (create it first; topics are not \
                 created on the fly)"
            ),
        }
    }
}

/// When a client last saw the cluster unable to route: no broker registered, a route without
/// a writable queue, a name server that did not answer, a topic routed before that lost its
/// route.
///
/// A broker that comes back registers its topics with the name server, and a broker with
/// many topics does so in several requests: for a moment after an outage the name server
/// knows the broker but not yet all of its topics, and says "does not exist" for a topic
/// that exists. So an absence counts as real only once the cluster has routed without
/// trouble for a while (see [`UnroutedMemory::absence_is_settled`]).
#[derive(Debug, Default)]
pub(crate) struct UnroutedMemory {
    last: Mutex<Option<Instant>>,
}

impl UnroutedMemory {
    /// Records that the cluster could not route just now.
    pub(crate) fn saw_outage(&self) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// Whether the last outage seen is more than `settle` ago (or none was ever seen): then a
    /// name server that knows brokers has had time to learn all their topics.
    pub(crate) fn absence_is_settled(&self, settle: Duration) -> bool {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none_or(|at| at.elapsed() >= settle)
    }

    /// How long ago the last outage was seen, if one was.
    pub(crate) fn since_outage(&self) -> Option<Duration> {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|at| at.elapsed())
    }
}

/// Asks the name server for `topic`'s route and, when there is none, how many masters it knows.
///
/// # Errors
/// [`BrokerError`] (transient) when the name server does not answer.
pub(crate) async fn route_state(
    admin: &DefaultMQAdminExt,
    topic: &str,
    name_server: &str,
) -> Result<RouteState, BrokerError> {
    match admin.examine_topic_route_info(topic.into()).await {
        Ok(Some(route)) if !route.queue_datas.is_empty() => {
            let writable: u32 = route.queue_datas.iter().map(|q| q.write_queue_nums()).sum();
            let served = !route.broker_datas.is_empty();
            Ok(if writable > 0 && served {
                RouteState::Writable(writable)
            } else {
                RouteState::NoWritableQueue
            })
        }
        Ok(_) => masters(admin, name_server).await,
        Err(e) if response_code(&e) == Some(TOPIC_NOT_EXIST) => masters(admin, name_server).await,
        Err(e) => Err(BrokerError::transient(
            "topic route",
            describe_at(&e, name_server),
        )),
    }
}

/// The name server's "topic does not exist" response code.
const TOPIC_NOT_EXIST: i32 = 17;

async fn masters(admin: &DefaultMQAdminExt, name_server: &str) -> Result<RouteState, BrokerError> {
    let cluster = admin
        .examine_broker_cluster_info()
        .await
        .map_err(|e| BrokerError::transient("cluster info", describe_at(&e, name_server)))?;
    let masters = cluster
        .broker_addr_table
        .iter()
        .flat_map(|table| table.values())
        .filter(|b| b.broker_addrs().contains_key(&MASTER_ID))
        .count();
    Ok(RouteState::Missing { masters })
}

/// Asks for `topic`'s route until it is writable or `limit` has passed; returns the last
/// answer the name server gave (a failed ask in between does not hide it). Missing routes are
/// asked again every 200 ms.
///
/// # Errors
/// [`BrokerError`] (transient) when the name server never answered.
pub(crate) async fn await_route(
    admin: &DefaultMQAdminExt,
    topic: &str,
    name_server: &str,
    limit: Duration,
) -> Result<RouteState, BrokerError> {
    let started = Instant::now();
    let mut answered = None;
    loop {
        match route_state(admin, topic, name_server).await {
            Ok(RouteState::Writable(queues)) => return Ok(RouteState::Writable(queues)),
            Ok(state) => answered = Some(state),
            Err(e) if started.elapsed() >= limit => return answered.ok_or(e),
            Err(_) => {}
        }
        if started.elapsed() >= limit {
            return Ok(answered.expect("an answer was recorded above"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_absence_seen_soon_after_an_outage_is_not_settled() {
        let memory = UnroutedMemory::default();
        assert!(
            memory.absence_is_settled(Duration::from_secs(15)),
            "no outage seen"
        );
        assert_eq!(memory.since_outage(), None);
        memory.saw_outage();
        assert!(!memory.absence_is_settled(Duration::from_secs(15)));
        tokio::time::advance(Duration::from_secs(14)).await;
        assert!(!memory.absence_is_settled(Duration::from_secs(15)));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(memory.absence_is_settled(Duration::from_secs(15)));
        assert_eq!(memory.since_outage(), Some(Duration::from_secs(15)));
    }

    #[test]
    fn only_a_name_server_that_knows_brokers_can_say_a_topic_is_missing() {
        assert!(RouteState::Missing { masters: 1 }.is_authoritative_absence());
        assert!(!RouteState::Missing { masters: 0 }.is_authoritative_absence());
        assert!(!RouteState::NoWritableQueue.is_authoritative_absence());
        assert!(RouteState::Missing { masters: 2 }
            .explain("t")
            .contains("does not exist"));
        assert!(!RouteState::Missing { masters: 0 }
            .explain("t")
            .contains("does not exist"));
    }
}
