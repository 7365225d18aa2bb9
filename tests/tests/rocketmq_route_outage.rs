//! A RocketMQ broker restart as a publisher and a new subscriber see it: while the broker is
//! away the name server has no route for its topics ("Can not find Message Queue for this
//! topic", or "topic does not exist"), which must read as "not there right now", never as a
//! permanent failure that would send outbox rows to the dead state.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::rocketmq::{config, create_topic_for_test, kill_and_restart_broker, require_broker};
use waybill_core::{FailureClass, Message, PublishOutcome, Publisher, Subscriber};
use waybill_rocketmq::{RocketPublisher, RocketSubscriber};

/// The local broker's process id (`rocketmq-broker-rust`), to prove the restart happened.
fn broker_pid() -> Option<String> {
    let out = std::process::Command::new("pgrep")
        .args(["-f", "rocketmq-broker-rust"])
        .output()
        .ok()?;
    let pids = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (!pids.is_empty()).then_some(pids)
}

#[derive(Default)]
struct Seen {
    confirmed: Vec<waybill_core::MessageId>,
    retryable: Vec<String>,
    permanent: Vec<String>,
}

/// Publishes messages of key `key-<k>` until `stop`, each retried until confirmed.
async fn publish_until_stopped(
    publisher: Arc<RocketPublisher>,
    topic: String,
    k: usize,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
) {
    let mut n = 0;
    while !stop.load(Ordering::Acquire) {
        let mut message = Message::new(format!("{k}-{n}")).with_key(format!("key-{k}"));
        loop {
            let result = if n % 2 == 0 {
                publisher.publish(&topic, message).await
            } else {
                publisher
                    .publish_batch(&topic, vec![message])
                    .await
                    .pop()
                    .expect("one result")
            };
            match result {
                Ok(receipt) => {
                    seen.lock().unwrap().confirmed.push(receipt.message_id);
                    break;
                }
                Err(e) => {
                    {
                        let mut seen = seen.lock().unwrap();
                        match e.outcome() {
                            // The topic exists: saying it does not is as wrong as permanent.
                            PublishOutcome::Permanent | PublishOutcome::NoDestination => {
                                seen.permanent.push(e.to_string())
                            }
                            PublishOutcome::NotSent | PublishOutcome::Ambiguous => {
                                seen.retryable.push(e.to_string())
                            }
                        }
                    }
                    message = e.into_message();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        n += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_gives_only_retryable_errors_and_loses_nothing() {
    require_broker().await;
    let topic = create_topic_for_test("wb-route-outage").await;
    let publisher = Arc::new(RocketPublisher::connect(config()).await.unwrap());
    // The route is known before the outage.
    publisher
        .publish(&topic, Message::new("warm-up").with_key("k-0"))
        .await
        .unwrap();

    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    // One key per publishing task, each message retried until confirmed, as the relay does.
    let mut tasks = Vec::new();
    for k in 0..3 {
        tasks.push(tokio::spawn(publish_until_stopped(
            Arc::clone(&publisher),
            topic.clone(),
            k,
            Arc::clone(&seen),
            Arc::clone(&stop),
        )));
    }

    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid_before = broker_pid();
    // Kill the broker and, while it is away, subscribe to the (existing) topic.
    let restart = tokio::spawn(kill_and_restart_broker());
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A publisher that starts now (a relay restarted in the window) has no cached route.
    let fresh = Arc::new(RocketPublisher::connect(config()).await.unwrap());
    tasks.push(tokio::spawn(publish_until_stopped(
        Arc::clone(&fresh),
        topic.clone(),
        3,
        Arc::clone(&seen),
        Arc::clone(&stop),
    )));
    let started = Instant::now();
    let subscribed = RocketSubscriber::connect(config(), &topic, "wb-g-outage").await;
    let subscribe_took = started.elapsed();
    restart.await.unwrap();
    let pid_after = broker_pid();
    // Keep publishing a while after the broker is back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Release);
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(120), task)
            .await
            .expect("publishing recovers")
            .unwrap();
    }

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    eprintln!(
        "confirmed {}, retryable errors {}, permanent errors {}, subscribe took {subscribe_took:?}",
        seen.confirmed.len(),
        seen.retryable.len(),
        seen.permanent.len()
    );
    if let Some(first) = seen.retryable.first() {
        eprintln!("first retryable error: {first}");
    }
    assert_ne!(pid_before, None, "a local broker ran");
    assert_ne!(pid_before, pid_after, "the broker process was replaced");
    assert!(
        !seen.retryable.is_empty(),
        "the publishers saw the outage (no error at all means the kill did nothing)"
    );
    assert!(
        seen.permanent.is_empty(),
        "no permanent error during a broker restart; got {}: first {:?}",
        seen.permanent.len(),
        seen.permanent.first()
    );
    let mut subscriber = match subscribed {
        Ok(subscriber) => subscriber,
        Err(e) => {
            assert_eq!(
                e.class(),
                FailureClass::Transient,
                "subscribing to an existing topic during a restart is never permanent: {e}"
            );
            RocketSubscriber::connect(config(), &topic, "wb-g-outage")
                .await
                .expect("subscribing works once the broker is back")
        }
    };

    // Everything confirmed arrives.
    let mut missing: std::collections::HashSet<_> = seen.confirmed.iter().copied().collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !missing.is_empty() && Instant::now() < deadline {
        if let Ok(Ok(Some(delivery))) =
            tokio::time::timeout(Duration::from_secs(2), subscriber.receive()).await
        {
            missing.remove(&delivery.message().message().id());
            delivery.ack().await.unwrap();
        }
    }
    subscriber.close().await.unwrap();
    publisher.close().await.unwrap();
    fresh.close().await.unwrap();
    assert!(
        missing.is_empty(),
        "{} of {} confirmed messages never arrived",
        missing.len(),
        seen.confirmed.len()
    );
}
