//! RocketMQ consumer groups under faults that the chaos harness does not model: handlers
//! failing (once: the retry topic; for good: the dead-letter topic) while the broker is
//! SIGKILLed and restarted, and a consumer joining and leaving a running group. Broker kills
//! during direct publishing, and consumer kills, are chaos scenarios
//! (`cli/tests/chaos_direct.rs`).

#[path = "rocketmq_chaos/failing_handlers.rs"]
mod failing_handlers;
#[path = "rocketmq_chaos/rebalance_order.rs"]
mod rebalance_order;
mod support;
