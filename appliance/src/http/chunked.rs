//! `Transfer-Encoding: chunked` request bodies (RFC 9112 §7.1).
//!
//! Decoding walks the body twice: once to validate and find its end (cheap,
//! and repeated on every poll while the body is still arriving), and once
//! more, after it is complete, to copy the data out. Nothing is copied for a
//! body that turns out incomplete or invalid.

use alloc::vec::Vec;

use super::error::HttpError;
use super::request::Limits;
use super::syntax::{find_line, is_field_byte, is_tchar};

/// Longest chunk-size line (size plus extensions) accepted. Extensions carry
/// nothing we use; the bound stops a peer from making us buffer them forever.
const MAX_CHUNK_LINE: usize = 1024;

/// Decodes the chunked body at the front of `buf`: `Ok(None)` until the last
/// chunk and trailer section have arrived, then the data and the bytes used.
pub(super) fn decode(buf: &[u8], limits: &Limits) -> Result<Option<(Vec<u8>, usize)>, HttpError> {
    let Some((len, used)) = walk(buf, limits, |_| ())? else {
        return Ok(None);
    };
    let mut body = Vec::with_capacity(len);
    walk(buf, limits, |data| body.extend_from_slice(data))?;
    Ok(Some((body, used)))
}

/// Walks chunks, passing each chunk's data to `sink`; returns the decoded
/// length and the bytes used, or `None` if the body is incomplete.
fn walk(
    buf: &[u8],
    limits: &Limits,
    mut sink: impl FnMut(&[u8]),
) -> Result<Option<(usize, usize)>, HttpError> {
    let too_large = HttpError::BodyTooLarge {
        limit: limits.max_body_bytes,
    };
    let mut pos = 0;
    let mut total: usize = 0;
    loop {
        let Some((end, next)) = find_line(buf, pos) else {
            return if buf.len() - pos > MAX_CHUNK_LINE {
                Err(HttpError::BadChunk)
            } else {
                Ok(None)
            };
        };
        if next - pos > MAX_CHUNK_LINE {
            return Err(HttpError::BadChunk);
        }
        let size = parse_size_line(buf.get(pos..end).unwrap_or_default(), limits)?;
        pos = next;
        if size == 0 {
            break;
        }
        total = total
            .checked_add(size)
            .filter(|&t| t <= limits.max_body_bytes)
            .ok_or(too_large)?;
        let data_end = pos.checked_add(size).ok_or(too_large)?;
        let Some(data) = buf.get(pos..data_end) else {
            return Ok(None);
        };
        sink(data);
        pos = data_end;
        // Chunk data ends with CRLF (or a bare LF, as lines do elsewhere).
        match buf.get(pos..) {
            Some([b'\r', b'\n', ..]) => pos += 2,
            Some([b'\n', ..]) => pos += 1,
            Some([] | [b'\r']) | None => return Ok(None),
            Some(_) => return Err(HttpError::BadChunk),
        }
    }
    match skip_trailers(buf, pos, limits)? {
        Some(used) => Ok(Some((total, used))),
        None => Ok(None),
    }
}

/// `chunk-size [ chunk-ext ]`: hex digits, then nothing or `;` extensions.
fn parse_size_line(line: &[u8], limits: &Limits) -> Result<usize, HttpError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(HttpError::BadChunk);
    }
    let (hex, ext) = line.split_at(digits);
    let ext = ext.trim_ascii_start();
    if !(ext.is_empty() || (ext.first() == Some(&b';') && ext.iter().all(|&b| is_field_byte(b)))) {
        return Err(HttpError::BadChunk);
    }
    hex.iter().try_fold(0usize, |acc, &d| {
        let digit = (d as char).to_digit(16).ok_or(HttpError::BadChunk)? as usize;
        acc.checked_mul(16)
            .and_then(|acc| acc.checked_add(digit))
            .ok_or(HttpError::BodyTooLarge {
                limit: limits.max_body_bytes,
            })
    })
}

/// Skips the trailer section after the last chunk, validating each line like
/// a header; returns where the request ends. Trailers are dropped: nothing we
/// serve reads them.
fn skip_trailers(buf: &[u8], mut pos: usize, limits: &Limits) -> Result<Option<usize>, HttpError> {
    let start = pos;
    let too_large = HttpError::HeaderBlockTooLarge {
        limit: limits.max_head_bytes,
    };
    loop {
        let Some((end, next)) = find_line(buf, pos) else {
            return if buf.len() - start > limits.max_head_bytes {
                Err(too_large)
            } else {
                Ok(None)
            };
        };
        if next - start > limits.max_head_bytes {
            return Err(too_large);
        }
        let line = buf.get(pos..end).unwrap_or_default();
        pos = next;
        if line.is_empty() {
            return Ok(Some(pos));
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(HttpError::BadHeader)?;
        let (name, value) = line.split_at(colon);
        if name.is_empty()
            || !name.iter().all(|&b| is_tchar(b))
            || !value.iter().all(|&b| is_field_byte(b))
        {
            return Err(HttpError::BadHeader);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_default(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, HttpError> {
        decode(buf, &Limits::default())
    }

    #[test]
    fn decodes_chunks_extensions_and_trailers() {
        let body = b"4\r\nWiki\r\n5;name=value\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Sum: 1\r\n\r\nNEXT";
        let (data, used) = decode_default(body).unwrap().unwrap();
        assert_eq!(data, b"Wikipedia in\r\n\r\nchunks.");
        assert_eq!(&body[used..], b"NEXT");
    }

    #[test]
    fn bare_lf_is_accepted_like_elsewhere() {
        let (data, used) = decode_default(b"3\nabc\n0\n\n").unwrap().unwrap();
        assert_eq!((data.as_slice(), used), (&b"abc"[..], 9));
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let body = b"4\r\nWiki\r\n0\r\n\r\n";
        for cut in 0..body.len() {
            assert_eq!(decode_default(&body[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn malformed_chunks_are_rejected() {
        assert_eq!(decode_default(b"x\r\n"), Err(HttpError::BadChunk));
        assert_eq!(decode_default(b"4 junk\r\n"), Err(HttpError::BadChunk));
        assert_eq!(decode_default(b"4\r\nWikiXX"), Err(HttpError::BadChunk));
        assert_eq!(
            decode_default(b"0\r\nbad trailer\r\n\r\n"),
            Err(HttpError::BadHeader)
        );
        let long_ext = [b"1;".as_slice(), &[b'a'; 2000]].concat();
        assert_eq!(decode_default(&long_ext), Err(HttpError::BadChunk));
    }

    #[test]
    fn sizes_are_checked_before_data_arrives() {
        let limits = Limits {
            max_body_bytes: 10,
            ..Limits::default()
        };
        assert_eq!(
            decode(b"b\r\n", &limits),
            Err(HttpError::BodyTooLarge { limit: 10 })
        );
        assert_eq!(
            decode(b"8\r\n12345678\r\n3\r\n", &limits),
            Err(HttpError::BodyTooLarge { limit: 10 })
        );
        assert_eq!(
            decode_default(b"fffffffffffffffffffffff\r\n"),
            Err(HttpError::BodyTooLarge {
                limit: Limits::default().max_body_bytes
            })
        );
    }
}
