//! The routing key waybill gives each message it publishes to a topic, derived from the
//! message's key, and the binding patterns a partitioned group routes on.
//!
//! A topic's exchange is a fanout: plain groups ignore routing keys. A partitioned group's
//! topic exchange `<topic>.<group>.partitions`, bound to the fanout, routes on them: the key's
//! *bucket* is the low [`KEY_BITS`] bits of the CRC-32 (IEEE) of its UTF-8 bytes, and the
//! routing key spells the bucket's bits, least significant first, as words after `waybill`:
//! bucket 6 is `waybill.0.1.1.0.0.0.0.0.0.0`. Each partition binds the bit prefixes of its
//! buckets (`waybill.0.1.#`), so which partition a key lands in depends on the key and the
//! partition count only: it survives broker restarts (RabbitMQ's consistent-hash exchange
//! rebuilds its ring in another order on restart, which moves keys between queues).

/// Bits of a key's bucket the routing key carries: buckets `0..1024`.
pub const KEY_BITS: u32 = 10;

/// The first word of every key route.
const PREFIX: &str = "waybill";

/// The routing key waybill publishes a message with `key` under (`None` or an empty key:
/// bucket 0). A producer that is not waybill sets the same routing key to have its keyed
/// messages partitioned like waybill's; a message whose routing key matches no partition
/// goes to partition 0, so nothing is lost either way.
pub fn key_routing_key(key: Option<&str>) -> String {
    spell(bucket(key), KEY_BITS)
}

/// The bucket of `key`: the low [`KEY_BITS`] bits of its CRC-32.
fn bucket(key: Option<&str>) -> u32 {
    crc32fast::hash(key.unwrap_or_default().as_bytes()) & ((1 << KEY_BITS) - 1)
}

/// `waybill` followed by the `bits` low bits of `value`, least significant first.
fn spell(value: u32, bits: u32) -> String {
    let mut out = String::with_capacity(PREFIX.len() + 2 * bits as usize);
    out.push_str(PREFIX);
    for bit in 0..bits {
        out.push_str(if value >> bit & 1 == 1 { ".1" } else { ".0" });
    }
    out
}

/// How many low bits of the bucket a group of `partitions` partitions binds on: exactly
/// enough for a power of two (every partition gets as many buckets), otherwise three more,
/// capped at [`KEY_BITS`], so that partitions get at most an eighth more keys than others
/// up to 128 partitions.
fn prefix_bits(partitions: u16) -> u32 {
    let partitions = u32::from(partitions.max(1));
    let exact = partitions.next_power_of_two().trailing_zeros();
    if partitions.is_power_of_two() {
        exact.min(KEY_BITS)
    } else {
        (exact + 3).min(KEY_BITS)
    }
}

/// The topic-exchange binding patterns of `partition` in a group of `partitions`: one per
/// bucket prefix `b` with `b % partitions == partition`. Every key route matches exactly one
/// partition's patterns.
pub(crate) fn partition_patterns(partitions: u16, partition: u16) -> Vec<String> {
    let bits = prefix_bits(partitions);
    (0..1u32 << bits)
        .filter(|prefix| prefix % u32::from(partitions.max(1)) == u32::from(partition))
        .map(|prefix| format!("{}.#", spell(prefix, bits)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A topic pattern `waybill.<bits>.#` matches a route when its bits are a prefix.
    fn matches(pattern: &str, route: &str) -> bool {
        let prefix = pattern.strip_suffix(".#").expect("patterns end in .#");
        route == prefix || route.starts_with(&format!("{prefix}."))
    }

    #[test]
    fn routes_spell_the_crc32_bucket_least_significant_bit_first() {
        // zlib.crc32(b"key-1") == 0x0eecbf7a; its low 10 bits are 0x37a = 0b11_0111_1010.
        assert_eq!(crc32fast::hash(b"key-1"), 0x0eec_bf7a);
        assert_eq!(
            key_routing_key(Some("key-1")),
            "waybill.0.1.0.1.1.1.1.0.1.1"
        );
        assert_eq!(key_routing_key(None), "waybill.0.0.0.0.0.0.0.0.0.0");
        assert_eq!(key_routing_key(Some("")), key_routing_key(None));
    }

    #[test]
    fn every_bucket_routes_to_exactly_one_partition() {
        for partitions in (1..=40).chain([64, 100, 127, 128, 129, 512, 1000, 1024]) {
            let patterns: Vec<Vec<String>> = (0..partitions)
                .map(|p| partition_patterns(partitions, p))
                .collect();
            for bucket in 0..1 << KEY_BITS {
                let route = spell(bucket, KEY_BITS);
                let owners: Vec<usize> = patterns
                    .iter()
                    .enumerate()
                    .filter(|(_, ps)| ps.iter().any(|p| matches(p, &route)))
                    .map(|(p, _)| p)
                    .collect();
                assert_eq!(
                    owners.len(),
                    1,
                    "{partitions} partitions, {route}: {owners:?}"
                );
            }
        }
    }

    #[test]
    fn buckets_are_spread_evenly_enough() {
        for partitions in [2u16, 4, 8, 64, 1024] {
            let counts: Vec<usize> = (0..partitions)
                .map(|p| partition_patterns(partitions, p).len())
                .collect();
            assert!(
                counts.iter().all(|c| *c == counts[0]),
                "{partitions}: {counts:?}"
            );
        }
        for partitions in [3u16, 6, 10, 100, 127] {
            let counts: Vec<usize> = (0..partitions)
                .map(|p| partition_patterns(partitions, p).len())
                .collect();
            let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
            assert!(max - min <= 1 && *min >= 8, "{partitions}: {min}..{max}");
        }
    }
}
