//! Declaring the exchanges and queues of a topic and group (idempotent).

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};
use waybill_core::ConfigError;

use crate::config::RabbitConfig;
use crate::topology_names::QueueNames;

use crate::name_rules::MAX_NAME_BYTES as MAX_NAME;

/// The dead-letter queue's delivery limit: never reached in practice.
const DEAD_LETTER_DELIVERY_LIMIT: i64 = i32::MAX as i64;

/// Checks that every name the topology derives fits AMQP's limit.
pub(crate) fn check_lengths(names: &QueueNames, config: &RabbitConfig) -> Result<(), ConfigError> {
    let longest = config
        .retry_tiers()
        .iter()
        .map(|t| names.retry_tier(*t).len())
        .chain([names.work.len(), names.dead_letter.len()])
        .max()
        .unwrap_or_default();
    fits(longest)
}

/// Refuses derived names of `longest` bytes when they exceed AMQP's limit.
pub(crate) fn fits(longest: usize) -> Result<(), ConfigError> {
    if longest > MAX_NAME {
        return Err(ConfigError::new(
            "topic",
            format!("topic and group names are too long: derived queue names reach {longest} bytes, AMQP allows {MAX_NAME}"),
        ));
    }
    Ok(())
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

/// Declares the topic's durable fanout exchange.
pub(crate) async fn declare_exchange(
    channel: &Channel,
    exchange: &str,
) -> Result<(), lapin::Error> {
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
}

/// Declares the exchange, the group's quorum work queue and its binding, the retry tier queues
/// and the dead-letter queue.
pub(crate) async fn declare_group(
    channel: &Channel,
    names: &QueueNames,
    config: &RabbitConfig,
) -> Result<(), lapin::Error> {
    declare_exchange(channel, &names.exchange).await?;
    declare_dead_letter_queue(channel, names).await?;
    let work = work_queue_arguments(names, config, config.single_active_consumer);
    channel
        .queue_declare(
            names.work.as_str().into(),
            QueueDeclareOptions::durable(),
            work,
        )
        .await?;
    channel
        .queue_bind(
            names.work.as_str().into(),
            names.exchange.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    // The retry tiers after the work queue, as ever: declared first, a subscriber
    // reconnecting after a broker kill stopped receiving in `rabbitmq_reconnect_order`. So a
    // plain subscriber of a partitioned group's name declares the work queue before its
    // retry tiers refuse it (406): delete that queue (`delete_group_topology`) afterwards.
    declare_retry_tiers(channel, names, config, RetryReturn::WorkQueue).await
}

/// The arguments of a work queue (the group's, or one partition of a partitioned group).
pub(crate) fn work_queue_arguments(
    names: &QueueNames,
    config: &RabbitConfig,
    single_active_consumer: bool,
) -> FieldTable {
    let mut work = FieldTable::default();
    work.insert("x-queue-type".into(), text("quorum"));
    // Always an explicit limit and a dead-letter route: RabbitMQ 4.x gives quorum queues a
    // default limit of 20 and drops a message past it when no route is set, 3.x has no limit.
    // Past the limit the broker dead-letters into the group's dead-letter queue (without the
    // waybill record headers: the broker, not the SDK, gave up on the message), with
    // at-least-once dead-lettering so the move itself cannot lose it.
    work.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(i64::from(config.delivery_limit)),
    );
    work.insert("x-dead-letter-exchange".into(), text(""));
    work.insert("x-dead-letter-routing-key".into(), text(&names.dead_letter));
    work.insert("x-dead-letter-strategy".into(), text("at-least-once"));
    work.insert("x-overflow".into(), text("reject-publish"));
    if single_active_consumer {
        work.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
    }
    for (name, value) in &config.queue_arguments {
        work.insert(name.as_str().into(), text(value));
    }
    work
}

/// Where an expired retry copy goes back to.
pub(crate) enum RetryReturn<'a> {
    /// The group's work queue, through the default exchange.
    WorkQueue,
    /// An exchange that routes it again on its routing key (a partitioned group's partition
    /// exchange, which sends a key's copies to the key's partition).
    Exchange(&'a str),
}

/// Declares the retry tier queues of a group.
pub(crate) async fn declare_retry_tiers(
    channel: &Channel,
    names: &QueueNames,
    config: &RabbitConfig,
    back_to: RetryReturn<'_>,
) -> Result<(), lapin::Error> {
    for tier in config.retry_tiers() {
        // Quorum queues with at-least-once dead-lettering: the expired copy moves back to the
        // work queue with broker-side confirms, so a failing work queue cannot drop it (classic
        // queues dead-letter at most once).
        let mut retry = FieldTable::default();
        retry.insert("x-queue-type".into(), text("quorum"));
        retry.insert("x-dead-letter-strategy".into(), text("at-least-once"));
        retry.insert("x-overflow".into(), text("reject-publish"));
        let ttl = i64::try_from(tier.as_millis()).unwrap_or(i64::MAX);
        retry.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl));
        match back_to {
            RetryReturn::WorkQueue => {
                retry.insert("x-dead-letter-exchange".into(), text(""));
                retry.insert("x-dead-letter-routing-key".into(), text(&names.work));
            }
            RetryReturn::Exchange(exchange) => {
                retry.insert("x-dead-letter-exchange".into(), text(exchange));
            }
        }
        channel
            .queue_declare(
                names.retry_tier(*tier).as_str().into(),
                QueueDeclareOptions::durable(),
                retry,
            )
            .await?;
    }
    Ok(())
}

/// Declares the group's durable quorum dead-letter queue.
pub(crate) async fn declare_dead_letter_queue(
    channel: &Channel,
    names: &QueueNames,
) -> Result<(), lapin::Error> {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), text("quorum"));
    // A dead letter given back by its reader must never be dropped: RabbitMQ 4.x would drop it
    // after 20 deliveries (its default limit, no dead-letter route here), so the limit is
    // declared, out of reach.
    args.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(DEAD_LETTER_DELIVERY_LIMIT),
    );
    channel
        .queue_declare(
            names.dead_letter.as_str().into(),
            QueueDeclareOptions::durable(),
            args,
        )
        .await
        .map(|_| ())
}
