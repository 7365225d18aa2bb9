//! A held key as the three databases return it: key, the message it waits for, and the hold's
//! start in Unix milliseconds.

use std::time::{Duration, SystemTime};

use waybill_core::{KeyHold, MessageId};

/// The columns every key-hold `holds` query selects.
pub(crate) type KeyHoldRow = (String, uuid::Uuid, i64);

/// A [`KeyHold`] from its row.
pub(crate) fn key_hold((key, behind, since_ms): KeyHoldRow) -> KeyHold {
    KeyHold {
        key,
        behind: MessageId::from_uuid(behind),
        since: SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(since_ms).unwrap_or(0)),
    }
}
