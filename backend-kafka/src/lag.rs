//! Consumer lag on Kafka: per partition, the log end offset minus the group's committed offset.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use waybill_core::{BrokerError, ConsumerLag, LagProbe, PartitionLag};

use crate::error_class::broker_error;
use crate::subscriber::TrackingContext;

/// How long each request of a lag reading may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads the lag of a subscriber's group on its topics through the subscriber's own consumer
/// (librdkafka clients are safe to share between threads), without joining or disturbing the
/// group.
///
/// A partition the group never committed on counts from its low watermark (the group starts
/// at the earliest offset). Offsets are committed every `commit_interval`, so the lag reads
/// up to that much behind what the processor has settled. On a topic written in transactions,
/// the last commit marker occupies one offset, so a caught-up group may read a lag of 1.
pub(crate) struct KafkaLagProbe {
    pub consumer: Arc<StreamConsumer<TrackingContext>>,
    pub topics: Vec<String>,
    pub group: String,
}

#[async_trait]
impl LagProbe for KafkaLagProbe {
    async fn lag(&self) -> Result<ConsumerLag, BrokerError> {
        let consumer = Arc::clone(&self.consumer);
        let topics = self.topics.clone();
        let partitions = tokio::task::spawn_blocking(move || read_lag(&consumer, &topics))
            .await
            .map_err(|e| BrokerError::transient("lag", e.to_string()))??;
        Ok(ConsumerLag {
            system: "kafka",
            group: self.group.clone(),
            partitions,
            dead_letter_depth: None,
        })
    }
}

/// One metadata request per topic, one committed-offsets request, one watermark request per
/// partition.
fn read_lag(
    consumer: &StreamConsumer<TrackingContext>,
    topics: &[String],
) -> Result<Vec<PartitionLag>, BrokerError> {
    let mut wanted = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
            .map_err(|e| broker_error("lag", &e))?;
        for t in metadata.topics() {
            for p in t.partitions() {
                wanted.add_partition(t.name(), p.id());
            }
        }
    }
    let committed = consumer
        .committed_offsets(wanted, REQUEST_TIMEOUT)
        .map_err(|e| broker_error("lag", &e))?;
    let mut lags = Vec::new();
    for element in committed.elements() {
        let (low, high) = consumer
            .fetch_watermarks(element.topic(), element.partition(), REQUEST_TIMEOUT)
            .map_err(|e| broker_error("lag", &e))?;
        let from = match element.offset() {
            Offset::Offset(committed) => committed.clamp(low, high),
            _ => low,
        };
        lags.push(PartitionLag {
            destination: element.topic().to_owned(),
            partition: element.partition().to_string(),
            lag: u64::try_from(high - from).unwrap_or(0),
        });
    }
    Ok(lags)
}
