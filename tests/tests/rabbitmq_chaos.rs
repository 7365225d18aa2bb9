//! RabbitMQ consumer groups under faults that the chaos harness does not model: handlers
//! failing (once: the retry queues; for good: the dead-letter queue) while the application
//! restarts inside the node, and a consumer joining and leaving a running group. Node kills
//! and application restarts during direct publishing, and consumer kills, are chaos scenarios
//! (`cli/tests/chaos_direct.rs`).

#[path = "rabbitmq_chaos/failing_handlers.rs"]
mod failing_handlers;
#[path = "rabbitmq_chaos/partitioned_group.rs"]
mod partitioned_group;
#[path = "rabbitmq_chaos/rebalance_order.rs"]
mod rebalance_order;
mod support;
