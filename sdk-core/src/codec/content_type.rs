//! Comparing `content-type` values the way HTTP does.

/// Whether two content types name the same media type: the part before any `;` parameter,
/// trimmed, compared without regard to ASCII case.
///
/// ```
/// use waybill_core::codec::same_media_type;
///
/// assert!(same_media_type("Application/JSON; charset=utf-8", "application/json"));
/// assert!(!same_media_type("application/avro", "application/json"));
/// ```
pub fn same_media_type(a: &str, b: &str) -> bool {
    media_type(a).eq_ignore_ascii_case(media_type(b))
}

/// The media type of a content type, without parameters.
pub(crate) fn media_type(content_type: &str) -> &str {
    content_type
        .split(';')
        .next()
        .unwrap_or(content_type)
        .trim()
}
