//! Every idempotency store against the same store suite on its real server (in-memory,
//! PostgreSQL, SQLite, MySQL/MariaDB, Redis, Redis layered over PostgreSQL); the suite shown to catch broken
//! stores; the key-hold checks on the SQL inboxes and in memory; and the Redis stores' bad
//! input and restarts.

mod store_targets;
mod support;

use std::sync::Arc;
use std::time::Duration;

use store_targets::broken::{Breakage, BrokenTarget};
use store_targets::targets;
use support::outbox_db::{Db, DAY};
use support::postgres::TestDb;
use waybill_core::testkit::conformance::CaseOutcome;
use waybill_core::testkit::store_conformance::run;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_memory_store_passes_the_store_suite() {
    run(&targets::Memory).await.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_inbox_passes_the_store_suite() {
    let db = TestDb::migrated().await;
    run(&targets::Postgres(db.pool.clone()))
        .await
        .assert_passed();
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_inbox_passes_the_store_suite() {
    let db = Db::sqlite().await;
    let Db::Sqlite { pool, .. } = &db else {
        unreachable!()
    };
    run(&targets::Sqlite(pool.clone())).await.assert_passed();
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mysql_inbox_passes_the_store_suite() {
    let db = support::outbox_db::mysql::MySqlTestDb::migrated().await;
    run(&targets::MySql(db.pool.clone())).await.assert_passed();
    db.drop_db().await;
}

/// The held keys of `DeadLetterMode::HoldKey` on each SQL inbox's own database, and in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sql_inboxes_and_the_in_memory_store_hold_keys() {
    use waybill_core::testkit::key_hold_conformance::check_key_hold_store;
    check_key_hold_store(&waybill_core::InMemoryKeyHolds::new()).await;
    for db in [Db::postgres().await, Db::sqlite().await, Db::mysql().await] {
        println!("key holds on {}", db.kind());
        check_key_hold_store(&*db.key_holds()).await;
        db.drop_db().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_store_passes_the_store_suite() {
    run(&targets::Redis).await.assert_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layered_store_passes_the_store_suite() {
    let db = TestDb::migrated().await;
    run(&targets::Layered(db.pool.clone()))
        .await
        .assert_passed();
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_suite_catches_broken_stores() {
    let expectations = [
        (
            Breakage::Unfenced,
            "a_stale_holder_cannot_renew_complete_or_release",
        ),
        (
            Breakage::RacyClaim,
            "of_concurrent_claimers_exactly_one_wins",
        ),
        (
            Breakage::NoExpiry,
            "finished_entries_expire_after_the_retention",
        ),
        (
            Breakage::ReleaseForgetsCompletion,
            "a_completion_is_kept_over_a_late_release",
        ),
    ];
    for (breakage, case) in expectations {
        let report = run(&BrokenTarget(breakage)).await;
        println!("{report}");
        let result = report
            .cases
            .iter()
            .find(|c| c.name == case)
            .unwrap_or_else(|| panic!("the suite has no case {case}"));
        assert!(
            matches!(&result.outcome, CaseOutcome::Failed(why) if !why.contains("timed out")),
            "{case} did not catch a store broken as {breakage:?}: {:?}",
            result.outcome
        );
    }
}

mod redis_bad_input {
    use super::*;
    use waybill_core::{Claim, IdempotencyStore, MessageId};
    use waybill_redis::{
        LayeredIdempotencyStore, RedisIdempotencyStore, RedisStoreConfig, RedisStoreError,
    };

    fn config(url: &str, prefix: &str) -> RedisStoreConfig {
        RedisStoreConfig::builder(url)
            .key_prefix(prefix)
            .retention(DAY)
            .connection_timeout(Duration::from_millis(500))
            .response_timeout(Duration::from_millis(500))
            .build()
            .unwrap()
    }

    /// A loopback port nothing listens on (below the ephemeral range: a client retrying a
    /// port in it can be given that port as its own and connect to itself).
    fn closed_port() -> u16 {
        super::support::private_postgres::free_port()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_redis_down_at_start_is_a_clear_error_and_the_layered_store_runs_on_sql() {
        let url = format!("redis://127.0.0.1:{}", closed_port());
        let refused = RedisIdempotencyStore::connect(config(&url, "down"))
            .await
            .unwrap_err();
        assert!(
            matches!(refused, RedisStoreError::Unreachable { .. }),
            "{refused:?}"
        );
        assert!(refused.to_string().contains("not reachable"), "{refused}");

        let db = TestDb::migrated().await;
        let fast = RedisIdempotencyStore::connect_lazy(config(&url, "down")).unwrap();
        let authority = Arc::new(waybill_outbox::PgIdempotencyStore::new(
            db.pool.clone(),
            DAY,
        ));
        let layered = LayeredIdempotencyStore::new(fast, authority);
        let id = MessageId::new();
        let lease = Duration::from_secs(30);
        let Claim::Acquired(token) = layered.claim("g", id, lease).await.unwrap() else {
            panic!("the layered store claims through SQL while Redis is down")
        };
        layered
            .complete("g", id, token, waybill_core::Completion::Handled)
            .await
            .unwrap();
        assert_eq!(
            layered.claim("g", id, lease).await.unwrap(),
            Claim::AlreadyDone,
            "the SQL inbox answers the duplicate"
        );
        let stats = layered.stats();
        assert!(stats.fast_failures >= 3, "{stats:?}");
        assert_eq!(stats.fast_answers, 0, "{stats:?}");
        assert!(
            layered.reopen("g", id).await.is_err(),
            "a reopen cannot clear a Redis it cannot reach, so it fails rather than let a \
             stale dead mark skip a replay"
        );
        db.drop_db().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_redis_refusing_the_credentials_is_a_clear_error_without_the_secret() {
        // The shared server has no password: AUTH with one is refused.
        let base = support::redis::redis_url();
        let url = base.replacen("redis://", "redis://:s3cret-hunter2@", 1);
        let refused = RedisIdempotencyStore::connect(config(&url, "auth"))
            .await
            .unwrap_err();
        assert!(
            matches!(refused, RedisStoreError::AuthenticationFailed { .. }),
            "{refused:?}"
        );
        for shown in [refused.to_string(), format!("{refused:?}")] {
            assert!(!shown.contains("hunter2"), "the password leaked: {shown}");
        }
        let lazy = RedisIdempotencyStore::connect_lazy(config(&url, "auth")).unwrap();
        let failed = lazy
            .claim("g", MessageId::new(), Duration::from_secs(1))
            .await
            .unwrap_err();
        for shown in [
            failed.to_string(),
            format!("{failed:?}"),
            format!("{lazy:?}"),
        ] {
            assert!(!shown.contains("hunter2"), "the password leaked: {shown}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn applications_with_their_own_prefixes_do_not_see_each_others_markers() {
        let url = support::redis::redis_url();
        let orders = RedisIdempotencyStore::connect(config(&url, &unique("orders")))
            .await
            .expect("Redis is up: scripts/brokers start redis");
        let billing_prefix = unique("billing");
        let billing = RedisIdempotencyStore::connect(config(&url, &billing_prefix))
            .await
            .unwrap();
        let id = MessageId::new();
        let lease = Duration::from_secs(30);
        let Claim::Acquired(token) = orders.claim("workers", id, lease).await.unwrap() else {
            panic!("first claim")
        };
        orders
            .complete("workers", id, token, waybill_core::Completion::Handled)
            .await
            .unwrap();
        assert!(
            matches!(
                billing.claim("workers", id, lease).await.unwrap(),
                Claim::Acquired(_)
            ),
            "another application's prefix keeps its own markers, even for the same group"
        );

        // A key written by something else under the prefix is reported, not misread.
        let mut raw = redis_connection(&url).await;
        let foreign_id = MessageId::new();
        let key = format!("{billing_prefix}:workers:{foreign_id}");
        redis::cmd("SET")
            .arg(&key)
            .arg("42")
            .query_async::<()>(&mut raw)
            .await
            .unwrap();
        let refused = billing
            .claim("workers", foreign_id, lease)
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("key prefix"), "{refused}");
    }

    fn unique(prefix: &str) -> String {
        format!("{prefix}-{}", MessageId::new())
    }

    async fn redis_connection(url: &str) -> redis::aio::MultiplexedConnection {
        redis::Client::open(url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

mod redis_restart {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

    use super::*;
    use waybill_core::{
        handler_fn, HandlerError, IncomingMessage, MemoryBroker, Message, Processor, Publisher,
    };
    use waybill_redis::{LayeredIdempotencyStore, RedisIdempotencyStore, RedisStoreConfig};

    const MESSAGES: usize = 10_000;
    const KEYS: usize = 100;
    /// Each message's duplicate copy is published this many messages after it.
    const DUPLICATE_LAG: usize = 50;

    /// 10,000 messages, each delivered twice, through a Processor on the layered store over the
    /// PostgreSQL inbox (the marker in the effect's transaction); the Redis server is killed
    /// (it keeps nothing on disk) a third of the way through and started again. No effect may
    /// be applied twice, every message once, keys in order; and the run must show the fault
    /// happened (new process, failures seen) and that Redis answered duplicates before the
    /// kill and again after the restart.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_redis_restart_mid_run_costs_speed_never_correctness() {
        let mut redis = OwnRedis::start().await;
        let db = Arc::new(Db::postgres().await);
        let Db::Postgres(pg) = &*db else {
            unreachable!()
        };
        let fast_config = RedisStoreConfig::builder(redis.url())
            .retention(DAY)
            .response_timeout(Duration::from_millis(300))
            .connection_timeout(Duration::from_millis(300))
            .build()
            .unwrap();
        let fast = RedisIdempotencyStore::connect(fast_config).await.unwrap();
        let authority = Arc::new(waybill_outbox::PgIdempotencyStore::new(
            pg.pool.clone(),
            DAY,
        ));
        let store = Arc::new(LayeredIdempotencyStore::new(fast, authority));

        let broker = MemoryBroker::new();
        let subscriber = broker.subscriber("orders", "billing").unwrap();
        let second_effects = Arc::new(AtomicU64::new(0));
        let handler = {
            let (db, second_effects) = (Arc::clone(&db), Arc::clone(&second_effects));
            handler_fn(move |m: IncomingMessage| {
                let (db, second_effects) = (Arc::clone(&db), Arc::clone(&second_effects));
                async move {
                    db.apply(&m, true).await.map_err(|e| {
                        if e.contains("second effect") {
                            // Counted and dead-lettered, so that the run still settles.
                            second_effects.fetch_add(1, Relaxed);
                            return HandlerError::permanent(e);
                        }
                        HandlerError::transient(e)
                    })
                }
            })
        };
        let running = Processor::builder("billing")
            .idempotency(store.clone())
            .concurrency(16)
            .build()
            .unwrap()
            .start(subscriber, handler);

        let publisher = broker.publisher();
        let messages: Vec<Message> = (0..MESSAGES)
            .map(|i| {
                Message::new(format!("order {i}"))
                    .with_key(format!("k{}", i % KEYS))
                    .with_header("seq", (i / KEYS).to_string())
            })
            .collect();
        for i in 0..MESSAGES + DUPLICATE_LAG {
            if let Some(message) = messages.get(i) {
                publisher.publish("orders", message.clone()).await.unwrap();
            }
            if let Some(copy) = i.checked_sub(DUPLICATE_LAG).and_then(|j| messages.get(j)) {
                publisher.publish("orders", copy.clone()).await.unwrap();
            }
        }

        let settled = |r: &waybill_core::RunningProcessor| {
            let c = r.counters();
            c.handled + c.duplicates_skipped + c.dead_lettered
        };
        wait_for(Duration::from_secs(120), || {
            settled(&running) >= (MESSAGES / 3) as u64
        })
        .await;
        let before_kill = store.stats();
        let (old_pid, new_pid) = redis.kill_and_restart(Duration::from_secs(1)).await;
        let after_restart = store.stats();
        wait_for(Duration::from_secs(300), || {
            settled(&running) >= 2 * MESSAGES as u64
        })
        .await;
        running.shutdown().await.unwrap();
        let end = store.stats();
        println!(
            "Redis killed (pid {old_pid} -> {new_pid}); layered store before the kill \
             {before_kill:?}, after the restart {after_restart:?}, at the end {end:?}"
        );

        assert_ne!(old_pid, new_pid, "the Redis server was restarted");
        assert!(
            end.fast_failures > 0,
            "the store never saw Redis fail: {end:?}"
        );
        assert!(
            before_kill.fast_answers > 0,
            "Redis answered no duplicate before the kill"
        );
        assert!(
            end.fast_answers > after_restart.fast_answers,
            "Redis answered no duplicate after its restart: {after_restart:?} -> {end:?}"
        );
        assert_eq!(
            second_effects.load(Relaxed),
            0,
            "a second effect was attempted"
        );
        assert_eq!(
            db.count("SELECT count(*) FROM applied").await,
            MESSAGES as i64,
            "every message applied once"
        );
        let mut last_seq = std::collections::HashMap::new();
        for (key, seq) in db.applied().await {
            let previous = last_seq.insert(key.clone(), seq);
            assert!(
                previous.is_none_or(|p| p < seq),
                "key {key:?} applied seq {seq} after {previous:?}"
            );
        }
        drop(store);
        Arc::try_unwrap(db)
            .ok()
            .expect("no other holder")
            .drop_db()
            .await;
    }

    async fn wait_for(limit: Duration, done: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + limit;
        while !done() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "not done within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    use support::redis::OwnRedis;
}
