//! Metrics through the [`metrics`] facade: the application installs the recorder (Prometheus,
//! OpenTelemetry, StatsD …) and waybill's core, backends and outbox emit into it. Without a
//! recorder every instrument is a no-op.
//!
//! Names and attributes follow the OpenTelemetry messaging semantic conventions where they
//! define one (`messaging.*`, `error.type`); waybill's own instruments are named `waybill.*`.
//! Attribute values are bounded: messaging system, destination, consumer group, operation and
//! outcome, never a message id, key or anything read from a payload.
//!
//! Handles are registered once per processor (at its first delivery) or per publish call, so
//! install the recorder before starting processors: a processor started earlier keeps the
//! no-op handles it registered.
//!
//! | name | type | unit | attributes | meaning |
//! |---|---|---|---|---|
//! | `messaging.client.sent.messages` | counter | `{message}` | `messaging.system`, `messaging.destination.name`, `waybill.outcome` (`sent`, `not_sent`, `no_destination`, `ambiguous`, `permanent`), `error.type` on failure | publishes, by outcome |
//! | `messaging.client.operation.duration` | histogram | `s` | `messaging.system`, `messaging.destination.name`, `messaging.operation.name` (`send`) | publish call to confirm |
//! | `messaging.client.consumed.messages` | counter | `{message}` | `messaging.destination.name`, `messaging.consumer.group.name` | deliveries a processor received (redeliveries and duplicates included) |
//! | `messaging.process.duration` | histogram | `s` | as above, `waybill.outcome` (`ok`, `error`, `panic`) | one handler run |
//! | `waybill.processor.retries` | counter | `{message}` | destination, group | retries scheduled |
//! | `waybill.processor.dead_lettered` | counter | `{message}` | destination, group | messages dead-lettered and acknowledged |
//! | `waybill.processor.duplicates_skipped` | counter | `{message}` | destination, group | deliveries acknowledged without running the handler (done or dead before) |
//! | `waybill.processor.handler_panics` | counter | `{panic}` | destination, group | handler panics caught |
//! | `waybill.processor.settle_errors` | counter | `{error}` | destination, group | acks, retries or dead letters the broker refused |
//! | `waybill.processor.in_flight` | gauge | `{message}` | destination, group | handlers running now |
//! | `waybill.inbox.claims` | counter | `{claim}` | destination, group, `waybill.claim.result` (`acquired`, `duplicate`, `lease_lost`, `store_error`) | idempotency claims by result |
//! | `waybill.relay.pending` | gauge | `{row}` | `waybill.relay.name` | outbox rows waiting to be published |
//! | `waybill.relay.oldest_pending_age` | gauge | `s` | `waybill.relay.name` | age of the oldest pending row |
//! | `waybill.relay.dead_rows` | gauge | `{row}` | `waybill.relay.name` | outbox rows that exhausted their attempts |
//! | `waybill.relay.published` | counter | `{row}` | `waybill.relay.name` | rows published with a confirm and deleted |
//! | `waybill.relay.order_breaches` | counter | `{row}` | `waybill.relay.name` | rows confirmed although an earlier row of their key failed in the same pipelined batch: the key's order may be broken (never expected; alert on any) |
//! | `waybill.relay.batch.duration` | histogram | `s` | `waybill.relay.name` | one relay batch, select to delete |
//! | `waybill.relay.shards_owned` | gauge | `{shard}` | `waybill.relay.name` | shards the relay holds a lease on (0 on every relay: nothing is relayed) |
//! | `waybill.relay.ready` | gauge | `1` | `waybill.relay.name` | 1 while the relay is ready (database and broker reachable, lease round current), else 0 |
//! | `waybill.processor.ready` | gauge | `1` | destination, group | 1 while the processor's subscriber receives (also while its handlers fail: that is `health()`'s `Degraded`), 0 while receiving fails and once stopped; registered at the first delivery |
//! | `waybill.consumer.lag` | gauge | `{message}` | `messaging.system`, destination, group, `messaging.destination.partition.id` | messages not yet consumed by the group, per partition (Kafka), message queue (RocketMQ) or queue (RabbitMQ: ready plus unacknowledged) |
//! | `waybill.consumer.dead_letter_depth` | gauge | `{message}` | `messaging.system`, destination, group | messages waiting in the group's dead-letter queue (RabbitMQ) |
//! | `waybill.audit.gap` | gauge | `1` | group | (missing + unexpected) / sent at the group's last audit (`waybill_outbox::audit`) |
//! | `waybill.audit.missing` | gauge | `{message}` | destination, group | messages sent in the audited window and not finished by the group after the grace period |
//! | `waybill.audit.unexpected` | gauge | `{message}` | group | messages the group applied in the audited window that the sent log does not hold |

