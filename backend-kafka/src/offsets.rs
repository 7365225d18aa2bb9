//! Kafka positions for the shared in-flight offset tracker.

use waybill_core::backend_kit::InFlightOffsets;

/// A partition: topic and partition number.
pub(crate) type PartitionKey = (String, i32);

/// In-flight offsets of the partitions a consumer holds.
pub(crate) type Offsets = InFlightOffsets<PartitionKey>;
