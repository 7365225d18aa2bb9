//! Handlers that fail while the broker restarts: some messages fail once (the broker's retry
//! path hands them back), some fail permanently (the dead-letter path), the rest succeed; the
//! broker is restarted in the middle. Every message must end with one effect or one dead
//! letter, never both, and the dead letters must be readable with their record.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use waybill_core::testkit::Ledger;
use waybill_core::{DeadLetterRecord, Message, MessageId, Publisher, Subscriber};

use super::effects::{self, EffectsDb};
use super::fault::{InFlightFault, Restart};
use super::workload::{poll_until, wait_for, Workload};

/// Keys per round.
pub const KEYS: usize = 40;
/// Rounds published (a message per key each): at least the first number, at most the second
/// (the publishing stops once the consumer recovered from the restart).
pub const ROUNDS: std::ops::Range<usize> = 100..150;
/// Keys whose messages fail once now and then: the broker's retry lets their later messages
/// overtake, so their order is not checked (see `RetryPolicy`).
const TRANSIENT_KEYS: [&str; 2] = ["key-0", "key-1"];
/// Keys whose messages fail permanently now and then.
const PERMANENT_KEYS: [&str; 2] = ["key-2", "key-3"];

fn fails_transiently(round: usize) -> bool {
    round % 4 == 1
}

fn fails_permanently(round: usize) -> bool {
    round % 6 == 2
}

/// Marks the round's messages that are to fail.
fn shape(round: usize, message: Message) -> Message {
    let key = message.key().unwrap_or_default().to_owned();
    if TRANSIENT_KEYS.contains(&key.as_str()) && fails_transiently(round) {
        effects::failing(message, "transient")
    } else if PERMANENT_KEYS.contains(&key.as_str()) && fails_permanently(round) {
        effects::failing(message, "permanent")
    } else {
        message
    }
}

/// The broker under test: its publisher and subscribers for the run's topic and group, and
/// the restart.
pub struct Target<F> {
    /// The run's topic (created).
    pub topic: String,
    /// The consumer group.
    pub group: String,
    /// A publisher.
    pub publisher: Arc<dyn Publisher>,
    /// The group's subscriber.
    pub subscriber: Box<dyn Subscriber>,
    /// The broker's restart (a kill and a start), proven by its process ids.
    pub restart: F,
    /// How long the dead-letter reader may take for its first message (a Kafka group join
    /// takes seconds).
    pub first_dead_letter_wait: Duration,
}

