//! The outbox on PostgreSQL and SQLite: enqueue cost inside a business transaction, and relay throughput
//! against publishing the same messages directly, through any publisher.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use waybill_core::{Message, Publisher};
use waybill_outbox::{Outbox, Relay, RelayConfig};

/// A fresh database with the waybill tables, and a function that drops it.
pub struct BenchDb {
    /// Pool on the bench database.
    pub pool: PgPool,
    name: String,
    admin_url: String,
}

impl BenchDb {
    /// Creates `wb_bench_<id>` on the server at `WAYBILL_POSTGRES_URL` (default local).
    pub async fn create() -> Self {
        let admin_url = std::env::var("WAYBILL_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&admin_url)
            .await
            .expect("PostgreSQL reachable (scripts/brokers start postgres)");
        let name = format!(
            "wb_bench_{}",
            waybill_core::MessageId::new().to_string().replace('-', "")
        );
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .expect("create database");
        admin.close().await;
        let url = format!(
            "{}/{name}",
            admin_url.rsplit_once('/').expect("db in URL").0
        );
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect(&url)
            .await
            .expect("connect");
        waybill_outbox::postgres::migrate(&pool)
            .await
            .expect("migrate");
        Self {
            pool,
            name,
            admin_url,
        }
    }

    /// Drops the database.
    pub async fn drop_db(self) {
        self.pool.close().await;
        if let Ok(admin) = PgPoolOptions::new()
            .max_connections(1)
            .connect(&self.admin_url)
            .await
        {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&admin)
            .await;
        }
    }
}

/// `n` messages over 1,000 keys.
pub fn messages(n: usize) -> Vec<Message> {
    messages_over(n, 1000)
}

/// `n` messages of 256 bytes, spread round-robin over `keys` keys.
pub fn messages_over(n: usize, keys: usize) -> Vec<Message> {
    (0..n)
        .map(|i| Message::new(vec![b'x'; 256]).with_key(format!("k{}", i % keys)))
        .collect()
}

/// Fills the outbox with `n` rows over 1,000 keys (1,000 per transaction).
pub async fn fill(db: &BenchDb, topic: &str, n: usize) {
    fill_over(db, topic, n, 1000).await;
}

/// Fills the outbox with `n` rows over `keys` keys (1,000 per transaction).
pub async fn fill_over(db: &BenchDb, topic: &str, n: usize, keys: usize) {
    let outbox = Outbox::new();
    for chunk in messages_over(n, keys).chunks(1000) {
        let mut tx = db.pool.begin().await.expect("begin");
        outbox
            .enqueue_batch(&mut tx, topic, chunk)
            .await
            .expect("enqueue");
        tx.commit().await.expect("commit");
    }
}

