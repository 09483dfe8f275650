//! One HTTP connection's state, whatever carries its bytes: input waiting
//! to be parsed, responses waiting to be sent, and a request whose answer
//! the handler deferred, or a body streaming to the handler. The smoltcp
//! server and the hosted std server both drive it.

use alloc::vec::Vec;

use super::{BodyCut, Handler, Reply, Ticket};
use crate::http::{
    HttpError, Limits, Method, Parse, Response, Status, declared_length, parse_head, parse_request,
};

/// Responses queued but not yet sent, above which no further pipelined
/// request is answered (back-pressure on the client).
const OUTPUT_HIGH_WATER: usize = 64 * 1024;

/// The interim answer to `Expect: 100-continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Input held at most while a body streams to the handler: it is handed
/// over as it arrives, so a streamed body is never buffered whole.
pub const STREAM_WINDOW: usize = 64 * 1024;

/// A request body going to the handler as it arrives (see [`Handler::streams`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Streaming {
    ticket: Ticket,
    /// Body bytes still to come.
    remaining: u64,
    keep_alive: bool,
    /// The request was answered already (refused or failed): the rest of
    /// the body is read and dropped, then the connection closes.
    answered: bool,
}

/// A request whose answer comes later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Deferred {
    ticket: Ticket,
    keep_alive: bool,
    head_only: bool,
}

#[derive(Debug, Default)]
pub struct Connection {
    /// Bytes received and not yet consumed by a complete request.
    input: Vec<u8>,
    /// Set when `input` changed since the last parse attempt.
    unparsed: bool,
    /// Serialized responses not yet sent, from `written` on.
    output: Vec<u8>,
    written: usize,
    /// Close once `output` is flushed (client asked, or an error was answered).
    close_after_flush: bool,
    continue_sent: bool,
    deferred: Option<Deferred>,
    streaming: Option<Streaming>,
    /// After an accepted `CONNECT`: raw bytes both ways (see [`Reply::Tunnel`]).
    tunnel: Option<Ticket>,
    /// A streamed response body being sent.
    sending: Option<Sending>,
}

/// A response body the handler supplies piece by piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sending {
    ticket: Ticket,
    remaining: u64,
    keep_alive: bool,
}

/// Output a tunnel may queue before it waits for the peer to read.
const TUNNEL_HIGH_WATER: usize = 16 * 1024;

/// Bytes of input a connection holds at most: a whole request, with room
/// for chunk framing.
pub fn input_capacity(limits: &Limits) -> usize {
    limits.max_head_bytes + limits.max_body_bytes.saturating_mul(2)
}

impl Connection {
    pub fn new() -> Self {
        Connection::default()
    }

    /// How many more input bytes may be taken now.
    pub fn room(&self, limits: &Limits) -> usize {
        let capacity = match (self.streaming, self.tunnel) {
            (Some(_), _) => STREAM_WINDOW,
            (None, Some(_)) => TUNNEL_HIGH_WATER,
            (None, None) => input_capacity(limits),
        };
        capacity.saturating_sub(self.input.len())
    }

    /// Input bytes held (a request not yet complete, or pipelined ones).
    pub fn buffered_input(&self) -> usize {
        self.input.len()
    }

    /// The size of the request at the front of the input, once its head is in
    /// (see [`crate::http::request_size`]).
    pub fn pending_request_size(&self, limits: &Limits) -> Option<usize> {
        if self.streaming.is_some() {
            return Some(STREAM_WINDOW);
        }
        crate::http::request_size(&self.input, limits)
    }

    /// Takes received bytes (at most [`Connection::room`] of them).
    pub fn receive(&mut self, data: &[u8]) {
        if !data.is_empty() {
            self.input.extend_from_slice(data);
            self.unparsed = true;
        }
    }

    /// Responses waiting to be sent.
    pub fn output(&self) -> &[u8] {
        self.output.get(self.written..).unwrap_or_default()
    }

    /// Marks `n` bytes of [`Connection::output`] as sent.
    pub fn sent(&mut self, n: usize) {
        self.written = (self.written + n).min(self.output.len());
        if self.written == self.output.len() {
            self.output.clear();
            self.written = 0;
        }
    }

    /// Whether a request body is streaming to the handler.
    pub fn is_streaming(&self) -> bool {
        self.streaming.is_some()
    }

    /// Whether a streamed response body is being sent.
    pub fn is_sending(&self) -> bool {
        self.sending.is_some()
    }

    /// Whether the connection waits on the handler rather than on its
    /// peer: a deferred answer, a streamed body the handler has not taken
    /// whole yet, or a streamed response body being sent. Such a
    /// connection is asked again on every poll.
    pub fn is_waiting(&self) -> bool {
        self.deferred.is_some()
            || self.tunnel.is_some()
            || self.sending.is_some()
            || (self.streaming.is_some_and(|s| !s.answered) && !self.input.is_empty())
    }

    /// Whether the connection should now be closed: everything is sent and
    /// either side is done.
    pub fn finished(&self, peer_closed: bool) -> bool {
        self.output().is_empty()
            && self.sending.is_none()
            && ((self.close_after_flush && self.streaming.is_none())
                || (peer_closed && self.deferred.is_none())
                || (peer_closed && self.tunnel.is_some()))
    }

