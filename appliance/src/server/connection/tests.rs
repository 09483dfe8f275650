//! The streaming-body path of a connection, driven byte by byte.

use alloc::string::String;
use alloc::vec::Vec;

use super::*;
use crate::http::{Request, RequestHead};

/// Streams `/stream` bodies (refusing as told), answers anything else 200.
#[derive(Default)]
struct Sink {
    received: Vec<u8>,
    chunks: usize,
    refuse_start: bool,
    /// Fails the chunk that takes the total past this many bytes.
    fail_after: Option<usize>,
    ended: bool,
    aborted: bool,
    /// Takes nothing (back-pressure) while set.
    paused: bool,
    /// Takes at most this many bytes per chunk.
    take_at_most: Option<usize>,
}

impl Handler for Sink {
    fn handle(&mut self, request: &Request<'_>) -> Reply {
        Reply::Now(Response::json_error(Status::OK, request.path()))
    }
    fn streams(&self, head: &RequestHead<'_>) -> bool {
        head.path == "/stream"
    }
    fn stream_start(&mut self, _head: &RequestHead<'_>, _length: u64) -> Result<Ticket, Response> {
        if self.refuse_start {
            return Err(Response::json_error(Status::CONFLICT, "busy"));
        }
        Ok(Ticket(3))
    }
    fn stream_chunk(&mut self, _ticket: Ticket, bytes: &[u8]) -> Result<usize, Response> {
        let n = if self.paused {
            0
        } else {
            bytes.len().min(self.take_at_most.unwrap_or(usize::MAX))
        };
        self.received.extend_from_slice(&bytes[..n]);
        self.chunks += 1;
        if self.fail_after.is_some_and(|n| self.received.len() > n) {
            return Err(Response::json_error(Status::BAD_REQUEST, "bad image"));
        }
        Ok(n)
    }
    fn stream_end(&mut self, _ticket: Ticket) -> Reply {
        self.ended = true;
        Reply::Now(Response::json_error(Status::OK, "stored"))
    }
    fn stream_abort(&mut self, _ticket: Ticket) {
        self.aborted = true;
    }
}

fn body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn put(len: usize, extra: &str) -> Vec<u8> {
    let mut raw =
        alloc::format!("PUT /stream HTTP/1.1\r\nHost: h\r\nContent-Length: {len}\r\n{extra}\r\n")
            .into_bytes();
    raw.extend_from_slice(&body(len));
    raw
}

/// Feeds `input` as the server would (never more than the connection's
/// room, 1000 bytes at a time), answering after each piece; checks the
/// bound on held input all along. Returns everything written.
fn drive(conn: &mut Connection, sink: &mut Sink, input: &[u8], peer_closes: bool) -> String {
    let limits = Limits::default();
    let mut out = Vec::new();
    let mut rest = input;
    let mut stalled = 0;
    while !rest.is_empty() && stalled < 3 {
        let n = conn.room(&limits).min(rest.len()).min(1000);
        conn.receive(&rest[..n]);
        rest = &rest[n..];
        conn.respond(sink, &limits, false);
        if conn.is_streaming() {
            assert!(conn.buffered_input() <= STREAM_WINDOW);
        }
        out.extend_from_slice(conn.output());
        let sent = conn.output().len();
        conn.sent(sent);
        stalled = if n == 0 { stalled + 1 } else { 0 };
    }
    conn.respond(sink, &limits, peer_closes);
    out.extend_from_slice(conn.output());
    let sent = conn.output().len();
    conn.sent(sent);
    String::from_utf8(out).unwrap()
}

