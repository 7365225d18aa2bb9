//! Reconciliation: what the relay sent against what the consumers applied.
//!
//! The producer side is the outbox's sent log (`waybill_sent`, written by a relay run with
//! [`RelayConfigBuilder::sent_log_retention`](crate::RelayConfigBuilder::sent_log_retention)):
//! each confirmed message's id, topic and confirm time. The consumer side is each group's SQL
//! inbox (`waybill_inbox`): finished markers (applied), dead markers (dead-lettered), and when
//! each was finished. The two may live in different databases, of any kind the outbox
//! supports.
//!
//! For each group, an audit reads both tables once, sorted by message id, and merges them in
//! constant memory (counters and 10 sample ids of each kind), so its cost grows with the
//! tables, not with what it keeps. A message the relay confirmed in the window is *applied*,
//! *dead-lettered*, *in grace* (confirmed less than the grace period ago, not finished yet)
//! or *missing*; a message the group applied in the window that the sent log does not hold
//! at all is *unexpected*. The gap is `(missing + unexpected) / sent`.
//!
//! Keep the sent log (the relay's retention) and the inbox (its marker retention) at least as
//! long as the windows you audit reach back: a marker whose sent-log entry was already
//! deleted counts as unexpected, and a sent message whose marker expired as missing.
//!
//! ```no_run
//! # async fn demo(pool: sqlx::PgPool) -> Result<(), waybill_outbox::OutboxError> {
//! use std::time::{Duration, SystemTime};
//! use waybill_outbox::audit::{Audit, AuditDatabase, AuditWindow};
//!
//! let audit = Audit::new(AuditDatabase::Postgres(pool.clone()), AuditDatabase::Postgres(pool));
//! let now = SystemTime::now();
//! let window = AuditWindow::new(now - Duration::from_secs(3600), now, Duration::from_secs(300))?;
//! let report = audit.run(&["orders".into()], &["billing".into()], &window).await?;
//! if report.worst_gap() > 0.001 {
//!     eprintln!("more than 0.1 % of the hour's orders are missing or unexpected");
//! }
//! # Ok(())
//! # }
//! ```

mod report;
mod source;
mod tally;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics::gauge;
use waybill_core::telemetry::{attributes, names};
use waybill_core::ConfigError;

pub use report::{AuditReport, GroupAudit, TopicAudit};
pub use source::AuditDatabase;

use crate::error::OutboxError;

/// The messages an audit looks at: those the relay confirmed from `since` (inclusive) to
/// `until` (exclusive), judged at `now`; a message not finished yet counts as missing only
/// once it was confirmed more than `grace` before `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditWindow {
    /// The window's start.
    pub since: SystemTime,
    /// The window's end.
    pub until: SystemTime,
    /// How long a consumer may take to finish a message before it counts as missing.
    pub grace: Duration,
    /// When the audit judges (the time of [`AuditWindow::new`]).
    pub now: SystemTime,
}

impl AuditWindow {
    /// The window `[since, until)`, judged now.
    ///
    /// # Errors
    /// [`OutboxError::Config`] when `since` is not before `until`.
    pub fn new(since: SystemTime, until: SystemTime, grace: Duration) -> Result<Self, OutboxError> {
        if since >= until {
            return Err(ConfigError::new(
                "audit window",
                "the window's start must be before its end",
            )
            .into());
        }
        Ok(Self {
            since,
            until,
            grace,
            now: SystemTime::now(),
        })
    }

    /// Whether `ms` (Unix milliseconds) falls in the window.
    pub(crate) fn covers(&self, ms: i64) -> bool {
        unix_ms(self.since) <= ms && ms < unix_ms(self.until)
    }

    /// Whether a message confirmed at `ms` is still within its grace period.
    pub(crate) fn in_grace(&self, ms: i64) -> bool {
        ms > unix_ms(self.now)
            .saturating_sub(i64::try_from(self.grace.as_millis()).unwrap_or(i64::MAX))
    }
}

fn unix_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// Compares the sent log of one database with the inbox of another (or the same).
#[derive(Clone, Debug)]
pub struct Audit {
    sent_log: AuditDatabase,
    inbox: AuditDatabase,
}

impl Audit {
    /// An audit of the sent log in `sent_log` against the inbox in `inbox`.
    pub fn new(sent_log: AuditDatabase, inbox: AuditDatabase) -> Self {
        Self { sent_log, inbox }
    }

    /// Reconciles each of `groups` against the messages of `topics` sent in `window`; every
    /// group is expected to apply every topic's messages. Sets the gauges
    /// `waybill.audit.gap` (per group), `waybill.audit.missing` (per topic and group) and
    /// `waybill.audit.unexpected` (per group) through the `metrics` facade.
    ///
    /// # Errors
    /// [`OutboxError::Config`] without a topic or a group; [`OutboxError::Audit`] when a
    /// database lacks the sent log or the inbox's finish times (not migrated) or returns ids
    /// out of order; otherwise a database error. Nothing is changed in either database.
    pub async fn run(
        &self,
        topics: &[String],
        groups: &[String],
        window: &AuditWindow,
    ) -> Result<AuditReport, OutboxError> {
        if topics.is_empty() || groups.is_empty() {
            return Err(ConfigError::new(
                "audit",
                "name at least one topic and one consumer group",
            )
            .into());
        }
        self.sent_log.check_sent_log().await?;
        self.inbox.check_inbox().await?;
        let mut report = AuditReport { groups: Vec::new() };
        for group in groups {
            let audit = tally::tally(
                group,
                topics,
                window,
                self.sent_log.sent(),
                self.inbox.markers(group),
            )
            .await?;
            record(&audit);
            report.groups.push(audit);
        }
        Ok(report)
    }
}

/// Exports one group's figures as gauges.
fn record(audit: &GroupAudit) {
    let group = audit.group.clone();
    gauge!(names::AUDIT_GAP, attributes::GROUP => group.clone()).set(audit.gap());
    gauge!(names::AUDIT_UNEXPECTED, attributes::GROUP => group.clone())
        .set(audit.unexpected as f64);
    for topic in &audit.topics {
        gauge!(
            names::AUDIT_MISSING,
            attributes::DESTINATION => topic.topic.clone(),
            attributes::GROUP => group.clone()
        )
        .set(topic.missing as f64);
    }
}
