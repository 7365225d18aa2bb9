//! The broker behind a URL: RabbitMQ, Kafka or RocketMQ.

use std::sync::Arc;

use waybill_core::Publisher;

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
            let config = waybill_rabbitmq::RabbitConfig::builder(url)
                .build()
                .map_err(|e| Failure::Usage(e.to_string()))?;
            let publisher = waybill_rabbitmq::RabbitPublisher::connect(config)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Arc::new(publisher))
        }
        "kafka" | "kafkas" => {
            let config = waybill_kafka::KafkaConfig::from_url(url)
                .and_then(|builder| builder.build())
                .map_err(|e| Failure::Usage(e.to_string()))?;
            let publisher = waybill_kafka::KafkaPublisher::connect(config)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Arc::new(publisher))
        }
        "rocketmq" | "rocketmqs" => {
            let config = waybill_rocketmq::RocketConfig::from_url(url)
                .and_then(|builder| builder.build())
                .map_err(|e| Failure::Usage(e.to_string()))?;
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
