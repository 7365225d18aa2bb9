//! The outbox, relay and SQL inbox against a real MySQL/MariaDB server (a database per test):
//! transactions, commit order under a slow transaction, under a stale `innodb_trx` list and
//! under concurrent writers that commit out of `seq` order, per-key order over three relays, poison rows, rows that do not
//! decode, aborted relays, shard takeover after a lapsed lease, the inbox's fencing, and bad
//! input (tables missing, a relay without the PROCESS privilege, unreachable servers).
//!
//! The server comes from `WAYBILL_MYSQL_URL` (default `mysql://root@127.0.0.1:3306/mysql`, a
//! user that may create databases and users).

mod support;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use support::outbox_cases as cases;
use support::outbox_db::mysql::{admin, url_of, MySqlTestDb};
use support::outbox_db::Db;
use waybill_core::{MemoryBroker, Message, MessageId};
use waybill_outbox::{Outbox, OutboxError, Relay, RelayConfig};

/// The server's list of running transactions is shared by every test: a test that holds a
/// transaction open on purpose, or freezes the list, holds back every other test's relay (by
/// design, as any open transaction on the server does). Those tests run alone; the others
/// run side by side.
static SERVER_WIDE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

#[tokio::test]
async fn a_rolled_back_enqueue_publishes_nothing_and_a_committed_one_publishes_once() {
    let _server = SERVER_WIDE.read().await;
    cases::rolled_back_publishes_nothing_and_committed_publishes_once(Db::mysql().await).await;
}

#[tokio::test]
async fn a_destination_that_never_appears_goes_dead_after_the_wait() {
    let _server = SERVER_WIDE.read().await;
    support::destination_wait::a_destination_that_never_appears_goes_dead_after_the_wait(
        Db::mysql().await,
    )
    .await;
}

#[tokio::test]
async fn a_scheduled_message_waits_for_its_time_and_holds_its_key() {
    let _server = SERVER_WIDE.read().await;
    cases::a_scheduled_message_waits_for_its_time_and_holds_its_key(Db::mysql().await).await;
}

#[tokio::test]
async fn per_key_order_holds_across_batches() {
    let _server = SERVER_WIDE.read().await;
    cases::per_key_order_holds_across_batches(Db::mysql().await).await;
}

#[tokio::test]
async fn a_dead_row_holds_its_key_until_replayed_in_key_holding_mode() {
    cases::a_dead_row_holds_its_key_until_replayed(Db::mysql().await).await;
}

