#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use waybill_core::*;

/// The Kafka backend (feature `kafka`): [`kafka::KafkaPublisher`], [`kafka::KafkaSubscriber`],
/// [`kafka::TransactionalPublisher`], topic administration and the durability preflight.
/// Everything of [`waybill_kafka`], re-exported.
#[cfg(feature = "kafka")]
#[cfg_attr(docsrs, doc(cfg(feature = "kafka")))]
pub mod kafka {
    pub use waybill_kafka::*;
}

/// The RabbitMQ backend (feature `rabbitmq`): [`rabbitmq::RabbitPublisher`],
/// [`rabbitmq::RabbitSubscriber`] and topology administration. Everything of
/// [`waybill_rabbitmq`], re-exported.
#[cfg(feature = "rabbitmq")]
#[cfg_attr(docsrs, doc(cfg(feature = "rabbitmq")))]
pub mod rabbitmq {
    pub use waybill_rabbitmq::*;
}

/// The RocketMQ backend (feature `rocketmq`): [`rocketmq::RocketPublisher`],
/// [`rocketmq::RocketSubscriber`], the transactional producer and [`rocketmq::RocketAdmin`].
/// Everything of [`waybill_rocketmq`], re-exported.
#[cfg(feature = "rocketmq")]
#[cfg_attr(docsrs, doc(cfg(feature = "rocketmq")))]
pub mod rocketmq {
    pub use waybill_rocketmq::*;
}

/// The transactional outbox, the relay and the SQL inbox (features `postgres`, `sqlite`,
/// `mysql`; each adds its database): [`outbox::Outbox`], [`outbox::Relay`],
/// [`outbox::OutboxInspector`] and the idempotency stores. Everything of [`waybill_outbox`],
/// re-exported.
#[cfg(any(feature = "postgres", feature = "sqlite", feature = "mysql"))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "postgres", feature = "sqlite", feature = "mysql")))
)]
pub mod outbox {
    pub use waybill_outbox::*;
}

/// Idempotency stores on Redis (feature `redis`): [`redis::RedisIdempotencyStore`] and
/// [`redis::LayeredIdempotencyStore`] (duplicates answered from Redis, the authoritative
/// marker in SQL). Everything of [`waybill_redis`], re-exported.
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis {
    pub use waybill_redis::*;
}

#[cfg(test)]
mod ops_assets;
#[cfg(test)]
mod readme_metrics;
#[cfg(test)]
mod readme_quick_start;
