//! Entry point for the fuzz target `http_stream` (`cargo xtask fuzz`): a
//! connection fed arbitrary bytes in arbitrary pieces, with a handler that
//! streams the bodies of `PUT /s`. It panics only when an invariant breaks:
//! - while a body streams, the connection holds at most
//!   [`connection::STREAM_WINDOW`] bytes of input;
//! - a streamed body is handed over in order, never beyond its declared
//!   length, and each accepted stream ends or is aborted exactly once;
//! - refused and failed streams are neither ended nor aborted.

use alloc::vec::Vec;

use super::connection::{self, Connection};
use super::{Handler, Reply, Ticket};
use crate::http::{Limits, Request, RequestHead, Response, Status};

#[derive(Default)]
struct Streams {
    /// Declared length and bytes received of the stream open now.
    open: Option<(u64, u64)>,
    /// Refuse the next start, fail the chunk after this many bytes.
    refuse_next: bool,
    fail_after: Option<u64>,
    /// Take at most a few bytes per chunk (back-pressure).
    trickle: bool,
}

impl Handler for Streams {
    fn handle(&mut self, _request: &Request<'_>) -> Reply {
        Reply::Now(Response::new(Status::OK))
    }
    fn streams(&self, head: &RequestHead<'_>) -> bool {
        head.path == "/s"
    }
    fn stream_start(&mut self, _head: &RequestHead<'_>, length: u64) -> Result<Ticket, Response> {
        assert!(self.open.is_none(), "a stream started while one is open");
        if core::mem::take(&mut self.refuse_next) {
            return Err(Response::new(Status::CONFLICT));
        }
        self.open = Some((length, 0));
        Ok(Ticket(7))
    }
    fn stream_chunk(&mut self, ticket: Ticket, bytes: &[u8]) -> Result<usize, Response> {
        assert_eq!(ticket, Ticket(7));
        let (length, got) = self.open.as_mut().expect("a chunk without a stream");
        // Back-pressure: take a few bytes at a time when told to.
        let take = if self.trickle {
            bytes.len().min(7)
        } else {
            bytes.len()
        };
        *got += take as u64;
        assert!(*got <= *length, "{got} bytes of a {length}-byte body");
        if self.fail_after.is_some_and(|n| *got > n) {
            self.open = None;
            return Err(Response::new(Status::BAD_REQUEST));
        }
        Ok(take)
    }
    fn stream_end(&mut self, _ticket: Ticket) -> Reply {
        let (length, got) = self.open.take().expect("an end without a stream");
        assert_eq!(length, got, "ended before the whole body");
        Reply::Now(Response::new(Status::OK))
    }
    fn stream_abort(&mut self, _ticket: Ticket) {
        assert!(self.open.take().is_some(), "an abort without a stream");
    }
}

/// The first two bytes choose the handler's behaviour and the piece size;
/// the rest is the input.
pub fn fuzz_stream(data: &[u8]) {
    let (Some(&mode), Some(&piece)) = (data.first(), data.get(1)) else {
        return;
    };
    let input = data.get(2..).unwrap_or_default();
    let mut handler = Streams {
        refuse_next: mode & 1 != 0,
        fail_after: (mode & 2 != 0).then_some(u64::from((mode >> 2) & 0x1f) * 16),
        trickle: mode & 0x80 != 0,
        ..Streams::default()
    };
    let piece = usize::from(piece).max(1);
    let limits = Limits::default();
    let mut conn = Connection::new();
    let mut rest = input;
    let mut out: Vec<u8> = Vec::new();
    while !rest.is_empty() {
        let n = conn.room(&limits).min(rest.len()).min(piece);
        if n == 0 {
            break;
        }
        conn.receive(rest.get(..n).unwrap_or_default());
        rest = rest.get(n..).unwrap_or_default();
        conn.respond(&mut handler, &limits, false);
        if conn.is_streaming() {
            assert!(conn.buffered_input() <= connection::STREAM_WINDOW);
        }
        out.extend_from_slice(conn.output());
        let sent = conn.output().len();
        conn.sent(sent);
    }
    conn.respond(&mut handler, &limits, mode & 0x80 != 0);
    conn.abandon(&mut handler);
    assert!(handler.open.is_none(), "a stream neither ended nor aborted");
}

#[cfg(test)]
mod tests {
    use super::fuzz_stream;

    #[test]
    fn seeds_hold_the_invariants() {
        let put = |len: usize| {
            let mut raw =
                alloc::format!("PUT /s HTTP/1.1\r\nContent-Length: {len}\r\n\r\n").into_bytes();
            raw.extend(core::iter::repeat_n(b'x', len));
            raw
        };
        for mode in [0u8, 1, 2, 3, 0x80, 0x82, 0x0e] {
            for piece in [1u8, 7, 255] {
                for input in [put(0), put(5), put(70_000), put(70_000)[..30_000].to_vec()] {
                    let mut data = alloc::vec![mode, piece];
                    data.extend_from_slice(&input);
                    data.extend_from_slice(b"GET / HTTP/1.1\r\n\r\nPUT /s HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
                    fuzz_stream(&data);
                }
            }
        }
    }
}
