//! Property tests of the Processor over the in-memory broker: random handler failures and
//! panics, injected duplicate deliveries and lost acks (a crash between the effect and the ack).
//!
//! Duplicates and lost acks are injected for every kind of message (handled, retried,
//! dead-lettered). Properties, for every generated run:
//! - every message ends with exactly one effect, or is dead-lettered once with a readable
//!   record, never both;
//!   when no fault touches a message, which of the two happens matches the handler's script;
//! - no effect ever happens twice;
//! - in `PerKey` mode the effects of each key follow publish order;
//! - no message is acknowledged before its effect, or its dead letter, is recorded.

use std::collections::HashMap;
use std::panic;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use waybill_core::{
    handler_fn, AckFault, DeadLetterRecord, DeliveryFault, HandlerError, InMemoryIdempotencyStore,
    IncomingMessage, MemoryBroker, Message, MessageId, Ordering, Processor, Publisher, RetryPolicy,
};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Attempt {
    Ok,
    Transient,
    Permanent,
    Panic,
}

#[derive(Debug, Clone)]
struct Plan {
    key: Option<u8>,
    /// Outcome of the handler's n-th call for this message; calls past the end succeed.
    script: Vec<Attempt>,
    duplicate: bool,
    lose_first_ack: bool,
}

fn attempt() -> impl Strategy<Value = Attempt> {
    prop_oneof![
        4 => Just(Attempt::Ok),
        3 => Just(Attempt::Transient),
        1 => Just(Attempt::Permanent),
        1 => Just(Attempt::Panic),
    ]
}

fn plan() -> impl Strategy<Value = Plan> {
    (
        proptest::option::weighted(0.9, 0u8..6),
        proptest::collection::vec(attempt(), 0..4),
        proptest::bool::weighted(0.2),
        proptest::bool::weighted(0.2),
    )
        .prop_map(|(key, script, duplicate, lose_first_ack)| Plan {
            key,
            script,
            duplicate,
            lose_first_ack,
        })
}

/// Whether the script succeeds within `max_attempts` handler calls.
fn succeeds(plan: &Plan, max_attempts: u32) -> bool {
    for call in 0..max_attempts as usize {
        match plan.script.get(call).copied().unwrap_or(Attempt::Ok) {
            Attempt::Ok => return true,
            Attempt::Permanent => return false,
            Attempt::Transient | Attempt::Panic => {}
        }
    }
    false
}

#[derive(Default)]
struct World {
    calls: HashMap<MessageId, usize>,
    effects: HashMap<MessageId, u32>,
    order: HashMap<u8, Vec<usize>>,
    acks_lost: HashMap<MessageId, bool>,
    /// Messages whose dead-letter settlement lost its ack after the dead letter was published:
    /// the settlement failed, so the message came back and was handled again (at-least-once).
    dead_letter_acks_lost: std::collections::HashSet<MessageId>,
    violations: Vec<String>,
}

