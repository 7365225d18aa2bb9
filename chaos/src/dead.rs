//! The messages the relays gave up on: outbox rows marked dead, held for the operator.
//!
//! Such a message is confirmed (its business transaction committed) and never applied, but it
//! is not lost: it sits in the outbox, where `waybill outbox dead` lists it and `replay` sends
//! it again. The verdict counts it in a class of its own.

use sqlx::PgPool;
use waybill_core::MessageId;
use waybill_outbox::{DeadFilter, OutboxInspector};

use crate::scenario::{ProducerMode, Scenario};

/// The ids of the scenario topic's dead outbox rows (none when the producer publishes
/// directly). A failed read is logged and counts as none, so that those messages are judged
/// lost rather than excused.
pub(crate) async fn dead_messages(pool: &PgPool, scenario: &Scenario) -> Vec<MessageId> {
    if scenario.producer.mode != ProducerMode::Outbox {
        return Vec::new();
    }
    let filter = DeadFilter::topic(scenario.broker.topic.clone());
    match OutboxInspector::postgres(pool.clone())
        .dead(&filter, usize::MAX)
        .await
    {
        Ok(rows) => rows.into_iter().map(|row| row.message_id).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the outbox's dead rows");
            Vec::new()
        }
    }
}
