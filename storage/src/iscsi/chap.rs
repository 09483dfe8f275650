//! CHAP with MD5 (RFC 1994, RFC 7143 §12.1.3) and the binary value
//! encodings of RFC 7143 §6.1 (`0x` hex, `0b` base64).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use md5::{Digest, Md5};

/// The CHAP_A value for MD5, the only algorithm we offer (other numbers
/// mean different algorithms on different targets).
pub const CHAP_ALGORITHM_MD5: &str = "5";
/// Length of the challenge we send for mutual CHAP.
pub const CHALLENGE_LEN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryError {
    /// Neither `0x`/`0X` nor `0b`/`0B`.
    NoPrefix,
    BadHex,
    BadBase64,
    Empty,
}

impl fmt::Display for BinaryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BinaryError::NoPrefix => write!(f, "binary value without 0x or 0b prefix"),
            BinaryError::BadHex => write!(f, "malformed hex value"),
            BinaryError::BadBase64 => write!(f, "malformed base64 value"),
            BinaryError::Empty => write!(f, "empty binary value"),
        }
    }
}

/// Decodes a binary value: `0x` hex (odd digit counts allowed, as RFC 7143
/// permits a leading nibble) or `0b` base64.
pub fn decode_binary(s: &str) -> Result<Vec<u8>, BinaryError> {
    let (prefix, body) = s.split_at_checked(2).ok_or(BinaryError::NoPrefix)?;
    let out = match prefix {
        "0x" | "0X" => decode_hex(body)?,
        "0b" | "0B" => decode_base64(body)?,
        _ => return Err(BinaryError::NoPrefix),
    };
    if out.is_empty() {
        return Err(BinaryError::Empty);
    }
    Ok(out)
}

fn hex_val(c: u8) -> Result<u8, BinaryError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(BinaryError::BadHex),
    }
}

fn decode_hex(s: &str) -> Result<Vec<u8>, BinaryError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len().div_ceil(2));
    let mut rest = b;
    if b.len() % 2 == 1 {
        out.push(hex_val(b[0])?);
        rest = &b[1..];
    }
    for pair in rest.chunks_exact(2) {
        out.push((hex_val(pair[0])? << 4) | hex_val(pair[1])?);
    }
    Ok(out)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_val(c: u8) -> Result<u32, BinaryError> {
    B64.iter()
        .position(|&x| x == c)
        .map(|p| p as u32)
        .ok_or(BinaryError::BadBase64)
}

fn decode_base64(s: &str) -> Result<Vec<u8>, BinaryError> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(4) {
        return Err(BinaryError::BadBase64);
    }
    let mut out = Vec::with_capacity(b.len() / 4 * 3);
    let n = b.len() / 4;
    for (i, q) in b.chunks_exact(4).enumerate() {
        let pad = q.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && i + 1 != n) {
            return Err(BinaryError::BadBase64);
        }
        let mut v = 0u32;
        for &c in &q[..4 - pad] {
            v = (v << 6) | b64_val(c)?;
        }
        v <<= 6 * pad as u32;
        let bytes = [(v >> 16) as u8, (v >> 8) as u8, v as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Ok(out)
}

/// `0x`-prefixed lowercase hex.
pub fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 + bytes.len() * 2);
    s.push_str("0x");
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// `0b`-prefixed base64.
pub fn encode_base64(bytes: &[u8]) -> String {
    let mut s = String::from("0b");
    for c in bytes.chunks(3) {
        let v = (u32::from(c[0]) << 16)
            | (u32::from(c.get(1).copied().unwrap_or(0)) << 8)
            | u32::from(c.get(2).copied().unwrap_or(0));
        for k in 0..4 {
            if k <= c.len() {
                s.push(char::from(B64[((v >> (18 - 6 * k)) & 63) as usize]));
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// RFC 1994 response: MD5(identifier ‖ secret ‖ challenge).
pub fn chap_md5_response(id: u8, secret: &[u8], challenge: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update([id]);
    h.update(secret);
    h.update(challenge);
    h.finalize().into()
}

/// Constant-time comparison for responses.
pub fn responses_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Fuzz entry point for the binary value decoders.
pub fn fuzz_binary(data: &[u8]) {
    if let Ok(s) = core::str::from_utf8(data)
        && let Ok(bytes) = decode_binary(s)
    {
        assert_eq!(decode_binary(&encode_hex(&bytes)), Ok(bytes.clone()));
        assert_eq!(decode_binary(&encode_base64(&bytes)), Ok(bytes));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_vectors() {
        // RFC 1321 test suite.
        let h: [u8; 16] = Md5::digest(b"abc").into();
        assert_eq!(encode_hex(&h), "0x900150983cd24fb0d6963f7d28e17f72");
        // CHAP: id 1, secret "secret", challenge 0x0102 computed by hand
        // from the definition.
        let mut manual = Md5::new();
        manual.update([1u8, b's', b'e', b'c', b'r', b'e', b't', 1, 2]);
        let expect: [u8; 16] = manual.finalize().into();
        assert_eq!(chap_md5_response(1, b"secret", &[1, 2]), expect);
    }

    #[test]
    fn binary_values() {
        assert_eq!(decode_binary("0x00ff10"), Ok(alloc::vec![0, 0xff, 0x10]));
        assert_eq!(decode_binary("0XABC"), Ok(alloc::vec![0x0a, 0xbc]));
        assert_eq!(decode_binary("0bAP8Q"), Ok(alloc::vec![0, 0xff, 0x10]));
        assert_eq!(decode_binary("0bYWJjZA=="), Ok(b"abcd".to_vec()));
        assert_eq!(decode_binary("0bYWJjZGU="), Ok(b"abcde".to_vec()));
        assert_eq!(encode_base64(b"abcd"), "0bYWJjZA==");
        assert_eq!(encode_base64(b"abcde"), "0bYWJjZGU=");
        assert_eq!(decode_binary("12"), Err(BinaryError::NoPrefix));
        assert_eq!(decode_binary("0xzz"), Err(BinaryError::BadHex));
        assert_eq!(decode_binary("0bA=B="), Err(BinaryError::BadBase64));
        assert_eq!(decode_binary("0x"), Err(BinaryError::Empty));
        assert_eq!(decode_binary("0"), Err(BinaryError::NoPrefix));
        assert_eq!(decode_binary("0é"), Err(BinaryError::NoPrefix));
        for len in 0..40u8 {
            let v: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37)).collect();
            fuzz_binary(encode_hex(&v).as_bytes());
            fuzz_binary(encode_base64(&v).as_bytes());
        }
    }
}