#[test]
fn a_body_beyond_the_buffer_limit_streams_in_order_then_the_next_request_is_served() {
    let len = 3 * 1024 * 1024;
    let mut input = put(len, "");
    input.extend_from_slice(b"GET /after HTTP/1.1\r\nHost: h\r\n\r\n");
    let (mut conn, mut sink) = (Connection::new(), Sink::default());
    let out = drive(&mut conn, &mut sink, &input, false);
    assert_eq!(sink.received, body(len));
    assert!(sink.chunks > 1);
    assert!(sink.ended && !sink.aborted);
    let stored = out.find(r#"{"error":"stored"}"#).unwrap();
    let after = out.find(r#"{"error":"/after"}"#).unwrap();
    assert!(stored < after, "{out}");
    assert!(!conn.finished(false));
}

#[test]
fn other_routes_keep_the_buffered_limit() {
    let len = Limits::default().max_body_bytes + 1;
    let mut input =
        alloc::format!("PUT /other HTTP/1.1\r\nHost: h\r\nContent-Length: {len}\r\n\r\n")
            .into_bytes();
    input.extend_from_slice(&body(len));
    let (mut conn, mut sink) = (Connection::new(), Sink::default());
    let out = drive(&mut conn, &mut sink, &input, false);
    assert!(out.starts_with("HTTP/1.1 413 "), "{out}");
    assert!(sink.received.is_empty());
}

#[test]
fn a_refused_start_is_answered_and_its_body_dropped() {
    let (mut conn, mut sink) = (
        Connection::new(),
        Sink {
            refuse_start: true,
            ..Sink::default()
        },
    );
    let out = drive(&mut conn, &mut sink, &put(200_000, ""), false);
    assert!(out.starts_with("HTTP/1.1 409 "), "{out}");
    assert_eq!(out.matches("HTTP/1.1").count(), 1, "{out}");
    assert!(sink.received.is_empty());
    assert!(conn.finished(false));
}

#[test]
fn a_refused_start_sends_no_continue_and_closes_at_once() {
    let (mut conn, mut sink) = (
        Connection::new(),
        Sink {
            refuse_start: true,
            ..Sink::default()
        },
    );
    let raw =
        b"PUT /stream HTTP/1.1\r\nHost: h\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n";
    let out = drive(&mut conn, &mut sink, raw, false);
    assert!(out.starts_with("HTTP/1.1 409 "), "{out}");
    assert!(conn.finished(false));
}

#[test]
fn an_accepted_start_sends_continue() {
    let (mut conn, mut sink) = (Connection::new(), Sink::default());
    let raw =
        b"PUT /stream HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n";
    let out = drive(&mut conn, &mut sink, raw, false);
    assert_eq!(out, "HTTP/1.1 100 Continue\r\n\r\n");
    let out = drive(&mut conn, &mut sink, b"abcde", false);
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    assert_eq!(sink.received, b"abcde");
}

#[test]
fn a_failing_chunk_is_answered_once_and_the_rest_dropped() {
    let (mut conn, mut sink) = (
        Connection::new(),
        Sink {
            fail_after: Some(10_000),
            ..Sink::default()
        },
    );
    let out = drive(&mut conn, &mut sink, &put(300_000, ""), false);
    assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
    assert_eq!(out.matches("HTTP/1.1").count(), 1, "{out}");
    assert!(sink.received.len() < 300_000);
    assert!(!sink.ended && !sink.aborted);
    assert!(conn.finished(false));
}

#[test]
fn a_body_cut_short_aborts_the_stream() {
    let (mut conn, mut sink) = (Connection::new(), Sink::default());
    let input = put(100_000, "");
    let out = drive(&mut conn, &mut sink, &input[..50_000], true);
    assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
    assert!(sink.aborted && !sink.ended);
    assert!(conn.finished(true));
}

#[test]
fn a_connection_dropped_mid_stream_aborts_it() {
    let (mut conn, mut sink) = (Connection::new(), Sink::default());
    let input = put(100_000, "");
    drive(&mut conn, &mut sink, &input[..50_000], false);
    conn.abandon(&mut sink);
    assert!(sink.aborted && !sink.ended);
}

#[test]
fn a_chunked_body_is_refused_with_411() {
    let (mut conn, mut sink) = (Connection::new(), Sink::default());
    let raw = b"PUT /stream HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\n";
    let out = drive(&mut conn, &mut sink, raw, false);
    assert!(out.starts_with("HTTP/1.1 411 "), "{out}");
    assert!(sink.received.is_empty());
    assert!(conn.finished(false));
}

#[test]
fn back_pressure_holds_the_body_until_the_handler_takes_it() {
    let len = 200_000;
    let (mut conn, mut sink) = (
        Connection::new(),
        Sink {
            paused: true,
            ..Sink::default()
        },
    );
    let limits = Limits::default();
    let input = put(len, "");
    let mut rest = &input[..];
    // Paused: the input fills to the stream window and no further.
    for _ in 0..200 {
        let n = conn.room(&limits).min(rest.len()).min(1000);
        conn.receive(&rest[..n]);
        rest = &rest[n..];
        conn.respond(&mut sink, &limits, false);
    }
    assert!(sink.received.is_empty());
    assert_eq!(conn.buffered_input(), STREAM_WINDOW);
    assert!(
        conn.is_waiting(),
        "a stalled stream is asked again every poll"
    );
    // Taking a little at a time, everything arrives in order.
    sink.paused = false;
    sink.take_at_most = Some(777);
    let out = drive(&mut conn, &mut sink, rest, false);
    for _ in 0..1000 {
        if sink.ended {
            break;
        }
        conn.respond(&mut sink, &limits, false);
    }
    let mut out = out;
    out.push_str(core::str::from_utf8(conn.output()).unwrap());
    assert_eq!(sink.received, body(len));
    assert!(sink.ended && !sink.aborted);
    assert!(out.contains(r#"{"error":"stored"}"#), "{out}");
}

/// Serves `GET /download` as a streamed body of `len` pattern bytes, handed
/// over in pieces of at most `piece`, with a pause every other ask.
struct Source {
    len: u64,
    given: u64,
    piece: usize,
    asks: usize,
    fail_at: Option<u64>,
    cancelled: bool,
}

impl Handler for Source {
    fn handle(&mut self, request: &Request<'_>) -> Reply {
        if request.path() == "/download" {
            return Reply::Now(Response::streamed(
                Status::OK,
                "application/octet-stream",
                self.len,
                9,
            ));
        }
        Reply::Now(Response::json_error(Status::OK, request.path()))
    }
    fn body_chunk(&mut self, ticket: Ticket, max: usize) -> Result<Option<Vec<u8>>, BodyCut> {
        assert_eq!(ticket, Ticket(9));
        self.asks += 1;
        if self.asks.is_multiple_of(2) {
            return Ok(None);
        }
        if self.fail_at.is_some_and(|f| self.given >= f) {
            return Err(BodyCut);
        }
        let n = (self.len - self.given)
            .min(max as u64)
            .min(self.piece as u64) as usize;
        let bytes = (0..n)
            .map(|i| ((self.given + i as u64) % 251) as u8)
            .collect();
        self.given += n as u64;
        Ok(Some(bytes))
    }
    fn cancel(&mut self, _ticket: Ticket) {
        self.cancelled = true;
    }
}

fn download(source: &mut Source) -> (Vec<u8>, Connection) {
    let limits = Limits::default();
    let mut conn = Connection::new();
    conn.receive(b"GET /download HTTP/1.1\r\nHost: h\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n");
    let mut out = Vec::new();
    for _ in 0..10_000 {
        conn.respond(source, &limits, false);
        assert!(conn.output().len() <= 2 * OUTPUT_HIGH_WATER);
        out.extend_from_slice(conn.output());
        let n = conn.output().len();
        conn.sent(n);
        if !conn.is_waiting() && conn.buffered_input() == 0 {
            break;
        }
    }
    (out, conn)
}

#[test]
fn a_streamed_response_body_is_sent_in_pieces_then_the_next_request_is_served() {
    let len = 300_001;
    let mut source = Source {
        len,
        given: 0,
        piece: 50_000,
        asks: 0,
        fail_at: None,
        cancelled: false,
    };
    let (out, conn) = download(&mut source);
    let head_end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = core::str::from_utf8(&out[..head_end]).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert!(head.contains("Content-Length: 300001\r\n"), "{head}");
    let body = &out[head_end..head_end + len as usize];
    assert_eq!(body, &self::body(len as usize)[..]);
    let rest = core::str::from_utf8(&out[head_end + len as usize..]).unwrap();
    assert!(rest.contains(r#"{"error":"/next"}"#), "{rest}");
    assert!(source.cancelled, "the handler is told the body is over");
    assert!(!conn.finished(false));
}

#[test]
fn a_streamed_response_that_fails_is_cut_short_and_the_connection_closes() {
    let mut source = Source {
        len: 300_000,
        given: 0,
        piece: 50_000,
        asks: 0,
        fail_at: Some(100_000),
        cancelled: false,
    };
    let (out, conn) = download(&mut source);
    let head_end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(out.len() - head_end, 100_000);
    assert!(source.cancelled);
    assert!(conn.finished(false));
}

/// A tunnel that upper-cases what it is sent, takes at most `window`
/// bytes a turn, and ends when it sees `!`.
#[derive(Default)]
struct Upper {
    window: usize,
    closed: bool,
}

impl Handler for Upper {
    fn handle(&mut self, request: &Request<'_>) -> Reply {
        if request.method() == crate::http::Method::Other("CONNECT") {
            Reply::Tunnel(Ticket(7))
        } else {
            Reply::Now(Response::json_error(Status::OK, request.path()))
        }
    }
    fn tunnel_io(&mut self, ticket: Ticket, input: &[u8], output: &mut Vec<u8>) -> Option<usize> {
        assert_eq!(ticket, Ticket(7));
        if input.contains(&b'!') {
            return None;
        }
        let take = input.len().min(self.window);
        output.extend(input[..take].iter().map(u8::to_ascii_uppercase));
        Some(take)
    }
    fn tunnel_close(&mut self, _ticket: Ticket) {
        self.closed = true;
    }
}

fn flush(conn: &mut Connection) -> String {
    let out = String::from_utf8_lossy(conn.output()).into_owned();
    let n = conn.output().len();
    conn.sent(n);
    out
}

#[test]
fn connect_turns_the_connection_into_a_tunnel_both_ways() {
    let limits = Limits::default();
    let mut conn = Connection::new();
    let mut h = Upper {
        window: 3,
        ..Upper::default()
    };
    // Bytes right behind the head already belong to the tunnel.
    conn.receive(b"CONNECT /console?ref=x HTTP/1.0\r\n\r\nabcde");
    conn.respond(&mut h, &limits, false);
    assert_eq!(flush(&mut conn), "HTTP/1.1 200 OK\r\n\r\n");
    assert!(conn.is_waiting(), "a tunnel is never idle");
    conn.respond(&mut h, &limits, false);
    assert_eq!(
        flush(&mut conn),
        "ABC",
        "the handler took 3; the rest waits"
    );
    conn.receive(b"GET / HTTP/1.1\r\n\r\n");
    conn.respond(&mut h, &limits, false);
    conn.respond(&mut h, &limits, false);
    assert_eq!(
        flush(&mut conn),
        "DEGET ",
        "after CONNECT nothing is parsed as HTTP"
    );
    assert!(!conn.finished(false));
    // The handler ends it: closed once flushed.
    conn.receive(b"!");
    for _ in 0..8 {
        conn.respond(&mut h, &limits, false);
    }
    flush(&mut conn);
    assert!(h.closed);
    assert!(conn.finished(false));

    // The peer going away closes the tunnel.
    let mut conn = Connection::new();
    let mut h = Upper {
        window: 100,
        ..Upper::default()
    };
    conn.receive(b"CONNECT /c HTTP/1.0\r\n\r\n");
    conn.respond(&mut h, &limits, false);
    flush(&mut conn);
    assert!(conn.finished(true));
    conn.abandon(&mut h);
    assert!(h.closed);
}