#[tokio::test]
async fn a_poison_row_goes_dead_and_can_be_replayed_and_purged() {
    let _server = SERVER_WIDE.read().await;
    cases::a_poison_row_goes_dead_and_can_be_replayed_and_purged(Db::mysql().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_aborted_between_confirm_and_delete_duplicates_no_effect() {
    let _server = SERVER_WIDE.read().await;
    cases::relay_aborted_between_confirm_and_delete_duplicates_no_effect(Db::mysql().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_relays_share_the_keys_and_keep_their_order() {
    let _server = SERVER_WIDE.read().await;
    cases::three_relays_share_the_keys_and_keep_their_order(Db::mysql().await).await;
}

#[tokio::test]
async fn the_inbox_purger_deletes_expired_rows() {
    let _server = SERVER_WIDE.read().await;
    cases::the_inbox_purger_deletes_expired_rows(Db::mysql().await).await;
}

#[tokio::test]
async fn the_inbox_marker_commits_and_rolls_back_with_the_effect() {
    let _server = SERVER_WIDE.read().await;
    cases::the_marker_commits_and_rolls_back_with_the_effect(Db::mysql().await).await;
}

#[tokio::test]
async fn an_undecodable_row_is_quarantined_and_the_rest_flow() {
    let _server = SERVER_WIDE.read().await;
    cases::an_undecodable_row_is_quarantined_and_the_rest_flow(Db::mysql().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_relay_takes_over_lapsed_shards() {
    let _server = SERVER_WIDE.read().await;
    cases::another_relay_takes_over_lapsed_shards(Db::mysql().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_slower_than_its_lease_has_one_effect() {
    let _server = SERVER_WIDE.read().await;
    support::inbox_cases::a_handler_slower_than_its_lease_has_one_effect(Db::mysql().await).await;
}

#[tokio::test]
async fn a_stale_holder_cannot_commit_its_marker() {
    let _server = SERVER_WIDE.read().await;
    cases::a_stale_holder_cannot_commit_its_marker(Db::mysql().await).await;
}

#[tokio::test]
async fn a_relay_with_another_shard_count_refuses_to_run() {
    let _server = SERVER_WIDE.read().await;
    let db = Db::mysql().await;
    let broker = MemoryBroker::new();
    let sixteen = db.relay(Arc::new(broker.publisher()), cases::config());
    assert_eq!(sixteen.relay_once().await.unwrap(), 0);
    assert_eq!(sixteen.shards_owned().await, 16);
    let eight = db.relay(
        Arc::new(broker.publisher()),
        RelayConfig::builder().shard_count(8).build().unwrap(),
    );
    let err = eight.relay_once().await.unwrap_err();
    assert!(
        matches!(err, OutboxError::ShardLayout { shard_count: 8 }),
        "{err}"
    );
    db.drop_db().await;
}

/// A transaction holding K#1 stays open while a later one writes K#2 and commits: K#2 must
/// wait, through many relay rounds (certification happens within about a second when no
/// transaction is open), until K#1 commits, and then go out after it.
#[tokio::test]
async fn a_slow_transaction_holds_back_later_rows_of_its_key() {
    let _server = SERVER_WIDE.write().await;
    let db = MySqlTestDb::migrated().await;
    let broker = MemoryBroker::new();
    let outbox = Outbox::new();
    let first = Message::new("K#1").with_key("K");
    let second = Message::new("K#2").with_key("K");

    let mut slow = db.pool.begin().await.unwrap();
    outbox.enqueue(&mut slow, "orders", &first).await.unwrap();
    let mut fast = db.pool.begin().await.unwrap();
    outbox.enqueue(&mut fast, "orders", &second).await.unwrap();
    fast.commit().await.unwrap();

    let relay = Relay::mysql(
        db.pool.clone(),
        Arc::new(broker.publisher()),
        cases::config(),
    );
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(1_500) {
        cases::drain(&relay).await;
        assert!(
            broker.messages("orders").is_empty(),
            "K#2 went out while the transaction holding K#1 was open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    slow.commit().await.unwrap();
    cases::drain_until(&relay, || broker.messages("orders").len() == 2).await;
    let order: Vec<_> = broker.messages("orders").iter().map(|m| m.id()).collect();
    assert_eq!(order, vec![first.id(), second.id()]);
    db.drop_db().await;
}

/// MySQL refuses every read of `information_schema.innodb_trx` (error 3854, "Cannot convert
/// string ... to utf8mb3") while any transaction runs a statement whose text holds bytes that
/// are not UTF-8 — a prepared statement shows its bound values there, so any enqueue of a
/// binary message id does. The relay's horizon scan must take such a refusal as "no
/// observation this round", not fail the round: rows go out once the statement has ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_with_binary_text_on_the_server_does_not_fail_the_relay() {
    let _server = SERVER_WIDE.write().await;
    let db = MySqlTestDb::migrated().await;
    let broker = MemoryBroker::new();
    let outbox = Outbox::new();
    let message = Message::new("after the binary statement").with_key("K");
    let mut tx = db.pool.begin().await.unwrap();
    outbox.enqueue(&mut tx, "orders", &message).await.unwrap();
    tx.commit().await.unwrap();
    let relay = Relay::mysql(
        db.pool.clone(),
        Arc::new(broker.publisher()),
        cases::config(),
    );

    // Another session: a transaction running a statement with bytes that are not UTF-8 in
    // its text, for two seconds.
    let binary = {
        let pool = db.pool.clone();
        tokio::spawn(async move {
            use sqlx::Executor as _;
            let mut conn = pool.acquire().await.unwrap();
            conn.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                .await
                .unwrap();
            sqlx::query("SELECT SLEEP(2), ?")
                .bind(vec![0xa2u8, 0xff, 0xfe, 0x80, 0x41])
                .execute(&mut *conn)
                .await
                .unwrap();
            conn.execute("COMMIT").await.unwrap();
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut refused = 0;
    // The fault, seen directly: MySQL refuses the transaction list (3854); MariaDB shows
    // the statement.
    let mut list_refused = 0;
    let mut statement_listed = 0;
    while !binary.is_finished() {
        if let Err(e) = relay.relay_once().await {
            refused += 1;
            eprintln!("relay round failed: {e}");
        }
        let listed: Result<i64, sqlx::Error> = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.innodb_trx \
             WHERE trx_query LIKE 'SELECT SLEEP(2)%'",
        )
        .fetch_one(&db.pool)
        .await;
        match listed {
            Ok(n) => statement_listed += n,
            Err(sqlx::Error::Database(e))
                if e.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                    .is_some_and(|e| e.number() == 3854) =>
            {
                list_refused += 1;
            }
            Err(e) => panic!("reading the transaction list: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    binary.await.unwrap();
    assert_eq!(
        refused, 0,
        "relay rounds failed while the binary statement ran"
    );
    let version: String = sqlx::query_scalar("SELECT VERSION()")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    if version.contains("MariaDB") {
        assert!(statement_listed > 0, "the binary statement ran ({version})");
    } else {
        assert!(
            list_refused > 0,
            "MySQL refused the transaction list while the binary statement ran ({version}, \
             listed {statement_listed} times)"
        );
    }
    cases::drain_until(&relay, || broker.messages("orders").len() == 1).await;
    db.drop_db().await;
}

/// MariaDB serves `innodb_trx` from a cache it does not refresh while reads come less than
/// 100 ms apart. A session polling it back to back freezes the cache from before the slow
/// transaction began, so the list the relay reads does not show it: the relay must notice
/// that its scan is stale (its own statement is not in it) and hold K#2 back all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_transaction_list_never_lets_a_row_out_early() {
    let _server = SERVER_WIDE.write().await;
    let db = MySqlTestDb::migrated().await;
    let broker = MemoryBroker::new();
    let outbox = Outbox::new();
    let first = Message::new("K#1").with_key("K");
    let second = Message::new("K#2").with_key("K");
    let relay = Relay::mysql(
        db.pool.clone(),
        Arc::new(broker.publisher()),
        cases::config(),
    );
    // Leases and the server checks first.
    assert_eq!(relay.relay_once().await.unwrap(), 0);

    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let poller = {
        let pool = db.pool.clone();
        tokio::spawn(async move {
            // One connection reading back to back: no 100 ms pause, so no refresh.
            let mut conn = pool.acquire().await.unwrap();
            let mut reads = 0u32;
            while stopped.try_recv().is_err() {
                sqlx::query("SELECT COUNT(*) FROM information_schema.innodb_trx")
                    .execute(&mut *conn)
                    .await
                    .unwrap();
                reads += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            reads
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut slow = db.pool.begin().await.unwrap();
    outbox.enqueue(&mut slow, "orders", &first).await.unwrap();
    let holder: i64 = sqlx::query_scalar("SELECT CAST(CONNECTION_ID() AS SIGNED)")
        .fetch_one(&mut *slow)
        .await
        .unwrap();
    let mut fast = db.pool.begin().await.unwrap();
    outbox.enqueue(&mut fast, "orders", &second).await.unwrap();
    fast.commit().await.unwrap();
    let listed: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.innodb_trx WHERE trx_mysql_thread_id = ?",
    )
    .bind(holder)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(1_500) {
        cases::drain(&relay).await;
        assert!(
            broker.messages("orders").is_empty(),
            "K#2 went out while the transaction holding K#1 was open (the list was stale)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(());
    let reads = poller.await.unwrap();
    slow.commit().await.unwrap();
    cases::drain_until(&relay, || broker.messages("orders").len() == 2).await;
    let order: Vec<_> = broker.messages("orders").iter().map(|m| m.id()).collect();
    assert_eq!(order, vec![first.id(), second.id()]);
    println!("{reads} polls; the open writer was listed {listed} times in the frozen list");
    assert_eq!(
        listed, 0,
        "the fault did not happen: the list showed the open transaction"
    );
    db.drop_db().await;
}

/// Writers on a few keys insert concurrently and commit after random pauses, so rows commit
/// out of `seq` order all the time, while a relay runs. Every key's messages must be published
/// in `seq` order (the order their rows were written), none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_committing_out_of_seq_order_keep_each_key_in_order() {
    let _server = SERVER_WIDE.read().await;
    const WRITERS: usize = 8;
    const PER_WRITER: usize = 60;
    let db = MySqlTestDb::migrated().await;
    let broker = MemoryBroker::new();
    let relay = Arc::new(Relay::mysql(
        db.pool.clone(),
        Arc::new(broker.publisher()),
        RelayConfig::builder()
            .batch_size(50)
            .poll_interval(Duration::from_millis(20))
            .build()
            .unwrap(),
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = {
        let relay = Arc::clone(&relay);
        tokio::spawn(async move {
            relay
                .run(async {
                    let _ = stopped.await;
                })
                .await
        })
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let pool = db.pool.clone();
            tokio::spawn(async move {
                let outbox = Outbox::new();
                let mut written = Vec::new();
                for i in 0..PER_WRITER {
                    let message = Message::new(format!("{w}-{i}")).with_key(format!("k{}", i % 3));
                    let mut tx = pool.begin().await.unwrap();
                    outbox.enqueue(&mut tx, "orders", &message).await.unwrap();
                    let seq: i64 = sqlx::query_scalar("SELECT CAST(LAST_INSERT_ID() AS SIGNED)")
                        .fetch_one(&mut *tx)
                        .await
                        .unwrap();
                    // Pauses from 0 to 35 ms, in an order unrelated to the seq.
                    let pause = (seq * 7919 + w as i64 * 31) % 36;
                    tokio::time::sleep(Duration::from_millis(pause as u64)).await;
                    tx.commit().await.unwrap();
                    written.push((message.id(), seq));
                }
                written
            })
        })
        .collect();
    let mut seq_of = std::collections::HashMap::new();
    for writer in writers {
        seq_of.extend(writer.await.unwrap());
    }
    let total = WRITERS * PER_WRITER;
    let started = std::time::Instant::now();
    while broker.messages("orders").len() < total {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{} of {total} published in 60 s",
            broker.messages("orders").len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(());
    running.await.unwrap().unwrap();
    let published = broker.messages("orders");
    let applied: Vec<(Option<String>, i64)> = published
        .iter()
        .map(|m| (m.key().map(str::to_owned), seq_of[&m.id()]))
        .collect();
    assert_eq!(
        support::outbox_db::out_of_order_keys(&applied),
        Vec::<String>::new(),
        "a key's rows went out of seq order"
    );
    let mut ids: Vec<MessageId> = published.iter().map(Message::id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), total, "nothing lost");
    db.drop_db().await;
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_loses_nothing() {
    let _server = SERVER_WIDE.read().await;
    let db = MySqlTestDb::empty().await;
    let outbox = Outbox::with_max_message_bytes(1024);
    let mut tx = db.pool.begin().await.unwrap();
    let err = outbox
        .enqueue(&mut tx, "orders", &Message::new("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, OutboxError::NotMigrated(_)), "{err}");
    assert!(err.to_string().contains("migrations"), "{err}");
    drop(tx);
    // A relay and an inspector on a database without the tables say so.
    let relay = Relay::mysql(
        db.pool.clone(),
        Arc::new(MemoryBroker::new().publisher()),
        RelayConfig::default(),
    );
    let err = relay.relay_once().await.unwrap_err();
    assert!(matches!(err, OutboxError::NotMigrated(_)), "{err}");
    let err = waybill_outbox::OutboxInspector::mysql(db.pool.clone())
        .backlog()
        .await
        .unwrap_err();
    assert!(matches!(err, OutboxError::NotMigrated(_)), "{err}");

    waybill_outbox::mysql::migrate(&db.pool).await.unwrap();
    waybill_outbox::mysql::migrate(&db.pool)
        .await
        .expect("migrations are idempotent");
    let mut tx = db.pool.begin().await.unwrap();
    let big = Message::new(vec![0u8; 2048]);
    let err = outbox.enqueue(&mut tx, "orders", &big).await.unwrap_err();
    assert!(
        matches!(
            err,
            OutboxError::Oversized {
                size: 2048,
                limit: 1024
            }
        ),
        "{err}"
    );
    let err = outbox
        .enqueue(&mut tx, "", &Message::new("x"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("topic"), "{err}");
    let kept = Message::new("kept");
    outbox.enqueue(&mut tx, "orders", &kept).await.unwrap();
    tx.commit().await.unwrap();

    // A duplicate id, alone or inside a batch, names the duplicate; the transaction goes on.
    let mut tx = db.pool.begin().await.unwrap();
    let err = outbox.enqueue(&mut tx, "orders", &kept).await.unwrap_err();
    assert!(
        matches!(err, OutboxError::DuplicateId(id) if id == kept.id()),
        "{err}"
    );
    let batch = [Message::new("new"), kept.clone(), Message::new("newer")];
    let err = outbox
        .enqueue_batch(&mut tx, "orders", &batch)
        .await
        .unwrap_err();
    assert!(
        matches!(err, OutboxError::DuplicateId(id) if id == kept.id()),
        "{err}"
    );
    let after = Message::new("after the refusal");
    outbox.enqueue(&mut tx, "orders", &after).await.unwrap();
    tx.commit().await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM waybill_outbox")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        rows, 2,
        "the accepted messages are there, the refused batch is not"
    );

    // Servers and URLs that do not work.
    let err = waybill_outbox::mysql::connect("mysql://root@127.0.0.1:1/x", 1)
        .await
        .unwrap_err();
    assert!(matches!(err, OutboxError::Unreachable(_)), "{err}");
    let err = waybill_outbox::mysql::connect("postgres://x", 1)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("MySQL"), "{err}");
    let err = waybill_outbox::mysql::connect(&url_of("wb_no_such_database"), 1)
        .await
        .unwrap_err();
    assert!(matches!(err, OutboxError::Refused(_)), "{err}");
    let pool = waybill_outbox::mysql::connect(&db.url, 2)
        .await
        .expect("this server's version is supported");
    pool.close().await;
    db.drop_db().await;
}

/// Writers need no special privilege, but the relay reads `information_schema.innodb_trx`
/// for commit order: without PROCESS it refuses to run, naming the privilege, and publishes
/// nothing.
#[tokio::test]
async fn a_relay_without_the_process_privilege_refuses_to_run() {
    let _server = SERVER_WIDE.read().await;
    let db = MySqlTestDb::migrated().await;
    let user = format!("wb_{}", &db.name()[8..20]);
    admin(&format!("CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'")).await;
    admin(&format!(
        "GRANT ALL PRIVILEGES ON `{}`.* TO '{user}'@'%'",
        db.name()
    ))
    .await;
    let options = MySqlConnectOptions::from_str(&db.url)
        .unwrap()
        .username(&user)
        .password("pw");
    let pool = MySqlPoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .expect("the limited user connects");
    let mut tx = pool.begin().await.unwrap();
    Outbox::new()
        .enqueue(&mut tx, "orders", &Message::new("x"))
        .await
        .expect("writers need no PROCESS privilege");
    tx.commit().await.unwrap();

    let broker = MemoryBroker::new();
    let relay = Relay::mysql(pool.clone(), Arc::new(broker.publisher()), cases::config());
    let err = relay.relay_once().await.unwrap_err();
    assert!(
        matches!(err, OutboxError::Unsupported(_)) && err.to_string().contains("PROCESS"),
        "{err}"
    );
    let err = relay
        .run(std::future::pending())
        .await
        .expect_err("run stops at once");
    assert!(err.to_string().contains("PROCESS"), "{err}");
    assert!(broker.messages("orders").is_empty());
    pool.close().await;
    admin(&format!("DROP USER '{user}'@'%'")).await;
    db.drop_db().await;
}

#[tokio::test]
async fn the_sent_log_reconciles_with_the_inbox() {
    cases::the_sent_log_reconciles_with_the_inbox(Db::mysql().await).await;
}
