//! A minimal HTTP/1.1 client over `std::net::TcpStream`, loopback only.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// One HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code, e.g. 200.
    pub status: u16,
    /// Header names and values in the order received.
    pub headers: Vec<(String, String)>,
    /// The body (lossy UTF-8).
    pub body: String,
}

impl HttpResponse {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// One `GET path` to `127.0.0.1:port` with `Connection: close`; every socket
/// operation is bounded by `timeout`.
pub fn get(port: u16, path: &str, timeout: Duration) -> io::Result<HttpResponse> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let timeout = timeout.max(Duration::from_millis(1));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(request(port, path).as_bytes())?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                if let Some(response) = parse(&raw, false)? {
                    return Ok(response);
                }
            }
            // A reset after a complete response is still a response.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset && !raw.is_empty() => break,
            Err(e) => return Err(e),
        }
    }
    parse(&raw, true)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "connection closed after {} bytes, before a complete response",
                raw.len()
            ),
        )
    })
}

/// How often [`poll_get`] opens another attempt while none has answered.
pub const POLL_ATTEMPT_INTERVAL: Duration = Duration::from_millis(100);
/// An attempt that has received nothing for this long is given up.
pub const POLL_ATTEMPT_PATIENCE: Duration = Duration::from_secs(3);
/// At most this many attempts are in flight at once.
const POLL_MAX_IN_FLIGHT: usize = 32;

/// One in-flight request of [`poll_get`].
struct Attempt {
    stream: TcpStream,
    raw: Vec<u8>,
    last_progress: Instant,
}

/// `GET path` until some attempt gets a complete response (of any status),
/// `timeout` passes, or `stop` returns a reason to give up.
///
/// QEMU's user-mode network accepts the loopback connection at once and only
/// then tries the guest, retrying its SYN on a timer of seconds while the
/// guest is not reachable yet. One attempt at a time would therefore see the
/// guest come up seconds late; instead a fresh attempt starts every
/// [`POLL_ATTEMPT_INTERVAL`] while older ones stay open, so readiness is seen
/// within about that interval. GET is idempotent, so duplicates are harmless.
pub fn poll_get(
    port: u16,
    path: &str,
    timeout: Duration,
    stop: &mut dyn FnMut() -> Option<String>,
) -> io::Result<HttpResponse> {
    let start = Instant::now();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let request = request(port, path);
    let mut attempts: Vec<Attempt> = Vec::new();
    let mut last_open: Option<Instant> = None;
    let mut last_error = String::from("no attempt finished");
    loop {
        if let Some(reason) = stop() {
            return Err(io::Error::other(reason));
        }
        if start.elapsed() >= timeout {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no HTTP answer within {:.1} s (last error: {last_error})",
                    timeout.as_secs_f64()
                ),
            ));
        }
        if last_open.is_none_or(|t| t.elapsed() >= POLL_ATTEMPT_INTERVAL) {
            if attempts.len() >= POLL_MAX_IN_FLIGHT {
                attempts.remove(0);
            }
            last_open = Some(Instant::now());
            let opened =
                TcpStream::connect_timeout(&addr, Duration::from_secs(1)).and_then(|mut stream| {
                    stream.write_all(request.as_bytes())?;
                    stream.set_nonblocking(true)?;
                    Ok(stream)
                });
            match opened {
                Ok(stream) => attempts.push(Attempt {
                    stream,
                    raw: Vec::new(),
                    last_progress: Instant::now(),
                }),
                Err(e) => last_error = e.to_string(),
            }
        }
        let mut i = 0;
        while i < attempts.len() {
            match poll_attempt(&mut attempts[i]) {
                Ok(Some(response)) => return Ok(response),
                Ok(None) if attempts[i].last_progress.elapsed() < POLL_ATTEMPT_PATIENCE => i += 1,
                Ok(None) => {
                    last_error = "an attempt got no answer in time".into();
                    attempts.remove(i);
                }
                Err(e) => {
                    last_error = e.to_string();
                    attempts.remove(i);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reads what is there; a complete response, `None` to keep waiting, or an
/// error when the attempt is over without one.
fn poll_attempt(attempt: &mut Attempt) -> io::Result<Option<HttpResponse>> {
    let mut buf = [0u8; 4096];
    loop {
        match attempt.stream.read(&mut buf) {
            Ok(0) => {
                return parse(&attempt.raw, true)?.map(Some).ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "connection closed after {} bytes, before a complete response",
                            attempt.raw.len()
                        ),
                    )
                });
            }
            Ok(n) => {
                attempt.raw.extend_from_slice(&buf[..n]);
                attempt.last_progress = Instant::now();
                if let Some(response) = parse(&attempt.raw, false)? {
                    return Ok(Some(response));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset && !attempt.raw.is_empty() => {
                return parse(&attempt.raw, true);
            }
            Err(e) => return Err(e),
        }
    }
}

fn request(port: u16, path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: keel-qemu-tests\r\nConnection: close\r\n\r\n"
    )
}

/// Parses a response; `Ok(None)` while more bytes are needed. With `at_eof`
/// a body without a length ends at the end of the stream.
pub fn parse(raw: &[u8], at_eof: bool) -> io::Result<Option<HttpResponse>> {
    let Some(head_end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let body = &raw[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(invalid(format!(
            "not an HTTP/1.x status line: {status_line:?}"
        )));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| invalid(format!("bad status line: {status_line:?}")))?;
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("bad header line: {line:?}")))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _): &&(String, String)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let body = if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        match dechunk(body)? {
            Some(body) => body,
            None if at_eof => return Err(invalid("chunked body ended early")),
            None => return Ok(None),
        }
    } else if let Some(length) = find("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| invalid(format!("bad Content-Length {length:?}")))?;
        if body.len() < length {
            if at_eof {
                return Err(invalid(format!(
                    "body has {} of {length} bytes",
                    body.len()
                )));
            }
            return Ok(None);
        }
        body[..length].to_vec()
    } else if at_eof {
        body.to_vec()
    } else {
        return Ok(None);
    };
    Ok(Some(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }))
}

/// Decodes a chunked body; `Ok(None)` while incomplete.
fn dechunk(mut data: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size_hex = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| invalid(format!("bad chunk size {size_hex:?}")))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(Some(out));
        }
        if data.len() < size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_length_response() {
        let raw =
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
        let r = parse(raw, false).expect("valid").expect("complete");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.body, "{}");
        assert_eq!(parse(&raw[..raw.len() - 1], false).expect("valid"), None);
        assert!(parse(&raw[..raw.len() - 1], true).is_err());
    }

    #[test]
    fn parses_chunked_and_eof_bodies() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(
            parse(raw, false).expect("valid").expect("complete").body,
            "abcde"
        );
        let raw = b"HTTP/1.0 404 Not Found\r\n\r\nnope";
        assert_eq!(parse(raw, false).expect("valid"), None);
        let r = parse(raw, true).expect("valid").expect("complete");
        assert_eq!((r.status, r.body.as_str()), (404, "nope"));
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse(b"SSH-2.0\r\n\r\n", true).is_err());
    }
}
