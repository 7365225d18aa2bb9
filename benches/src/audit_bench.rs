//! `waybill audit`'s reconciliation over a large sent log and inbox on PostgreSQL: 1,000,000
//! sent and as many applied ids by default (100 of the sent ones left unapplied and 100
//! applied ids never sent, so the result can be checked), filled server-side; prints the
//! time, the ids compared per second and the process's peak RSS, which must stay flat as
//! the tables grow (the merge streams both, sorted by id).

use std::time::{Duration, Instant, SystemTime};

use waybill_outbox::audit::{Audit, AuditDatabase, AuditWindow};

use crate::outbox_backlog_bench::status_mib;
use crate::outbox_bench::BenchDb;

/// Sent ids left without a marker, and markers without a sent id.
const OFF: i64 = 100;

/// Fills `ids` sent and applied ids, audits them, prints the figures.
pub async fn run(ids: usize) {
    let db = BenchDb::create().await;
    let n = i64::try_from(ids).expect("ids fit i64");
    let filled = Instant::now();
    sqlx::query(
        "INSERT INTO waybill_sent (message_id, topic, key, position, confirmed_at) \
         SELECT gen_random_uuid(), 'orders', 'k' || (i % 1000), 'sequence ' || i, \
                now() - interval '30 minutes' \
         FROM generate_series(1, $1) AS i",
    )
    .bind(n)
    .execute(&db.pool)
    .await
    .expect("fill the sent log");
    sqlx::query(
        "INSERT INTO waybill_inbox (group_name, message_id, done, dead, expires_at, done_at) \
         SELECT 'billing', message_id, true, false, now() + interval '1 day', \
                now() - interval '20 minutes' \
         FROM waybill_sent ORDER BY message_id OFFSET $1",
    )
    .bind(OFF)
    .execute(&db.pool)
    .await
    .expect("fill the inbox");
    sqlx::query(
        "INSERT INTO waybill_inbox (group_name, message_id, done, dead, expires_at, done_at) \
         SELECT 'billing', gen_random_uuid(), true, false, now() + interval '1 day', \
                now() - interval '20 minutes' \
         FROM generate_series(1, $1)",
    )
    .bind(OFF)
    .execute(&db.pool)
    .await
    .expect("add unexpected markers");
    sqlx::query("ANALYZE waybill_sent, waybill_inbox")
        .execute(&db.pool)
        .await
        .expect("analyze");
    println!(
        "audit over {ids} sent and {ids} applied ids on PostgreSQL (filled in {:.1} s)",
        filled.elapsed().as_secs_f64()
    );

    let before = status_mib("VmHWM");
    let source = AuditDatabase::Postgres(db.pool.clone());
    let audit = Audit::new(source.clone(), source);
    let now = SystemTime::now();
    let window = AuditWindow::new(
        now - Duration::from_secs(3600),
        now,
        Duration::from_secs(300),
    )
    .expect("a window");
    let started = Instant::now();
    let report = audit
        .run(&["orders".to_owned()], &["billing".to_owned()], &window)
        .await
        .expect("audit");
    let took = started.elapsed();
    let group = &report.groups[0];
    assert_eq!(group.sent(), ids as u64, "every sent id counted");
    assert_eq!(group.missing(), OFF as u64, "the unapplied ids are missing");
    assert_eq!(
        group.unexpected, OFF as u64,
        "the unsent markers are unexpected"
    );
    println!(
        "  audit {:>7.2} s   {:>9.0} ids/s   peak RSS {:.0} MiB (before the audit {:.0} MiB)",
        took.as_secs_f64(),
        (2 * ids) as f64 / took.as_secs_f64(),
        status_mib("VmHWM"),
        before
    );
    db.drop_db().await;
}
