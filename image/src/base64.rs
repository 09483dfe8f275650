//! Standard base64 (RFC 4648 §4) without padding, as PHC strings use it.
//!
//! Small enough to own; decoding is strict (no padding, no whitespace,
//! zero unused bits) so one hash has exactly one spelling.

use alloc::string::String;
use alloc::vec::Vec;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Encodes `bytes` without `=` padding.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let group = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        // A chunk of n bytes carries 8n bits: n + 1 sextets.
        for i in 0..=chunk.len() {
            let sextet = (group >> (18 - 6 * i)) & 0x3F;
            out.push(char::from(ALPHABET[sextet as usize]));
        }
    }
    out
}

/// Decodes unpadded standard base64; `None` on any deviation.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    // A lone trailing sextet cannot carry a whole byte.
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 2);
    for chunk in text.chunks(4) {
        let mut group = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            group |= u32::from(sextet(c)?) << (18 - 6 * i);
        }
        let bytes = group.to_be_bytes();
        let full = chunk.len() - 1;
        out.extend_from_slice(&bytes[1..=full]);
        // Bits below the last whole byte must be zero, or two strings
        // would decode to the same bytes.
        let unused_mask = (1u32 << (8 * (3 - full))) - 1;
        if group & unused_mask != 0 {
            return None;
        }
    }
    Some(out)
}

fn sextet(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{decode, encode};

    /// RFC 4648 §10, padding removed.
    const VECTORS: [(&str, &str); 7] = [
        ("", ""),
        ("f", "Zg"),
        ("fo", "Zm8"),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg"),
        ("fooba", "Zm9vYmE"),
        ("foobar", "Zm9vYmFy"),
    ];

    #[test]
    fn rfc4648_vectors() {
        for (plain, coded) in VECTORS {
            assert_eq!(encode(plain.as_bytes()), coded);
            assert_eq!(decode(coded).as_deref(), Some(plain.as_bytes()));
        }
    }

    #[test]
    fn all_byte_values_round_trip() {
        let bytes: Vec<u8> = (0..=255).collect();
        for len in 0..bytes.len() {
            assert_eq!(
                decode(&encode(&bytes[..len])).as_deref(),
                Some(&bytes[..len])
            );
        }
    }

    #[test]
    fn rejects_non_canonical_input() {
        assert_eq!(decode("Zg=="), None, "padding");
        assert_eq!(decode("Zh"), None, "non-zero unused bits");
        assert_eq!(decode("Z"), None, "lone sextet");
        assert_eq!(decode("Zm9v\n"), None, "whitespace");
        assert_eq!(decode("Zm-v"), None, "url-safe alphabet");
    }
}