use std::future::Future;
use std::time::{Duration, Instant};

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, histogram, Unit};

use crate::publish_error::{PublishError, PublishOutcome};
use crate::receipt::Receipt;

mod sent_instruments;

/// Instrument names.
pub mod names {
    /// Publishes, by outcome.
    pub const SENT_MESSAGES: &str = "messaging.client.sent.messages";
    /// Publish call to confirm.
    pub const OPERATION_DURATION: &str = "messaging.client.operation.duration";
    /// Deliveries a processor received.
    pub const CONSUMED_MESSAGES: &str = "messaging.client.consumed.messages";
    /// One handler run.
    pub const PROCESS_DURATION: &str = "messaging.process.duration";
    /// Retries scheduled.
    pub const RETRIES: &str = "waybill.processor.retries";
    /// Messages dead-lettered.
    pub const DEAD_LETTERED: &str = "waybill.processor.dead_lettered";
    /// Deliveries acknowledged without running the handler.
    pub const DUPLICATES_SKIPPED: &str = "waybill.processor.duplicates_skipped";
    /// Handler panics caught.
    pub const HANDLER_PANICS: &str = "waybill.processor.handler_panics";
    /// Settlements the broker refused.
    pub const SETTLE_ERRORS: &str = "waybill.processor.settle_errors";
    /// Handlers running now.
    pub const IN_FLIGHT: &str = "waybill.processor.in_flight";
    /// Idempotency claims by result.
    pub const INBOX_CLAIMS: &str = "waybill.inbox.claims";
    /// Outbox rows waiting.
    pub const RELAY_PENDING: &str = "waybill.relay.pending";
    /// Age of the oldest pending outbox row.
    pub const RELAY_OLDEST_PENDING_AGE: &str = "waybill.relay.oldest_pending_age";
    /// Dead outbox rows.
    pub const RELAY_DEAD_ROWS: &str = "waybill.relay.dead_rows";
    /// Outbox rows published and deleted.
    pub const RELAY_PUBLISHED: &str = "waybill.relay.published";
    /// Confirms the relay received for a row after an earlier row of its key in the same
    /// pipelined batch failed: the backend broke its batch key-order promise, and the key's
    /// order at consumers may be broken. Never expected; alert on any.
    pub const RELAY_ORDER_BREACHES: &str = "waybill.relay.order_breaches";
    /// One relay batch.
    pub const RELAY_BATCH_DURATION: &str = "waybill.relay.batch.duration";
    /// Shards the relay holds a lease on.
    pub const RELAY_SHARDS_OWNED: &str = "waybill.relay.shards_owned";
    /// 1 while the relay is ready (database and broker reachable, leases renewed), else 0.
    pub const RELAY_READY: &str = "waybill.relay.ready";
    /// 1 while the processor is ready (subscriber receiving, handlers not failing), else 0.
    pub const PROCESSOR_READY: &str = "waybill.processor.ready";
    /// Messages of a group's topic or queue not yet consumed, per partition or queue.
    pub const CONSUMER_LAG: &str = "waybill.consumer.lag";
    /// Messages waiting in a group's dead-letter queue.
    pub const DEAD_LETTER_DEPTH: &str = "waybill.consumer.dead_letter_depth";
    /// An audit's `(missing + unexpected) / sent` for a group.
    pub const AUDIT_GAP: &str = "waybill.audit.gap";
    /// Messages an audit found sent but not finished by a group after the grace period.
    pub const AUDIT_MISSING: &str = "waybill.audit.missing";
    /// Messages an audit found applied by a group but never sent.
    pub const AUDIT_UNEXPECTED: &str = "waybill.audit.unexpected";

