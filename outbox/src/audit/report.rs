//! What an audit found, per consumer group and topic.

use waybill_core::MessageId;

/// One topic's messages sent in the window and what one group did with them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicAudit {
    /// The topic.
    pub topic: String,
    /// Messages the relay had confirmed in the window (sent-log entries).
    pub sent: u64,
    /// Of those, messages the group handled (a finished inbox marker).
    pub applied: u64,
    /// Of those, messages the group dead-lettered (a dead inbox marker).
    pub dead_lettered: u64,
    /// Of those, messages the group has not finished although they were confirmed longer ago
    /// than the grace period: lost, stuck, or not yet handled by a lagging consumer.
    pub missing: u64,
    /// Of those, messages not finished yet but confirmed within the grace period (not
    /// counted in the gap).
    pub in_grace: u64,
    /// Up to 10 missing ids, lowest first.
    pub missing_samples: Vec<MessageId>,
}

impl TopicAudit {
    pub(crate) fn new(topic: &str) -> Self {
        Self {
            topic: topic.to_owned(),
            sent: 0,
            applied: 0,
            dead_lettered: 0,
            missing: 0,
            in_grace: 0,
            missing_samples: Vec::new(),
        }
    }
}

/// One consumer group's reconciliation.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupAudit {
    /// The consumer group (the inbox's `group_name`).
    pub group: String,
    /// Per audited topic.
    pub topics: Vec<TopicAudit>,
    /// Messages the group handled in the window that the sent log does not hold on any topic:
    /// published around the outbox, or a sent log kept for less time than the inbox.
    pub unexpected: u64,
    /// Up to 10 unexpected ids, lowest first.
    pub unexpected_samples: Vec<MessageId>,
}

impl GroupAudit {
    pub(crate) fn new(group: &str) -> Self {
        Self {
            group: group.to_owned(),
            topics: Vec::new(),
            unexpected: 0,
            unexpected_samples: Vec::new(),
        }
    }

    /// Messages sent in the window, over the audited topics.
    pub fn sent(&self) -> u64 {
        self.topics.iter().map(|t| t.sent).sum()
    }

    /// Messages missing, over the audited topics.
    pub fn missing(&self) -> u64 {
        self.topics.iter().map(|t| t.missing).sum()
    }

    /// `(missing + unexpected) / sent`: 0 for a clean run, infinite when nothing was sent
    /// but something unexpected was applied.
    pub fn gap(&self) -> f64 {
        let off = self.missing() + self.unexpected;
        match (off, self.sent()) {
            (0, _) => 0.0,
            (_, 0) => f64::INFINITY,
            (off, sent) => off as f64 / sent as f64,
        }
    }
}

/// What [`Audit::run`](super::Audit::run) found.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditReport {
    /// Per consumer group, in the order asked for.
    pub groups: Vec<GroupAudit>,
}

impl AuditReport {
    /// The largest gap of any group.
    pub fn worst_gap(&self) -> f64 {
        self.groups.iter().map(GroupAudit::gap).fold(0.0, f64::max)
    }

    /// Whether the window held nothing to compare: no message sent, none unexpected.
    pub fn is_empty(&self) -> bool {
        self.groups
            .iter()
            .all(|g| g.sent() == 0 && g.unexpected == 0)
    }
}
