//! Text key=value segments (RFC 7143 §6.1): `key=value\0` pairs, possibly
//! spread over several PDUs (C bit), used by Login and Text PDUs.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Longest key name (RFC 7143 §6.1).
pub const MAX_KEY_LEN: usize = 63;
/// Longest value we accept (binary CHAP values are the longest in practice).
pub const MAX_VALUE_LEN: usize = 8192;
/// Most bytes one text exchange may accumulate before we call it abuse.
pub const MAX_TEXT_LEN: usize = 256 * 1024;

/// Reserved values (RFC 7143 §6.2).
pub const NOT_UNDERSTOOD: &str = "NotUnderstood";
pub const IRRELEVANT: &str = "Irrelevant";
pub const REJECT: &str = "Reject";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextError {
    /// A pair without `=`.
    MissingEquals,
    /// An empty, too long or badly formed key name.
    BadKey,
    /// A value longer than [`MAX_VALUE_LEN`].
    ValueTooLong,
    /// Not UTF-8 (keys and values are UTF-8 by RFC 7143 §6.1).
    NotUtf8,
    /// The target sent more continuation text than we accept.
    TooLong,
    /// The same key twice in one exchange.
    Duplicate(String),
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TextError::MissingEquals => write!(f, "text pair without '='"),
            TextError::BadKey => write!(f, "malformed text key name"),
            TextError::ValueTooLong => write!(f, "text value longer than {MAX_VALUE_LEN} bytes"),
            TextError::NotUtf8 => write!(f, "text key or value is not UTF-8"),
            TextError::TooLong => write!(f, "text exchange longer than {MAX_TEXT_LEN} bytes"),
            TextError::Duplicate(k) => write!(f, "key {k} sent twice"),
        }
    }
}

impl core::error::Error for TextError {}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= MAX_KEY_LEN
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+' | b'@' | b'_'))
}

/// An ordered list of key=value pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextPairs(pub Vec<(String, String)>);

impl TextPairs {
    pub fn new() -> Self {
        TextPairs(Vec::new())
    }

    /// Parses a complete text segment. Empty entries (padding NULs) are skipped.
    pub fn parse(data: &[u8]) -> Result<Self, TextError> {
        let mut out = Vec::new();
        for item in data.split(|&b| b == 0) {
            if item.is_empty() {
                continue;
            }
            let eq = item
                .iter()
                .position(|&b| b == b'=')
                .ok_or(TextError::MissingEquals)?;
            let key = core::str::from_utf8(&item[..eq]).map_err(|_| TextError::NotUtf8)?;
            let value = core::str::from_utf8(&item[eq + 1..]).map_err(|_| TextError::NotUtf8)?;
            if !valid_key(key) {
                return Err(TextError::BadKey);
            }
            if value.len() > MAX_VALUE_LEN {
                return Err(TextError::ValueTooLong);
            }
            out.push((String::from(key), String::from(value)));
        }
        Ok(TextPairs(out))
    }

    /// Like [`TextPairs::parse`], refusing a key sent twice (login/operational keys).
    pub fn parse_unique(data: &[u8]) -> Result<Self, TextError> {
        let pairs = Self::parse(data)?;
        for (i, (k, _)) in pairs.0.iter().enumerate() {
            if pairs.0[..i].iter().any(|(k2, _)| k2 == k) {
                return Err(TextError::Duplicate(k.clone()));
            }
        }
        Ok(pairs)
    }

    pub fn push(&mut self, key: &str, value: &str) {
        self.0.push((String::from(key), String::from(value)));
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in &self.0 {
            out.extend_from_slice(k.as_bytes());
            out.push(b'=');
            out.extend_from_slice(v.as_bytes());
            out.push(0);
        }
        out
    }
}

/// Collects a text segment sent over several PDUs (C bit set on all but
/// the last).
#[derive(Debug, Default)]
pub struct TextAccumulator {
    buf: Vec<u8>,
}

