//! Removing the topology of a topic or group (tests, decommissioning).

use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::{Channel, Connection};
use waybill_core::BrokerError;

use crate::config::RabbitConfig;
use crate::connect::connect;
use crate::error_class::broker_error;
use crate::topology_names::QueueNames;

/// Deletes the queues of `group` on `topic` (work, retry tiers, dead letters) and, when
/// `with_exchange`, the topic's exchange. Messages in them are lost: this is for tests and
/// decommissioning, never for running systems. Missing queues are not an error.
///
/// # Errors
/// [`BrokerError`] when the broker is unreachable or refuses.
pub async fn delete_group_topology(
    config: &RabbitConfig,
    topic: &str,
    group: &str,
    with_exchange: bool,
) -> Result<(), BrokerError> {
    let names = QueueNames::new(topic, group);
    let (connection, channel) = admin_channel(config).await?;
    let mut queues: Vec<String> = config
        .retry_tiers()
        .iter()
        .map(|t| names.retry_tier(*t))
        .collect();
    queues.push(names.work.clone());
    queues.push(names.dead_letter.clone());
    for queue in queues {
        channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await
            .map_err(|e| broker_error("delete", e))?;
    }
    if with_exchange {
        channel
            .exchange_delete(
                names.exchange.as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await
            .map_err(|e| broker_error("delete", e))?;
    }
    let _ = connection.close(200, "OK".into()).await;
    Ok(())
}

/// Deletes a partitioned group's topology (see
/// [`RabbitPartitionedSubscriber`](crate::RabbitPartitionedSubscriber)): its `partitions`
/// partition queues, its partition exchange and that one's alternate exchange, and its retry
/// tiers and dead-letter queue; when
/// `with_exchange`, the topic's exchange too. Messages in them are lost: for tests and
/// decommissioning only. Missing queues and exchanges are not an error.
///
/// # Errors
/// [`BrokerError`] when the broker is unreachable or refuses.
pub async fn delete_partitioned_group_topology(
    config: &RabbitConfig,
    topic: &str,
    group: &str,
    partitions: u16,
    with_exchange: bool,
) -> Result<(), BrokerError> {
    let names = QueueNames::new(topic, group);
    let (connection, channel) = admin_channel(config).await?;
    let queues = (0..partitions)
        .map(|p| names.partition(p))
        .chain(config.retry_tiers().iter().map(|t| names.retry_tier(*t)))
        .chain([names.dead_letter.clone()]);
    for queue in queues {
        channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await
            .map_err(|e| broker_error("delete", e))?;
    }
    let mut exchanges = vec![
        names.partition_exchange(),
        names.partition_fallback_exchange(partitions),
    ];
    if with_exchange {
        exchanges.push(names.exchange.clone());
    }
    for exchange in exchanges {
        channel
            .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
            .await
            .map_err(|e| broker_error("delete", e))?;
    }
    let _ = connection.close(200, "OK".into()).await;
    Ok(())
}

/// A connection for administration and a channel on it.
async fn admin_channel(config: &RabbitConfig) -> Result<(Connection, Channel), BrokerError> {
    let connection = connect(config, "waybill-admin").await?;
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| broker_error("delete", e))?;
    Ok((connection, channel))
}

/// Deletes the exchange of `topic` (queues bound to it stay). Missing exchanges are not an error.
///
/// # Errors
/// [`BrokerError`] when the broker is unreachable or refuses.
pub async fn delete_topic(config: &RabbitConfig, topic: &str) -> Result<(), BrokerError> {
    let (connection, channel) = admin_channel(config).await?;
    channel
        .exchange_delete(topic.into(), ExchangeDeleteOptions::default())
        .await
        .map_err(|e| broker_error("delete", e))?;
    let _ = connection.close(200, "OK".into()).await;
    Ok(())
}
