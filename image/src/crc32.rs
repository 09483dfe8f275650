//! CRC-32 (IEEE 802.3, the zlib/PNG one) for the boot-module trailer.
//!
//! Hand-written rather than a dependency: it is twenty lines, and the
//! appliance decodes the module before anything else is up.

/// The reflected IEEE polynomial 0x04C11DB7.
const POLY: u32 = 0xEDB8_8320;

/// One entry per byte value, computed at compile time.
const TABLE: [u32; 256] = build_table();

const fn build_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut n = 0;
    while n < 256 {
        let mut c = n as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 != 0 { POLY ^ (c >> 1) } else { c >> 1 };
            bit += 1;
        }
        table[n] = c;
        n += 1;
    }
    table
}

/// CRC-32 of `bytes` (initial value and final XOR 0xFFFF_FFFF).
pub fn crc32(bytes: &[u8]) -> u32 {
    let crc = bytes.iter().fold(0xFFFF_FFFF_u32, |crc, &b| {
        // The index is the low byte of `crc ^ b`, so always < 256.
        TABLE[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8)
    });
    !crc
}

#[cfg(test)]
mod tests {
    use super::crc32;

    #[test]
    fn check_value() {
        // The "check" value every CRC-32/ISO-HDLC catalogue lists.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }
}
