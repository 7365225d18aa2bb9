//! Topics: creation, deletion, and the durability preflight.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use tracing::warn;
use waybill_core::preflight::{Check, PreflightReport, Verdict};
use waybill_core::BrokerError;

use crate::config::KafkaConfig;
use crate::error_class::broker_error;
use crate::names::{check_topic, GroupTopics};

fn client(config: &KafkaConfig) -> Result<AdminClient<DefaultClientContext>, BrokerError> {
    config
        .admin()
        .create()
        .map_err(|e| broker_error("admin", &e))
}

fn options() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)))
}

/// Creates `topic` with `partitions` partitions and `replication` copies; an existing topic is
/// left as it is.
///
/// # Errors
/// [`BrokerError`] when the name is invalid, the cluster is unreachable or refuses.
pub async fn create_topic(
    config: &KafkaConfig,
    topic: &str,
    partitions: i32,
    replication: i32,
) -> Result<(), BrokerError> {
    check_topic(topic).map_err(|e| BrokerError::permanent("create topic", e.to_string()))?;
    create_topics(&client(config)?, &[topic], partitions, replication).await
}

/// Creates `topics` in one request on `admin`, each with `partitions` partitions and
/// `replication` copies; existing ones are left as they are.
async fn create_topics(
    admin: &AdminClient<DefaultClientContext>,
    topics: &[&str],
    partitions: i32,
    replication: i32,
) -> Result<(), BrokerError> {
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|topic| NewTopic::new(topic, partitions, TopicReplication::Fixed(replication)))
        .collect();
    let results = admin
        .create_topics(&new, &options())
        .await
        .map_err(|e| broker_error("create topic", &e))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(BrokerError::permanent(
                    "create topic",
                    format!("creating {name}: {code}"),
                ))
            }
        }
    }
    Ok(())
}

/// Creates the retry and dead-letter topics of `group` for `topic` with the same partition
/// count and replication as `topic`, which must exist.
///
/// # Errors
/// [`BrokerError`]: permanent when `topic` does not exist or a name is invalid.
pub async fn ensure_group_topics(
    config: &KafkaConfig,
    topic: &str,
    group: &str,
) -> Result<GroupTopics, BrokerError> {
    let names = GroupTopics::new(topic, group)
        .map_err(|e| BrokerError::permanent("subscribe", e.to_string()))?;
    // One client for the lookup and the creation: each new client connects and bootstraps.
    // The derived topics are created rather than looked up: a metadata request naming a
    // missing topic may have a broker auto-create it with its default partition count.
    let admin = Arc::new(client(config)?);
    let layout = layout_on(Arc::clone(&admin), topic).await?.ok_or_else(|| {
        BrokerError::permanent(
            "subscribe",
            format!("topic {topic} does not exist; create it first (waybill_kafka::create_topic)"),
        )
    })?;
    create_topics(
        &admin,
        &[&names.retry, &names.dead_letter],
        layout.partitions,
        layout.replication,
    )
    .await?;
    Ok(names)
}

/// Deletes topics (missing ones are ignored).
///
/// # Errors
/// [`BrokerError`] when the cluster is unreachable or refuses.
pub async fn delete_topics(config: &KafkaConfig, topics: &[&str]) -> Result<(), BrokerError> {
    let admin = client(config)?;
    let results = admin
        .delete_topics(topics, &options())
        .await
        .map_err(|e| broker_error("delete topics", &e))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((name, code)) => {
                return Err(BrokerError::transient(
                    "delete topics",
                    format!("deleting {name}: {code}"),
                ))
            }
        }
    }
    Ok(())
}

/// Partition count and replication of a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopicLayout {
    /// Partitions.
    pub partitions: i32,
    /// Replicas of each partition (the smallest, if they differ).
    pub replication: i32,
}

/// The layout of `topic`, or `None` when it does not exist.
///
/// # Errors
/// [`BrokerError`] when the cluster does not answer.
pub async fn topic_layout(
    config: &KafkaConfig,
    topic: &str,
) -> Result<Option<TopicLayout>, BrokerError> {
    layout_on(Arc::new(client(config)?), topic).await
}

/// [`topic_layout`] through `admin`.
async fn layout_on(
    admin: Arc<AdminClient<DefaultClientContext>>,
    topic: &str,
) -> Result<Option<TopicLayout>, BrokerError> {
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let metadata = admin
            .inner()
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .map_err(|e| broker_error("metadata", &e))?;
        let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
            return Ok(None);
        };
        if t.error().is_some() || t.partitions().is_empty() {
            return Ok(None);
        }
        Ok(Some(TopicLayout {
            partitions: i32::try_from(t.partitions().len()).unwrap_or(i32::MAX),
            replication: t
                .partitions()
                .iter()
                .map(|p| i32::try_from(p.replicas().len()).unwrap_or(i32::MAX))
                .min()
                .unwrap_or(0),
        }))
    })
    .await
    .map_err(|e| BrokerError::transient("metadata", e.to_string()))?
}

/// What `acks=all` is worth on a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurabilityReport {
    /// The topic.
    pub topic: String,
    /// Its layout.
    pub layout: TopicLayout,
    /// The topic's `min.insync.replicas`, when the cluster reports it.
    pub min_insync_replicas: Option<i32>,
    /// The topic's `unclean.leader.election.enable`, when the cluster reports it.
    pub unclean_leader_election: Option<bool>,
    /// Each setting checked: replication, `min.insync.replicas`,
    /// `unclean.leader.election.enable`, with the reason and the fix.
    pub checks: Vec<Check>,
    /// The reasons of the checks that did not pass; empty when all did.
    pub warnings: Vec<String>,
}

