//! W3C trace-context (`traceparent`) propagation.

use std::fmt;

use uuid::Uuid;

use crate::header_names;
use crate::headers::Headers;

/// A W3C `traceparent` value, version `00`: trace id, parent span id and flags.
///
/// ```
/// use waybill_core::{Headers, TraceParent};
///
/// let root = TraceParent::new_root(true);
/// let mut headers = Headers::new();
/// root.child().inject(&mut headers);
/// let read = TraceParent::extract(&headers).unwrap();
/// assert_eq!(read.trace_id(), root.trace_id());
/// assert!(read.is_sampled());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TraceParent {
    trace_id: [u8; 16],
    parent_id: [u8; 8],
    flags: u8,
}

impl TraceParent {
    /// A new trace with a random trace id and span id.
    pub fn new_root(sampled: bool) -> Self {
        Self {
            trace_id: *Uuid::new_v4().as_bytes(),
            parent_id: random_span_id(),
            flags: u8::from(sampled),
        }
    }

    /// The same trace with a new span id, for the next hop.
    pub fn child(&self) -> Self {
        Self {
            parent_id: random_span_id(),
            ..*self
        }
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id(&self) -> String {
        hex(&self.trace_id)
    }

    /// The parent span id as 16 lowercase hex digits.
    pub fn parent_id(&self) -> String {
        hex(&self.parent_id)
    }

    /// The trace id's 16 bytes.
    #[cfg(feature = "otel")]
    pub(crate) fn trace_id_bytes(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The parent span id's 8 bytes.
    #[cfg(feature = "otel")]
    pub(crate) fn parent_id_bytes(&self) -> [u8; 8] {
        self.parent_id
    }

    /// The trace flags byte (bit 0: sampled).
    #[cfg(feature = "otel")]
    pub(crate) fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the `sampled` flag is set.
    pub fn is_sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// Parses a `traceparent` value; `None` when malformed or all-zero, as the standard requires.
    ///
    /// Reads the fixed layout by position (`vv-<32 hex>-<16 hex>-ff`, a later version may add
    /// `-…` after the flags): every consumed message with a trace context comes through here.
    pub fn parse(text: &str) -> Option<Self> {
        const LEN: usize = 55;
        let text = text.as_bytes().trim_ascii();
        if text.len() < LEN || text[2] != b'-' || text[35] != b'-' || text[52] != b'-' {
            return None;
        }
        let [version] = unhex::<1>(&text[..2])?;
        if version == 0xff || (text.len() > LEN && (version == 0 || text[LEN] != b'-')) {
            return None;
        }
        let trace_id: [u8; 16] = unhex(&text[3..35])?;
        let parent_id: [u8; 8] = unhex(&text[36..52])?;
        let [flags] = unhex::<1>(&text[53..LEN])?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// Writes `traceparent` into `headers`.
    pub fn inject(&self, headers: &mut Headers) {
        headers.insert(header_names::TRACEPARENT, self.to_string());
    }

    /// Reads `traceparent` from `headers`; a value longer than
    /// [`crate::spans::MAX_TRACE_HEADER_BYTES`] is ignored, as the propagation ignores it.
    pub fn extract(headers: &Headers) -> Option<Self> {
        headers
            .get(header_names::TRACEPARENT)
            .filter(|v| v.len() <= crate::spans::MAX_TRACE_HEADER_BYTES)
            .and_then(Self::parse)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.parent_id),
            self.flags
        )
    }
}

fn random_span_id() -> [u8; 8] {
    let bytes = *Uuid::new_v4().as_bytes();
    let mut id = [0u8; 8];
    id.copy_from_slice(&bytes[8..]);
    id
}

/// Lowercase hex, as W3C trace context writes it (every consumed message with a trace
/// context goes through here: no formatting machinery, one allocation).
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// Exactly `N` bytes from `2 * N` hex digits; `None` for any other length or a non-hex digit.
fn unhex<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    if digits.len() != 2 * N {
        return None;
    }
    let mut bytes = [0u8; N];
    // Decoded in one pass, the digits' validity checked once at the end.
    let mut invalid = 0u8;
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        let (high, low) = (NIBBLES[usize::from(pair[0])], NIBBLES[usize::from(pair[1])]);
        invalid |= (high | low) & 0xf0;
        *byte = (high << 4) | (low & 0x0f);
    }
    (invalid == 0).then_some(bytes)
}

/// The value of each hex digit (either case); `0xff` for any other byte.
const NIBBLES: [u8; 256] = {
    let mut table = [0xffu8; 256];
    let mut digit = 0;
    while digit < 10 {
        table[b'0' as usize + digit] = digit as u8;
        digit += 1;
    }
    let mut letter = 0;
    while letter < 6 {
        table[b'a' as usize + letter] = 10 + letter as u8;
        table[b'A' as usize + letter] = 10 + letter as u8;
        letter += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_w3c_example() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let tp = TraceParent::parse(text).unwrap();
        assert_eq!(tp.to_string(), text);
        assert!(tp.is_sampled());
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "FF-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\u{e9}",
        ] {
            assert!(TraceParent::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn reads_a_later_version_and_surrounding_space() {
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-what-comes-later";
        let tp = TraceParent::parse(later).expect("a later version's known fields");
        assert_eq!(tp.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(tp.parent_id(), "00f067aa0ba902b7");
        assert!(!tp.is_sampled());
        let spaced = " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ";
        assert!(TraceParent::parse(spaced).is_some_and(|tp| tp.is_sampled()));
    }

    #[test]
    fn an_overlong_header_is_not_read() {
        let long = format!(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-{}",
            "x".repeat(crate::spans::MAX_TRACE_HEADER_BYTES)
        );
        assert!(
            TraceParent::parse(&long).is_some(),
            "the value itself is well formed"
        );
        let mut headers = Headers::new();
        headers.insert(header_names::TRACEPARENT, long);
        assert_eq!(TraceParent::extract(&headers), None);
    }

    #[test]
    fn child_keeps_trace_changes_span() {
        let root = TraceParent::new_root(false);
        let child = root.child();
        assert_eq!(root.trace_id(), child.trace_id());
        assert_ne!(root.parent_id(), child.parent_id());
        assert!(!child.is_sampled());
    }
}
