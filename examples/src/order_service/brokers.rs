//! The brokers the demo can run on.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use waybill_core::{
    AckFault, BoxError, DeliveryFault, MemoryBroker, Message, MessageId, PublishFault, Publisher,
    Subscriber,
};
use waybill_kafka::{KafkaConfig, KafkaPublisher, KafkaSubscriber};
use waybill_rabbitmq::{delete_group_topology, RabbitConfig, RabbitPublisher, RabbitSubscriber};
use waybill_rocketmq::{RocketAdmin, RocketConfig, RocketPublisher, RocketSubscriber};

use super::orders::TOPIC;

/// The consumer group of the demo.
pub const GROUP: &str = "billing";

/// A connected broker: both sides, and how to count dead letters afterwards.
pub enum DemoBroker {
    /// The in-memory broker, with injected faults.
    Memory(MemoryBroker),
    /// A RabbitMQ server; the demo uses its own topic and removes it at the end.
    Rabbit {
        /// Connection settings.
        config: RabbitConfig,
        /// The run's topic.
        topic: String,
    },
    /// A Kafka cluster; the demo creates its own topic (4 partitions) and leaves it there.
    Kafka {
        /// Connection settings.
        config: KafkaConfig,
        /// The run's topic.
        topic: String,
    },
    /// A RocketMQ cluster; the demo creates its own topic (4 queues) and leaves it there.
    Rocket {
        /// Connection settings.
        config: RocketConfig,
        /// The run's topic.
        topic: String,
    },
}

impl DemoBroker {
    /// The in-memory broker with `percent` % lost confirms, duplicate deliveries and lost acks.
    pub fn memory(percent: u64) -> Self {
        let broker = MemoryBroker::new();
        let every = move |i: u64| percent > 0 && i % (100 / percent) == (100 / percent) / 2;
        let publishes = AtomicU64::new(0);
        broker.faults().on_publish(move |ctx| {
            (ctx.topic == TOPIC && every(publishes.fetch_add(1, Relaxed)))
                .then_some(PublishFault::Ambiguous { stored: true })
        });
        let deliveries = AtomicU64::new(0);
        broker.faults().on_deliver(move |ctx| {
            (!ctx.redelivered && every(deliveries.fetch_add(1, Relaxed)))
                .then_some(DeliveryFault::Duplicate)
        });
        let acks = AtomicU64::new(0);
        broker
            .faults()
            .on_ack(move |_| every(acks.fetch_add(3, Relaxed)).then_some(AckFault::Lost));
        Self::Memory(broker)
    }

    /// A RabbitMQ server at `url`.
    ///
    /// # Errors
    /// When the URL is invalid.
    pub fn rabbit(url: &str) -> Result<Self, BoxError> {
        let suffix = MessageId::new().to_string();
        Ok(Self::Rabbit {
            config: RabbitConfig::builder(url).build()?,
            topic: format!("waybill-demo-{}", &suffix[24..]),
        })
    }

    /// A Kafka cluster at `brokers` (`host:port[,host:port]`); creates the run's topic.
    ///
    /// # Errors
    /// When the settings are invalid or the cluster refuses the topic.
    pub async fn kafka(brokers: &str) -> Result<Self, BoxError> {
        let suffix = MessageId::new().to_string();
        let config = KafkaConfig::builder(brokers)
            .session_timeout(Duration::from_secs(6))
            .build()?;
        let topic = format!("waybill-demo-{}", &suffix[24..]);
        waybill_kafka::create_topic(&config, &topic, 4, 1).await?;
        Ok(Self::Kafka { config, topic })
    }

    /// A RocketMQ cluster whose name servers are at `name_server`; creates the run's topic.
    ///
    /// # Errors
    /// When the settings are invalid or the cluster refuses the topic.
    pub async fn rocketmq(name_server: &str) -> Result<Self, BoxError> {
        let suffix = MessageId::new().to_string();
        let config = RocketConfig::builder(name_server)
            .queues_per_topic(4)
            .build()?;
        let topic = format!("waybill-demo-{}", &suffix[24..]);
        let admin = RocketAdmin::connect(&config).await?;
        let created = admin.create_topic(&topic).await;
        admin.close().await;
        created?;
        Ok(Self::Rocket { config, topic })
    }

    /// The topic messages go to.
    pub fn topic(&self) -> &str {
        match self {
            Self::Memory(_) => TOPIC,
            Self::Rabbit { topic, .. } | Self::Kafka { topic, .. } | Self::Rocket { topic, .. } => {
                topic
            }
        }
    }

