//! The durability preflight says when `acks=all` cannot keep a confirmed message through a
//! broker loss. The local broker is a single node, so every topic has one replica.

mod support;

use support::kafka::{config, create_topic_for_test};
use waybill_kafka::durability_preflight;

#[tokio::test]
async fn a_single_replica_topic_gets_a_warning() {
    let topic = create_topic_for_test("wb-preflight").await;
    let report = durability_preflight(&config(), &topic).await.unwrap();
    println!("{report:?}");
    assert_eq!(report.layout.partitions, support::kafka::PARTITIONS);
    assert_eq!(report.layout.replication, 1);
    assert!(
        report.warnings.iter().any(|w| w.contains("1 replica")),
        "{report:?}"
    );
    let err = durability_preflight(&config(), &support::kafka::topic("wb-none"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
}
