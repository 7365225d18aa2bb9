//! The broker behind a URL: RabbitMQ, Kafka or RocketMQ.

use std::sync::Arc;

use waybill_core::{Publisher, Subscriber};

use crate::exit::Failure;

/// A confirmed publisher to the broker at `url` (`amqp://`, `amqps://`, `kafka://`,
/// `kafkas://`, `rocketmq://`, `rocketmqs://`).
///
/// # Errors
/// [`Failure::Usage`] for another scheme or an invalid URL, [`Failure::Failed`] when the
/// broker cannot be reached or refuses the connection.
pub async fn publisher_for(url: &str) -> Result<Arc<dyn Publisher>, Failure> {
    let scheme = url.split("://").next().unwrap_or_default();
    match scheme {
        "amqp" | "amqps" => {
            let config = rabbit_config(url, false)?;
            let publisher = waybill_rabbitmq::RabbitPublisher::connect(config)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Arc::new(publisher))
        }
        "kafka" | "kafkas" => {
            let config = kafka_config(url)?;
            let publisher = waybill_kafka::KafkaPublisher::connect(config)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Arc::new(publisher))
        }
        "rocketmq" | "rocketmqs" => {
            let config = rocket_config(url)?;
            let publisher = waybill_rocketmq::RocketPublisher::connect(config)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Arc::new(publisher))
        }
        other => Err(Failure::Usage(format!(
            "unsupported broker URL scheme {other:?}: this build publishes to amqp://, amqps://, \
             kafka://, kafkas://, rocketmq:// and rocketmqs://"
        ))),
    }
}

/// A subscriber of `group` to `topic` on the broker at `url` (schemes as
/// [`publisher_for`]); `single_active_consumer` declares a RabbitMQ group's queue with a
/// single active consumer (refused for other brokers by the caller).
///
/// # Errors
/// [`Failure::Usage`] for another scheme or an invalid URL, [`Failure::Failed`] when the
/// broker cannot be reached, refuses the connection or the topic does not exist.
pub async fn subscriber_for(
    url: &str,
    topic: &str,
    group: &str,
    single_active_consumer: bool,
) -> Result<Box<dyn Subscriber>, Failure> {
    let scheme = url.split("://").next().unwrap_or_default();
    match scheme {
        "amqp" | "amqps" => {
            let config = rabbit_config(url, single_active_consumer)?;
            let subscriber = waybill_rabbitmq::RabbitSubscriber::connect(config, topic, group)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Box::new(subscriber))
        }
        "kafka" | "kafkas" => {
            let config = kafka_config(url)?;
            let subscriber = waybill_kafka::KafkaSubscriber::connect(config, topic, group)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Box::new(subscriber))
        }
        "rocketmq" | "rocketmqs" => {
            let config = rocket_config(url)?;
            let subscriber = waybill_rocketmq::RocketSubscriber::connect(config, topic, group)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Box::new(subscriber))
        }
        other => Err(Failure::Usage(format!(
            "unsupported broker URL scheme {other:?}: this build consumes from amqp://, \
             amqps://, kafka://, kafkas://, rocketmq:// and rocketmqs://"
        ))),
    }
}

/// Creates `topic` on the Kafka or RocketMQ broker at `url` when it does not exist, with
/// `partitions` partitions (queues) and, on Kafka, `replication` replicas.
///
/// # Errors
/// [`Failure::Usage`] for a RabbitMQ or unknown URL or an invalid one, [`Failure::Failed`]
/// when the broker refuses or cannot be reached.
pub async fn create_topic(
    url: &str,
    topic: &str,
    partitions: u32,
    replication: u32,
) -> Result<(), Failure> {
    let scheme = url.split("://").next().unwrap_or_default();
    let count = |n: u32| i32::try_from(n).map_err(|_| Failure::Usage(format!("{n} is too many")));
    match scheme {
        "kafka" | "kafkas" => {
            let config = kafka_config(url)?;
            waybill_kafka::create_topic(&config, topic, count(partitions)?, count(replication)?)
                .await
                .map_err(|e| Failure::Failed(e.to_string()))
        }
        "rocketmq" | "rocketmqs" => {
            let config = rocket_config(url)?;
            let admin = waybill_rocketmq::RocketAdmin::connect(&config)
                .await
                .map_err(|e| e.to_string())?;
            admin
                .create_topic_with_queues(topic, partitions)
                .await
                .map_err(|e| Failure::Failed(e.to_string()))
        }
        other => Err(Failure::Usage(format!(
            "topics are created on Kafka and RocketMQ brokers, not with {other}:// URLs"
        ))),
    }
}

/// The RabbitMQ settings of `url`; `single_active_consumer` for a group's queue.
pub(crate) fn rabbit_config(
    url: &str,
    single_active_consumer: bool,
) -> Result<waybill_rabbitmq::RabbitConfig, Failure> {
    waybill_rabbitmq::RabbitConfig::builder(url)
        .single_active_consumer(single_active_consumer)
        .build()
        .map_err(|e| Failure::Usage(e.to_string()))
}

/// The Kafka settings of `url`.
pub(crate) fn kafka_config(url: &str) -> Result<waybill_kafka::KafkaConfig, Failure> {
    waybill_kafka::KafkaConfig::from_url(url)
        .and_then(|builder| builder.build())
        .map_err(|e| Failure::Usage(e.to_string()))
}

/// The RocketMQ settings of `url`.
pub(crate) fn rocket_config(url: &str) -> Result<waybill_rocketmq::RocketConfig, Failure> {
    waybill_rocketmq::RocketConfig::from_url(url)
        .and_then(|builder| builder.build())
        .map_err(|e| Failure::Usage(e.to_string()))
}
