//! The consumer runtime: receive → claim → handle → classify → ack | retry | dead-letter.

mod config;
mod counters;
mod key_scheduler;
mod pipeline;
mod runtime;

pub use config::{Ordering, ProcessorBuilder, ProcessorConfig};
pub use counters::CountersSnapshot;
pub use runtime::{Processor, ProcessorError, RunningProcessor};
