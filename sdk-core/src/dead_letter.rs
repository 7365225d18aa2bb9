//! The dead-letter record: one header schema on every broker.

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use crate::header_names as names;
use crate::headers::Headers;
use crate::incoming::IncomingMessage;
use crate::message_id::MessageId;
use crate::wire_time;

/// The class of the failure that sent a message to the dead letter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Transient failures until the retry budget ran out.
    Transient,
    /// The handler declared the message unprocessable.
    Permanent,
    /// The handler panicked on the last attempt.
    Panic,
    /// Not handled: an earlier message of its key was dead-lettered while the Processor ran
    /// in [`DeadLetterMode::HoldKey`](crate::DeadLetterMode::HoldKey), and the key is held
    /// behind it ([`DeadLetterRecord::held_behind`] names that message).
    Held,
}

impl ErrorClass {
    /// The wire spelling: `transient`, `permanent`, `panic`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::Permanent => "permanent",
            Self::Panic => "panic",
            Self::Held => "held",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ErrorClass {
    type Err = RecordError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "transient" => Ok(Self::Transient),
            "permanent" => Ok(Self::Permanent),
            "panic" => Ok(Self::Panic),
            "held" => Ok(Self::Held),
            other => Err(RecordError::Invalid {
                name: names::DL_ERROR_CLASS,
                value: other.to_owned(),
            }),
        }
    }
}

/// Headers of a dead letter are missing or invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// A required header is absent.
    #[error("dead-letter header {0} is missing")]
    Missing(&'static str),
    /// A header's value cannot be parsed.
    #[error("dead-letter header {name} has an invalid value {value:?}")]
    Invalid {
        /// Header name.
        name: &'static str,
        /// The offending value.
        value: String,
    },
}

/// What happened to a dead-lettered message, travelling as `waybill-dl-*` headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetterRecord {
    /// Id of the dead-lettered message.
    pub message_id: MessageId,
    /// Topic or queue it was consumed from (replay republishes there).
    pub origin: String,
    /// Partition (Kafka) or queue id (RocketMQ).
    pub partition: Option<i32>,
    /// Offset of the failed delivery.
    pub offset: Option<i64>,
    /// Consumer group that gave up.
    pub group: String,
    /// Handling attempts made, across instances.
    pub attempts: u32,
    /// First failure time.
    pub first_failure_at: SystemTime,
    /// Last failure time.
    pub last_failure_at: SystemTime,
    /// Class of the last failure.
    pub error_class: ErrorClass,
    /// Message of the last failure.
    pub error_message: String,
    /// For a message of class [`ErrorClass::Held`]: the earlier dead message of its key it was
    /// held behind. A replay sends it after that message.
    pub held_behind: Option<MessageId>,
}

/// Longest error message kept in a record; longer ones are cut at a char boundary.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 1024;

impl DeadLetterRecord {
    /// A record for `incoming`, which failed `attempts` times between the two instants.
    pub fn for_delivery(
        incoming: &IncomingMessage,
        attempts: u32,
        first_failure_at: SystemTime,
        last_failure_at: SystemTime,
        error_class: ErrorClass,
        error_message: impl Into<String>,
    ) -> Self {
        let origin = incoming.origin();
        Self {
            message_id: incoming.message().id(),
            origin: origin.topic.to_string(),
            partition: origin.partition,
            offset: origin.offset,
            group: origin.group.to_string(),
            attempts,
            first_failure_at,
            last_failure_at,
            error_class,
            error_message: truncate(error_message.into()),
            held_behind: None,
        }
    }

    /// A record for `incoming`, dead-lettered unhandled because its key is held behind the
    /// dead message `behind` (key-holding mode).
    pub fn held_behind(incoming: &IncomingMessage, behind: MessageId, now: SystemTime) -> Self {
        let mut record = Self::for_delivery(
            incoming,
            incoming.attempt(),
            now,
            now,
            ErrorClass::Held,
            format!("held behind {behind}: an earlier message of its key is dead-lettered"),
        );
        record.held_behind = Some(behind);
        record
    }

    /// Writes the record as `waybill-dl-*` headers (overwriting an older record).
    pub fn write_to(&self, headers: &mut Headers) {
        for name in [names::DL_PARTITION, names::DL_OFFSET, names::DL_HELD_BEHIND] {
            headers.remove(name);
        }
        headers.insert(names::DL_MESSAGE_ID, self.message_id.to_string());
        headers.insert(names::DL_ORIGIN, self.origin.clone());
        if let Some(p) = self.partition {
            headers.insert(names::DL_PARTITION, p.to_string());
        }
        if let Some(o) = self.offset {
            headers.insert(names::DL_OFFSET, o.to_string());
        }
        headers.insert(names::DL_GROUP, self.group.clone());
        headers.insert(names::DL_ATTEMPTS, self.attempts.to_string());
        headers.insert(
            names::DL_FIRST_FAILURE_AT,
            wire_time::format_millis(self.first_failure_at),
        );
        headers.insert(
            names::DL_LAST_FAILURE_AT,
            wire_time::format_millis(self.last_failure_at),
        );
        headers.insert(names::DL_ERROR_CLASS, self.error_class.as_str());
        headers.insert(names::DL_ERROR_MESSAGE, self.error_message.clone());
        if let Some(behind) = self.held_behind {
            headers.insert(names::DL_HELD_BEHIND, behind.to_string());
        }
    }

