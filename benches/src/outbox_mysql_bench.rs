//! The outbox on MySQL/MariaDB: relay throughput to the in-memory publisher and the cost of
//! `enqueue` inside a business transaction (`WAYBILL_MYSQL_URL`, default the local MariaDB).

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::mysql::MySqlPoolOptions;
use sqlx::MySqlPool;
use waybill_core::Message;
use waybill_outbox::{Outbox, Relay, RelayConfig};

use crate::outbox_bench::{drain, messages, print_overhead};

/// Relay throughput and enqueue overhead with `n` rows on a fresh database.
pub async fn run(n: usize) {
    let admin_url = std::env::var("WAYBILL_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/mysql".to_owned());
    let admin = MySqlPoolOptions::new()
        .max_connections(1)
        .connect(&admin_url)
        .await
        .expect("MySQL/MariaDB reachable (scripts/brokers start mariadb)");
    let name = format!(
        "wb_bench_{}",
        waybill_core::MessageId::new().to_string().replace('-', "")
    );
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .expect("create database");
    let url = format!(
        "{}/{name}",
        admin_url.rsplit_once('/').expect("db in URL").0
    );
    let pool = waybill_outbox::mysql::connect(&url, 8)
        .await
        .expect("connect");
    waybill_outbox::mysql::migrate(&pool)
        .await
        .expect("migrate");

    relay_throughput(&pool, n).await;
    let rounds = 2_000;
    print_overhead(
        "enqueue inside a MariaDB transaction",
        enqueue_overhead(&pool, rounds).await,
        rounds,
    );
    pool.close().await;
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
        .execute(&admin)
        .await;
}

async fn relay_throughput(pool: &MySqlPool, n: usize) {
    let outbox = Outbox::new();
    for chunk in messages(n).chunks(1000) {
        let mut tx = pool.begin().await.expect("begin");
        outbox
            .enqueue_batch(&mut tx, "bench", chunk)
            .await
            .expect("enqueue");
        tx.commit().await.expect("commit");
    }
    let broker = waybill_core::MemoryBroker::new();
    let relay = Relay::mysql(
        pool.clone(),
        Arc::new(broker.publisher()),
        RelayConfig::builder()
            .batch_size(1000)
            .build()
            .expect("config"),
    );
    let took = drain(&relay, n).await;
    println!(
        "{:<52} {:>10.0} msgs/s (per-key order on, 1,000 keys)",
        "relay MariaDB -> in-memory publisher",
        n as f64 / took.as_secs_f64()
    );
}

async fn enqueue_overhead(pool: &MySqlPool, rounds: usize) -> [Duration; 2] {
    sqlx::query("CREATE TABLE orders (id BIGINT AUTO_INCREMENT PRIMARY KEY, body TEXT NOT NULL)")
        .execute(pool)
        .await
        .expect("create table");
    let outbox = Outbox::new();
    let mut timings = [Duration::ZERO; 2];
    // Interleave the two variants so disk noise hits both alike.
    for i in 0..rounds {
        for (variant, timing) in timings.iter_mut().enumerate() {
            let started = Instant::now();
            let mut tx = pool.begin().await.expect("begin");
            sqlx::query("INSERT INTO orders (body) VALUES (?)")
                .bind(format!("order {i}"))
                .execute(&mut *tx)
                .await
                .expect("insert");
            if variant == 1 {
                let m = Message::new(format!("order {i}")).with_key(format!("o{i}"));
                outbox
                    .enqueue(&mut tx, "orders", &m)
                    .await
                    .expect("enqueue");
            }
            tx.commit().await.expect("commit");
            *timing += started.elapsed();
        }
    }
    timings
}
