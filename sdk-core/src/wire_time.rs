//! Timestamps as they travel in headers: Unix milliseconds in decimal.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Formats `time` as Unix milliseconds (times before 1970 clamp to 0).
pub fn format_millis(time: SystemTime) -> String {
    let millis = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis();
    millis.to_string()
}

/// Parses Unix milliseconds; `None` when `text` is not a non-negative integer.
pub fn parse_millis(text: &str) -> Option<SystemTime> {
    let millis: u64 = text.trim().parse().ok()?;
    UNIX_EPOCH.checked_add(Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_at_millisecond_precision() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(parse_millis(&format_millis(t)), Some(t));
        assert_eq!(parse_millis("x"), None);
        assert_eq!(parse_millis("-5"), None);
    }
}
