//! Settling Kafka deliveries: the shared log settler, with offsets stored in librdkafka
//! (committed every `commit_interval`, on revoke and on close).

use std::sync::Arc;

use async_trait::async_trait;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use waybill_core::backend_kit::{LogIntake, OffsetCommitter};

use crate::offsets::PartitionKey;
use crate::subscriber::TrackingContext;

/// Stores a partition's committable offset in librdkafka.
pub(crate) struct StoreOffsets(pub Arc<StreamConsumer<TrackingContext>>);

#[async_trait]
impl OffsetCommitter<PartitionKey> for StoreOffsets {
    async fn commit(&self, queue: &PartitionKey, next: i64) {
        let mut tpl = TopicPartitionList::new();
        if tpl
            .add_partition_offset(&queue.0, queue.1, Offset::Offset(next))
            .is_ok()
        {
            if let Err(e) = self.0.store_offsets(&tpl) {
                tracing::debug!(error = %e, "offset not stored (partition no longer assigned)");
            }
        }
    }
}

/// Turns Kafka records into deliveries settled with offsets stored in librdkafka.
pub(crate) type KafkaIntake = LogIntake<PartitionKey, StoreOffsets>;
