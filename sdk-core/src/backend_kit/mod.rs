//! Building blocks for backends over log-structured brokers (Kafka, RocketMQ), where an
//! acknowledgement is a committed position and a retry is a delayed copy.
//!
//! - [`InFlightOffsets`]: which position of a partition or queue may be committed when
//!   deliveries complete out of order.
//! - [`DelayedCopies`]: retried copies held by the subscriber until their `waybill-not-before`
//!   time.
//! - [`LogSettler`]: settles a delivery by committing its position, publishing a retry or
//!   dead-letter copy first when asked, and hands it back for redelivery when dropped.
//! - [`LogIntake`]: turns records into deliveries settled by a [`LogSettler`], holding retried
//!   copies until due and handing out dropped deliveries again.

mod delayed;
mod intake;
mod offsets;
mod settler;

pub use delayed::{not_before, DelayedCopies};
pub use intake::{IntakeTopics, LogIntake, RecordPosition};
pub use offsets::{InFlightOffsets, TrackedOffset};
pub use settler::{Abandoned, LogSettler, OffsetCommitter, SettleLink};