    /// Reads a record back from headers written by [`DeadLetterRecord::write_to`].
    ///
    /// # Errors
    /// [`RecordError`] naming the missing or invalid header.
    pub fn read_from(headers: &Headers) -> Result<Self, RecordError> {
        let get = |name: &'static str| headers.get(name).ok_or(RecordError::Missing(name));
        let invalid = |name: &'static str, value: &str| RecordError::Invalid {
            name,
            value: value.to_owned(),
        };
        let parse_opt = |name: &'static str| -> Result<Option<i64>, RecordError> {
            headers
                .get(name)
                .map(|v| v.parse::<i64>().map_err(|_| invalid(name, v)))
                .transpose()
        };
        let time = |name: &'static str| -> Result<SystemTime, RecordError> {
            let v = get(name)?;
            wire_time::parse_millis(v).ok_or_else(|| invalid(name, v))
        };
        let id_text = get(names::DL_MESSAGE_ID)?;
        let attempts_text = get(names::DL_ATTEMPTS)?;
        let partition = parse_opt(names::DL_PARTITION)?
            .map(|p| i32::try_from(p).map_err(|_| invalid(names::DL_PARTITION, &p.to_string())))
            .transpose()?;
        Ok(Self {
            message_id: id_text
                .parse()
                .map_err(|_| invalid(names::DL_MESSAGE_ID, id_text))?,
            origin: get(names::DL_ORIGIN)?.to_owned(),
            partition,
            offset: parse_opt(names::DL_OFFSET)?,
            group: get(names::DL_GROUP)?.to_owned(),
            attempts: attempts_text
                .parse()
                .map_err(|_| invalid(names::DL_ATTEMPTS, attempts_text))?,
            first_failure_at: time(names::DL_FIRST_FAILURE_AT)?,
            last_failure_at: time(names::DL_LAST_FAILURE_AT)?,
            error_class: get(names::DL_ERROR_CLASS)?.parse()?,
            error_message: get(names::DL_ERROR_MESSAGE)?.to_owned(),
            held_behind: headers
                .get(names::DL_HELD_BEHIND)
                .map(|v| v.parse().map_err(|_| invalid(names::DL_HELD_BEHIND, v)))
                .transpose()?,
        })
    }
}

fn truncate(mut text: String) -> String {
    if text.len() > MAX_ERROR_MESSAGE_BYTES {
        let mut cut = MAX_ERROR_MESSAGE_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn record() -> DeadLetterRecord {
        DeadLetterRecord {
            message_id: MessageId::new(),
            origin: "orders".into(),
            partition: Some(3),
            offset: Some(42),
            group: "billing".into(),
            attempts: 5,
            first_failure_at: UNIX_EPOCH + Duration::from_millis(1_000),
            last_failure_at: UNIX_EPOCH + Duration::from_millis(9_000),
            error_class: ErrorClass::Transient,
            error_message: "db timeout".into(),
            held_behind: None,
        }
    }

    #[test]
    fn round_trips_through_headers() {
        let mut headers = Headers::new();
        let r = record();
        r.write_to(&mut headers);
        assert_eq!(DeadLetterRecord::read_from(&headers).unwrap(), r);

        let mut no_position = record();
        no_position.partition = None;
        no_position.offset = None;
        no_position.write_to(&mut headers);
        assert_eq!(DeadLetterRecord::read_from(&headers).unwrap(), no_position);

        let mut held = record();
        held.error_class = ErrorClass::Held;
        held.held_behind = Some(MessageId::new());
        held.write_to(&mut headers);
        assert_eq!(DeadLetterRecord::read_from(&headers).unwrap(), held);
        record().write_to(&mut headers);
        assert_eq!(
            DeadLetterRecord::read_from(&headers).unwrap().held_behind,
            None,
            "a newer record without a hold clears the old one"
        );
    }

    #[test]
    fn names_the_missing_or_bad_header() {
        let mut headers = Headers::new();
        record().write_to(&mut headers);
        headers.remove(names::DL_GROUP);
        assert_eq!(
            DeadLetterRecord::read_from(&headers),
            Err(RecordError::Missing(names::DL_GROUP))
        );
        record().write_to(&mut headers);
        headers.insert(names::DL_ERROR_CLASS, "weird");
        assert!(matches!(
            DeadLetterRecord::read_from(&headers),
            Err(RecordError::Invalid { name, .. }) if name == names::DL_ERROR_CLASS
        ));
    }

    #[test]
    fn long_error_messages_are_cut_on_char_boundary() {
        let long = "é".repeat(MAX_ERROR_MESSAGE_BYTES);
        let cut = truncate(long);
        assert!(cut.len() <= MAX_ERROR_MESSAGE_BYTES);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