/// Time for a running relay (`Relay::run`, as the sidecar runs it: each next batch taken
/// while the previous one awaits its confirms) to publish `n` rows through `publisher`.
pub async fn relay(db: &BenchDb, publisher: Arc<dyn Publisher>, n: usize) -> Duration {
    // One name for every run: a new relay resumes the shards of the previous one.
    let config = RelayConfig::builder()
        .batch_size(1000)
        .name("bench-relay")
        .build()
        .expect("config");
    let started = Instant::now();
    let running = Relay::postgres(db.pool.clone(), publisher, config).spawn();
    while running.stats().published < n as u64 {
        assert!(started.elapsed() < Duration::from_secs(600), "rows missing");
        assert!(!running.is_finished(), "the relay stopped");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = started.elapsed();
    running.shutdown().await.expect("relay");
    took
}

/// Time for `relay` to publish `n` rows, round after round. A round may publish nothing while
/// a commit-order horizon catches up (MySQL); ten minutes without the rows fail the bench.
pub async fn drain(relay: &Relay, n: usize) -> Duration {
    let started = Instant::now();
    let mut relayed = 0;
    while relayed < n {
        relayed += relay.relay_once().await.expect("relay");
        assert!(started.elapsed() < Duration::from_secs(600), "rows missing");
    }
    started.elapsed()
}

/// Rounds of relay-then-direct that [`relay_against_direct`] takes the median ratio of.
const RELAY_ROUNDS: usize = 3;

/// Relays `n` outbox rows from a fresh PostgreSQL database to `topic` through `publisher`,
/// then publishes the same messages directly with `publish_batch` through it, and prints the
/// two rates and their ratio under `broker`'s name: over 1,000 keys (a batch of 1,000 rows
/// holds one row per key) and over 10 hot keys (100 rows per key and batch, which the relay
/// pipelines in one `publish_batch` call where the backend keeps a key's order in a batch,
/// and sends one row per key at a time otherwise).
///
/// A broker's own rate drifts by a third from one run to the next on a 2-core machine, so
/// each figure is taken [`RELAY_ROUNDS`] times, relay and direct side by side, and the round
/// with the median ratio is printed, with every round's ratio after it.
pub async fn relay_against_direct(
    broker: &str,
    topic: &str,
    n: usize,
    publisher: Arc<dyn Publisher>,
) {
    for keys in [1000, 10] {
        let mut rounds = Vec::with_capacity(RELAY_ROUNDS);
        for _ in 0..RELAY_ROUNDS {
            let db = BenchDb::create().await;
            fill_over(&db, topic, n, keys).await;
            let relayed = n as f64 / relay(&db, Arc::clone(&publisher), n).await.as_secs_f64();
            db.drop_db().await;
            let started = Instant::now();
            for result in publisher.publish_batch(topic, messages_over(n, keys)).await {
                result.expect("confirmed");
            }
            let direct = n as f64 / started.elapsed().as_secs_f64();
            rounds.push((relayed / direct, relayed, direct));
        }
        let ratios: Vec<String> = rounds.iter().map(|r| format!("{:.2}", r.0)).collect();
        rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (ratio, relayed, direct) = rounds[rounds.len() / 2];
        println!(
            "{:<52} {:>10.0} msgs/s  {ratio:.2}x direct publish_batch of the same {n} ({direct:.0} msgs/s); median of rounds {}",
            format!("outbox relay PostgreSQL -> {broker}, {keys} keys, batch 1000"),
            relayed,
            ratios.join(", ")
        );
    }
}

/// Business insert alone versus business insert plus enqueue, one row per transaction.
pub async fn enqueue_overhead(db: &BenchDb, n: usize) -> (Duration, Duration) {
    sqlx::query("CREATE TABLE orders (id bigserial PRIMARY KEY, body text NOT NULL)")
        .execute(&db.pool)
        .await
        .expect("create table");
    let outbox = Outbox::new();
    let mut timings = [Duration::ZERO; 2];
    // Interleave the two variants so disk noise hits both alike.
    for i in 0..n {
        for (variant, timing) in timings.iter_mut().enumerate() {
            let started = Instant::now();
            let mut tx = db.pool.begin().await.expect("begin");
            sqlx::query("INSERT INTO orders (body) VALUES ($1)")
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
    (timings[0], timings[1])
}

/// The same two figures on a SQLite file in the temp directory.
async fn run_sqlite(n: usize) {
    let path = std::env::temp_dir().join(format!("wb-bench-{}.db", std::process::id()));
    let pool = waybill_outbox::sqlite::connect(&format!("sqlite://{}", path.display()), 4)
        .await
        .expect("open SQLite");
    waybill_outbox::sqlite::migrate(&pool)
        .await
        .expect("migrate");
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
    let relay = Relay::sqlite(
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
        "relay SQLite -> in-memory publisher",
        n as f64 / took.as_secs_f64()
    );
    sqlx::query("CREATE TABLE orders (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        .execute(&pool)
        .await
        .expect("create table");
    let rounds = 2_000;
    let mut timings = [Duration::ZERO; 2];
    for i in 0..rounds {
        for (variant, timing) in timings.iter_mut().enumerate() {
            let started = Instant::now();
            let mut tx = pool.begin().await.expect("begin");
            sqlx::query("INSERT INTO orders (body) VALUES (?1)")
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
    print_overhead(
        "enqueue inside a SQLite transaction (fsync)",
        timings,
        rounds,
    );
    pool.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// Prints the per-transaction cost of a business insert without and with `enqueue`.
pub fn print_overhead(label: &str, [bare, with_outbox]: [Duration; 2], rounds: usize) {
    println!(
        "{label:<52} {:>8.0} us/tx bare, {:.0} us/tx with enqueue: +{:.1} %",
        bare.as_micros() as f64 / rounds as f64,
        with_outbox.as_micros() as f64 / rounds as f64,
        (with_outbox.as_secs_f64() / bare.as_secs_f64() - 1.0) * 100.0
    );
}

/// Relay to the in-memory broker and enqueue overhead, on PostgreSQL, SQLite and MariaDB.
pub async fn run(n: usize) {
    let db = BenchDb::create().await;
    fill(&db, "bench", n).await;
    // Steady state: autovacuum keeps statistics on a long-lived outbox table.
    sqlx::query("ANALYZE waybill_outbox")
        .execute(&db.pool)
        .await
        .expect("analyze");
    let broker = waybill_core::MemoryBroker::new();
    let took = relay(&db, Arc::new(broker.publisher()), n).await;
    println!(
        "{:<52} {:>10.0} msgs/s (per-key order on, 1,000 keys)",
        "relay PostgreSQL -> in-memory publisher",
        n as f64 / took.as_secs_f64()
    );
    let rounds = 2_000;
    let (bare, with_outbox) = enqueue_overhead(&db, rounds).await;
    print_overhead(
        "enqueue inside a PostgreSQL transaction",
        [bare, with_outbox],
        rounds,
    );
    db.drop_db().await;
    run_sqlite(n).await;
    crate::outbox_mysql_bench::run(n).await;
}