impl TextAccumulator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one PDU's data; returns the whole segment once `more` is false.
    pub fn push(&mut self, data: &[u8], more: bool) -> Result<Option<Vec<u8>>, TextError> {
        if self.buf.len() + data.len() > MAX_TEXT_LEN {
            self.buf.clear();
            return Err(TextError::TooLong);
        }
        self.buf.extend_from_slice(data);
        if more {
            Ok(None)
        } else {
            Ok(Some(core::mem::take(&mut self.buf)))
        }
    }

    pub fn clear(&mut self) {
        self.buf.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Splits an encoded text segment into PDU-sized chunks (`max` = the peer's
/// MaxRecvDataSegmentLength). Returns `(chunk, more)` pairs; an empty text
/// still yields one empty chunk.
pub fn split(data: &[u8], max: usize) -> impl Iterator<Item = (&[u8], bool)> {
    let max = max.max(1);
    let n = data.len().div_ceil(max).max(1);
    (0..n).map(move |i| {
        let s = (i * max).min(data.len());
        let e = ((i + 1) * max).min(data.len());
        (&data[s..e], i + 1 < n)
    })
}

/// Fuzz entry point for the text parser and the continuation logic.
pub fn fuzz_text(data: &[u8]) {
    if let Ok(pairs) = TextPairs::parse(data) {
        let enc = pairs.encode();
        assert_eq!(TextPairs::parse(&enc).ok(), Some(pairs.clone()));
        let mut acc = TextAccumulator::new();
        let mut whole = None;
        for (chunk, more) in split(&enc, 7) {
            if let Ok(Some(w)) = acc.push(chunk, more) {
                whole = Some(w);
            }
        }
        assert_eq!(whole.as_deref(), Some(enc.as_slice()));
    }
    let _ = TextPairs::parse_unique(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_encode() {
        let raw = b"InitiatorName=iqn.2026-11.keel:host\0AuthMethod=CHAP,None\0\0\0";
        let p = TextPairs::parse(raw).expect("parse");
        assert_eq!(p.get("InitiatorName"), Some("iqn.2026-11.keel:host"));
        assert_eq!(p.get("AuthMethod"), Some("CHAP,None"));
        assert_eq!(p.encode(), raw[..raw.len() - 2].to_vec());
        // Values may contain '='; only the first one splits.
        let p = TextPairs::parse(b"CHAP_C=0bAA==\0").expect("parse");
        assert_eq!(p.get("CHAP_C"), Some("0bAA=="));
    }

    #[test]
    fn errors() {
        assert_eq!(
            TextPairs::parse(b"novalue\0"),
            Err(TextError::MissingEquals)
        );
        assert_eq!(TextPairs::parse(b"=x\0"), Err(TextError::BadKey));
        assert_eq!(TextPairs::parse(b"a b=x\0"), Err(TextError::BadKey));
        assert_eq!(TextPairs::parse(b"k=\xff\0"), Err(TextError::NotUtf8));
        assert_eq!(
            TextPairs::parse_unique(b"a=1\0a=2\0"),
            Err(TextError::Duplicate("a".into()))
        );
        let mut acc = TextAccumulator::new();
        let big = alloc::vec![b'a'; MAX_TEXT_LEN];
        assert_eq!(acc.push(&big, true), Ok(None));
        assert_eq!(acc.push(b"x", true), Err(TextError::TooLong));
    }

    #[test]
    fn continuation_splits_keys_across_pdus() {
        let mut p = TextPairs::new();
        for i in 0..50 {
            p.push("TargetName", &alloc::format!("iqn.2026-11.keel:t{i}"));
            p.push("TargetAddress", "127.0.0.1:3260,1");
        }
        let enc = p.encode();
        let chunks: Vec<_> = split(&enc, 512).collect();
        assert!(chunks.len() > 2);
        assert!(chunks[..chunks.len() - 1].iter().all(|(_, more)| *more));
        let mut acc = TextAccumulator::new();
        let mut out = None;
        for (c, more) in chunks {
            out = acc.push(c, more).expect("push");
        }
        assert_eq!(TextPairs::parse(&out.expect("complete")), Ok(p));
        assert_eq!(
            split(&[], 512).collect::<Vec<_>>(),
            alloc::vec![(&[][..], false)]
        );
    }

    #[test]
    fn fuzz_smoke() {
        let mut seed = 0x1234_5678u32;
        let base = b"A=1\0B=2\0CHAP_C=0x00ff\0";
        for _ in 0..5000 {
            let mut d = base.to_vec();
            for _ in 0..3 {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let i = (seed >> 8) as usize % d.len();
                d[i] = (seed >> 20) as u8;
            }
            fuzz_text(&d);
        }
    }
}
