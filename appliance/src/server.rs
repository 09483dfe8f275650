//! An HTTP/1.1 server over smoltcp TCP sockets.
//!
//! The server owns a fixed pool of listening sockets on one port (smoltcp has
//! no accept queue: one socket serves one connection, then listens again).
//! Each poll moves every connection forward as far as it can without
//! waiting: read what arrived, answer every complete request, write what
//! fits, close what is done or idle. Time comes from the caller.

use alloc::vec;
use alloc::vec::Vec;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};

use crate::http::{HttpError, Limits, Method, Parse, Request, Response, parse_head, parse_request};

/// Answers requests. Implemented for any `FnMut(&Request) -> Response`.
pub trait Handler {
    fn handle(&mut self, request: &Request<'_>) -> Response;
}

impl<F> Handler for F
where
    F: FnMut(&Request<'_>) -> Response,
{
    fn handle(&mut self, request: &Request<'_>) -> Response {
        self(request)
    }
}

/// Server settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    pub port: u16,
    /// Concurrent connections (one smoltcp socket each).
    pub sockets: usize,
    /// Receive and transmit buffer of each socket, in bytes.
    pub socket_buffer: usize,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    pub limits: Limits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            port: 80,
            sockets: 8,
            socket_buffer: 64 * 1024,
            idle_timeout: Duration::from_secs(60),
            limits: Limits::default(),
        }
    }
}

/// How long a closing connection may take to finish its FIN exchange before
/// it is reset: a vanished peer must not hold a socket forever.
const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// Responses queued but not yet in the socket, above which no further
/// pipelined request is answered this poll (back-pressure on the client).
const OUTPUT_HIGH_WATER: usize = 64 * 1024;

/// The interim answer to `Expect: 100-continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// An HTTP server on one port.
#[derive(Debug)]
pub struct HttpServer {
    config: ServerConfig,
    slots: Vec<Slot>,
}

#[derive(Debug)]
struct Slot {
    handle: SocketHandle,
    /// The connection the socket carries, from accept to close.
    conn: Option<Connection>,
}

#[derive(Debug)]
struct Connection {
    /// Bytes received and not yet consumed by a complete request.
    input: Vec<u8>,
    /// Set when `input` changed since the last parse attempt.
    unparsed: bool,
    /// Serialized responses not yet accepted by the socket, from `written` on.
    output: Vec<u8>,
    written: usize,
    last_activity: Instant,
    /// Close once `output` is flushed (client asked, or an error was answered).
    close_after_flush: bool,
    /// When `close()` was called on the socket.
    closing_since: Option<Instant>,
    continue_sent: bool,
}

impl Connection {
    fn new(now: Instant) -> Self {
        Connection {
            input: Vec::new(),
            unparsed: false,
            output: Vec::new(),
            written: 0,
            last_activity: now,
            close_after_flush: false,
            closing_since: None,
            continue_sent: false,
        }
    }

    fn pending_output(&self) -> usize {
        self.output.len() - self.written
    }
}

impl HttpServer {
    /// A server on `port` with the default settings.
    pub fn new(port: u16) -> Self {
        Self::with_config(ServerConfig {
            port,
            ..ServerConfig::default()
        })
    }

    pub fn with_config(config: ServerConfig) -> Self {
        HttpServer {
            config,
            slots: Vec::new(),
        }
    }

    pub fn port(&self) -> u16 {
        self.config.port
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Connections currently open (accepted and not yet closed).
    pub fn active_connections(&self) -> usize {
        self.slots.iter().filter(|s| s.conn.is_some()).count()
    }

    /// Creates the listening sockets in `sockets`. Calling it again does nothing.
    pub fn attach(&mut self, sockets: &mut SocketSet<'_>) {
        if !self.slots.is_empty() {
            return;
        }
        for _ in 0..self.config.sockets.max(1) {
            let mut socket = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; self.config.socket_buffer]),
                tcp::SocketBuffer::new(vec![0; self.config.socket_buffer]),
            );
            // Whole responses are written at once, so Nagle only adds delay.
            socket.set_nagle_enabled(false);
            // Gives up on a peer that stops acknowledging what we send.
            socket.set_timeout(Some(self.config.idle_timeout));
            let handle = sockets.add(socket);
            self.slots.push(Slot { handle, conn: None });
        }
        for slot in &self.slots {
            listen(
                sockets.get_mut::<tcp::Socket<'_>>(slot.handle),
                self.config.port,
            );
        }
    }

    /// Moves every connection forward. Returns the next time something is
    /// due (an idle timeout or a close grace period), if any.
    pub fn poll<H: Handler + ?Sized>(
        &mut self,
        sockets: &mut SocketSet<'_>,
        now: Instant,
        handler: &mut H,
    ) -> Option<Instant> {
        let config = self.config;
        self.slots
            .iter_mut()
            .filter_map(|slot| {
                let socket = sockets.get_mut::<tcp::Socket<'_>>(slot.handle);
                poll_slot(slot, socket, &config, now, handler)
            })
            .min()
    }
}

fn listen(socket: &mut tcp::Socket<'_>, port: u16) {
    if let Err(e) = socket.listen(port) {
        log::error!("http: cannot listen on port {port}: {e}");
    }
}