    /// Every name above, for dashboards and tests that cross-check them.
    pub const ALL: [&str; 25] = [
        SENT_MESSAGES,
        OPERATION_DURATION,
        CONSUMED_MESSAGES,
        PROCESS_DURATION,
        RETRIES,
        DEAD_LETTERED,
        DUPLICATES_SKIPPED,
        HANDLER_PANICS,
        SETTLE_ERRORS,
        IN_FLIGHT,
        INBOX_CLAIMS,
        RELAY_PENDING,
        RELAY_OLDEST_PENDING_AGE,
        RELAY_DEAD_ROWS,
        RELAY_PUBLISHED,
        RELAY_ORDER_BREACHES,
        RELAY_BATCH_DURATION,
        RELAY_SHARDS_OWNED,
        RELAY_READY,
        PROCESSOR_READY,
        CONSUMER_LAG,
        DEAD_LETTER_DEPTH,
        AUDIT_GAP,
        AUDIT_MISSING,
        AUDIT_UNEXPECTED,
    ];
}

/// Attribute keys.
pub mod attributes {
    /// `kafka`, `rabbitmq`, `rocketmq` (OpenTelemetry's values).
    pub const SYSTEM: &str = "messaging.system";
    /// Topic, exchange or queue.
    pub const DESTINATION: &str = "messaging.destination.name";
    /// Consumer group (the processor's name).
    pub const GROUP: &str = "messaging.consumer.group.name";
    /// `send` for publishes.
    pub const OPERATION: &str = "messaging.operation.name";
    /// The failure's class on failed operations.
    pub const ERROR_TYPE: &str = "error.type";
    /// waybill's outcome class.
    pub const OUTCOME: &str = "waybill.outcome";
    /// What an idempotency claim decided.
    pub const CLAIM_RESULT: &str = "waybill.claim.result";
    /// The relay's name.
    pub const RELAY: &str = "waybill.relay.name";
    /// The partition (Kafka), message queue (RocketMQ) or queue (RabbitMQ) a lag is read from.
    pub const PARTITION: &str = "messaging.destination.partition.id";
}

/// Registers the description and unit of every instrument with the installed recorder (call it
/// once after installing one; exporters show them as `# HELP` and unit suffixes).
pub fn describe() {
    use names::*;
    let messages = Unit::Count;
    describe_counter!(SENT_MESSAGES, messages, "Publishes, by outcome");
    describe_histogram!(OPERATION_DURATION, Unit::Seconds, "Publish call to confirm");
    describe_counter!(CONSUMED_MESSAGES, messages, "Deliveries received");
    describe_histogram!(PROCESS_DURATION, Unit::Seconds, "One handler run");
    describe_counter!(RETRIES, messages, "Retries scheduled");
    describe_counter!(DEAD_LETTERED, messages, "Messages dead-lettered");
    describe_counter!(
        DUPLICATES_SKIPPED,
        messages,
        "Deliveries acknowledged without running the handler"
    );
    describe_counter!(HANDLER_PANICS, messages, "Handler panics caught");
    describe_counter!(SETTLE_ERRORS, messages, "Settlements the broker refused");
    describe_gauge!(IN_FLIGHT, messages, "Handlers running now");
    describe_counter!(INBOX_CLAIMS, messages, "Idempotency claims by result");
    describe_gauge!(
        RELAY_PENDING,
        messages,
        "Outbox rows waiting to be published"
    );
    describe_gauge!(
        RELAY_OLDEST_PENDING_AGE,
        Unit::Seconds,
        "Age of the oldest pending outbox row"
    );
    describe_gauge!(RELAY_DEAD_ROWS, messages, "Dead outbox rows");
    describe_counter!(
        RELAY_PUBLISHED,
        messages,
        "Outbox rows published and deleted"
    );
    describe_counter!(
        RELAY_ORDER_BREACHES,
        messages,
        "Rows confirmed after an earlier row of their key failed in the same pipelined batch"
    );
    describe_histogram!(RELAY_BATCH_DURATION, Unit::Seconds, "One relay batch");
    describe_gauge!(
        RELAY_SHARDS_OWNED,
        Unit::Count,
        "Shards the relay holds a lease on"
    );
    describe_gauge!(RELAY_READY, "1 while the relay is ready, else 0");
    describe_gauge!(PROCESSOR_READY, "1 while the processor is ready, else 0");
    describe_gauge!(
        CONSUMER_LAG,
        messages,
        "Messages not yet consumed by the group"
    );
    describe_gauge!(
        DEAD_LETTER_DEPTH,
        messages,
        "Messages waiting in the group's dead-letter queue"
    );
    describe_gauge!(
        AUDIT_GAP,
        "Missing plus unexpected messages over sent ones, at the last audit"
    );
    describe_gauge!(
        AUDIT_MISSING,
        messages,
        "Messages sent but not finished by the group after the grace period"
    );
    describe_gauge!(
        AUDIT_UNEXPECTED,
        messages,
        "Messages the group applied that were never sent"
    );
}

