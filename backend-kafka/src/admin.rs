//! Topics: creation, deletion, and the durability preflight.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use tracing::warn;
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
    let admin = client(config)?;
    let results = admin
        .create_topics(
            &[NewTopic::new(
                topic,
                partitions,
                TopicReplication::Fixed(replication),
            )],
            &options(),
        )
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
    let layout = topic_layout(config, topic).await?.ok_or_else(|| {
        BrokerError::permanent(
            "subscribe",
            format!("topic {topic} does not exist; create it first (waybill_kafka::create_topic)"),
        )
    })?;
    for derived in [&names.retry, &names.dead_letter] {
        create_topic(config, derived, layout.partitions, layout.replication).await?;
    }
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
    let admin = client(config)?;
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
    /// Why a confirmed message could still be lost; empty when none.
    pub warnings: Vec<String>,
}

/// Checks that `acks=all` makes a confirmed message survive a broker loss on `topic`: at
/// least 3 replicas and `min.insync.replicas` of at least 2. Each shortfall becomes a warning
/// (also logged); waybill still publishes.
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
    let min_insync = match admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &options())
        .await
    {
        Ok(results) => results.into_iter().find_map(|r| {
            r.ok()?
                .get("min.insync.replicas")?
                .value
                .as_deref()?
                .parse::<i32>()
                .ok()
        }),
        Err(e) => {
            warn!(error = %e, topic, "could not read the topic configuration");
            None
        }
    };
    let mut warnings = Vec::new();
    if layout.replication < 3 {
        warnings.push(format!(
            "{topic} has {} replica(s): losing that broker's disk loses confirmed messages; use 3",
            layout.replication
        ));
    }
    match min_insync {
        Some(n) if n < 2 => warnings.push(format!(
            "{topic} has min.insync.replicas={n}: acks=all is confirmed by a single replica; use 2"
        )),
        Some(_) => {}
        None => warnings.push(format!(
            "{topic}: min.insync.replicas could not be read; check that it is at least 2"
        )),
    }
    for w in &warnings {
        warn!(topic, "{w}");
    }
    Ok(DurabilityReport {
        topic: topic.to_owned(),
        layout,
        min_insync_replicas: min_insync,
        warnings,
    })
}
