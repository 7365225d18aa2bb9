//! Declaring a partitioned group (idempotent): the hash exchange, the partition queues, the
//! retry tiers that route back through the hash exchange, and the dead-letter queue.

use lapin::options::{
    ExchangeBindOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};
use waybill_core::{header_names, ConfigError};

use crate::config::RabbitConfig;
use crate::topology::{
    check_lengths, declare_dead_letter_queue, declare_exchange, declare_retry_tiers, fits,
    work_queue_arguments, RetryReturn,
};
use crate::topology_names::QueueNames;

/// The exchange type of RabbitMQ's consistent-hash exchange plugin.
pub(crate) const CONSISTENT_HASH: &str = "x-consistent-hash";

/// The plugin that provides [`CONSISTENT_HASH`].
pub(crate) const HASH_PLUGIN: &str = "rabbitmq_consistent_hash_exchange";

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
        names.partition_exchange().len(),
        names.partition(last).len(),
        names.member_slot(last).len(),
    ]
    .into_iter()
    .max()
    .unwrap_or_default();
    fits(longest)
}

/// Declares the topic's exchange; the dead-letter queue; the retry tiers (their expired copies
/// go back through the hash exchange, so to the key's partition); the group's consistent-hash
/// exchange, hashing the `waybill-key` header; `partitions` quorum partition queues with a
/// single active consumer each, bound to the hash exchange with equal weights; and last the
/// hash exchange's binding to the topic's exchange.
///
/// # Errors
/// The broker's error: `COMMAND_INVALID` (503) "invalid exchange type" when the
/// consistent-hash exchange plugin is not enabled, `PRECONDITION_FAILED` (406) when a queue of
/// the group exists with other arguments (the group was declared unpartitioned, or with other
/// settings).
pub(crate) async fn declare_partitioned_group(
    channel: &Channel,
    names: &QueueNames,
    config: &RabbitConfig,
    partitions: u16,
) -> Result<(), lapin::Error> {
    declare_exchange(channel, &names.exchange).await?;
    declare_dead_letter_queue(channel, names).await?;
    let hash_exchange = names.partition_exchange();
    // The retry tiers first: a group declared unpartitioned has them routing to its work
    // queue, and is refused here before any partition queue starts receiving copies.
    declare_retry_tiers(
        channel,
        names,
        config,
        RetryReturn::Exchange(&hash_exchange),
    )
    .await?;
    let mut hashing = FieldTable::default();
    hashing.insert(
        "hash-header".into(),
        AMQPValue::LongString(LongString::from(header_names::KEY)),
    );
    channel
        .exchange_declare(
            hash_exchange.as_str().into(),
            ExchangeKind::Custom(CONSISTENT_HASH.to_owned()),
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            hashing,
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
        // The routing key is the partition's weight on the hash ring: equal for all.
        channel
            .queue_bind(
                queue.as_str().into(),
                hash_exchange.as_str().into(),
                "1".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    // Bound to the topic last: messages reach the group only once every partition exists.
    channel
        .exchange_bind(
            hash_exchange.as_str().into(),
            names.exchange.as_str().into(),
            "".into(),
            ExchangeBindOptions::default(),
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
        // Work queue 243 bytes: its retry tier ("….retry.250ms") reaches exactly 255.
        let names = QueueNames::new(&"t".repeat(241), "g");
        assert!(check_partitioned_lengths(&names, &config, 4).is_ok());
        // A member slot of partition 20 000 ("….member.19999") would reach 256.
        let err = check_partitioned_lengths(&names, &config, 20_000).unwrap_err();
        assert!(err.to_string().contains("too long"), "{err}");
    }
}
