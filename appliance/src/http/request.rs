//! The request parser: request line, header fields, body framing.

use alloc::borrow::Cow;
use alloc::vec::Vec;

use super::chunked;
use super::error::HttpError;
use super::syntax::{find_line, is_field_byte, is_tchar, list_elements, trim_ows};

/// Longest method token accepted. Real methods are at most 7 bytes
/// (`OPTIONS`); the margin admits extension methods, and the bound lets the
/// parser reject binary garbage (a TLS handshake on port 80) at once.
pub const MAX_METHOD_LEN: usize = 32;

/// How much a request may hold. Every size the peer controls is checked
/// against one of these before it is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Request line plus header lines plus the empty line, in bytes.
    pub max_head_bytes: usize,
    /// Header lines.
    pub max_headers: usize,
    /// Request-target, in bytes.
    pub max_target_bytes: usize,
    /// Body after transfer decoding, in bytes.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 8 * 1024,
            max_headers: 64,
            max_target_bytes: 4 * 1024,
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// What parsing a buffer found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse<T> {
    /// More bytes are needed; call again with the same bytes and more.
    Incomplete,
    /// A whole request occupying the first `consumed` bytes of the buffer.
    Complete { request: T, consumed: usize },
}

/// The protocol version of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// The request method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method<'a> {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    /// Any other token (`PATCH`, `PROPFIND`, ...); the router decides.
    Other(&'a str),
}

impl<'a> Method<'a> {
    fn from_token(token: &'a str) -> Self {
        // Methods are case-sensitive (RFC 9110 §9.1): `get` is not GET.
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            other => Method::Other(other),
        }
    }

    /// The method token.
    pub fn as_str(&self) -> &'a str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Other(token) => token,
        }
    }
}

/// One header field, borrowed from the request bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// The name as sent (compare with `eq_ignore_ascii_case`).
    pub name: &'a str,
    /// The value without surrounding whitespace; may hold obs-text bytes.
    pub value: &'a [u8],
}

/// The header fields of a request, in the order sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers<'a> {
    fields: Vec<Header<'a>>,
}

impl<'a> Headers<'a> {
    /// The value of the first field called `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.get_all(name).next()
    }

    /// The value of the first field called `name`, if it is UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&'a str> {
        self.get(name).and_then(|v| core::str::from_utf8(v).ok())
    }

    /// The values of every field called `name`, in order.
    pub fn get_all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a [u8]> + 's {
        self.fields
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// Whether any `name` field lists `token` (case-insensitive), as in `Connection: keep-alive, Upgrade`.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.get_all(name)
            .any(|v| list_elements(v).any(|e| e.eq_ignore_ascii_case(token.as_bytes())))
    }

    /// All fields.
    pub fn iter(&self) -> impl Iterator<Item = &Header<'a>> {
        self.fields.iter()
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// True when there are no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

/// A request line and its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead<'a> {
    pub method: Method<'a>,
    /// The request-target as sent.
    pub target: &'a str,
    /// The path part of the target (`/` for an absolute-form target without one, `*` for asterisk-form).
    pub path: &'a str,
    /// What follows the first `?`, if anything.
    pub query: Option<&'a str>,
    pub version: Version,
    pub headers: Headers<'a>,
    /// Bytes from the start of the buffer to the end of the empty line.
    pub len: usize,
}

impl RequestHead<'_> {
    /// Whether the client wants the connection kept open after the response:
    /// HTTP/1.1 unless it says `Connection: close`; HTTP/1.0 only if it says
    /// `Connection: keep-alive`.
    pub fn keep_alive(&self) -> bool {
        match self.version {
            Version::Http11 => !self.headers.has_token("connection", "close"),
            Version::Http10 => self.headers.has_token("connection", "keep-alive"),
        }
    }

    /// Whether the client waits for `100 Continue` before sending the body.
    pub fn expects_continue(&self) -> bool {
        self.version == Version::Http11
            && self
                .headers
                .get("expect")
                .is_some_and(|v| v.eq_ignore_ascii_case(b"100-continue"))
    }
}

/// A complete request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    pub head: RequestHead<'a>,
    /// The body after transfer decoding: borrowed for `Content-Length`, owned for chunked.
    pub body: Cow<'a, [u8]>,
}

