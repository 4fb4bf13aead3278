//! Prometheus's `hashmod`: the md5 digest of a value, its last 8 bytes read big-endian, modulo.

/// Prometheus's `hashmod` of `value`: md5 of the bytes, the digest's last 8 bytes as a big-endian
/// `u64`, modulo `modulus`.
///
/// A `modulus` of 0 yields 0 (Prometheus's config loader rejects it, so no configured rule
/// reaches this case).
pub fn hashmod(value: &str, modulus: u64) -> u64 {
    let digest = md5::compute(value.as_bytes()).0;
    let mut tail = [0u8; 8];
    tail.copy_from_slice(&digest[8..]);
    u64::from_be_bytes(tail).checked_rem(modulus).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values computed independently (md5 of the text, low 8 bytes big-endian) and checked
    /// against a real Prometheus by `tests/prometheus_hashmod.rs`.
    #[test]
    fn known_values() {
        assert_eq!(hashmod("127.0.0.1:9100", u64::MAX), 2_676_120_102_455_581_150);
        assert_eq!(hashmod("127.0.0.1:9100", 3), 1);
        assert_eq!(hashmod("", 2), 0);
        assert_eq!(hashmod("", u64::MAX), 16_825_458_760_271_544_958);
        assert_eq!(hashmod("foo", 7), 2);
        assert_eq!(hashmod("node-17.example:9100", 5), 0);
        assert_eq!(hashmod("a;b", 1000), 74);
        assert_eq!(hashmod("anything", 1), 0);
    }

    #[test]
    fn zero_modulus_does_not_panic() {
        assert_eq!(hashmod("x", 0), 0);
    }
}
