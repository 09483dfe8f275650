//! HTTP/1.1 for the management API: a bounded request parser and a response
//! serializer.
//!
//! The parser follows the smoltcp `Packet`/`Repr` habit: it works on a byte
//! slice the caller owns, checks every length against [`Limits`] before
//! using it, never panics, and borrows from the input instead of copying
//! (only a chunked body is decoded into a new buffer). It returns
//! [`Parse::Incomplete`] until a whole request is buffered, and
//! [`Parse::Complete`] with the number of bytes used, so the caller can drain
//! them and parse the next pipelined request.
//!
//! Decisions worth knowing:
//! - A bare LF ends a line like CRLF does (RFC 9112 §2.2 allows it; hand-typed
//!   `nc` sessions and a few old clients send it). A CR anywhere else in the
//!   request line or a header is rejected: lone CRs are a request-smuggling
//!   vector.
//! - `Transfer-Encoding: chunked` request bodies are decoded (some XML-RPC
//!   clients stream their bodies); any other transfer coding is answered with
//!   501. A request carrying both `Transfer-Encoding` and `Content-Length` is
//!   rejected (400) rather than guessed at.
//! - Obsolete line folding and whitespace before a header's colon are
//!   rejected (400), as RFC 9112 §5 requires of a server.

mod chunked;
mod error;
pub mod fuzz;
mod request;
mod response;
mod syntax;

pub use error::HttpError;
pub use request::{
    Header, Headers, Limits, MAX_METHOD_LEN, Method, Parse, Request, RequestHead, Version,
    declared_length, parse_head, parse_request, request_size,
};
pub use response::{Response, Status};
