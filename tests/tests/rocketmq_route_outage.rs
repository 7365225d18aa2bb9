//! A RocketMQ broker restart as a publisher and a new subscriber see it: while the broker is
//! away the name server has no route for its topics ("Can not find Message Queue for this
//! topic", or "topic does not exist"), which must read as "not there right now", never as a
//! permanent failure that would send outbox rows to the dead state.
//!
//! The tests of this file restart servers the others use, so they take turns ([`FAULTS`]).

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::fault::InFlightFault;
use support::outbox_db::{numbered, Db};
use support::rocketmq::{
    config, create_topic_for_test, kill_and_restart_broker, kill_and_restart_name_server,
    require_broker,
};
use waybill_core::{FailureClass, Message, PublishOutcome, Publisher, Subscriber};
use waybill_outbox::{Relay, RelayConfig};
use waybill_rocketmq::{RocketPublisher, RocketSubscriber};

/// One fault at a time: each test of this file restarts a server the others use.
static FAULTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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
    let _turn = FAULTS.lock().await;
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

/// A relay running until `stop` is sent, over its own new publisher.
struct RunningRelay {
    relay: Arc<Relay>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningRelay {
    /// Starts a relay with the production defaults (10 attempts, backoff 500 ms doubling to
    /// 60 s): the point is that the defaults ride out the outages.
    async fn start(db: &Db) -> Self {
        let publisher: Arc<dyn Publisher> =
            Arc::new(RocketPublisher::connect(config()).await.unwrap());
        let relay = Arc::new(db.relay(publisher, RelayConfig::default()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = Arc::clone(&relay);
        let task = tokio::spawn(async move {
            running
                .run(async move {
                    let _ = stopped.await;
                })
                .await
                .expect("the relay runs until stopped");
        });
        Self { relay, stop, task }
    }

    /// Failed publish attempts so far (the relay's view of an outage).
    fn failed(&self) -> u64 {
        self.relay.stats().failed
    }

    async fn stop(self) -> waybill_outbox::RelayStats {
        let _ = self.stop.send(());
        self.task.await.unwrap();
        self.relay.stats()
    }
}

/// Waits until the outbox holds no pending row (or `limit` passes); returns the backlog.
async fn wait_for_empty_outbox(db: &Db, limit: Duration) -> waybill_outbox::Backlog {
    let deadline = Instant::now() + limit;
    loop {
        let backlog = db.inspector().backlog().await.unwrap();
        if backlog.pending == 0 || Instant::now() > deadline {
            return backlog;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The outbox's rows through a broker restart (relay running, rows enqueued while the broker
/// is away) and a name-server restart (the new name server knows no route until the broker
/// registers again; a relay started in that window has never seen the topic routed). With
/// the relay's default attempts and backoff no row may go dead, and every row arrives with
/// its key's order kept. Before missing routes were told from missing topics, the relay
/// marked rows dead after one or two attempts in both windows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_through_broker_and_name_server_restarts_leaves_no_dead_row() {
    const WAVE: usize = 300;
    const KEYS: usize = 12;
    let _turn = FAULTS.lock().await;
    require_broker().await;
    let topic = create_topic_for_test("wb-relay-outage").await;
    let db = Db::postgres().await;
    let messages = numbered(WAVE * 3, KEYS);

    // Wave 1 with the broker up.
    let relay = RunningRelay::start(&db).await;
    db.enqueue(&topic, &messages[..WAVE], true).await;
    let backlog = wait_for_empty_outbox(&db, Duration::from_secs(60)).await;
    assert_eq!(backlog.pending, 0, "wave 1 relayed with the broker up");

    // Wave 2 enqueued while the broker restarts.
    let fault = InFlightFault::start(kill_and_restart_broker(), relay.failed());
    tokio::time::sleep(Duration::from_millis(300)).await;
    for chunk in messages[WAVE..WAVE * 2].chunks(30) {
        db.enqueue(&topic, chunk, true).await;
    }
    let broker_restart = fault.finish(|| relay.failed()).await;
    let backlog = wait_for_empty_outbox(&db, Duration::from_secs(120)).await;
    let first = relay.stop().await;
    eprintln!("broker restart: {broker_restart:?}; relay {first:?}; backlog {backlog:?}");
    assert_eq!(first.dead, 0, "no row went dead through a broker restart");
    assert_eq!(
        backlog.pending, 0,
        "wave 2 relayed after the broker restart"
    );

    // Wave 3 enqueued while the name server restarts; a new relay starts in the window.
    let name_server_restart = kill_and_restart_name_server().await;
    name_server_restart.assert_replaced_process();
    db.enqueue(&topic, &messages[WAVE * 2..], true).await;
    let relay = RunningRelay::start(&db).await;
    let backlog = wait_for_empty_outbox(&db, Duration::from_secs(150)).await;
    let second = relay.stop().await;
    eprintln!(
        "name-server restart: {name_server_restart:?}; relay {second:?}; backlog {backlog:?}"
    );
    assert!(
        second.failed > 0,
        "the relay started after the name-server restart saw no missing route: the fault did \
         nothing the client noticed"
    );
    assert_eq!(
        second.dead, 0,
        "no row went dead through a name-server restart"
    );
    assert_eq!(
        backlog.pending, 0,
        "wave 3 relayed after the name-server restart"
    );
    assert_eq!(backlog.dead, 0, "no dead row in the outbox");

    // Every row arrives, each key in order (by first arrival: the relay may publish a row
    // twice after an ambiguous failure, never a later row of its key before it).
    let mut subscriber = RocketSubscriber::connect(config(), &topic, "wb-g-relay-outage")
        .await
        .unwrap();
    let mut first_seen = std::collections::HashSet::new();
    let mut last_of_key: std::collections::HashMap<String, usize> = Default::default();
    let mut reordered = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while first_seen.len() < messages.len() && Instant::now() < deadline {
        let Ok(Ok(Some(delivery))) =
            tokio::time::timeout(Duration::from_secs(2), subscriber.receive()).await
        else {
            continue;
        };
        let message = delivery.message().message();
        if first_seen.insert(message.id()) {
            let key = message.key().unwrap_or_default().to_owned();
            let seq: usize = message.headers().get("seq").unwrap().parse().unwrap();
            if let Some(previous) = last_of_key.insert(key.clone(), seq) {
                if previous > seq {
                    reordered.push(format!("{key}: {seq} after {previous}"));
                }
            }
        }
        delivery.ack().await.unwrap();
    }
    subscriber.close().await.unwrap();
    db.drop_db().await;
    assert_eq!(
        first_seen.len(),
        messages.len(),
        "every relayed row arrives"
    );
    assert!(reordered.is_empty(), "keys reordered: {reordered:?}");
}