/// Runs the scenario and asserts its outcome; `dead_letters` opens the group's dead-letter
/// reader once the run is over.
pub async fn run<F, D, DF>(target: Target<F>, dead_letters: D)
where
    F: Future<Output = Restart> + Send + 'static,
    D: FnOnce() -> DF,
    DF: Future<Output = Box<dyn Subscriber>>,
{
    let owned = EffectsDb::create().await;
    let db = &owned;
    let running =
        effects::start_consumer(db.url(), "consumer", &target.group, target.subscriber).await;
    let ledger = Arc::new(Ledger::new());
    let workload = Workload::start(
        Arc::clone(&target.publisher),
        &target.topic,
        KEYS,
        ROUNDS,
        Duration::from_millis(30),
        Arc::clone(&ledger),
        shape,
    );
    wait_for(
        "effects before the restart",
        Duration::from_secs(60),
        || async move { db.count().await >= 400 },
    )
    .await;
    let client_errors = || {
        let c = running.counters();
        workload.failures() + c.receive_errors + c.settle_errors
    };
    let fault = InFlightFault::start(target.restart, client_errors());
    while !fault.is_finished() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after_restart = db.count().await;
    let recovered = poll_until(Duration::from_secs(90), || async move {
        db.count().await >= after_restart + 400
    })
    .await;
    assert!(
        recovered.is_some(),
        "no recovery within 90 s of the restart: {} effects, {} publish failures, processor {:?}",
        db.count().await,
        workload.failures(),
        running.counters()
    );
    // The client's errors show while it reconnects, after the restart returned: counted up to
    // here.
    let proof = fault.finish(client_errors).await;
    let published = workload.finish().await;
    let permanent = (0..published.rounds)
        .filter(|r| fails_permanently(*r))
        .count()
        * PERMANENT_KEYS.len();
    let transient = (0..published.rounds)
        .filter(|r| fails_transiently(*r))
        .count()
        * TRANSIENT_KEYS.len();
    let expected_effects = (published.messages - permanent) as i64;
    let settled = poll_until(Duration::from_secs(120), || async move {
        db.count().await >= expected_effects && db.dead_lettered_marks().await >= permanent as i64
    })
    .await;
    // Let late copies arrive before stopping.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let totals = running.shutdown().await.unwrap();

    let dead = read_dead_letters(dead_letters().await, target.first_dead_letter_wait).await;
    let report = db.report(&ledger).await;
    println!(
        "{} messages ({} rounds, {} publish failures), {transient} failing once, {permanent} \
         failing for good; all settled after {settled:?}; {} dead-letter copies of {} \
         messages; fault {proof:?}; processor {totals:?}; lost {}, applied twice {}",
        published.messages,
        published.rounds,
        published.failures,
        dead.copies,
        dead.ids.len(),
        report.lost.len(),
        report.duplicated.len(),
    );
    let lost: HashSet<MessageId> = report.lost.iter().copied().collect();
    assert_eq!(
        lost.len(),
        permanent,
        "only the permanently failing messages lack an effect"
    );
    assert_eq!(
        lost, dead.ids,
        "the messages without an effect are the dead letters, and every dead letter lacks one"
    );
    for (id, how) in &dead.failures {
        assert_eq!(
            how, "permanent",
            "{id} was dead-lettered but fails only once"
        );
    }
    assert_eq!(
        db.dead_lettered_marks().await,
        permanent as i64,
        "the inbox marks each dead letter once"
    );
    assert!(report.duplicated.is_empty(), "applied twice: {report:?}");
    assert!(report.unexpected.is_empty(), "{report:?}");
    assert_eq!(report.delivered, published.messages - permanent);
    let unordered: Vec<&String> = report
        .order_violations
        .iter()
        .filter(|k| !TRANSIENT_KEYS.contains(&k.as_str()))
        .collect();
    assert!(
        unordered.is_empty(),
        "keys out of order: {unordered:?} ({:?})",
        report.inversion_samples
    );
    assert!(
        totals.retried >= transient as u64,
        "each message failing once went through a retry: {totals:?}"
    );
    let _ = target.publisher.close().await;
    owned.drop_db().await;
}

/// What the dead-letter reader saw.
struct DeadLetters {
    copies: usize,
    ids: HashSet<MessageId>,
    failures: HashMap<MessageId, String>,
}

/// Reads `reader` until it is quiet (`first_wait` for the first copy, 3 s after that),
/// acknowledging everything; panics when a copy lacks its dead-letter record.
async fn read_dead_letters(mut reader: Box<dyn Subscriber>, first_wait: Duration) -> DeadLetters {
    let mut dead = DeadLetters {
        copies: 0,
        ids: HashSet::new(),
        failures: HashMap::new(),
    };
    let mut quiet = first_wait;
    while let Ok(received) = tokio::time::timeout(quiet, reader.receive()).await {
        let Some(delivery) = received.expect("read the dead letters") else {
            break;
        };
        let message = delivery.message().message();
        let record = DeadLetterRecord::read_from(message.headers())
            .unwrap_or_else(|e| panic!("a dead letter without its record: {e}"));
        assert_eq!(
            record.message_id,
            message.id(),
            "the record names its message"
        );
        assert!(
            record.error_message.contains("refused on purpose"),
            "the record carries the handler's error: {record:?}"
        );
        dead.copies += 1;
        dead.ids.insert(message.id());
        dead.failures.insert(
            message.id(),
            message
                .headers()
                .get(effects::FAIL)
                .unwrap_or("none")
                .to_owned(),
        );
        delivery.ack().await.expect("ack a dead letter");
        quiet = Duration::from_secs(3);
    }
    reader.close().await.expect("close the dead-letter reader");
    dead
}
