//! Responses: a builder and its serialization.
//!
//! The serializer owns the framing headers. Handlers set status, headers and
//! body; `Content-Length` and `Connection` are always written by
//! [`Response::write_to`] from the body and the connection's fate, so they
//! can never disagree with what is actually sent.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::fmt::Write as _;

use serde::Serialize;

use super::error::HttpError;
use super::syntax::{is_field_byte, is_tchar};

/// An HTTP status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Status(u16);

impl Status {
    pub const CONTINUE: Status = Status(100);
    pub const OK: Status = Status(200);
    pub const NO_CONTENT: Status = Status(204);
    pub const NOT_MODIFIED: Status = Status(304);
    pub const BAD_REQUEST: Status = Status(400);
    pub const UNAUTHORIZED: Status = Status(401);
    pub const NOT_FOUND: Status = Status(404);
    pub const METHOD_NOT_ALLOWED: Status = Status(405);
    pub const CONFLICT: Status = Status(409);
    pub const LENGTH_REQUIRED: Status = Status(411);
    pub const CONTENT_TOO_LARGE: Status = Status(413);
    pub const URI_TOO_LONG: Status = Status(414);
    pub const REQUEST_HEADER_FIELDS_TOO_LARGE: Status = Status(431);
    pub const INTERNAL_SERVER_ERROR: Status = Status(500);
    pub const NOT_IMPLEMENTED: Status = Status(501);
    pub const SERVICE_UNAVAILABLE: Status = Status(503);
    pub const HTTP_VERSION_NOT_SUPPORTED: Status = Status(505);

    /// A status from its code; `None` outside 100..=599.
    pub const fn new(code: u16) -> Option<Status> {
        if code >= 100 && code <= 599 {
            Some(Status(code))
        } else {
            None
        }
    }

    /// The numeric code.
    pub const fn code(self) -> u16 {
        self.0
    }

    /// The reason phrase of RFC 9110 (or a class name for codes it does not list).
    pub fn reason(self) -> &'static str {
        let named = match self.0 {
            100 => "Continue",
            200 => "OK",
            201 => "Created",
            202 => "Accepted",
            204 => "No Content",
            301 => "Moved Permanently",
            302 => "Found",
            304 => "Not Modified",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            409 => "Conflict",
            411 => "Length Required",
            413 => "Content Too Large",
            414 => "URI Too Long",
            415 => "Unsupported Media Type",
            417 => "Expectation Failed",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            501 => "Not Implemented",
            503 => "Service Unavailable",
            505 => "HTTP Version Not Supported",
            _ => "",
        };
        if !named.is_empty() {
            return named;
        }
        match self.0 / 100 {
            1 => "Informational",
            2 => "Success",
            3 => "Redirection",
            4 => "Client Error",
            _ => "Server Error",
        }
    }

    /// 1xx, 204 and 304 responses never carry a body (RFC 9112 §6.3).
    fn allows_body(self) -> bool {
        !(self.0 < 200 || self.0 == 204 || self.0 == 304)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0, self.reason())
    }
}

/// Headers the serializer writes itself; a handler's copies are ignored.
const FRAMING_HEADERS: [&str; 3] = ["content-length", "connection", "transfer-encoding"];

/// A response under construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    status: Status,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    close: bool,
    /// A body the handler supplies piece by piece after the head (see
    /// [`Response::streamed`]): its length, and the ticket it is asked by.
    streamed: Option<(u64, u64)>,
}

