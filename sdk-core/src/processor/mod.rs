//! The consumer runtime: receive → claim → handle → classify → ack | retry | dead-letter.

mod batching;
mod claims;
mod coalesced_store;
mod coalescer;
mod config;
mod counters;
mod handler_run;
mod health_watch;
mod instruments;
mod key_holding;
mod key_scheduler;
mod parked;
mod pipeline;
mod runtime;

pub use config::{Ordering, ProcessorBuilder, ProcessorConfig};
pub use counters::CountersSnapshot;
pub use runtime::{Processor, ProcessorError, RunningProcessor};