    /// Tells the handler a deferred answer is no longer wanted.
    pub fn abandon<H: Handler + ?Sized>(&mut self, handler: &mut H) {
        if let Some(d) = self.deferred.take() {
            handler.cancel(d.ticket);
        }
        if let Some(t) = self.tunnel.take() {
            handler.tunnel_close(t);
        }
        if let Some(stream) = self.streaming.take()
            && !stream.answered
        {
            handler.stream_abort(stream.ticket);
        }
        if let Some(s) = self.sending.take() {
            handler.cancel(s.ticket);
        }
    }

    /// Answers every complete request in the input, in order; a deferred
    /// answer holds back the requests behind it.
    pub fn respond<H: Handler + ?Sized>(
        &mut self,
        handler: &mut H,
        limits: &Limits,
        peer_closed: bool,
    ) {
        if let Some(t) = self.tunnel {
            if self.close_after_flush || self.output().len() >= TUNNEL_HIGH_WATER {
                return;
            }
            let mut out = Vec::new();
            match handler.tunnel_io(t, &self.input, &mut out) {
                Some(taken) => {
                    self.input.drain(..taken.min(self.input.len()));
                }
                None => {
                    self.tunnel = None;
                    handler.tunnel_close(t);
                    self.input.clear();
                    self.close_after_flush = true;
                }
            }
            self.output.extend_from_slice(&out);
            return;
        }
        if let Some(d) = self.deferred {
            match handler.resume(d.ticket) {
                Some(response) => {
                    self.deferred = None;
                    self.write(&response, d.keep_alive, d.head_only);
                }
                None => return,
            }
        }
        if self.sending.is_some() {
            self.send_body(handler);
            if self.sending.is_some() {
                return;
            }
        }
        if self.streaming.is_some() {
            self.pump(handler, peer_closed);
            if self.streaming.is_some() || self.deferred.is_some() {
                return;
            }
        }
        while self.unparsed
            && !self.close_after_flush
            && self.sending.is_none()
            && self.output().len() < OUTPUT_HIGH_WATER
        {
            if self.start_stream(handler, limits) {
                self.pump(handler, peer_closed);
                if self.streaming.is_some() || self.deferred.is_some() {
                    return;
                }
                continue;
            }
            match parse_request(&self.input, limits) {
                Ok(Parse::Complete { request, consumed }) => {
                    let keep_alive = request.keep_alive();
                    let head_only = request.method() == Method::Head;
                    let reply = handler.handle(&request);
                    drop(request);
                    self.input.drain(..consumed);
                    self.unparsed = !self.input.is_empty();
                    self.continue_sent = false;
                    match reply {
                        Reply::Now(response) => self.write(&response, keep_alive, head_only),
                        Reply::Tunnel(ticket) => {
                            self.output.extend_from_slice(b"HTTP/1.1 200 OK\r\n\r\n");
                            self.tunnel = Some(ticket);
                            return;
                        }
                        Reply::Later(ticket) => {
                            self.deferred = Some(Deferred {
                                ticket,
                                keep_alive,
                                head_only,
                            });
                            return;
                        }
                    }
                }
                Ok(Parse::Incomplete) => {
                    self.unparsed = false;
                    if self.input.len() >= input_capacity(limits) {
                        self.refuse(&HttpError::BodyTooLarge {
                            limit: limits.max_body_bytes,
                        });
                    } else if peer_closed {
                        // The peer closed in the middle of a request; nothing to answer.
                        self.input.clear();
                    } else if !self.continue_sent
                        && let Ok(Some(head)) = parse_head(&self.input, limits)
                        && head.expects_continue()
                    {
                        self.output.extend_from_slice(CONTINUE);
                        self.continue_sent = true;
                    }
                }
                Err(error) => {
                    log::debug!("http: refusing request: {error}");
                    self.refuse(&error);
                }
            }
        }
        if self.sending.is_some() {
            self.send_body(handler);
        }
    }

    /// Starts streaming the body of the request at the front of the input
    /// if the handler streams it; whether it does.
    fn start_stream<H: Handler + ?Sized>(&mut self, handler: &mut H, limits: &Limits) -> bool {
        let Ok(Some(head)) = parse_head(&self.input, limits) else {
            return false;
        };
        if !handler.streams(&head) {
            return false;
        }
        let keep_alive = head.keep_alive();
        let expects_continue = head.expects_continue();
        let head_len = head.len;
        let started = match declared_length(&head, limits) {
            Ok(Some(length)) => handler
                .stream_start(&head, length)
                .map(|ticket| (ticket, length))
                .map_err(|response| (response, length)),
            Ok(None) => Err((
                Response::json_error(
                    Status::LENGTH_REQUIRED,
                    "this request's body must have a Content-Length (chunked is not accepted)",
                ),
                0,
            )),
            Err(error) => Err((Response::for_error(&error), 0)),
        };
        drop(head);
        self.input.drain(..head_len);
        self.continue_sent = false;
        self.streaming = Some(match started {
            Ok((ticket, length)) => {
                if expects_continue && length > 0 {
                    self.output.extend_from_slice(CONTINUE);
                }
                Streaming {
                    ticket,
                    remaining: length,
                    keep_alive,
                    answered: false,
                }
            }
            Err((response, length)) => {
                self.write(&response, false, false);
                Streaming {
                    ticket: Ticket(0),
                    // A client waiting for `100 Continue` sends no body now.
                    remaining: if expects_continue { 0 } else { length },
                    keep_alive: false,
                    answered: true,
                }
            }
        });
        true
    }