impl<'a> Request<'a> {
    pub fn method(&self) -> Method<'a> {
        self.head.method
    }

    pub fn path(&self) -> &'a str {
        self.head.path
    }

    pub fn query(&self) -> Option<&'a str> {
        self.head.query
    }

    pub fn version(&self) -> Version {
        self.head.version
    }

    pub fn headers(&self) -> &Headers<'a> {
        &self.head.headers
    }

    /// See [`RequestHead::keep_alive`].
    pub fn keep_alive(&self) -> bool {
        self.head.keep_alive()
    }
}

/// Parses one request from the front of `buf`.
pub fn parse_request<'a>(buf: &'a [u8], limits: &Limits) -> Result<Parse<Request<'a>>, HttpError> {
    let Some(head) = parse_head(buf, limits)? else {
        return Ok(Parse::Incomplete);
    };
    let start = head.len;
    let rest = buf.get(start..).unwrap_or_default();
    match framing(&head, limits)? {
        Framing::Empty => Ok(Parse::Complete {
            request: Request {
                head,
                body: Cow::Borrowed(&[]),
            },
            consumed: start,
        }),
        Framing::Length(len) => match rest.get(..len) {
            None => Ok(Parse::Incomplete),
            Some(body) => Ok(Parse::Complete {
                request: Request {
                    head,
                    body: Cow::Borrowed(body),
                },
                consumed: start + len,
            }),
        },
        Framing::Chunked => match chunked::decode(rest, limits)? {
            None => Ok(Parse::Incomplete),
            Some((body, used)) => Ok(Parse::Complete {
                request: Request {
                    head,
                    body: Cow::Owned(body),
                },
                consumed: start + used,
            }),
        },
    }
}

/// How many bytes the request at the front of `buf` takes, once its head has
/// arrived: the head and a `Content-Length` body, or for a chunked body the
/// most it may take (twice the body limit, for the chunk framing). `None`
/// while the head is incomplete or when the request is refused anyway.
pub fn request_size(buf: &[u8], limits: &Limits) -> Option<usize> {
    let head = parse_head(buf, limits).ok()??;
    Some(match framing(&head, limits).ok()? {
        Framing::Empty => head.len,
        Framing::Length(len) => head.len.saturating_add(len),
        Framing::Chunked => head
            .len
            .saturating_add(limits.max_body_bytes.saturating_mul(2)),
    })
}

/// The body length a request declares, for a route that streams its body
/// instead of buffering it (the route bounds the size itself, so
/// [`Limits::max_body_bytes`] does not apply): `Ok(Some(0))` without a body,
/// `Ok(None)` for a chunked body (not streamed: its length is unknown).
pub fn declared_length(head: &RequestHead<'_>, limits: &Limits) -> Result<Option<u64>, HttpError> {
    let unbounded = Limits {
        max_body_bytes: usize::MAX,
        ..*limits
    };
    Ok(match framing(head, &unbounded)? {
        Framing::Empty => Some(0),
        Framing::Length(len) => Some(len as u64),
        Framing::Chunked => None,
    })
}

/// Parses the request line and headers at the front of `buf`; `Ok(None)`
/// until the empty line ending them has arrived. The server uses it to answer
/// `Expect: 100-continue` before the body.
pub fn parse_head<'a>(
    buf: &'a [u8],
    limits: &Limits,
) -> Result<Option<RequestHead<'a>>, HttpError> {
    let too_large = HttpError::HeaderBlockTooLarge {
        limit: limits.max_head_bytes,
    };

    // RFC 9112 §2.2: ignore empty lines before a request line (some clients
    // send a stray CRLF after a POST body).
    let mut start = 0;
    while let Some((end, next)) = find_line(buf, start) {
        if end != start {
            break;
        }
        start = next;
        if start > limits.max_head_bytes {
            return Err(too_large);
        }
    }

    let Some((line_end, mut pos)) = find_line(buf, start) else {
        let partial = buf.get(start..).unwrap_or_default();
        check_partial_request_line(partial, limits)?;
        if partial.len() > limits.max_head_bytes {
            return Err(too_large);
        }
        return Ok(None);
    };
    let line = buf.get(start..line_end).unwrap_or_default();
    let (method, target, path, query, version) = parse_request_line(line, limits)?;

    let mut fields = Vec::new();
    loop {
        let Some((end, next)) = find_line(buf, pos) else {
            if buf.len() - start > limits.max_head_bytes {
                return Err(too_large);
            }
            return Ok(None);
        };
        if next - start > limits.max_head_bytes {
            return Err(too_large);
        }
        let line = buf.get(pos..end).unwrap_or_default();
        pos = next;
        if line.is_empty() {
            break;
        }
        if fields.len() >= limits.max_headers {
            return Err(HttpError::TooManyHeaders {
                limit: limits.max_headers,
            });
        }
        fields.push(parse_field(line)?);
    }

    let head = RequestHead {
        method,
        target,
        path,
        query,
        version,
        headers: Headers { fields },
        len: pos,
    };
    check_host(&head)?;
    Ok(Some(head))
}