impl Response {
    /// An empty response with `status`.
    pub fn new(status: Status) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            close: false,
            streamed: None,
        }
    }

    /// A response whose body of `length` bytes the handler supplies after
    /// the head, as the connection has room for it
    /// (`Handler::body_chunk` with `ticket`): a large download is never
    /// held whole.
    pub fn streamed(status: Status, content_type: &str, length: u64, ticket: u64) -> Self {
        let mut r = Response::new(status).with_header("Content-Type", content_type);
        r.streamed = Some((length, ticket));
        r
    }

    /// The length and ticket of a streamed body.
    pub fn streamed_body(&self) -> Option<(u64, u64)> {
        self.streamed
    }

    /// A JSON response.
    pub fn json(status: Status, body: Vec<u8>) -> Self {
        Response::new(status).with_body("application/json", body)
    }

    /// `{"error":"<message>"}` with `status`: the shape every error of the API takes.
    pub fn json_error(status: Status, message: &str) -> Self {
        #[derive(Serialize)]
        struct ErrorBody<'a> {
            error: &'a str,
        }
        match serde_json::to_vec(&ErrorBody { error: message }) {
            Ok(body) => Response::json(status, body),
            // Serializing a string into a Vec cannot fail; if it ever did,
            // the status code alone still tells the client what happened.
            Err(_) => Response::new(status),
        }
    }

    /// The answer to a request the parser refused. The connection closes
    /// afterwards: after a framing error the next request's start is unknown.
    pub fn for_error(error: &HttpError) -> Self {
        Response::json_error(error.status(), &error.to_string()).with_close()
    }

    /// Adds a header. Framing headers (`Content-Length`, `Connection`,
    /// `Transfer-Encoding`) are ignored, and a name or value that would
    /// break the message (CR, LF, other controls) is dropped with a warning.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        if FRAMING_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name)) {
            return self;
        }
        let name_ok = !name.is_empty() && name.bytes().all(is_tchar);
        if !name_ok || !value.bytes().all(is_field_byte) {
            log::warn!("http: dropping invalid response header {name:?}");
            return self;
        }
        self.headers.push((String::from(name), String::from(value)));
        self
    }

    /// Sets the body and its `Content-Type`.
    pub fn with_body(mut self, content_type: &str, body: Vec<u8>) -> Self {
        self.headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case("content-type"));
        self = self.with_header("Content-Type", content_type);
        self.body = body;
        self
    }

    /// Closes the connection after this response, whatever the client asked.
    pub fn with_close(mut self) -> Self {
        self.close = true;
        self
    }

    pub fn status(&self) -> Status {
        self.status
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the response itself asks for the connection to close.
    pub fn closes_connection(&self) -> bool {
        self.close
    }

    /// Appends the serialized response to `out`. `keep_alive` is the
    /// connection's fate (the `Connection` header says it); `include_body` is
    /// false for HEAD, whose response carries the GET's length but no body.
    pub fn write_to(&self, out: &mut Vec<u8>, keep_alive: bool, include_body: bool) {
        let mut w = VecWriter(out);
        // Writing into a Vec cannot fail.
        let _ = write!(
            w,
            "HTTP/1.1 {} {}\r\n",
            self.status.code(),
            self.status.reason()
        );
        for (name, value) in &self.headers {
            let _ = write!(w, "{name}: {value}\r\n");
        }
        if self.status.allows_body() {
            let length = self
                .streamed
                .map_or(self.body.len() as u64, |(length, _)| length);
            let _ = write!(w, "Content-Length: {length}\r\n");
        }
        let connection = if keep_alive && !self.close {
            "keep-alive"
        } else {
            "close"
        };
        let _ = write!(w, "Connection: {connection}\r\n\r\n");
        if include_body && self.status.allows_body() {
            out.extend_from_slice(&self.body);
        }
    }

    /// The serialized response with its body.
    pub fn to_bytes(&self, keep_alive: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.body.len());
        self.write_to(&mut out, keep_alive, true);
        out
    }
}

struct VecWriter<'a>(&'a mut Vec<u8>);

impl fmt::Write for VecWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn serializes_status_headers_length_and_connection() {
        let response = Response::json(Status::OK, b"{}".to_vec()).with_header("X-Keel", "1");
        assert_eq!(
            text(response.to_bytes(true)),
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Keel: 1\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n{}"
        );
        assert!(text(response.to_bytes(false)).contains("\r\nConnection: close\r\n"));
    }

    #[test]
    fn head_keeps_the_length_but_not_the_body() {
        let mut out = Vec::new();
        Response::json(Status::OK, b"{\"a\":1}".to_vec()).write_to(&mut out, true, false);
        let out = text(out);
        assert!(out.contains("Content-Length: 7\r\n"));
        assert!(out.ends_with("\r\n\r\n"));
    }

    #[test]
    fn framing_and_invalid_headers_are_not_taken_from_handlers() {
        let response = Response::new(Status::OK)
            .with_header("Content-Length", "99")
            .with_header("connection", "keep-alive")
            .with_header("X-Evil", "a\r\nSet-Cookie: x")
            .with_header("Bad Name", "v");
        assert_eq!(
            text(response.to_bytes(true)),
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn close_wins_over_keep_alive_and_no_content_has_no_length() {
        let response = Response::new(Status::NO_CONTENT).with_close();
        assert_eq!(
            text(response.to_bytes(true)),
            "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn errors_become_json_with_their_status() {
        let response = Response::for_error(&HttpError::BodyTooLarge { limit: 10 });
        assert_eq!(response.status(), Status::CONTENT_TOO_LARGE);
        assert!(response.closes_connection());
        assert_eq!(
            response.body(),
            br#"{"error":"request body larger than 10 bytes"}"#
        );
        assert_eq!(response.header("content-type"), Some("application/json"));
    }

    #[test]
    fn status_codes_are_bounded_and_named() {
        assert_eq!(Status::new(99), None);
        assert_eq!(Status::new(600), None);
        assert_eq!(Status::new(418).map(Status::reason), Some("Client Error"));
        assert_eq!(Status::URI_TOO_LONG.to_string(), "414 URI Too Long");
    }
}