fn poll_slot<H: Handler + ?Sized>(
    slot: &mut Slot,
    socket: &mut tcp::Socket<'_>,
    config: &ServerConfig,
    now: Instant,
    handler: &mut H,
) -> Option<Instant> {
    // Closed or TIME-WAIT: the connection is over; serve the next one. Leaving
    // TIME-WAIT early matters with a pool of 8 sockets (each would otherwise
    // sit out 10 s after every server-side close); random initial sequence
    // numbers keep stray old segments from being taken for new ones.
    if !socket.is_open() {
        slot.conn = None;
        listen(socket, config.port);
        return None;
    }
    if socket.is_listening() {
        slot.conn = None;
        return None;
    }
    let conn = slot.conn.get_or_insert_with(|| Connection::new(now));

    if let Some(since) = conn.closing_since {
        // Whatever still arrives is of no use; keep the window open so the
        // peer can reach its FIN.
        discard_input(socket);
        // FIN-WAIT-2: the peer has acknowledged all our data and our FIN, so
        // the response is delivered; waiting for the peer's FIN would only
        // hold one of the few sockets hostage to a client that never closes.
        if socket.state() == tcp::State::FinWait2 || now >= since + CLOSE_GRACE {
            socket.abort();
            return None;
        }
        return Some(since + CLOSE_GRACE);
    }

    receive(conn, socket, config, now);
    respond(conn, socket, &config.limits, handler);
    transmit(conn, socket, now);

    let idle = now >= conn.last_activity + config.idle_timeout;
    let finished = conn.pending_output() == 0 && (conn.close_after_flush || peer_closed(socket));
    if finished || idle {
        if idle {
            log::debug!(
                "http: closing idle connection from {:?}",
                socket.remote_endpoint()
            );
        }
        // The FIN goes out after the data already in the socket.
        socket.close();
        conn.closing_since = Some(now);
        return Some(now + CLOSE_GRACE);
    }
    Some(conn.last_activity + config.idle_timeout)
}

/// Moves received bytes into the connection's input, up to its bound.
fn receive(
    conn: &mut Connection,
    socket: &mut tcp::Socket<'_>,
    config: &ServerConfig,
    now: Instant,
) {
    let limits = &config.limits;
    // A full request fits in head + body; chunk framing may add some.
    let capacity = limits.max_head_bytes + limits.max_body_bytes.saturating_mul(2);
    // The socket's ring may hand out its data in two pieces.
    for _ in 0..2 {
        let room = capacity.saturating_sub(conn.input.len());
        if room == 0 || !socket.can_recv() {
            return;
        }
        let got = socket.recv(|data| {
            let n = data.len().min(room);
            conn.input.extend_from_slice(&data[..n]);
            (n, n)
        });
        match got {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                conn.unparsed = true;
                conn.last_activity = now;
            }
        }
    }
}

/// Answers every complete request in the input, in order.
fn respond<H: Handler + ?Sized>(
    conn: &mut Connection,
    socket: &tcp::Socket<'_>,
    limits: &Limits,
    handler: &mut H,
) {
    while conn.unparsed && !conn.close_after_flush && conn.pending_output() < OUTPUT_HIGH_WATER {
        match parse_request(&conn.input, limits) {
            Ok(Parse::Complete { request, consumed }) => {
                let response = handler.handle(&request);
                let keep_alive = request.keep_alive() && !response.closes_connection();
                let head_only = request.method() == Method::Head;
                response.write_to(&mut conn.output, keep_alive, !head_only);
                drop(request);
                conn.input.drain(..consumed);
                conn.unparsed = !conn.input.is_empty();
                conn.continue_sent = false;
                conn.close_after_flush = !keep_alive;
            }
            Ok(Parse::Incomplete) => {
                conn.unparsed = false;
                let capacity = limits.max_head_bytes + limits.max_body_bytes.saturating_mul(2);
                if conn.input.len() >= capacity {
                    refuse(
                        conn,
                        &HttpError::BodyTooLarge {
                            limit: limits.max_body_bytes,
                        },
                    );
                } else if peer_closed(socket) {
                    // The peer closed in the middle of a request; nothing to answer.
                    conn.input.clear();
                } else if !conn.continue_sent
                    && let Ok(Some(head)) = parse_head(&conn.input, limits)
                    && head.expects_continue()
                {
                    conn.output.extend_from_slice(CONTINUE);
                    conn.continue_sent = true;
                }
            }
            Err(error) => {
                log::debug!("http: refusing request: {error}");
                refuse(conn, &error);
            }
        }
    }
}

/// Answers a request that cannot be served and arranges to close: after a
/// framing error nobody knows where the next request would start.
fn refuse(conn: &mut Connection, error: &HttpError) {
    Response::for_error(error).write_to(&mut conn.output, false, true);
    conn.input.clear();
    conn.unparsed = false;
    conn.close_after_flush = true;
}

/// Hands as much pending output to the socket as it takes.
fn transmit(conn: &mut Connection, socket: &mut tcp::Socket<'_>, now: Instant) {
    if conn.pending_output() > 0 && socket.can_send() {
        match socket.send_slice(&conn.output[conn.written..]) {
            Ok(n) if n > 0 => {
                conn.written += n;
                conn.last_activity = now;
            }
            Ok(_) => {}
            Err(e) => log::debug!("http: send failed: {e}"),
        }
    }
    if conn.pending_output() == 0 {
        conn.output.clear();
        conn.written = 0;
    }
}

/// Whether the peer has sent its FIN and everything before it was read.
/// (`may_recv` is no use here: it is also false before the handshake completes.)
fn peer_closed(socket: &tcp::Socket<'_>) -> bool {
    socket.state() == tcp::State::CloseWait && !socket.can_recv()
}

fn discard_input(socket: &mut tcp::Socket<'_>) {
    while socket.can_recv() {
        if !matches!(socket.recv(|data| (data.len(), data.len())), Ok(n) if n > 0) {
            break;
        }
    }
}

#[cfg(test)]
mod tests;
