//! Why a request was refused, and the status code that says so.

use core::fmt;

use super::response::Status;

/// A request the parser refuses. Each maps to the status code the client
/// gets ([`HttpError::status`]); the connection is closed after answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// The request line is not `METHOD SP request-target SP HTTP/x.y`.
    BadRequestLine,
    /// The request-target is not origin-form (`/path?query`), absolute-form or `*`,
    /// or holds bytes outside visible ASCII.
    BadTarget,
    /// The request-target is longer than the limit.
    TargetTooLong { limit: usize },
    /// The request names an HTTP major/minor version other than 1.0 and 1.1.
    UnsupportedVersion,
    /// A header line is not `name: value`, has whitespace before the colon, or
    /// holds control characters.
    BadHeader,
    /// A header line starts with whitespace (obsolete line folding).
    ObsoleteLineFolding,
    /// The request line and headers together exceed the limit.
    HeaderBlockTooLarge { limit: usize },
    /// More header lines than the limit.
    TooManyHeaders { limit: usize },
    /// An HTTP/1.1 request without exactly one valid `Host` header.
    BadHost,
    /// `Content-Length` is not a decimal number, or several disagree.
    BadContentLength,
    /// Both `Transfer-Encoding` and `Content-Length`, or `Transfer-Encoding` in HTTP/1.0.
    AmbiguousFraming,
    /// `Transfer-Encoding` does not end in `chunked`, or names it twice.
    BadTransferEncoding,
    /// A transfer coding other than `chunked` (gzip, deflate, ...).
    UnsupportedTransferCoding,
    /// A chunk-size line or the CRLF after chunk data is malformed.
    BadChunk,
    /// The body is larger than the limit.
    BodyTooLarge { limit: usize },
}

impl HttpError {
    /// The status code to answer with.
    pub fn status(&self) -> Status {
        match self {
            HttpError::TargetTooLong { .. } => Status::URI_TOO_LONG,
            HttpError::UnsupportedVersion => Status::HTTP_VERSION_NOT_SUPPORTED,
            HttpError::HeaderBlockTooLarge { .. } | HttpError::TooManyHeaders { .. } => {
                Status::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            HttpError::UnsupportedTransferCoding => Status::NOT_IMPLEMENTED,
            HttpError::BodyTooLarge { .. } => Status::CONTENT_TOO_LARGE,
            HttpError::BadRequestLine
            | HttpError::BadTarget
            | HttpError::BadHeader
            | HttpError::ObsoleteLineFolding
            | HttpError::BadHost
            | HttpError::BadContentLength
            | HttpError::AmbiguousFraming
            | HttpError::BadTransferEncoding
            | HttpError::BadChunk => Status::BAD_REQUEST,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::BadRequestLine => {
                write!(
                    f,
                    "malformed request line; expected `METHOD /path HTTP/1.1` ending in CRLF"
                )
            }
            HttpError::BadTarget => write!(
                f,
                "malformed request target; use an absolute path such as `/health` (visible ASCII only, no fragment)"
            ),
            HttpError::TargetTooLong { limit } => {
                write!(f, "request target longer than {limit} bytes")
            }
            HttpError::UnsupportedVersion => write!(f, "only HTTP/1.0 and HTTP/1.1 are supported"),
            HttpError::BadHeader => write!(
                f,
                "malformed header line; expected `Name: value` with no space before the colon and no control characters"
            ),
            HttpError::ObsoleteLineFolding => {
                write!(
                    f,
                    "header continuation lines (obsolete line folding) are not accepted; send each header on one line"
                )
            }
            HttpError::HeaderBlockTooLarge { limit } => {
                write!(
                    f,
                    "request line and headers exceed {limit} bytes; send fewer or shorter headers"
                )
            }
            HttpError::TooManyHeaders { limit } => write!(f, "more than {limit} header lines"),
            HttpError::BadHost => write!(f, "HTTP/1.1 requests need exactly one valid Host header"),
            HttpError::BadContentLength => {
                write!(
                    f,
                    "Content-Length must be one decimal number (repeated values must agree)"
                )
            }
            HttpError::AmbiguousFraming => write!(
                f,
                "ambiguous body framing: send either Content-Length or Transfer-Encoding: chunked (HTTP/1.1 only), not both"
            ),
            HttpError::BadTransferEncoding => {
                write!(
                    f,
                    "Transfer-Encoding must end with `chunked` and name it once"
                )
            }
            HttpError::UnsupportedTransferCoding => {
                write!(
                    f,
                    "only the `chunked` transfer coding is supported; send the body uncompressed"
                )
            }
            HttpError::BadChunk => write!(
                f,
                "malformed chunked body (chunk-size line or CRLF after chunk data)"
            ),
            HttpError::BodyTooLarge { limit } => {
                write!(f, "request body larger than {limit} bytes")
            }
        }
    }
}

impl core::error::Error for HttpError {}