/// Records a publish's result (see [`record_send`]).
pub fn record_result(
    system: &'static str,
    destination: &str,
    result: &Result<Receipt, PublishError>,
    elapsed: Duration,
) {
    record_send(
        system,
        destination,
        result.as_ref().err().map(PublishError::outcome),
        elapsed,
    );
}

/// Publishes `message` of `system` to `destination` with `publish`, inside its
/// `send {destination}` span ([`crate::spans::send_span`], which with the `otel` feature puts
/// the span's context into the message's headers first), and records the result.
pub async fn metered<F, Fut>(
    system: &'static str,
    destination: &str,
    message: crate::Message,
    publish: F,
) -> Result<Receipt, PublishError>
where
    F: FnOnce(crate::Message) -> Fut,
    Fut: Future<Output = Result<Receipt, PublishError>>,
{
    let mut message = message;
    let span = crate::spans::send_span(system, destination, &mut message);
    let started = Instant::now();
    let result = tracing::Instrument::instrument(publish(message), span).await;
    record_result(system, destination, &result, started.elapsed());
    result
}

/// As [`metered`], for a batch: one `send` span per message, open until the batch is decided,
/// and one recorded result per message.
pub async fn metered_batch<F, Fut>(
    system: &'static str,
    destination: &str,
    messages: Vec<crate::Message>,
    publish: F,
) -> Vec<Result<Receipt, PublishError>>
where
    F: FnOnce(Vec<crate::Message>) -> Fut,
    Fut: Future<Output = Vec<Result<Receipt, PublishError>>>,
{
    let mut messages = messages;
    let spans: Vec<tracing::Span> = messages
        .iter_mut()
        .map(|m| crate::spans::send_span(system, destination, m))
        .collect();
    let started = Instant::now();
    let results = publish(messages).await;
    drop(spans);
    record_results(system, destination, &results, started.elapsed());
    results
}

/// Records each result of a batch publish, all with the batch's duration.
pub fn record_results(
    system: &'static str,
    destination: &str,
    results: &[Result<Receipt, PublishError>],
    elapsed: Duration,
) {
    for result in results {
        record_result(system, destination, result, elapsed);
    }
}

/// The `waybill.outcome` value of a publish outcome.
pub fn outcome_name(outcome: PublishOutcome) -> &'static str {
    match outcome {
        PublishOutcome::NotSent => "not_sent",
        PublishOutcome::NoDestination => "no_destination",
        PublishOutcome::Ambiguous => "ambiguous",
        PublishOutcome::Permanent => "permanent",
    }
}

/// Records one publish of `system` (`kafka`, `rabbitmq`, `rocketmq`, `memory`) to
/// `destination`: its outcome (`None` when confirmed) and how long it took. Backends call it
/// once per message, batches included.
pub fn record_send(
    system: &'static str,
    destination: &str,
    failure: Option<PublishOutcome>,
    elapsed: Duration,
) {
    use attributes::*;
    let Some(outcome) = failure else {
        return sent_instruments::record_sent(system, destination, elapsed);
    };
    let destination = destination.to_owned();
    counter!(
        names::SENT_MESSAGES,
        SYSTEM => system,
        DESTINATION => destination.clone(),
        OUTCOME => outcome_name(outcome),
        ERROR_TYPE => outcome_name(outcome)
    )
    .increment(1);
    histogram!(
        names::OPERATION_DURATION,
        SYSTEM => system,
        DESTINATION => destination,
        OPERATION => "send"
    )
    .record(elapsed.as_secs_f64());
}