    /// Describes the broker for the ledger.
    pub fn describe(&self, percent: u64) -> String {
        match self {
            Self::Memory(_) => format!("in-memory broker, {percent}% injected faults"),
            Self::Rabbit { config, .. } => format!("RabbitMQ at {}", config.display_url()),
            Self::Kafka { config, .. } => format!("Kafka at {}", config.brokers()),
            Self::Rocket { config, .. } => format!("RocketMQ at {}", config.name_server()),
        }
    }

    /// The consumer group's subscriber (declares the topology on RabbitMQ).
    ///
    /// # Errors
    /// When the broker refuses or is unreachable.
    pub async fn subscriber(&self) -> Result<Box<dyn Subscriber>, BoxError> {
        Ok(match self {
            Self::Memory(b) => Box::new(b.subscriber(TOPIC, GROUP)?),
            Self::Rabbit { config, topic } => {
                Box::new(RabbitSubscriber::connect(config.clone(), topic, GROUP).await?)
            }
            Self::Kafka { config, topic } => {
                Box::new(KafkaSubscriber::connect(config.clone(), topic, GROUP).await?)
            }
            Self::Rocket { config, topic } => {
                Box::new(RocketSubscriber::connect(config.clone(), topic, GROUP).await?)
            }
        })
    }

    /// A publisher.
    ///
    /// # Errors
    /// When the broker is unreachable.
    pub async fn publisher(&self) -> Result<Arc<dyn Publisher>, BoxError> {
        Ok(match self {
            Self::Memory(b) => Arc::new(b.publisher()),
            Self::Rabbit { config, .. } => {
                Arc::new(RabbitPublisher::connect(config.clone()).await?)
            }
            Self::Kafka { config, .. } => Arc::new(KafkaPublisher::connect(config.clone()).await?),
            Self::Rocket { config, .. } => {
                Arc::new(RocketPublisher::connect(config.clone()).await?)
            }
        })
    }

    /// Whether the group still has unacknowledged messages (in-memory only; RabbitMQ reports
    /// through the consumer's counters).
    pub fn pending(&self) -> usize {
        match self {
            Self::Memory(b) => b.pending(TOPIC, GROUP),
            Self::Rabbit { .. } | Self::Kafka { .. } | Self::Rocket { .. } => 0,
        }
    }

    /// Distinct messages in the group's dead letter; removes the RabbitMQ topology afterwards.
    ///
    /// # Errors
    /// When the broker is unreachable.
    pub async fn dead_letters_and_cleanup(&self) -> Result<u64, BoxError> {
        match self {
            Self::Memory(b) => {
                let dlq = MemoryBroker::dead_letter_topic(TOPIC);
                let ids: HashSet<_> = b.messages(&dlq).iter().map(Message::id).collect();
                Ok(ids.len() as u64)
            }
            Self::Rabbit { config, topic } => {
                let reader = RabbitSubscriber::dead_letters(config.clone(), topic, GROUP).await?;
                let count = count_distinct(reader, Duration::from_secs(1)).await?;
                delete_group_topology(config, topic, GROUP, true).await?;
                Ok(count)
            }
            Self::Kafka { config, topic } => {
                let reader = KafkaSubscriber::dead_letters(config.clone(), topic, GROUP).await?;
                // The reader joins its group first (a few seconds), then reads to the end.
                // The run's topics stay: deleting topics on tansu 0.6 disturbs the metadata
                // live clients see. Remove them with the cluster's tools when done.
                count_distinct(reader, Duration::from_secs(15)).await
            }
            Self::Rocket { config, topic } => {
                let reader = RocketSubscriber::dead_letters(config.clone(), topic, GROUP).await?;
                count_distinct(reader, Duration::from_secs(10)).await
            }
        }
    }
}

/// Reads `reader` until it is quiet (`first_wait` for the first message, 2 s after that),
/// acknowledging everything, and returns how many distinct messages it saw.
async fn count_distinct(
    mut reader: impl Subscriber,
    first_wait: Duration,
) -> Result<u64, BoxError> {
    let mut ids = HashSet::new();
    let mut quiet = first_wait;
    while let Ok(Ok(Some(d))) = tokio::time::timeout(quiet, reader.receive()).await {
        ids.insert(d.message().message().id());
        d.ack().await?;
        quiet = Duration::from_secs(2).min(first_wait);
    }
    reader.close().await?;
    Ok(ids.len() as u64)
}
