//! Processor behaviours named in the contract, one test each, over the in-memory broker.

use std::sync::atomic::{AtomicU32, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::Duration;

use waybill_core::header_names;
use waybill_core::{
    handler_fn, typed_handler, DeadLetterRecord, ErrorClass, HandlerError,
    InMemoryIdempotencyStore, IncomingMessage, MemoryBroker, Message, Ordering, Processor,
    Publisher, RetryPolicy,
};

fn fast_policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(max_attempts)
        .min_delay(Duration::from_millis(2))
        .max_delay(Duration::from_millis(10))
        .build()
        .unwrap()
}

async fn wait_for(mut done: impl FnMut() -> bool) {
    for _ in 0..2_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition not reached within 10 s");
}

/// A handler that records each payload it runs on in `seen` and fails the payload "poison"
/// permanently.
fn record_payloads_and_refuse_poison(
    seen: &Arc<std::sync::Mutex<Vec<String>>>,
) -> impl waybill_core::Handler {
    let seen = Arc::clone(seen);
    handler_fn(move |m: IncomingMessage| {
        let seen = Arc::clone(&seen);
        async move {
            let payload = String::from_utf8_lossy(m.message().payload()).into_owned();
            seen.lock().unwrap().push(payload.clone());
            if payload == "poison" {
                return Err(HandlerError::permanent("bad"));
            }
            Ok(())
        }
    })
}

