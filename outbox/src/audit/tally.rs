//! The reconciliation itself: one pass over two id-sorted streams, the sent log and one
//! group's inbox markers, in constant memory (counters and a few sample ids).

use std::collections::BTreeMap;

use futures_util::{Stream, StreamExt};
use waybill_core::MessageId;

use super::report::{GroupAudit, TopicAudit};
use super::AuditWindow;
use crate::error::OutboxError;

/// How many ids of each kind a report names.
pub(crate) const SAMPLES: usize = 10;

/// One sent-log entry.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SentEntry {
    pub id: MessageId,
    pub topic: String,
    /// Unix milliseconds.
    pub confirmed_at_ms: i64,
}

/// One inbox entry of the audited group.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Marker {
    pub id: MessageId,
    /// Finished: handled, or dead-lettered when `dead`.
    pub done: bool,
    pub dead: bool,
    /// When it was finished, Unix milliseconds (`None` before the column existed).
    pub done_at_ms: Option<i64>,
}

/// Walks both streams in id order and counts, per topic in `topics`, what was sent in the
/// window and what the group did with it, and what the group applied in the window that was
/// never sent (on any topic).
///
/// # Errors
/// A database error from either stream, or a stream whose ids are not ascending (the merge
/// would miscount).
pub(crate) async fn tally<S, M>(
    group: &str,
    topics: &[String],
    window: &AuditWindow,
    sent: S,
    markers: M,
) -> Result<GroupAudit, OutboxError>
where
    S: Stream<Item = Result<SentEntry, OutboxError>>,
    M: Stream<Item = Result<Marker, OutboxError>>,
{
    let mut sent = Ascending::new(Box::pin(sent), "sent log");
    let mut markers = Ascending::new(Box::pin(markers), "inbox");
    let mut counts: BTreeMap<&str, TopicAudit> = topics
        .iter()
        .map(|t| (t.as_str(), TopicAudit::new(t)))
        .collect();
    let mut audit = GroupAudit::new(group);
    let mut next_sent = sent.next().await?;
    let mut next_marker = markers.next().await?;
    loop {
        let (entry, marker) = match (&next_sent, &next_marker) {
            (None, None) => break,
            (Some(s), Some(m)) if s.id == m.id => (next_sent.take(), next_marker.take()),
            (Some(s), Some(m)) if s.id < m.id => (next_sent.take(), None),
            (Some(_), None) => (next_sent.take(), None),
            (_, Some(_)) => (None, next_marker.take()),
        };
        match entry {
            Some(entry) => {
                if let Some(topic) = counts.get_mut(entry.topic.as_str()) {
                    if window.covers(entry.confirmed_at_ms) {
                        topic.count(&entry, marker.as_ref(), window);
                    }
                }
                next_sent = sent.next().await?;
            }
            None => {
                let marker = marker.expect("one side is present");
                let applied = marker.done && !marker.dead;
                if applied && marker.done_at_ms.is_some_and(|at| window.covers(at)) {
                    audit.unexpected += 1;
                    if audit.unexpected_samples.len() < SAMPLES {
                        audit.unexpected_samples.push(marker.id);
                    }
                }
            }
        }
        if next_marker.is_none() {
            next_marker = markers.next().await?;
        }
    }
    audit.topics = counts.into_values().collect();
    Ok(audit)
}

impl TopicAudit {
    /// Counts one message sent in the window, with the group's marker if it has one.
    fn count(&mut self, entry: &SentEntry, marker: Option<&Marker>, window: &AuditWindow) {
        self.sent += 1;
        match marker {
            Some(m) if m.done && m.dead => self.dead_lettered += 1,
            Some(m) if m.done => self.applied += 1,
            // Not finished (no marker, or a claim in flight): missing once the grace is over.
            _ if window.in_grace(entry.confirmed_at_ms) => self.in_grace += 1,
            _ => {
                self.missing += 1;
                if self.missing_samples.len() < SAMPLES {
                    self.missing_samples.push(entry.id);
                }
            }
        }
    }
}

/// A stream that checks its ids ascend strictly.
struct Ascending<'a, T> {
    inner: std::pin::Pin<Box<dyn Stream<Item = Result<T, OutboxError>> + 'a>>,
    last: Option<MessageId>,
    what: &'static str,
}

