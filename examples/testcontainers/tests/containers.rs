//! waybill against containers: Kafka, RabbitMQ and PostgreSQL started by testcontainers.
//! Needs a Docker engine; run with
//! `cargo test -p waybill-testcontainers-example --test containers`.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use testcontainers_modules::kafka::apache;
use testcontainers_modules::postgres::Postgres;
use testcontainers_modules::rabbitmq::RabbitMq;
use testcontainers_modules::testcontainers::runners::AsyncRunner;
use waybill::kafka::{create_topic, KafkaConfig, KafkaPublisher, KafkaSubscriber, KafkaTarget};
use waybill::outbox::{postgres, Outbox, PgIdempotencyStore, Relay, RelayConfig};
use waybill::rabbitmq::{RabbitConfig, RabbitTarget};
use waybill::testkit::conformance::run;
use waybill::{typed_handler, IncomingMessage, Message, Processor};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_in_a_container_passes_the_conformance_suite() {
    let kafka = apache::Kafka::default().start().await.expect("start Kafka");
    let port = kafka.get_host_port_ipv4(apache::KAFKA_PORT).await.unwrap();
    let config = KafkaConfig::builder(format!("127.0.0.1:{port}"))
        .build()
        .unwrap();
    let report = run(&KafkaTarget::new(config)).await;
    println!("{report}");
    report.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_in_a_container_passes_the_conformance_suite() {
    let rabbit = RabbitMq::default().start().await.expect("start RabbitMQ");
    let port = rabbit.get_host_port_ipv4(5672).await.unwrap();
    let config = RabbitConfig::builder(format!("amqp://guest:guest@127.0.0.1:{port}/%2f"))
        .build()
        .unwrap();
    let target = RabbitTarget::new(config);
    let report = run(&target).await;
    target.cleanup().await;
    println!("{report}");
    report.assert_passed();
}

#[derive(Serialize, Deserialize)]
struct OrderPlaced {
    order_id: i64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_goes_from_the_outbox_through_kafka_to_one_effect() {
    let (kafka, pg) = (
        apache::Kafka::default().start().await.expect("start Kafka"),
        Postgres::default().start().await.expect("start PostgreSQL"),
    );
    let kafka_port = kafka.get_host_port_ipv4(apache::KAFKA_PORT).await.unwrap();
    let pg_port = pg.get_host_port_ipv4(5432).await.unwrap();
    let db = sqlx::PgPool::connect(&format!(
        "postgres://postgres:postgres@127.0.0.1:{pg_port}/postgres"
    ))
    .await
    .unwrap();
    postgres::migrate(&db).await.unwrap();
    sqlx::query("CREATE TABLE charges (order_id bigint PRIMARY KEY)")
        .execute(&db)
        .await
        .unwrap();
    let config = KafkaConfig::builder(format!("127.0.0.1:{kafka_port}"))
        .build()
        .unwrap();
    create_topic(&config, "orders", 3, 1).await.unwrap();

    let mut tx = db.begin().await.unwrap();
    let event = Message::json(&OrderPlaced { order_id: 7 })
        .unwrap()
        .with_key("7");
    Outbox::new()
        .enqueue(&mut tx, "orders", &event)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let publisher = Arc::new(KafkaPublisher::connect(config.clone()).await.unwrap());
    let relay = Relay::postgres(
        db.clone(),
        publisher,
        RelayConfig::builder().build().unwrap(),
    )
    .spawn();

    let inbox = Arc::new(PgIdempotencyStore::new(
        db.clone(),
        Duration::from_secs(3600),
    ));
    let handler = {
        let (db, inbox) = (db.clone(), Arc::clone(&inbox));
        typed_handler(move |order: OrderPlaced, message: IncomingMessage| {
            let (db, inbox) = (db.clone(), Arc::clone(&inbox));
            async move {
                let mut tx = db.begin().await?;
                sqlx::query("INSERT INTO charges VALUES ($1)")
                    .bind(order.order_id)
                    .execute(&mut *tx)
                    .await?;
                inbox.mark_done_in(&mut tx, &message).await?;
                tx.commit().await?;
                Ok(())
            }
        })
    };
    let subscriber = KafkaSubscriber::connect(config, "orders", "billing")
        .await
        .unwrap();
    let billing = Processor::builder("billing")
        .idempotency(inbox)
        .build()
        .unwrap()
        .start(subscriber, handler);
    for _ in 0..600 {
        if billing.counters().handled == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let totals = billing.shutdown().await.unwrap();
    relay.shutdown().await.unwrap();
    let charges: i64 = sqlx::query_scalar("SELECT count(*) FROM charges")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!((totals.handled, charges), (1, 1));
}
