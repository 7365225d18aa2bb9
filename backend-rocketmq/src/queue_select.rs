//! Choosing a queue by key, as the Java client's `SelectMessageQueueByHash` does.

/// Java's `String.hashCode()` over the UTF-16 code units of `key`.
pub fn java_string_hash(key: &str) -> i32 {
    key.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// The queue index for `key` among `queues` queues (`queues` ≥ 1): `abs(hashCode % queues)`,
/// the Java client's `SelectMessageQueueByHash`, so that producers in other languages that use
/// it put a key on the same queue.
pub fn queue_for_key(key: &str, queues: usize) -> usize {
    let n = i32::try_from(queues.max(1)).unwrap_or(i32::MAX);
    (java_string_hash(key) % n).unsigned_abs() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_java_string_hash_code() {
        // Values from java.lang.String#hashCode.
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(java_string_hash("order-42"), 1_234_255_197);
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(java_string_hash("é"), 233);
    }

    #[test]
    fn negative_hashes_give_a_valid_queue() {
        assert_eq!(queue_for_key("order-42", 8), 5);
        assert_eq!(queue_for_key("polygenelubricants", 7), 2);
        for k in ["a", "order-42", "zzzzzzzzzz"] {
            assert!(queue_for_key(k, 8) < 8);
        }
    }
}
