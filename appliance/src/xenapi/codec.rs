//! A compact binary encoding of [`Value`] for the configuration store: a tag
//! byte, then little-endian fixed-size numbers or a u32 length and the bytes
//! or items. Decoding is bounded in depth and by the input's own length, and
//! cannot panic: the store's bytes may be damaged or hostile.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use super::value::Value;

/// Nesting deeper than any record of the schema (maps of strings, sets).
const MAX_DEPTH: usize = 16;

const NIL: u8 = 0;
const BOOL: u8 = 1;
const INT: u8 = 2;
const I4: u8 = 3;
const DOUBLE: u8 = 4;
const STRING: u8 = 5;
const DATETIME: u8 = 6;
const ARRAY: u8 = 7;
const STRUCT: u8 = 8;

/// Why bytes are not an encoded value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    Truncated,
    BadTag(u8),
    BadUtf8,
    TooDeep,
    TrailingBytes,
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DecodeError::Truncated => write!(f, "truncated value"),
            DecodeError::BadTag(t) => write!(f, "unknown value tag {t}"),
            DecodeError::BadUtf8 => write!(f, "a string is not UTF-8"),
            DecodeError::TooDeep => write!(f, "values nested too deeply"),
            DecodeError::TrailingBytes => write!(f, "bytes after the value"),
        }
    }
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u32).to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// Appends the encoding of `v` to `out`.
pub fn encode_into(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Nil => out.push(NIL),
        Value::Bool(b) => out.extend_from_slice(&[BOOL, u8::from(*b)]),
        Value::Int(i) => {
            out.push(INT);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::I4(i) => {
            out.push(I4);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::Double(x) => {
            out.push(DOUBLE);
            out.extend_from_slice(&x.to_bits().to_le_bytes());
        }
        Value::String(s) => {
            out.push(STRING);
            put_str(out, s);
        }
        Value::DateTime(s) => {
            out.push(DATETIME);
            put_str(out, s);
        }
        Value::Array(items) => {
            out.push(ARRAY);
            put_len(out, items.len());
            for item in items {
                encode_into(item, out);
            }
        }
        Value::Struct(map) => {
            out.push(STRUCT);
            put_len(out, map.len());
            for (k, item) in map {
                put_str(out, k);
                encode_into(item, out);
            }
        }
    }
}

pub fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(v, &mut out);
    out
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.bytes.len() {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn len(&mut self) -> Result<usize, DecodeError> {
        let n = u32::from_le_bytes(self.array()?) as usize;
        // Every item takes at least one byte: a count beyond the input is a lie.
        if n > self.bytes.len() {
            return Err(DecodeError::Truncated);
        }
        Ok(n)
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let n = self.len()?;
        let b = self.take(n)?;
        core::str::from_utf8(b)
            .map(String::from)
            .map_err(|_| DecodeError::BadUtf8)
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        let [tag] = self.array()?;
        Ok(match tag {
            NIL => Value::Nil,
            BOOL => Value::Bool(self.array::<1>()?[0] != 0),
            INT => Value::Int(i64::from_le_bytes(self.array()?)),
            I4 => Value::I4(i32::from_le_bytes(self.array()?)),
            DOUBLE => Value::Double(f64::from_bits(u64::from_le_bytes(self.array()?))),
            STRING => Value::String(self.string()?),
            DATETIME => Value::DateTime(self.string()?),
            ARRAY => {
                let n = self.len()?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Value::Array(items)
            }
            STRUCT => {
                let n = self.len()?;
                let mut map = BTreeMap::new();
                for _ in 0..n {
                    let k = self.string()?;
                    map.insert(k, self.value(depth + 1)?);
                }
                Value::Struct(map)
            }
            other => return Err(DecodeError::BadTag(other)),
        })
    }
}

/// Decodes one value that must fill `bytes` exactly.
pub fn decode(bytes: &[u8]) -> Result<Value, DecodeError> {
    let mut r = Reader { bytes };
    let v = r.value(0)?;
    if !r.bytes.is_empty() {
        return Err(DecodeError::TrailingBytes);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Value {
        let mut map = BTreeMap::new();
        map.insert(String::from("auto_poweron"), Value::str("true"));
        map.insert(String::from("n"), Value::Int(-5));
        let mut record = BTreeMap::new();
        record.insert(String::from("other_config"), Value::Struct(map));
        record.insert(
            String::from("VBDs"),
            Value::Array(vec![Value::str("OpaqueRef:a"), Value::Nil]),
        );
        record.insert(
            String::from("t"),
            Value::DateTime("20250319T04:16:24Z".into()),
        );
        record.insert(String::from("x"), Value::Double(0.25));
        record.insert(String::from("i"), Value::I4(7));
        record.insert(String::from("b"), Value::Bool(true));
        Value::Struct(record)
    }

    #[test]
    fn round_trips() {
        let v = sample();
        assert_eq!(decode(&encode(&v)), Ok(v));
    }

    #[test]
    fn damaged_bytes_are_errors_not_panics() {
        let good = encode(&sample());
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..good.len() {
            for x in [1u8, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[i] ^= x;
                let _ = decode(&bad);
            }
        }
        assert_eq!(decode(&[9]), Err(DecodeError::BadTag(9)));
        assert_eq!(decode(&[0, 0]), Err(DecodeError::TrailingBytes));
        // A huge count with no items behind it does not allocate or loop.
        assert_eq!(
            decode(&[ARRAY, 0xff, 0xff, 0xff, 0xff]),
            Err(DecodeError::Truncated)
        );
        // Deep nesting stops at the limit.
        let mut deep = Vec::new();
        for _ in 0..100 {
            deep.extend_from_slice(&[ARRAY, 1, 0, 0, 0]);
        }
        deep.push(NIL);
        assert_eq!(decode(&deep), Err(DecodeError::TooDeep));
    }
}