impl DurabilityReport {
    /// The checks as a preflight report (target `kafka topic <name>`).
    pub fn to_preflight(&self) -> PreflightReport {
        PreflightReport {
            target: format!("kafka topic {}", self.topic),
            checks: self.checks.clone(),
        }
    }
}

/// Checks that `acks=all` makes a confirmed message survive a broker loss on `topic`:
///
/// - replication: 3 or more passes, 2 warns, 1 fails (that broker's disk is the only copy);
/// - `min.insync.replicas`: 2 or more passes, 1 fails (one replica confirms alone), unreadable
///   warns;
/// - `unclean.leader.election.enable`: false passes, true fails (an out-of-sync replica may
///   become leader and drop confirmed messages), unreadable warns.
///
/// Each shortfall is also logged; waybill still publishes.
///
/// # Errors
/// [`BrokerError`]: permanent when the topic does not exist.
pub async fn durability_preflight(
    config: &KafkaConfig,
    topic: &str,
) -> Result<DurabilityReport, BrokerError> {
    let layout = topic_layout(config, topic).await?.ok_or_else(|| {
        BrokerError::permanent("preflight", format!("topic {topic} does not exist"))
    })?;
    let admin = client(config)?;
    let settings = match admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &options())
        .await
    {
        Ok(results) => results.into_iter().find_map(Result::ok),
        Err(e) => {
            warn!(error = %e, topic, "could not read the topic configuration");
            None
        }
    };
    let setting = |name: &str| -> Option<String> { settings.as_ref()?.get(name)?.value.clone() };
    let min_insync = setting("min.insync.replicas").and_then(|v| v.parse::<i32>().ok());
    let unclean = setting("unclean.leader.election.enable").and_then(|v| v.parse::<bool>().ok());
    let checks = vec![
        replication_check(topic, layout.replication),
        min_insync_check(topic, min_insync),
        unclean_check(topic, unclean),
    ];
    let warnings: Vec<String> = checks
        .iter()
        .filter(|c| c.verdict != Verdict::Pass)
        .map(|c| c.reason.clone())
        .collect();
    for w in &warnings {
        warn!(topic, "{w}");
    }
    Ok(DurabilityReport {
        topic: topic.to_owned(),
        layout,
        min_insync_replicas: min_insync,
        unclean_leader_election: unclean,
        checks,
        warnings,
    })
}

fn replication_check(topic: &str, replicas: i32) -> Check {
    const NAME: &str = "replication";
    let fix = "create the topic with replication factor 3 (or reassign its partitions)";
    match replicas {
        n if n >= 3 => Check::pass(NAME, format!("{topic} has {n} replicas")),
        2 => Check::warn(
            NAME,
            format!("{topic} has 2 replicas: one broker down leaves no spare copy"),
            fix,
        ),
        n => Check::fail(
            NAME,
            format!(
                "{topic} has {n} replica(s): losing that broker's disk loses confirmed messages"
            ),
            fix,
        ),
    }
}

fn min_insync_check(topic: &str, min_insync: Option<i32>) -> Check {
    const NAME: &str = "min.insync.replicas";
    let fix = "set min.insync.replicas=2 on the topic (kafka-configs --alter --add-config)";
    match min_insync {
        Some(n) if n >= 2 => Check::pass(NAME, format!("{topic} has min.insync.replicas={n}")),
        Some(n) => Check::fail(
            NAME,
            format!(
                "{topic} has min.insync.replicas={n}: acks=all is confirmed by a single replica"
            ),
            fix,
        ),
        None => Check::warn(
            NAME,
            format!("{topic}: min.insync.replicas could not be read"),
            "check that it is at least 2",
        ),
    }
}

fn unclean_check(topic: &str, unclean: Option<bool>) -> Check {
    const NAME: &str = "unclean.leader.election.enable";
    match unclean {
        Some(false) => Check::pass(NAME, format!("{topic} elects only in-sync leaders")),
        Some(true) => Check::fail(
            NAME,
            format!(
                "{topic} allows unclean leader election: an out-of-sync replica may lead and \
                 drop confirmed messages"
            ),
            "set unclean.leader.election.enable=false on the topic",
        ),
        None => Check::warn(
            NAME,
            format!("{topic}: unclean.leader.election.enable could not be read"),
            "check that it is false",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_check_passes_warns_or_fails_at_its_threshold() {
        let verdict = |c: Check| c.verdict;
        assert_eq!(verdict(replication_check("t", 3)), Verdict::Pass);
        assert_eq!(verdict(replication_check("t", 2)), Verdict::Warn);
        assert_eq!(verdict(replication_check("t", 1)), Verdict::Fail);
        assert_eq!(verdict(min_insync_check("t", Some(2))), Verdict::Pass);
        assert_eq!(verdict(min_insync_check("t", Some(1))), Verdict::Fail);
        assert_eq!(verdict(min_insync_check("t", None)), Verdict::Warn);
        assert_eq!(verdict(unclean_check("t", Some(false))), Verdict::Pass);
        assert_eq!(verdict(unclean_check("t", Some(true))), Verdict::Fail);
        assert_eq!(verdict(unclean_check("t", None)), Verdict::Warn);
        let failed = replication_check("orders", 1);
        assert!(failed.reason.contains("orders has 1 replica"), "{failed:?}");
        assert!(failed
            .fix
            .is_some_and(|f| f.contains("replication factor 3")));
        assert!(replication_check("t", 3).fix.is_none());
    }
}