type RequestLine<'a> = (Method<'a>, &'a str, &'a str, Option<&'a str>, Version);

fn parse_request_line<'a>(line: &'a [u8], limits: &Limits) -> Result<RequestLine<'a>, HttpError> {
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::BadRequestLine);
    };
    let method = parse_method(method)?;
    let target = parse_target(target, limits)?;
    let version = parse_version(version)?;
    let (path, query) = split_target(target)?;
    Ok((method, target, path, query, version))
}

fn parse_method(token: &[u8]) -> Result<Method<'_>, HttpError> {
    if token.is_empty() || token.len() > MAX_METHOD_LEN || !token.iter().all(|&b| is_tchar(b)) {
        return Err(HttpError::BadRequestLine);
    }
    let token = core::str::from_utf8(token).map_err(|_| HttpError::BadRequestLine)?;
    Ok(Method::from_token(token))
}

fn parse_target<'a>(target: &'a [u8], limits: &Limits) -> Result<&'a str, HttpError> {
    if target.len() > limits.max_target_bytes {
        return Err(HttpError::TargetTooLong {
            limit: limits.max_target_bytes,
        });
    }
    if target.is_empty() || !target.iter().all(|b| b.is_ascii_graphic()) {
        return Err(HttpError::BadTarget);
    }
    core::str::from_utf8(target).map_err(|_| HttpError::BadTarget)
}

/// Splits a request-target into path and query, accepting origin-form,
/// absolute-form (which servers must accept, RFC 9112 §3.2.2) and asterisk-form.
fn split_target(target: &str) -> Result<(&str, Option<&str>), HttpError> {
    if target.contains('#') {
        return Err(HttpError::BadTarget);
    }
    if target == "*" {
        return Ok(("*", None));
    }
    let path_and_query = if target.starts_with('/') {
        target
    } else {
        let after_scheme = strip_prefix_ignore_case(target, "http://")
            .or_else(|| strip_prefix_ignore_case(target, "https://"))
            .ok_or(HttpError::BadTarget)?;
        let authority_end = after_scheme.find(['/', '?']).unwrap_or(after_scheme.len());
        if authority_end == 0 {
            return Err(HttpError::BadTarget);
        }
        after_scheme.get(authority_end..).unwrap_or_default()
    };
    let (path, query) = match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    };
    Ok((if path.is_empty() { "/" } else { path }, query))
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

fn parse_version(version: &[u8]) -> Result<Version, HttpError> {
    match version {
        b"HTTP/1.1" => Ok(Version::Http11),
        b"HTTP/1.0" => Ok(Version::Http10),
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Err(HttpError::UnsupportedVersion)
        }
        _ => Err(HttpError::BadRequestLine),
    }
}