    /// Hands the streamed body's bytes that arrived to the handler (or
    /// drops them once answered), and answers when the body is complete or
    /// the peer closed before it was.
    fn pump<H: Handler + ?Sized>(&mut self, handler: &mut H, peer_closed: bool) {
        let Some(mut stream) = self.streaming else {
            return;
        };
        let take = usize::try_from(stream.remaining)
            .unwrap_or(usize::MAX)
            .min(self.input.len());
        if take > 0 {
            let mut taken = take;
            if !stream.answered {
                match handler
                    .stream_chunk(stream.ticket, self.input.get(..take).unwrap_or_default())
                {
                    Ok(n) => taken = n.min(take),
                    Err(response) => {
                        self.write(&response, false, false);
                        stream.answered = true;
                    }
                }
            }
            self.input.drain(..taken);
            stream.remaining -= taken as u64;
            if taken < take {
                // Back-pressure: the rest waits in the input (bounded by
                // the stream window, so the peer is not read meanwhile),
                // offered again on the next poll, even once the peer closed.
                self.streaming = Some(stream);
                return;
            }
        }
        if stream.remaining == 0 {
            self.streaming = None;
            if stream.answered {
                self.close_after_flush = true;
            } else {
                match handler.stream_end(stream.ticket) {
                    Reply::Now(response) => self.write(&response, stream.keep_alive, false),
                    Reply::Later(ticket) => {
                        self.deferred = Some(Deferred {
                            ticket,
                            keep_alive: stream.keep_alive,
                            head_only: false,
                        });
                    }
                    Reply::Tunnel(ticket) => {
                        // An upload does not turn into a tunnel.
                        handler.tunnel_close(ticket);
                        let response = Response::json_error(
                            Status::INTERNAL_SERVER_ERROR,
                            "the upload's handler answered with a tunnel",
                        );
                        self.write(&response, false, false);
                    }
                }
            }
            self.unparsed = !self.input.is_empty();
        } else if peer_closed {
            self.streaming = None;
            if !stream.answered {
                handler.stream_abort(stream.ticket);
                let response = Response::json_error(
                    Status::BAD_REQUEST,
                    "the request body ended before its Content-Length",
                );
                self.write(&response, false, false);
            }
            self.close_after_flush = true;
            self.input.clear();
            self.unparsed = false;
        } else {
            self.streaming = Some(stream);
        }
    }

    fn write(&mut self, response: &Response, keep_alive: bool, head_only: bool) {
        let keep_alive = keep_alive && !response.closes_connection();
        response.write_to(&mut self.output, keep_alive, !head_only);
        self.close_after_flush = !keep_alive;
        if let Some((length, ticket)) = response.streamed_body() {
            self.sending = Some(Sending {
                ticket: Ticket(ticket),
                remaining: if head_only { 0 } else { length },
                keep_alive,
            });
        }
    }

    /// Moves a streamed response body forward: asks the handler for what
    /// fits under the output bound.
    fn send_body<H: Handler + ?Sized>(&mut self, handler: &mut H) {
        while let Some(mut s) = self.sending {
            if s.remaining == 0 {
                self.sending = None;
                handler.cancel(s.ticket);
                self.close_after_flush = !s.keep_alive;
                return;
            }
            let room = OUTPUT_HIGH_WATER.saturating_sub(self.output().len());
            if room == 0 {
                return;
            }
            let max = usize::try_from(s.remaining).unwrap_or(usize::MAX).min(room);
            match handler.body_chunk(s.ticket, max) {
                Ok(Some(bytes)) if !bytes.is_empty() => {
                    let n = bytes.len().min(max);
                    self.output
                        .extend_from_slice(bytes.get(..n).unwrap_or_default());
                    s.remaining -= n as u64;
                    self.sending = Some(s);
                }
                Ok(_) => return,
                Err(BodyCut) => {
                    // The body cannot be completed: the client sees it cut short.
                    self.sending = None;
                    handler.cancel(s.ticket);
                    self.close_after_flush = true;
                    self.input.clear();
                    self.unparsed = false;
                    return;
                }
            }
        }
    }

    /// Answers a request that cannot be served and arranges to close: after
    /// a framing error nobody knows where the next request would start.
    fn refuse(&mut self, error: &HttpError) {
        Response::for_error(error).write_to(&mut self.output, false, true);
        self.input.clear();
        self.unparsed = false;
        self.close_after_flush = true;
    }
}

#[cfg(test)]
mod tests;