trait Identified {
    fn id(&self) -> MessageId;
}

impl Identified for SentEntry {
    fn id(&self) -> MessageId {
        self.id
    }
}

impl Identified for Marker {
    fn id(&self) -> MessageId {
        self.id
    }
}

impl<'a, T: Identified> Ascending<'a, T> {
    fn new(
        inner: std::pin::Pin<Box<dyn Stream<Item = Result<T, OutboxError>> + 'a>>,
        what: &'static str,
    ) -> Self {
        Self {
            inner,
            last: None,
            what,
        }
    }

    async fn next(&mut self) -> Result<Option<T>, OutboxError> {
        let Some(item) = self.inner.next().await.transpose()? else {
            return Ok(None);
        };
        let id = item.id();
        if self.last.is_some_and(|last| last >= id) {
            return Err(OutboxError::Audit(format!(
                "the {} returned message ids out of order ({id} after {}): the database \
                 does not sort them as bytes, so the audit cannot compare them",
                self.what,
                self.last.expect("checked above")
            )));
        }
        self.last = Some(id);
        Ok(Some(item))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use futures_util::stream;
    use uuid::Uuid;

    use super::*;

    fn id(n: u8) -> MessageId {
        MessageId::from_uuid(Uuid::from_bytes([n; 16]))
    }

    fn sent(n: u8, topic: &str, at: i64) -> Result<SentEntry, OutboxError> {
        Ok(SentEntry {
            id: id(n),
            topic: topic.into(),
            confirmed_at_ms: at,
        })
    }

    fn marker(n: u8, done: bool, dead: bool, at: i64) -> Result<Marker, OutboxError> {
        Ok(Marker {
            id: id(n),
            done,
            dead,
            done_at_ms: Some(at),
        })
    }

    fn at(ms: i64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap())
    }

    /// The window [1000, 2000), audited at 2500 with a grace of 1000: messages confirmed
    /// from 1500 on are still in their grace.
    fn window() -> AuditWindow {
        AuditWindow {
            since: at(1000),
            until: at(2000),
            grace: Duration::from_millis(1000),
            now: at(2500),
        }
    }

    #[tokio::test]
    async fn each_kind_of_message_is_counted_once() {
        let topics = vec!["orders".to_owned()];
        let sent_log = vec![
            sent(1, "orders", 1100),   // applied
            sent(2, "orders", 1100),   // dead-lettered
            sent(3, "orders", 1100),   // missing
            sent(4, "orders", 1600),   // in grace
            sent(5, "orders", 500),    // before the window: not counted
            sent(6, "payments", 1100), // another topic: not counted
            sent(7, "orders", 1200),   // claimed, not finished: missing
        ];
        let markers = vec![
            marker(1, true, false, 1150),
            marker(2, true, true, 1150),
            marker(6, true, false, 1150),
            marker(7, false, false, 1150),
            marker(8, true, false, 1500), // applied, never sent: unexpected
            marker(9, true, false, 2100), // unexpected but after the window
            marker(10, true, true, 1500), // dead, never sent: not an effect
        ];
        let audit = tally(
            "billing",
            &topics,
            &window(),
            stream::iter(sent_log),
            stream::iter(markers),
        )
        .await
        .unwrap();
        let t = &audit.topics[0];
        assert_eq!(
            (t.sent, t.applied, t.dead_lettered, t.missing, t.in_grace),
            (5, 1, 1, 2, 1)
        );
        assert_eq!(t.missing_samples, vec![id(3), id(7)]);
        assert_eq!(audit.unexpected, 1);
        assert_eq!(audit.unexpected_samples, vec![id(8)]);
        assert!((audit.gap() - 3.0 / 5.0).abs() < 1e-9);
    }

    #[tokio::test]
    async fn ids_out_of_order_are_refused() {
        let sent_log = vec![sent(2, "orders", 1100), sent(1, "orders", 1100)];
        let err = tally(
            "billing",
            &["orders".to_owned()],
            &window(),
            stream::iter(sent_log),
            stream::iter(Vec::new()),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("out of order"), "{err}");
    }
}
