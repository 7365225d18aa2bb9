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

    /// Whether the `sampled` flag is set.
    pub fn is_sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// Parses a `traceparent` value; `None` when malformed or all-zero, as the standard requires.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let parent = parts.next()?;
        let flags = parts.next()?;
        if version.len() != 2 || version == "ff" || trace.len() != 32 || parent.len() != 16 {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        let trace_id: [u8; 16] = unhex(trace)?;
        let parent_id: [u8; 8] = unhex(parent)?;
        let [flags] = unhex::<1>(flags)?;
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

    /// Reads `traceparent` from `headers`.
    pub fn extract(headers: &Headers) -> Option<Self> {
        headers.get(header_names::TRACEPARENT).and_then(Self::parse)
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
fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let mut bytes = [0u8; N];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(bytes)
}

fn nibble(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

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
        ] {
            assert!(TraceParent::parse(bad).is_none(), "{bad}");
        }
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