fn run_case(plans: Vec<Plan>, ordering: Ordering, max_attempts: u32) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let broker = MemoryBroker::new();
        let topic = "orders";
        let dlq = MemoryBroker::dead_letter_topic(topic);
        let subscriber = broker.subscriber(topic, "g").expect("subscriber");
        let messages: Vec<Message> = plans
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let m = Message::new(i.to_string());
                match p.key {
                    Some(k) => m.with_key(format!("k{k}")),
                    None => m,
                }
            })
            .collect();
        let index: Arc<HashMap<MessageId, usize>> = Arc::new(
            messages
                .iter()
                .enumerate()
                .map(|(i, m)| (m.id(), i))
                .collect(),
        );
        let plans = Arc::new(plans);
        let world: Arc<Mutex<World>> = Arc::default();

        // Duplicates for every kind of message: handled, retried, dead-lettered. A copy of a
        // dead-lettered message is skipped (the store keeps it dead until a replay).
        {
            let (index, plans) = (Arc::clone(&index), Arc::clone(&plans));
            broker.faults().on_deliver(move |ctx| {
                let i = *index.get(&ctx.message.id())?;
                (plans[i].duplicate && !ctx.redelivered).then_some(DeliveryFault::Duplicate)
            });
        }
        {
            let (index, plans, world, broker2) = (
                Arc::clone(&index),
                Arc::clone(&plans),
                Arc::clone(&world),
                broker.clone(),
            );
            let dlq = dlq.clone();
            broker.faults().on_ack(move |ctx| {
                let id = ctx.message.id();
                let i = *index.get(&id)?;
                let has_effect = world.lock().unwrap().effects.contains_key(&id);
                if !has_effect {
                    let dead = broker2.messages(&dlq).iter().any(|m| m.id() == id);
                    if !dead {
                        world.lock().unwrap().violations.push(format!(
                            "message {i} acked before its effect or dead letter"
                        ));
                        return None;
                    }
                }
                // Lost acks (redeliveries) for handled and dead-lettered messages alike.
                let mut w = world.lock().unwrap();
                if plans[i].lose_first_ack && !w.acks_lost.contains_key(&id) {
                    w.acks_lost.insert(id, true);
                    if !has_effect {
                        w.dead_letter_acks_lost.insert(id);
                    }
                    return Some(AckFault::Lost);
                }
                None
            });
        }

        let handler = {
            let (index, plans, world) =
                (Arc::clone(&index), Arc::clone(&plans), Arc::clone(&world));
            handler_fn(move |m: IncomingMessage| {
                let (index, plans, world) =
                    (Arc::clone(&index), Arc::clone(&plans), Arc::clone(&world));
                async move {
                    let id = m.message().id();
                    let i = index[&id];
                    let call = {
                        let mut w = world.lock().unwrap();
                        let c = w.calls.entry(id).or_default();
                        *c += 1;
                        *c - 1
                    };
                    tokio::task::yield_now().await;
                    match plans[i].script.get(call).copied().unwrap_or(Attempt::Ok) {
                        Attempt::Ok => {
                            let mut w = world.lock().unwrap();
                            *w.effects.entry(id).or_default() += 1;
                            if let Some(k) = plans[i].key {
                                w.order.entry(k).or_default().push(i);
                            }
                            Ok(())
                        }
                        Attempt::Transient => Err(HandlerError::transient("scripted")),
                        Attempt::Permanent => Err(HandlerError::permanent("scripted")),
                        Attempt::Panic => panic!("scripted panic"),
                    }
                }
            })
        };

        let publisher = broker.publisher();
        for m in &messages {
            publisher.publish(topic, m.clone()).await.expect("publish");
        }
        let policy = RetryPolicy::builder()
            .max_attempts(max_attempts)
            .min_delay(Duration::from_millis(1))
            .max_delay(Duration::from_millis(8))
            .build()
            .expect("policy");
        let running = Processor::builder("g")
            .ordering(ordering)
            .concurrency(4)
            .retry(policy)
            .idempotency(Arc::new(InMemoryIdempotencyStore::default()))
            .build()
            .expect("processor")
            .start(subscriber, handler);

        let resolved = |broker: &MemoryBroker| {
            let dead: Vec<MessageId> = broker.messages(&dlq).iter().map(Message::id).collect();
            let w = world.lock().unwrap();
            broker.pending(topic, "g") == 0
                && messages
                    .iter()
                    .all(|m| w.effects.contains_key(&m.id()) || dead.contains(&m.id()))
        };
        let mut waited = 0;
        while !resolved(&broker) && waited < 60_000 {
            tokio::time::sleep(Duration::from_millis(1)).await;
            waited += 1;
        }
        let counters = running.shutdown().await.expect("shutdown");
        prop_assert!(
            resolved(&broker),
            "not every message resolved: {counters:?}"
        );

        let dead = broker.messages(&dlq);
        let w = world.lock().unwrap();
        prop_assert!(w.violations.is_empty(), "{:?}", w.violations);
        for (i, m) in messages.iter().enumerate() {
            let effects = w.effects.get(&m.id()).copied().unwrap_or(0);
            let letters: Vec<_> = dead.iter().filter(|d| d.id() == m.id()).collect();
            prop_assert!(effects <= 1, "message {i} had {effects} effects");
            if w.dead_letter_acks_lost.contains(&m.id()) {
                // A failed dead-letter settlement is ambiguous (the copy may be out): the
                // message is handled again, so a second dead letter, or an effect after the
                // dead letter, may follow; never a second effect.
                prop_assert!(
                    letters.len() <= 2,
                    "message {i}: {} dead letters",
                    letters.len()
                );
            } else {
                prop_assert!(
                    letters.len() <= 1,
                    "message {i} was dead-lettered {} times",
                    letters.len()
                );
                prop_assert!(
                    effects == 0 || letters.is_empty(),
                    "message {i} had an effect and a dead letter"
                );
            }
            if effects == 0 {
                prop_assert!(
                    !letters.is_empty(),
                    "message {i} neither handled nor dead-lettered"
                );
            }
            for letter in &letters {
                let record = DeadLetterRecord::read_from(letter.headers());
                prop_assert!(record.is_ok(), "message {i}: bad record {record:?}");
                let record = record.unwrap();
                prop_assert_eq!(record.message_id, m.id());
                prop_assert_eq!(record.group.as_str(), "g");
                prop_assert!(record.attempts >= 1 && record.attempts <= max_attempts);
            }
            let plan = &plans[i];
            if !plan.duplicate && !plan.lose_first_ack {
                let expect_effect = succeeds(plan, max_attempts);
                prop_assert_eq!(effects == 1, expect_effect, "message {} plan {:?}", i, plan);
                prop_assert_eq!(letters.len(), usize::from(!expect_effect), "message {}", i);
            }
        }
        if ordering == Ordering::PerKey {
            for (key, seqs) in &w.order {
                prop_assert!(
                    seqs.windows(2).all(|p| p[0] < p[1]),
                    "key {key} handled out of order: {seqs:?}"
                );
            }
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn processor_per_key_holds_its_guarantees(
        plans in proptest::collection::vec(plan(), 1..24),
        max_attempts in 1u32..4,
    ) {
        run_case(plans, Ordering::PerKey, max_attempts)?;
    }

    #[test]
    fn processor_unordered_holds_its_guarantees(
        plans in proptest::collection::vec(plan(), 1..24),
        max_attempts in 1u32..4,
    ) {
        run_case(plans, Ordering::Unordered, max_attempts)?;
    }
}
