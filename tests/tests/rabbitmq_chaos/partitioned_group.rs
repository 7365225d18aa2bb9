//! A partitioned RabbitMQ group: three members share six partitions, one member is killed
//! mid-run (its connection cut and refused: to the broker it died) and a fourth joins later,
//! while a producer publishes all along. Each key stays with one member at a time, so per-key
//! order must hold throughout, with every confirmed message applied exactly once (PostgreSQL
//! inbox and effects table).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use waybill_chaos::{FaultProxy, ProxyFault};
use waybill_core::testkit::Ledger;
use waybill_core::Publisher;
use waybill_rabbitmq::{
    delete_partitioned_group_topology, RabbitConfig, RabbitPartitionedSubscriber, RabbitPublisher,
};

use crate::support::effects::{self, EffectsDb};
use crate::support::rabbitmq::{config, require_broker, url};
use crate::support::workload::{poll_until, unchanged, wait_for, Workload};

pub(crate) const PARTITIONS: u16 = 6;
const KEYS: usize = 40;

/// The test config with a quick rebalance, pointed at `broker` (`host:port`).
fn member_config(broker: &str) -> RabbitConfig {
    let base = url();
    let rest = base.split_once('@').map(|(_, rest)| rest).unwrap_or("");
    let vhost = rest.split_once('/').map(|(_, v)| v).unwrap_or("%2f");
    RabbitConfig::builder(format!("amqp://guest:guest@{broker}/{vhost}"))
        .retry_tiers(config().retry_tiers().iter().copied())
        .confirm_timeout(Duration::from_secs(15))
        .rebalance_interval(Duration::from_millis(300))
        .build()
        .expect("valid member config")
}

pub(crate) fn broker_addr() -> String {
    let base = url();
    let rest = base
        .split_once('@')
        .map(|(_, rest)| rest)
        .unwrap_or("127.0.0.1:5672/");
    rest.split_once('/')
        .map(|(host, _)| host)
        .unwrap_or(rest)
        .to_owned()
}

pub(crate) async fn member(broker: &str, topic: &str, group: &str) -> RabbitPartitionedSubscriber {
    RabbitPartitionedSubscriber::connect(member_config(broker), topic, group, PARTITIONS)
        .await
        .expect("join the partitioned group")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_crashing_and_joining_keep_every_key_in_order_and_lose_nothing() {
    let _exclusive = crate::support::fault::exclusive().await;
    require_broker().await;
    let topic = crate::support::unique_topic("wb-partitioned");
    let group = "partitioned";
    let broker = broker_addr();
    let upstream: SocketAddr = broker.parse().expect("the test broker is host:port");
    let proxy = FaultProxy::start("127.0.0.1:0".parse().unwrap(), upstream)
        .await
        .unwrap();

    let owned = EffectsDb::create().await;
    let db = &owned;
    let a = member(&broker, &topic, group).await;
    assert_eq!(
        a.owned_partitions(),
        (0..PARTITIONS).collect::<Vec<_>>(),
        "alone, a member takes every partition"
    );
    let a = effects::start_consumer(db.url(), "a", group, a).await;
    let b = effects::start_consumer(
        db.url(),
        "b",
        group,
        member(&proxy.addr().to_string(), &topic, group).await,
    )
    .await;
    let c =
        effects::start_consumer(db.url(), "c", group, member(&broker, &topic, group).await).await;

    let ledger = Arc::new(Ledger::new());
    let publisher = Arc::new(RabbitPublisher::connect(config()).await.unwrap());
    let workload = Workload::start(
        publisher.clone(),
        &topic,
        KEYS,
        150..600,
        Duration::from_millis(20),
        Arc::clone(&ledger),
        unchanged,
    );
    for name in ["a", "b", "c"] {
        wait_for(
            &format!("member {name} applies effects of its partitions"),
            Duration::from_secs(60),
            || async move { db.count_by(name).await >= 100 },
        )
        .await;
    }

    // Kill b: to the broker its connection dies, and it cannot come back.
    proxy.set(ProxyFault::Refuse);
    let cut = proxy.cut();
    assert!(cut >= 1, "b's connection was cut ({cut} cut)");
    let b_at_kill = db.count_by("b").await;
    let mark = db.last_n().await;
    let took_over = wait_for(
        "a and c take b's partitions",
        Duration::from_secs(60),
        || async move {
            let mut read = db.partitions_of("a", mark).await;
            read.extend(db.partitions_of("c", mark).await);
            read.sort_unstable();
            read.dedup();
            read.len() == usize::from(PARTITIONS)
        },
    )
    .await;

    let d =
        effects::start_consumer(db.url(), "d", group, member(&broker, &topic, group).await).await;
    let joined = wait_for(
        "the new member d gets a share",
        Duration::from_secs(60),
        || async move { db.count_by("d").await >= 100 },
    )
    .await;

    let b_once_d_joined = db.count_by("b").await;
    let published = workload.finish().await;
    let total = published.messages as i64;
    let applied = poll_until(Duration::from_secs(120), || async move {
        db.count().await >= total
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let lag = a.lag().await.expect("the group's lag");
    let b_final = db.count_by("b").await;
    let b_after_kill = b_final - b_at_kill;
    let totals = [
        ("a", a.shutdown().await),
        ("b", b.shutdown().await),
        ("c", c.shutdown().await),
        ("d", d.shutdown().await),
    ];
    let report = db.report(&ledger).await;
    println!(
        "{} messages, applied after {applied:?}; b killed ({cut} connection cut), its partitions \
         taken over after {took_over:?}; d got a share {joined:?} after joining; effects a {} \
         b {} (after the kill {b_after_kill}) c {} d {}; processors {totals:?}",
        published.messages,
        db.count_by("a").await,
        db.count_by("b").await,
        db.count_by("c").await,
        db.count_by("d").await,
    );
    assert!(applied.is_some(), "every confirmed message applied");
    effects::assert_applied_once(&report, published.messages);
    assert!(
        report.order_violations.is_empty(),
        "per-key order across a crash and a join: {:?}",
        report.inversion_samples
    );
    assert_eq!(
        lag.partitions.len(),
        usize::from(PARTITIONS),
        "one lag entry per partition: {lag:?}"
    );
    assert!(
        lag.partitions.iter().all(|p| p.lag == 0),
        "every partition drained: {lag:?}"
    );
    let b_totals = totals[1].1.as_ref().expect("b stops");
    assert!(
        b_totals.receive_errors >= 1 && b_totals.settle_errors >= 1,
        "the killed member lost its connection with deliveries unsettled: {b_totals:?}"
    );
    assert_eq!(
        b_final, b_once_d_joined,
        "the killed member applied nothing new once its partitions were taken over"
    );
    let _ = publisher.close().await;
    delete_partitioned_group_topology(&config(), &topic, group, PARTITIONS, true)
        .await
        .unwrap();
    owned.drop_db().await;
}