#[test]
fn invalid_configuration_names_the_field() {
    let field = |b: waybill_core::ProcessorBuilder| b.build().unwrap_err().field();
    assert_eq!(field(Processor::builder("")), "group");
    assert_eq!(field(Processor::builder("g").concurrency(0)), "concurrency");
    assert_eq!(
        field(Processor::builder("g").concurrency(8).max_buffered(4)),
        "max_buffered"
    );
    assert_eq!(
        field(Processor::builder("g").claim_lease(Duration::ZERO)),
        "claim_lease"
    );
    assert_eq!(
        field(Processor::builder("g").drain_timeout(Duration::ZERO)),
        "drain_timeout"
    );
    let refused = Processor::builder("g").build().unwrap_err();
    assert_eq!(
        refused.field(),
        "idempotency",
        "no store and no explicit opt-out"
    );
    assert!(
        refused.to_string().contains("at_least_once_effects"),
        "{refused}"
    );
    assert!(Processor::builder("g")
        .at_least_once_effects()
        .build()
        .is_ok());
    let broker = MemoryBroker::new();
    assert_eq!(broker.subscriber("", "g").err().unwrap().field(), "topic");
    assert_eq!(broker.subscriber("t", "").err().unwrap().field(), "group");
    assert_eq!(
        broker.create_topic("has space").unwrap_err().field(),
        "topic"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_is_retried_and_the_runtime_survives() {
    let broker = MemoryBroker::new();
    let sub = broker.subscriber("t", "g").unwrap();
    let panicked = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handler = {
        let panicked = Arc::clone(&panicked);
        handler_fn(move |m: IncomingMessage| {
            let panicked = Arc::clone(&panicked);
            async move {
                if m.message().payload().as_ref() == b"boom"
                    && !panicked.swap(true, AtomicOrdering::SeqCst)
                {
                    panic!("handler bug");
                }
                Ok(())
            }
        })
    };
    let publisher = broker.publisher();
    publisher.publish("t", Message::new("boom")).await.unwrap();
    publisher.publish("t", Message::new("fine")).await.unwrap();
    let running = Processor::builder("g")
        .at_least_once_effects()
        .retry(fast_policy(3))
        .build()
        .unwrap()
        .start(sub, handler);
    wait_for(|| running.counters().handled == 2).await;
    let totals = running.shutdown().await.unwrap();
    assert_eq!(totals.panics, 1);
    assert_eq!(totals.failed_attempts, 1);
    assert_eq!(totals.retried, 1);
    assert_eq!(broker.pending("t", "g"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_on_the_last_attempt_is_dead_lettered_as_panic() {
    let broker = MemoryBroker::new();
    let sub = broker.subscriber("t", "g").unwrap();
    broker
        .publisher()
        .publish("t", Message::new("x"))
        .await
        .unwrap();
    let handler = handler_fn(|_m: IncomingMessage| async { panic!("always") });
    let running = Processor::builder("g")
        .at_least_once_effects()
        .retry(fast_policy(2))
        .build()
        .unwrap()
        .start(sub, handler);
    wait_for(|| running.counters().dead_lettered == 1).await;
    running.shutdown().await.unwrap();
    let dead = broker.messages("t.dlq");
    let record = DeadLetterRecord::read_from(dead[0].headers()).unwrap();
    assert_eq!(record.error_class, ErrorClass::Panic);
    assert_eq!(record.attempts, 2);
    assert!(
        record.error_message.contains("always"),
        "{}",
        record.error_message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_work_and_stops_fetching() {
    let broker = MemoryBroker::new();
    let sub = broker.subscriber("t", "g").unwrap();
    let publisher = broker.publisher();
    for i in 0..4 {
        publisher
            .publish("t", Message::new("slow").with_key(format!("k{i}")))
            .await
            .unwrap();
    }
    let handler = handler_fn(|_m: IncomingMessage| async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(())
    });
    let running = Processor::builder("g")
        .at_least_once_effects()
        .concurrency(4)
        .max_buffered(4)
        .build()
        .unwrap()
        .start(sub, handler);
    wait_for(|| running.counters().received == 4).await;
    publisher.publish("t", Message::new("late")).await.unwrap();
    let totals = running.shutdown().await.unwrap();
    assert_eq!(
        totals.handled, 4,
        "the four in flight finished before shutdown returned"
    );
    assert_eq!(
        broker.pending("t", "g"),
        1,
        "the late message stays for the next consumer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_and_attempts_travel_to_the_broker_retry() {
    let broker = MemoryBroker::new();
    let sub = broker.subscriber("t", "g").unwrap();
    broker
        .publisher()
        .publish("t", Message::new("x").with_key("k"))
        .await
        .unwrap();
    let seen: Arc<std::sync::Mutex<Vec<(u32, tokio::time::Instant)>>> = Arc::default();
    let handler = {
        let seen = Arc::clone(&seen);
        handler_fn(move |m: IncomingMessage| {
            let seen = Arc::clone(&seen);
            async move {
                let n = {
                    let mut s = seen.lock().unwrap();
                    s.push((m.attempt(), tokio::time::Instant::now()));
                    s.len()
                };
                if n < 3 {
                    return Err(HandlerError::retry_after(
                        Duration::from_millis(200),
                        "busy",
                    ));
                }
                Ok(())
            }
        })
    };
    let policy = RetryPolicy::builder()
        .max_attempts(5)
        .in_process_attempts(1)
        .min_delay(Duration::from_millis(1))
        .build()
        .unwrap();
    let running = Processor::builder("g")
        .at_least_once_effects()
        .retry(policy)
        .build()
        .unwrap()
        .start(sub, handler);
    wait_for(|| running.counters().handled == 1).await;
    running.shutdown().await.unwrap();
    let seen = seen.lock().unwrap();
    let attempts: Vec<u32> = seen.iter().map(|(a, _)| *a).collect();
    assert_eq!(
        attempts,
        vec![1, 2, 3],
        "each broker retry carries the next attempt number"
    );
    for pair in seen.windows(2) {
        assert!(
            pair[1].1 - pair[0].1 >= Duration::from_millis(190),
            "RetryAfter delay respected"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_longer_than_the_cap_goes_to_the_broker_instead_of_holding_the_key() {
    let broker = MemoryBroker::new();
    let sub = broker.subscriber("t", "g").unwrap();
    let publisher = broker.publisher();
    for payload in ["first", "second"] {
        publisher
            .publish("t", Message::new(payload).with_key("k"))
            .await
            .unwrap();
    }
    let handled: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let handler = {
        let handled = Arc::clone(&handled);
        handler_fn(move |m: IncomingMessage| {
            let handled = Arc::clone(&handled);
            async move {
                let payload = String::from_utf8_lossy(m.message().payload()).into_owned();
                if payload == "first" && m.attempt() == 1 {
                    return Err(HandlerError::retry_after(
                        Duration::from_secs(3600),
                        "come back in an hour",
                    ));
                }
                handled.lock().unwrap().push(payload);
                Ok(())
            }
        })
    };
    let running = Processor::builder("g")
        .at_least_once_effects()
        .ordering(Ordering::PerKey)
        .retry(
            RetryPolicy::builder()
                .max_in_process_delay(Duration::from_secs(1))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
        .start(sub, handler);
    wait_for(|| running.counters().handled == 1).await;
    let totals = running.shutdown().await.unwrap();
    assert_eq!(
        *handled.lock().unwrap(),
        ["second"],
        "the hour is not waited out in the consumer: the key goes on"
    );
    assert_eq!(totals.retried, 1, "handed to the broker's delayed retry");
    assert_eq!(
        broker.pending("t", "g"),
        1,
        "the retried copy waits in the broker for its hour"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_key_does_not_stall_other_keys() {
    let broker = MemoryBroker::new();
    let sub = broker.subscriber("t", "g").unwrap();
    let publisher = broker.publisher();
    publisher
        .publish("t", Message::new("stuck").with_key("bad"))
        .await
        .unwrap();
    for i in 0..50 {
        publisher
            .publish(
                "t",
                Message::new(i.to_string()).with_key(format!("good-{}", i % 5)),
            )
            .await
            .unwrap();
    }
    let handler = handler_fn(|m: IncomingMessage| async move {
        if m.message().key() == Some("bad") {
            return Err(HandlerError::transient("downstream down"));
        }
        Ok(())
    });
    let policy = RetryPolicy::builder()
        .max_attempts(1_000)
        .min_delay(Duration::from_millis(50))
        .jitter(false)
        .factor(1.0)
        .max_delay(Duration::from_millis(50))
        .build()
        .unwrap();
    let running = Processor::builder("g")
        .at_least_once_effects()
        .ordering(Ordering::PerKey)
        .concurrency(4)
        .retry(policy)
        .build()
        .unwrap()
        .start(sub, handler);
    wait_for(|| running.counters().handled == 50).await;
    let totals = running.shutdown().await.unwrap();
    assert!(totals.failed_attempts >= 1);
    assert_eq!(totals.dead_lettered, 0);
    assert_eq!(
        broker.pending("t", "g"),
        1,
        "the failing message is given back at shutdown"
    );
    assert_eq!(totals.abandoned, 1, "{totals:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivery_after_a_lost_ack_is_skipped_as_duplicate() {
    let broker = MemoryBroker::new();
    let sub = broker.subscriber("t", "g").unwrap();
    broker.faults().on_ack({
        let lost = AtomicU32::new(0);
        move |_ctx| {
            (lost.fetch_add(1, AtomicOrdering::SeqCst) == 0).then_some(waybill_core::AckFault::Lost)
        }
    });
    broker
        .publisher()
        .publish("t", Message::new("x"))
        .await
        .unwrap();
    let effects = Arc::new(AtomicU32::new(0));
    let handler = {
        let effects = Arc::clone(&effects);
        handler_fn(move |_m: IncomingMessage| {
            let effects = Arc::clone(&effects);
            async move {
                effects.fetch_add(1, AtomicOrdering::SeqCst);
                Ok(())
            }
        })
    };
    let running = Processor::builder("g")
        .idempotency(Arc::new(InMemoryIdempotencyStore::default()))
        .build()
        .unwrap()
        .start(sub, handler);
    wait_for(|| running.counters().duplicates_skipped == 1).await;
    let totals = running.shutdown().await.unwrap();
    assert_eq!(effects.load(AtomicOrdering::SeqCst), 1);
    assert_eq!(totals.settle_errors, 1);
    assert_eq!(broker.pending("t", "g"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_dead_letter_publish_leaves_the_message_unacked() {
    let broker = MemoryBroker::new();
    let sub = broker.subscriber("t", "g").unwrap();
    broker
        .publisher()
        .publish("t", Message::new("poison"))
        .await
        .unwrap();
    broker
        .faults()
        .fail_next_publishes(1, waybill_core::PublishFault::NotSent);
    let handler = handler_fn(|_m: IncomingMessage| async { Err(HandlerError::permanent("bad")) });
    let running = Processor::builder("g")
        .at_least_once_effects()
        .build()
        .unwrap()
        .start(sub, handler);
    wait_for(|| running.counters().dead_lettered == 1).await;
    let totals = running.shutdown().await.unwrap();
    assert_eq!(totals.settle_errors, 1, "first dead-letter publish refused");
    assert_eq!(
        totals.received, 2,
        "the message came back and was dead-lettered again"
    );
    assert_eq!(broker.messages("t.dlq").len(), 1);
    assert_eq!(broker.pending("t", "g"), 0);
    let dl = &broker.messages("t.dlq")[0];
    assert!(dl.headers().contains(header_names::DL_ERROR_CLASS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_back_a_retrying_key_with_everything_queued_behind_it() {
    let broker = MemoryBroker::new();
    let sub = broker.subscriber("t", "g").unwrap();
    let publisher = broker.publisher();
    let first = Message::new("first").with_key("k");
    let first_id = first.id();
    publisher.publish("t", first).await.unwrap();
    for i in 0..3 {
        publisher
            .publish("t", Message::new(format!("later-{i}")).with_key("k"))
            .await
            .unwrap();
    }
    let handled = Arc::new(AtomicU32::new(0));
    let handler = {
        let handled = Arc::clone(&handled);
        handler_fn(move |m: IncomingMessage| {
            let handled = Arc::clone(&handled);
            async move {
                if m.message().payload().as_ref() == b"first" {
                    return Err(HandlerError::retry_after(
                        Duration::from_secs(60),
                        "not yet",
                    ));
                }
                handled.fetch_add(1, AtomicOrdering::SeqCst);
                Ok(())
            }
        })
    };
    let running = Processor::builder("g")
        .at_least_once_effects()
        .ordering(Ordering::PerKey)
        .retry(
            RetryPolicy::builder()
                .max_attempts(10)
                .min_delay(Duration::from_millis(2))
                .max_in_process_delay(Duration::from_secs(120))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
        .start(sub, handler);
    wait_for(|| running.counters().failed_attempts == 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let totals = running.shutdown().await.unwrap();
    assert_eq!(
        handled.load(AtomicOrdering::SeqCst),
        0,
        "nothing of key k overtook its first message"
    );
    assert_eq!(totals.abandoned, 1);
    assert_eq!(broker.pending("t", "g"), 4, "all four are given back");

    // Given back in log order: the next consumer sees the first message first.
    let mut next = broker.subscriber("t", "g").unwrap();
    let d = waybill_core::Subscriber::receive(&mut next)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.message().message().id(), first_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_dead_letter_publish_holds_its_key_until_the_message_is_back() {
    let broker = MemoryBroker::new();
    let sub = broker.subscriber("t", "g").unwrap();
    let publisher = broker.publisher();
    for payload in ["poison", "second", "third"] {
        publisher
            .publish("t", Message::new(payload).with_key("k"))
            .await
            .unwrap();
    }
    broker
        .faults()
        .fail_next_publishes(1, waybill_core::PublishFault::NotSent);
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let handler = record_payloads_and_refuse_poison(&seen);
    let running = Processor::builder("g")
        .idempotency(Arc::new(InMemoryIdempotencyStore::default()))
        .ordering(Ordering::PerKey)
        .build()
        .unwrap()
        .start(sub, handler);
    wait_for(|| running.counters().handled == 2).await;
    let totals = running.shutdown().await.unwrap();
    assert_eq!(
        totals.settle_errors, 1,
        "the first dead-letter publish was refused"
    );
    assert_eq!(
        *seen.lock().unwrap(),
        ["poison", "poison", "second", "third"],
        "the key's later messages waited for the unsettled one to come back"
    );
    assert_eq!(broker.messages("t.dlq").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_destination_not_there_yet_parks_the_message_and_holds_its_key() {
    let broker = MemoryBroker::new();
    let sub = broker.subscriber("t", "g").unwrap();
    let publisher = broker.publisher();
    let poison = Message::new("poison").with_key("k");
    let poison_id = poison.id();
    publisher.publish("t", poison).await.unwrap();
    for payload in ["second", "third"] {
        publisher
            .publish("t", Message::new(payload).with_key("k"))
            .await
            .unwrap();
    }
    // The dead-letter topic is not there until `missing` is cleared.
    let missing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    {
        let missing = Arc::clone(&missing);
        broker.faults().on_publish(move |ctx| {
            (ctx.topic == "t.dlq" && missing.load(AtomicOrdering::SeqCst))
                .then_some(waybill_core::PublishFault::NoDestination)
        });
    }
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let handler = record_payloads_and_refuse_poison(&seen);
    let running = Processor::builder("g")
        .idempotency(Arc::new(InMemoryIdempotencyStore::default()))
        .ordering(Ordering::PerKey)
        .retry(
            RetryPolicy::builder()
                .min_delay(Duration::from_millis(50))
                .max_delay(Duration::from_millis(400))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
        .start(sub, handler);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let meanwhile = running.counters();
    assert_eq!(
        *seen.lock().unwrap(),
        ["poison"],
        "handled once, and its key held: the dead letter waits, the handler does not run again"
    );
    assert_eq!(meanwhile.dead_lettered, 0, "not counted as dead-lettered");
    assert_eq!(meanwhile.handled, 0);
    assert!(
        (2..=12).contains(&meanwhile.destination_waits),
        "tried again with backoff: {meanwhile:?}"
    );
    assert_eq!(broker.pending("t", "g"), 3, "nothing settled, nothing lost");
    assert!(broker.messages("t.dlq").is_empty());

    missing.store(false, AtomicOrdering::SeqCst);
    wait_for(|| running.counters().handled == 2).await;
    let totals = running.shutdown().await.unwrap();
    assert_eq!(totals.dead_lettered, 1);
    assert_eq!(
        *seen.lock().unwrap(),
        ["poison", "second", "third"],
        "the key went on only after its dead letter went through"
    );
    let dead = broker.messages("t.dlq");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id(), poison_id);
    assert_eq!(broker.pending("t", "g"), 0);
}

#[tokio::test(start_paused = true)]
async fn the_default_retry_policy_rides_out_a_thirty_second_outage() {
    let broker = MemoryBroker::new();
    let sub = broker.subscriber("t", "g").unwrap();
    broker
        .publisher()
        .publish("t", Message::new("order"))
        .await
        .unwrap();
    let outage_ends = tokio::time::Instant::now() + Duration::from_secs(30);
    let handler = handler_fn(move |_m: IncomingMessage| async move {
        if tokio::time::Instant::now() < outage_ends {
            return Err(HandlerError::transient("database restarting"));
        }
        Ok(())
    });
    let running = Processor::builder("g")
        .idempotency(Arc::new(InMemoryIdempotencyStore::default()))
        .build()
        .unwrap()
        .start(sub, handler);
    while running.counters().settled() == 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let totals = running.shutdown().await.unwrap();
    assert_eq!(totals.dead_lettered, 0, "{totals:?}");
    assert_eq!(totals.handled, 1);
    assert!(totals.failed_attempts >= 5, "{totals:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_of_a_dead_lettered_message_is_skipped_until_replayed() {
    let broker = MemoryBroker::new();
    let sub = broker.subscriber("t", "g").unwrap();
    let publisher = broker.publisher();
    let poison = Message::new("poison");
    publisher.publish("t", poison.clone()).await.unwrap();
    let attempts = Arc::new(AtomicU32::new(0));
    let handler = {
        let attempts = Arc::clone(&attempts);
        handler_fn(move |_m: IncomingMessage| {
            let attempts = Arc::clone(&attempts);
            async move {
                attempts.fetch_add(1, AtomicOrdering::SeqCst);
                Err(HandlerError::permanent("bad"))
            }
        })
    };
    let running = Processor::builder("g")
        .idempotency(Arc::new(InMemoryIdempotencyStore::default()))
        .build()
        .unwrap()
        .start(sub, handler);
    wait_for(|| running.counters().dead_lettered == 1).await;
    // A duplicate copy (an ambiguous publish retried, a redelivery) is not handled again.
    publisher.publish("t", poison.clone()).await.unwrap();
    wait_for(|| running.counters().duplicates_skipped == 1).await;
    assert_eq!(attempts.load(AtomicOrdering::SeqCst), 1);
    // A replayed copy is handled again.
    let replay = poison.with_header(header_names::REPLAYED_AT, "1");
    publisher.publish("t", replay).await.unwrap();
    wait_for(|| running.counters().dead_lettered == 2).await;
    let totals = running.shutdown().await.unwrap();
    assert_eq!(attempts.load(AtomicOrdering::SeqCst), 2, "{totals:?}");
    assert_eq!(broker.messages("t.dlq").len(), 2);
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Shipment {
    parcels: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_handler_dead_letters_what_does_not_decode_and_handles_the_rest() {
    let broker = MemoryBroker::new();
    let sub = broker.subscriber("t", "g").unwrap();
    let publisher = broker.publisher();
    publisher
        .publish("t", Message::json(&Shipment { parcels: 2 }).unwrap())
        .await
        .unwrap();
    let broken = Message::new(r#"{"parcels":-1}"#)
        .with_header(header_names::CONTENT_TYPE, "application/json");
    publisher.publish("t", broken.clone()).await.unwrap();
    let parcels = Arc::new(AtomicU32::new(0));
    let handler = {
        let parcels = Arc::clone(&parcels);
        typed_handler(move |shipment: Shipment, _m: IncomingMessage| {
            parcels.fetch_add(shipment.parcels, AtomicOrdering::SeqCst);
            async { Ok(()) }
        })
    };
    let running = Processor::builder("g")
        .idempotency(Arc::new(InMemoryIdempotencyStore::default()))
        .retry(fast_policy(5))
        .build()
        .unwrap()
        .start(sub, handler);
    wait_for(|| running.counters().dead_lettered == 1 && running.counters().handled == 1).await;
    let totals = running.shutdown().await.unwrap();
    assert_eq!(parcels.load(AtomicOrdering::SeqCst), 2);
    assert_eq!(totals.failed_attempts, 1, "a decode failure is not retried");
    let dead = broker.messages("t.dlq");
    let record = DeadLetterRecord::read_from(dead[0].headers()).unwrap();
    assert_eq!(record.message_id, broken.id());
    assert_eq!(record.error_class, ErrorClass::Permanent);
    assert!(
        record
            .error_message
            .contains("codec json cannot decode the payload as")
            && record.error_message.contains("Shipment")
            && record.error_message.contains("invalid value: integer `-1`"),
        "{}",
        record.error_message
    );
    assert_eq!(
        dead[0].payload(),
        broken.payload(),
        "the bytes are kept as they came"
    );
}
