//! Declaring a partitioned group (idempotent): the partition exchange, the partition queues,
//! the retry tiers that route back through the partition exchange, and the dead-letter queue.

use lapin::options::{
    ExchangeBindOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};
use waybill_core::ConfigError;

use crate::config::RabbitConfig;
use crate::key_route::partition_patterns;
use crate::topology::{
    check_lengths, declare_dead_letter_queue, declare_exchange, declare_retry_tiers, fits,
    work_queue_arguments, RetryReturn,
};
use crate::topology_names::QueueNames;

/// Checks that the names a partitioned group with `partitions` partitions derives fit AMQP's
/// limit.
pub(crate) fn check_partitioned_lengths(
    names: &QueueNames,
    config: &RabbitConfig,
    partitions: u16,
) -> Result<(), ConfigError> {
    check_lengths(names, config)?;
    let last = partitions.saturating_sub(1);
    let longest = [
        names.partition_fallback_exchange(partitions).len(),
        names.partition(last).len(),
        names.member_slot(last).len(),
    ]
    .into_iter()
    .max()
    .unwrap_or_default();
    fits(longest)
}

/// Declares the topic's exchange; the dead-letter queue; the retry tiers (their expired copies
/// go back through the partition exchange, so to the key's partition); the group's partition
/// exchange, a topic exchange routing each key route (see [`crate::key_route`]) to one of
/// `partitions` quorum partition queues with a single active consumer each, and sending what
/// matches no partition to partition 0 through its alternate exchange; and last the partition
/// exchange's binding to the topic's exchange.
///
/// # Errors
/// The broker's error: `PRECONDITION_FAILED` (406) when a queue or exchange of the group
/// exists with other arguments: the group was declared unpartitioned (`x-dead-letter-…` of
/// a retry tier), with another partition count (`alternate-exchange`), or with other
/// settings.
pub(crate) async fn declare_partitioned_group(
    channel: &Channel,
    names: &QueueNames,
    config: &RabbitConfig,
    partitions: u16,
) -> Result<(), lapin::Error> {
    declare_exchange(channel, &names.exchange).await?;
    declare_dead_letter_queue(channel, names).await?;
    let partition_exchange = names.partition_exchange();
    // The retry tiers first: a group declared unpartitioned has them routing to its work
    // queue, and is refused here before any partition queue starts receiving copies.
    declare_retry_tiers(
        channel,
        names,
        config,
        RetryReturn::Exchange(&partition_exchange),
    )
    .await?;
    let fallback = names.partition_fallback_exchange(partitions);
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            fallback.as_str().into(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await?;
    let mut routing = FieldTable::default();
    routing.insert(
        "alternate-exchange".into(),
        AMQPValue::LongString(LongString::from(fallback.as_str())),
    );
    channel
        .exchange_declare(
            partition_exchange.as_str().into(),
            ExchangeKind::Topic,
            durable,
            routing,
        )
        .await?;
    for partition in 0..partitions {
        let queue = names.partition(partition);
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions::durable(),
                work_queue_arguments(names, config, true),
            )
            .await?;
        for pattern in partition_patterns(partitions, partition) {
            bind(channel, &queue, &partition_exchange, &pattern).await?;
        }
    }
    bind(channel, &names.partition(0), &fallback, "").await?;
    // Bound to the topic last: messages reach the group only once every partition exists.
    channel
        .exchange_bind(
            partition_exchange.as_str().into(),
            names.exchange.as_str().into(),
            "".into(),
            ExchangeBindOptions::default(),
            FieldTable::default(),
        )
        .await
}

async fn bind(
    channel: &Channel,
    queue: &str,
    exchange: &str,
    routing_key: &str,
) -> Result<(), lapin::Error> {
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            routing_key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_past_the_limit_are_refused() {
        let config = RabbitConfig::builder("amqp://127.0.0.1")
            .retry_tiers([std::time::Duration::from_millis(250)])
            .build()
            .unwrap();
        // Work queue 233 bytes: the alternate exchange of 4 partitions
        // ("….partitions.4.unrouted") reaches exactly 255.
        let names = QueueNames::new(&"t".repeat(231), "g");
        assert!(check_partitioned_lengths(&names, &config, 4).is_ok());
        // With 10 partitions ("….partitions.10.unrouted") it would reach 256.
        let err = check_partitioned_lengths(&names, &config, 10).unwrap_err();
        assert!(err.to_string().contains("too long"), "{err}");
    }
}
