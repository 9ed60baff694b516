//! CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320, as `zlib.crc32`),
//! the one checksum of every byte format isofast writes: the mergeable
//! states' bytes (`cluster_pass`) and the bindings' pickle envelope of
//! `Moments` and `SecondPass`. A table-driven byte loop: states are at most
//! a few d² floats, so this is never the bottleneck.

use std::sync::OnceLock;

fn table() -> &'static [u32; 256] {
    static TABLE: OnceLock<[u32; 256]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
            *e = c;
        }
        t
    })
}

/// CRC-32 of `data` (equal to Python's `zlib.crc32(data)`).
pub fn crc32(data: &[u8]) -> u32 {
    let t = table();
    !data.iter().fold(!0u32, |c, b| t[((c ^ *b as u32) & 0xFF) as usize] ^ (c >> 8))
}

#[cfg(test)]
mod tests {
    use super::crc32;

    #[test]
    fn known_values() {
        // The standard check value of CRC-32/ISO-HDLC, and the empty input.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"The quick brown fox jumps over the lazy dog"), 0x414F_A339);
    }

    #[test]
    fn one_flipped_bit_is_seen() {
        let mut b: Vec<u8> = (0..=255u8).collect();
        let c = crc32(&b);
        for i in [0, 17, 255] {
            b[i] ^= 0x10;
            assert_ne!(crc32(&b), c);
            b[i] ^= 0x10;
        }
    }
}
