//! Key and value layout in Redis.

use waybill_core::{ClaimToken, Completion, MessageId};

/// The key of `id` in `group`: `<prefix>:<group>:<message id>`.
pub(crate) fn entry_key(prefix: &str, group: &str, id: MessageId) -> String {
    format!("{prefix}:{group}:{id}")
}

/// The value tag of a live claim (`h:<token>`).
pub(crate) const HELD: &str = "h";

/// The value tag of an outcome.
pub(crate) fn outcome_tag(completion: Completion) -> &'static str {
    match completion {
        Completion::Handled => "d",
        Completion::DeadLettered => "x",
    }
}

/// The outcome a value tag records, if it records one.
pub(crate) fn outcome_of(tag: &str) -> Option<Completion> {
    match tag {
        "d" => Some(Completion::Handled),
        "x" => Some(Completion::DeadLettered),
        _ => None,
    }
}

/// A token as stored after the tag.
pub(crate) fn token_text(token: ClaimToken) -> String {
    token.as_uuid().simple().to_string()
}