/// Rejects a request line that cannot become valid however it continues, so
/// garbage is refused on its first bytes instead of after 8 KiB.
fn check_partial_request_line(partial: &[u8], limits: &Limits) -> Result<(), HttpError> {
    // The CR of an empty line before the request line, waiting for its LF.
    if partial == b"\r" {
        return Ok(());
    }
    let mut parts = partial.splitn(3, |&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    if method.len() > MAX_METHOD_LEN || !method.iter().all(|&b| is_tchar(b)) {
        return Err(HttpError::BadRequestLine);
    }
    if let Some(target) = parts.next() {
        if target.len() > limits.max_target_bytes {
            return Err(HttpError::TargetTooLong {
                limit: limits.max_target_bytes,
            });
        }
        if !target.iter().all(|b| b.is_ascii_graphic()) {
            return Err(HttpError::BadTarget);
        }
    }
    // "HTTP/1.1" and a CR waiting for its LF.
    if parts
        .next()
        .is_some_and(|version| version.len() > b"HTTP/1.1\r".len())
    {
        return Err(HttpError::BadRequestLine);
    }
    Ok(())
}

fn parse_field(line: &[u8]) -> Result<Header<'_>, HttpError> {
    if matches!(line.first(), Some(b' ' | b'\t')) {
        return Err(HttpError::ObsoleteLineFolding);
    }
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(HttpError::BadHeader)?;
    let (name, rest) = line.split_at(colon);
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(HttpError::BadHeader);
    }
    let value = trim_ows(rest.get(1..).unwrap_or_default());
    if !value.iter().all(|&b| is_field_byte(b)) {
        return Err(HttpError::BadHeader);
    }
    let name = core::str::from_utf8(name).map_err(|_| HttpError::BadHeader)?;
    Ok(Header { name, value })
}

/// RFC 9112 §3.2: an HTTP/1.1 request has exactly one Host header; HTTP/1.0
/// may have none but not several.
fn check_host(head: &RequestHead<'_>) -> Result<(), HttpError> {
    let mut hosts = head.headers.get_all("host");
    let first = hosts.next();
    if hosts.next().is_some() || (first.is_none() && head.version == Version::Http11) {
        return Err(HttpError::BadHost);
    }
    // A Host value is an authority: no whitespace, no path.
    if first.is_some_and(|h| h.iter().any(|&b| b == b' ' || b == b'\t' || b == b'/')) {
        return Err(HttpError::BadHost);
    }
    Ok(())
}

/// How the body of a request is delimited.
enum Framing {
    Empty,
    Length(usize),
    Chunked,
}

fn framing(head: &RequestHead<'_>, limits: &Limits) -> Result<Framing, HttpError> {
    let headers = &head.headers;
    let has_length = headers.get("content-length").is_some();
    if headers.get("transfer-encoding").is_some() {
        // Both, or TE in HTTP/1.0 (RFC 9112 §6.1): framing an intermediary
        // may read differently; refuse instead of picking one.
        if has_length || head.version == Version::Http10 {
            return Err(HttpError::AmbiguousFraming);
        }
        let mut codings = headers.get_all("transfer-encoding").flat_map(list_elements);
        let mut chunked_seen = false;
        let mut other_seen = false;
        let mut last_is_chunked = false;
        for coding in codings.by_ref() {
            last_is_chunked = coding.eq_ignore_ascii_case(b"chunked");
            if last_is_chunked {
                if chunked_seen {
                    return Err(HttpError::BadTransferEncoding);
                }
                chunked_seen = true;
            } else {
                other_seen = true;
            }
        }
        if !last_is_chunked {
            return Err(HttpError::BadTransferEncoding);
        }
        if other_seen {
            return Err(HttpError::UnsupportedTransferCoding);
        }
        return Ok(Framing::Chunked);
    }
    if !has_length {
        return Ok(Framing::Empty);
    }
    let mut length: Option<u64> = None;
    for element in headers.get_all("content-length").flat_map(list_elements) {
        let value = parse_decimal(element, limits)?;
        if length.is_some_and(|l| l != value) {
            return Err(HttpError::BadContentLength);
        }
        length = Some(value);
    }
    let length = length.ok_or(HttpError::BadContentLength)?;
    let too_large = HttpError::BodyTooLarge {
        limit: limits.max_body_bytes,
    };
    let length = usize::try_from(length).map_err(|_| too_large)?;
    if length > limits.max_body_bytes {
        return Err(too_large);
    }
    Ok(if length == 0 {
        Framing::Empty
    } else {
        Framing::Length(length)
    })
}

/// `1*DIGIT`; a number too big for u64 is certainly too large a body.
fn parse_decimal(digits: &[u8], limits: &Limits) -> Result<u64, HttpError> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(HttpError::BadContentLength);
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)
            .and_then(|acc| acc.checked_add(u64::from(d - b'0')))
            .ok_or(HttpError::BodyTooLarge {
                limit: limits.max_body_bytes,
            })
    })
}

#[cfg(test)]
mod tests;
