//! Health: a processor that cannot receive is not ready (and says since when), one whose
//! handlers fail is degraded, one that ended is stopped; a relay is ready once its leases are
//! taken and not while its broker is not; the publishers of RabbitMQ, Kafka and RocketMQ
//! report a broker they cannot reach, and recover with it. The readiness gauges follow.

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use waybill_chaos::{FaultProxy, ProxyFault};
use waybill_core::telemetry::names;
use waybill_core::{
    handler_fn, BrokerError, Delivery, HandlerError, Health, HealthState, IncomingMessage,
    MemoryBroker, Message, Processor, PublishError, Publisher, Receipt, Subscriber,
};

use super::{gauge, series};
use crate::support;

/// A subscriber whose receive fails while `fail` is set and ends once `end` is set.
struct Switchable<S> {
    inner: S,
    fail: Arc<AtomicBool>,
    end: Arc<AtomicBool>,
}

#[async_trait]
impl<S: Subscriber> Subscriber for Switchable<S> {
    async fn receive(&mut self) -> Result<Option<Delivery>, BrokerError> {
        loop {
            if self.end.load(SeqCst) {
                return Ok(None);
            }
            if self.fail.load(SeqCst) {
                tokio::time::sleep(Duration::from_millis(20)).await;
                return Err(BrokerError::transient(
                    "receive",
                    "connection refused (switched off by the test)",
                ));
            }
            tokio::select! {
                received = self.inner.receive() => return received,
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }

    async fn close(&mut self) -> Result<(), BrokerError> {
        self.inner.close().await
    }

    fn group(&self) -> Option<&str> {
        self.inner.group()
    }

    fn destination(&self) -> Option<&str> {
        self.inner.destination()
    }
}

/// Polls `check` every 20 ms for up to `limit`; panics with `what` and the last value.
async fn eventually<T: std::fmt::Debug>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> (bool, T),
) -> T {
    let started = Instant::now();
    loop {
        let (done, value) = check();
        if done {
            return value;
        }
        assert!(started.elapsed() < limit, "{what}: still {value:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_reports_what_keeps_it_from_working() {
    super::recording();
    let broker = MemoryBroker::new();
    let (topic, group) = ("wb-health-orders", "wb-health-billing");
    let fail = Arc::new(AtomicBool::new(false));
    let end = Arc::new(AtomicBool::new(false));
    let subscriber = Switchable {
        inner: broker.subscriber(topic, group).unwrap(),
        fail: Arc::clone(&fail),
        end: Arc::clone(&end),
    };
    let publisher = broker.publisher();
    let handler = handler_fn(|m: IncomingMessage| async move {
        match m.message().payload().as_ref() {
            b"bad" => Err(HandlerError::permanent("cannot be handled")),
            _ => Ok(()),
        }
    });
    let running = Processor::for_subscriber(&subscriber)
        .at_least_once_effects()
        .build()
        .unwrap()
        .start(subscriber, handler);
    let labels = [
        ("messaging.destination.name", topic),
        ("messaging.consumer.group.name", group),
    ];
    let ready_gauge = || gauge(&series(), names::PROCESSOR_READY, &labels);

    for i in 0..5 {
        let m = Message::new("good").with_key(format!("k{i}"));
        publisher.publish(topic, m).await.unwrap();
    }
    eventually("5 handled", Duration::from_secs(5), || {
        (running.counters().handled == 5, running.counters())
    })
    .await;
    assert_eq!(running.health(), Health::ready());
    assert_eq!(ready_gauge(), Some(1.0));

    fail.store(true, SeqCst);
    let down = eventually(
        "not ready while receiving fails",
        Duration::from_secs(5),
        || {
            let h = running.health();
            (h.state() == HealthState::NotReady, h)
        },
    )
    .await;
    assert!(down.is_live() && !down.is_ready(), "{down}");
    assert!(
        down.reason().unwrap().contains("switched off by the test"),
        "{down}"
    );
    let since = down.since().expect("an outage says since when");
    assert!(since <= SystemTime::now());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        running.health().since(),
        Some(since),
        "the outage keeps its start"
    );
    assert_eq!(ready_gauge(), Some(0.0));

    fail.store(false, SeqCst);
    publisher
        .publish(topic, Message::new("good").with_key("k-after"))
        .await
        .unwrap();
    eventually("ready again", Duration::from_secs(5), || {
        let h = running.health();
        (h.state() == HealthState::Ready, h)
    })
    .await;
    assert_eq!(ready_gauge(), Some(1.0));

    // Every run fails from now on: 12 of 18 recent runs is above the default half.
    for i in 0..12 {
        let m = Message::new("bad").with_key(format!("bad{i}"));
        publisher.publish(topic, m).await.unwrap();
    }
    let degraded = eventually(
        "degraded by failing handlers",
        Duration::from_secs(5),
        || {
            let h = running.health();
            (h.state() == HealthState::Degraded, h)
        },
    )
    .await;
    assert!(degraded.is_ready(), "degraded still works: {degraded}");
    assert!(
        degraded.reason().unwrap().contains("handler runs failed"),
        "{degraded}"
    );

    end.store(true, SeqCst);
    let stopped = eventually(
        "stopped once the subscription ended",
        Duration::from_secs(5),
        || {
            let h = running.health();
            (h.state() == HealthState::Stopped, h)
        },
    )
    .await;
    assert!(!stopped.is_live());
    running.wait().await.unwrap();
    assert_eq!(ready_gauge(), Some(0.0), "a stopped processor is not ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_whose_broker_is_down_from_the_start_shows_not_ready_on_its_gauge() {
    super::recording();
    let broker = MemoryBroker::new();
    let (topic, group) = ("wb-health-down-at-start", "wb-health-down-billing");
    let fail = Arc::new(AtomicBool::new(true));
    let subscriber = Switchable {
        inner: broker.subscriber(topic, group).unwrap(),
        fail: Arc::clone(&fail),
        end: Arc::new(AtomicBool::new(false)),
    };
    let labels = [
        ("messaging.destination.name", topic),
        ("messaging.consumer.group.name", group),
    ];
    let ready_gauge = || gauge(&series(), names::PROCESSOR_READY, &labels);
    let running = super::acking_processor(subscriber);
    let gauge_value = eventually(
        "the gauge reads 0 before any delivery",
        Duration::from_secs(5),
        || {
            let value = ready_gauge();
            (value == Some(0.0), value)
        },
    )
    .await;
    assert_eq!(gauge_value, Some(0.0));
    assert_eq!(running.counters().received, 0, "nothing was ever delivered");
    assert_eq!(running.health().state(), HealthState::NotReady);

    fail.store(false, SeqCst);
    broker
        .publisher()
        .publish(topic, Message::new("first").with_key("k"))
        .await
        .unwrap();
    eventually(
        "ready once a delivery arrives",
        Duration::from_secs(5),
        || (ready_gauge() == Some(1.0), ready_gauge()),
    )
    .await;
    running.shutdown().await.unwrap();
}

/// A publisher in front of the memory broker whose health says the broker is down while
/// `down` is set.
struct Unplugged {
    inner: waybill_core::MemoryPublisher,
    down: AtomicBool,
}

#[async_trait]
impl Publisher for Unplugged {
    async fn publish(&self, topic: &str, message: Message) -> Result<Receipt, PublishError> {
        self.inner.publish(topic, message).await
    }

    async fn close(&self) -> Result<(), BrokerError> {
        self.inner.close().await
    }

    async fn health(&self) -> Health {
        if self.down.load(SeqCst) {
            Health::not_ready("broker unplugged by the test", SystemTime::now())
        } else {
            self.inner.health().await
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_is_ready_with_its_leases_and_not_while_its_broker_is_down() {
    super::recording();
    let db = support::outbox_db::Db::sqlite().await;
    let support::outbox_db::Db::Sqlite { pool, .. } = &db else {
        unreachable!("a SQLite database")
    };
    let broker = MemoryBroker::new();
    let publisher = Arc::new(Unplugged {
        inner: broker.publisher(),
        down: AtomicBool::new(false),
    });
    let name = "wb-health-relay-1";
    let config = waybill_outbox::RelayConfig::builder()
        .name(name)
        .shard_count(4)
        .poll_interval(Duration::from_millis(20))
        .build()
        .unwrap();
    let relay = waybill_outbox::Relay::sqlite(pool.clone(), publisher.clone(), config);
    let before = relay.health().await;
    assert_eq!(before.state(), HealthState::NotReady, "{before}");
    assert!(
        before.reason().unwrap().contains("no shard lease round"),
        "{before}"
    );

    let running = relay.spawn();
    let labels = [("waybill.relay.name", name)];
    let started = Instant::now();
    let ready = loop {
        let h = running.health().await;
        if h.is_ready() || started.elapsed() > Duration::from_secs(10) {
            break h;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(ready, Health::ready());
    let all = series();
    assert_eq!(gauge(&all, names::RELAY_READY, &labels), Some(1.0));
    assert_eq!(gauge(&all, names::RELAY_SHARDS_OWNED, &labels), Some(4.0));

    publisher.down.store(true, SeqCst);
    let down = running.health().await;
    assert_eq!(down.state(), HealthState::NotReady, "{down}");
    assert!(down.reason().unwrap().contains("unplugged"), "{down}");
    assert_eq!(gauge(&series(), names::RELAY_READY, &labels), Some(0.0));
    publisher.down.store(false, SeqCst);
    assert!(running.health().await.is_ready());
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rabbitmq_publisher_reports_a_cut_connection_until_it_is_back() {
    support::rabbitmq::require_broker().await;
    let upstream: std::net::SocketAddr = "127.0.0.1:5672".parse().unwrap();
    let any_port = "127.0.0.1:0".parse().unwrap();
    let proxy = FaultProxy::start(any_port, upstream).await.unwrap();
    let url = format!("amqp://guest:guest@{}/%2f", proxy.addr());
    let config = waybill_rabbitmq::RabbitConfig::builder(url)
        .build()
        .unwrap();
    let publisher = waybill_rabbitmq::RabbitPublisher::connect(config)
        .await
        .unwrap();
    assert_eq!(publisher.health().await, Health::ready());

    proxy.set(ProxyFault::Refuse);
    assert_eq!(proxy.cut(), 1, "the publisher's connection was cut");
    let started = Instant::now();
    let down = loop {
        let h = publisher.health().await;
        if !h.is_ready() || started.elapsed() > Duration::from_secs(10) {
            break h;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(down.state(), HealthState::NotReady, "{down}");
    let since = down.since().expect("since when");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(publisher.health().await.since(), Some(since));

    assert!(
        proxy.counters().refused > 0,
        "the publisher tried to reconnect while cut"
    );
    proxy.heal();
    assert_eq!(publisher.health().await, Health::ready(), "reconnected");
    publisher.close().await.unwrap();
    assert_eq!(publisher.health().await.state(), HealthState::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kafka_publisher_reports_a_broker_outage_until_the_broker_is_back() {
    support::kafka::require_broker().await;
    let _alone = support::fault::exclusive().await;
    let publisher = waybill_kafka::KafkaPublisher::connect(support::kafka::config())
        .await
        .unwrap();
    assert_eq!(publisher.health().await, Health::ready());

    let outage = tokio::spawn(support::kafka::kill_and_restart_after(Duration::from_secs(
        8,
    )));
    let started = Instant::now();
    let down = loop {
        let h = publisher.health().await;
        if !h.is_ready() || started.elapsed() > Duration::from_secs(8) {
            break h;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(down.state(), HealthState::NotReady, "{down}");
    assert!(down.reason().unwrap().contains("metadata"), "{down}");
    outage.await.unwrap().assert_replaced_process();
    let started = Instant::now();
    let back = loop {
        let h = publisher.health().await;
        if h.is_ready() || started.elapsed() > Duration::from_secs(30) {
            break h;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(back, Health::ready());
    publisher.close().await.unwrap();
    assert_eq!(publisher.health().await.state(), HealthState::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rocketmq_publisher_reports_name_servers_it_cannot_reach() {
    support::rocketmq::require_broker().await;
    let publisher = waybill_rocketmq::RocketPublisher::connect(support::rocketmq::config())
        .await
        .unwrap();
    assert_eq!(publisher.health().await, Health::ready());
    publisher.close().await.unwrap();
    assert_eq!(publisher.health().await.state(), HealthState::Stopped);

    let closed_port = crate::support::private_postgres::free_port();
    let nowhere = waybill_rocketmq::RocketConfig::builder(format!("127.0.0.1:{closed_port}"))
        .build()
        .unwrap();
    let publisher = waybill_rocketmq::RocketPublisher::connect(nowhere)
        .await
        .unwrap();
    let down = publisher.health().await;
    assert_eq!(down.state(), HealthState::NotReady, "{down}");
    assert!(
        down.reason().unwrap().contains(&closed_port.to_string()),
        "names the name server: {down}"
    );
    publisher.close().await.unwrap();
}
