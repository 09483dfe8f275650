//! An HTTP/1.1 server over smoltcp TCP sockets.
//!
//! The server owns a pool of sockets on one port. smoltcp has no accept
//! queue (one socket serves one connection, then listens again), so the pool
//! keeps a number of listeners ready and grows while connections are open,
//! up to a bound, then shrinks back as they close.
//! Each poll moves every connection forward as far as it can without
//! waiting: read what arrived, answer every complete request, write what
//! fits, close what is done or idle. Time comes from the caller.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};

use crate::http::{Limits, Request, RequestHead, Response, Status};

mod connection;
pub mod fuzz;
mod stream;

pub use connection::Connection;
pub use stream::Stream;

/// A handler's answer: now, or later for a request that waits for
/// something (an `event.from` for a change).
#[derive(Debug)]
pub enum Reply {
    Now(Response),
    Later(Ticket),
    /// `CONNECT` accepted: `200 OK`, then the connection carries raw bytes
    /// both ways through [`Handler::tunnel_io`] (xapi's console protocol).
    Tunnel(Ticket),
}

/// Names a deferred answer between a handler and the connection awaiting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(pub u64);

/// A streamed response body that cannot be completed (see
/// [`Handler::body_chunk`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyCut;

/// Answers requests. Implemented for any `FnMut(&Request) -> Response`.
pub trait Handler {
    fn handle(&mut self, request: &Request<'_>) -> Reply;

    /// The deferred answer for `ticket`, once it is ready. Asked on every
    /// poll while the connection waits.
    fn resume(&mut self, _ticket: Ticket) -> Option<Response> {
        None
    }

    /// The connection that awaited `ticket` is gone.
    fn cancel(&mut self, _ticket: Ticket) {}

    /// Whether the request with this head streams its body to
    /// [`Handler::stream_start`] and [`Handler::stream_chunk`] as it arrives
    /// instead of being buffered whole (and bounded by
    /// [`Limits::max_body_bytes`]). Asked once the head is in.
    fn streams(&self, _head: &RequestHead<'_>) -> bool {
        false
    }

    /// A streamed body of `length` bytes begins: `Ok` with the ticket its
    /// bytes are handed over with. `Err` answers the request now; its body
    /// is then read and dropped.
    fn stream_start(&mut self, _head: &RequestHead<'_>, _length: u64) -> Result<Ticket, Response> {
        Err(Response::json_error(Status::NOT_FOUND, "not found"))
    }

    /// The next bytes of the streamed body: how many of them the handler
    /// took (0 to n; fewer is back-pressure: the rest is offered again on
    /// a later poll, and the client is not read meanwhile). `Err` answers
    /// the request now; the rest of the body is read and dropped.
    fn stream_chunk(&mut self, _ticket: Ticket, _bytes: &[u8]) -> Result<usize, Response> {
        Err(Response::json_error(Status::NOT_FOUND, "not found"))
    }

    /// The whole streamed body was taken: the answer, now or later.
    fn stream_end(&mut self, _ticket: Ticket) -> Reply {
        Reply::Now(Response::json_error(Status::NOT_FOUND, "not found"))
    }

    /// The streamed body will not be completed (the peer went away or
    /// closed early, or its connection timed out).
    fn stream_abort(&mut self, _ticket: Ticket) {}

    /// The next bytes of a streamed response body (see
    /// [`Response::streamed`]), at most `max`: `Ok(None)` when none are
    /// ready yet (asked again on a later poll), `Err` when the body cannot
    /// be completed (the connection closes, the client sees a short body).
    /// The end of the body, or the connection going away first, is told
    /// with [`Handler::cancel`].
    fn body_chunk(&mut self, _ticket: Ticket, _max: usize) -> Result<Option<Vec<u8>>, BodyCut> {
        Err(BodyCut)
    }

    /// A tunnel's turn: `input` is what the peer sent and was not taken
    /// yet; returns how many of those bytes were taken, after appending to
    /// `output` what goes to the peer. `None`: the tunnel is over (close).
    fn tunnel_io(
        &mut self,
        _ticket: Ticket,
        _input: &[u8],
        _output: &mut Vec<u8>,
    ) -> Option<usize> {
        None
    }

    /// The tunnel's connection is gone.
    fn tunnel_close(&mut self, _ticket: Ticket) {}
}

impl<F> Handler for F
where
    F: FnMut(&Request<'_>) -> Response,
{
    fn handle(&mut self, request: &Request<'_>) -> Reply {
        Reply::Now(self(request))
    }
}

/// Server settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    pub port: u16,
    /// Listening sockets kept ready. smoltcp has no accept queue: a SYN
    /// that finds no listening socket is answered with a reset, so this
    /// many connections may be opened at the same instant.
    pub spare_listeners: usize,
    /// Sockets at most, connections and listeners together; the pool grows
    /// to it while connections stay open and shrinks back as they close.
    pub max_sockets: usize,
    /// Receive buffer of each socket, in bytes (the window a client sends into).
    pub rx_buffer: usize,
    /// Transmit buffer of each socket, in bytes.
    pub tx_buffer: usize,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    pub limits: Limits,
    /// Request bytes held across all connections beyond each one's first
    /// `limits.max_head_bytes` (which every connection may always fill, so a
    /// small request is always read). A larger request reserves what it
    /// needs beyond that as a whole once its head is in, so the requests
    /// admitted can all complete; one that does not fit yet waits, its
    /// socket unread, TCP holding the client back.
    pub input_budget: usize,
    /// Responses waiting to be sent across all connections, above which no
    /// further request is answered until some of them went out.
    pub output_budget: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            port: 80,
            // Xen Orchestra's client opens up to 20 connections at once
            // when it loads the object types.
            spare_listeners: 24,
            max_sockets: 64,
            rx_buffer: 32 * 1024,
            tx_buffer: 64 * 1024,
            idle_timeout: Duration::from_secs(60),
            limits: Limits::default(),
            // Without a bound, 30 clients each sending most of a 1 MiB body
            // exhaust a 32 MiB heap.
            input_budget: 4 * 1024 * 1024,
            output_budget: 8 * 1024 * 1024,
        }
    }
}

/// What the connections may still buffer in this poll (see
/// [`ServerConfig::input_budget`] and [`ServerConfig::output_budget`]).
#[derive(Debug, Clone, Copy)]
struct Budget {
    /// The input budget not reserved by any connection.
    input_left: usize,
    output_held: usize,
}

/// How long a closing connection may take to finish its FIN exchange before
/// it is reset: a vanished peer must not hold a socket forever.
const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// An HTTP server on one port.
#[derive(Debug)]
pub struct HttpServer {
    config: ServerConfig,
    slots: Vec<Slot>,
    /// Connections accepted so far: orders them by age.
    accepted: u64,
    /// Serves HTTPS with this (every connection is TLS); plain HTTP without.
    tls: Option<Arc<rustls::ServerConfig>>,
}

#[derive(Debug)]
struct Slot {
    handle: SocketHandle,
    /// The connection the socket carries, from accept to close.
    conn: Option<SlotConnection>,
}

#[derive(Debug)]
struct SlotConnection {
    /// Accept order (see [`HttpServer::accepted`]).
    serial: u64,
    /// Input budget held for the request being received.
    reserved: usize,
    http: Stream,
    last_activity: Instant,
    /// When `close()` was called on the socket.
    closing_since: Option<Instant>,
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
            accepted: 0,
            tls: None,
        }
    }

    /// The server speaking TLS with `config` on every connection (HTTPS).
    pub fn with_tls(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Whether connections are TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
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

    /// Bytes held now: request input counted against the input budget (what
    /// goes beyond each connection's head allowance), and responses not yet sent.
    pub fn buffered(&self) -> (usize, usize) {
        let head = head_allowance(&self.config.limits);
        self.slots
            .iter()
            .filter_map(|slot| slot.conn.as_ref())
            .fold((0, 0), |(input, output), conn| {
                (
                    input + conn.http.buffered_input().saturating_sub(head),
                    output + conn.http.output().len(),
                )
            })
    }

    /// Listening sockets right now.
    pub fn listeners(&self) -> usize {
        self.slots.iter().filter(|s| s.conn.is_none()).count()
    }

    /// Creates the listening sockets in `sockets`. Calling it again does nothing.
    pub fn attach(&mut self, sockets: &mut SocketSet<'_>) {
        if self.slots.is_empty() {
            self.replenish(sockets);
        }
    }

    /// Tops the listeners up to `spare_listeners`, within `max_sockets`.
    fn replenish(&mut self, sockets: &mut SocketSet<'_>) {
        let spare = self.config.spare_listeners.max(1);
        let max = self.config.max_sockets.max(spare);
        let mut listeners = self.listeners();
        while listeners < spare && self.slots.len() < max {
            let mut socket = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; self.config.rx_buffer]),
                tcp::SocketBuffer::new(vec![0; self.config.tx_buffer]),
            );
            // Whole responses are written at once, so Nagle only adds delay.
            socket.set_nagle_enabled(false);
            // Gives up on a peer that stops acknowledging what we send.
            socket.set_timeout(Some(self.config.idle_timeout));
            // smoltcp's timeout also aborts a connection on which nothing
            // arrived for that long, silently: a quiet console tunnel would
            // be dropped after 60 s. Keep-alive probes get the peer's ACKs
            // in between; a peer that is gone still times out.
            socket.set_keep_alive(Some(self.config.idle_timeout / 3));
            listen(&mut socket, self.config.port);
            let handle = sockets.add(socket);
            self.slots.push(Slot { handle, conn: None });
            listeners += 1;
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
        self.drop_stolen_handshakes(sockets, handler);
        let config = self.config;
        let reserved: usize = self
            .slots
            .iter()
            .filter_map(|slot| slot.conn.as_ref())
            .map(|conn| conn.reserved)
            .sum();
        let mut budget = Budget {
            input_left: config.input_budget.saturating_sub(reserved),
            output_held: self.buffered().1,
        };
        let mut accepting = Accepting {
            accepted: &mut self.accepted,
            tls: self.tls.as_ref(),
        };
        let due = self
            .slots
            .iter_mut()
            .filter_map(|slot| {
                let socket = sockets.get_mut::<tcp::Socket<'_>>(slot.handle);
                poll_slot(
                    slot,
                    socket,
                    &config,
                    now,
                    handler,
                    &mut accepting,
                    &mut budget,
                )
            })
            .min();
        self.shrink(sockets);
        self.replenish(sockets);
        due
    }

    /// smoltcp hands a segment to the first socket in its set that accepts
    /// it, and a listener accepts any SYN. A retransmitted SYN (the client
    /// did not see our SYN-ACK in time) can therefore land on a listener that
    /// sits before the socket already handshaking with that client; it would
    /// then answer with another sequence number and reset the connection
    /// when the client acknowledges the first. Such a second socket for the
    /// same client endpoint is removed without a word (no RST): the segments
    /// reach the original again.
    fn drop_stolen_handshakes<H: Handler + ?Sized>(
        &mut self,
        sockets: &mut SocketSet<'_>,
        handler: &mut H,
    ) {
        let handshaking = |slot: &Slot| {
            sockets.get::<tcp::Socket<'_>>(slot.handle).state() == tcp::State::SynReceived
        };
        if !self.slots.iter().any(handshaking) {
            return;
        }
        // (handle, client endpoint, accept order, still handshaking)
        let live: Vec<_> = self
            .slots
            .iter()
            .filter_map(|slot| {
                let socket = sockets.get::<tcp::Socket<'_>>(slot.handle);
                let handshaking = match socket.state() {
                    tcp::State::SynReceived => true,
                    tcp::State::Established => false,
                    _ => return None,
                };
                // Not yet seen by `poll_slot`: newer than any connection that was.
                let age = slot.conn.as_ref().map_or(u64::MAX, |c| c.serial);
                Some((slot.handle, socket.remote_endpoint()?, age, handshaking))
            })
            .collect();
        let stolen: Vec<SocketHandle> = live
            .iter()
            .filter(|(_, remote, age, handshaking)| {
                *handshaking
                    && live
                        .iter()
                        .any(|(_, other, other_age, _)| other == remote && other_age < age)
            })
            .map(|(handle, ..)| *handle)
            .collect();
        if stolen.is_empty() {
            return;
        }
        self.slots.retain_mut(|slot| {
            if !stolen.contains(&slot.handle) {
                return true;
            }
            log::debug!(
                "http: dropping a second handshake with {:?} (a retransmitted SYN)",
                sockets
                    .get::<tcp::Socket<'_>>(slot.handle)
                    .remote_endpoint()
            );
            if let Some(mut conn) = slot.conn.take() {
                conn.http.abandon(handler);
            }
            sockets.remove(slot.handle);
            false
        });
    }

    /// Frees listeners beyond `spare_listeners` (their buffers go back to the heap).
    fn shrink(&mut self, sockets: &mut SocketSet<'_>) {
        let mut surplus = self
            .listeners()
            .saturating_sub(self.config.spare_listeners.max(1));
        if surplus == 0 {
            return;
        }
        self.slots.retain(|slot| {
            let remove = surplus > 0
                && slot.conn.is_none()
                && sockets.get::<tcp::Socket<'_>>(slot.handle).is_listening();
            if remove {
                sockets.remove(slot.handle);
                surplus -= 1;
            }
            !remove
        });
    }
}

/// What a new connection is made with.
struct Accepting<'a> {
    /// Connections accepted so far (see [`HttpServer::accepted`]).
    accepted: &'a mut u64,
    tls: Option<&'a Arc<rustls::ServerConfig>>,
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
    accepting: &mut Accepting<'_>,
    budget: &mut Budget,
) -> Option<Instant> {
    // Closed or TIME-WAIT: the connection is over; serve the next one. Leaving
    // TIME-WAIT early matters with a bounded pool (each socket would otherwise
    // sit out 10 s after every server-side close); random initial sequence
    // numbers keep stray old segments from being taken for new ones.
    if !socket.is_open() {
        if let Some(mut conn) = slot.conn.take() {
            conn.http.abandon(handler);
        }
        listen(socket, config.port);
        return None;
    }
    if socket.is_listening() {
        if let Some(mut conn) = slot.conn.take() {
            conn.http.abandon(handler);
        }
        return None;
    }
    if slot.conn.is_none() {
        let Some(http) = Stream::new(accepting.tls) else {
            socket.abort();
            return None;
        };
        *accepting.accepted += 1;
        slot.conn = Some(SlotConnection {
            serial: *accepting.accepted,
            reserved: 0,
            http,
            last_activity: now,
            closing_since: None,
        });
    }
    let conn = slot.conn.as_mut()?;

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

    receive(conn, socket, &config.limits, now, budget);
    let peer_closed = peer_closed(socket);
    let before = conn.http.output().len();
    if budget.output_held < config.output_budget {
        let held = conn.http.buffered_input();
        conn.http.respond(handler, &config.limits, peer_closed);
        if conn.http.buffered_input() < held {
            // A request was consumed: keep only what the input still holds
            // beyond the head allowance; the next request reserves anew.
            let still = conn
                .http
                .buffered_input()
                .saturating_sub(head_allowance(&config.limits));
            budget.input_left += conn.reserved.saturating_sub(still);
            conn.reserved = conn.reserved.min(still);
        }
    }
    transmit(conn, socket, &config.limits, now);
    budget.output_held = (budget.output_held + conn.http.output().len()).saturating_sub(before);
    // A connection waiting for a deferred answer is not idle.
    if conn.http.is_waiting() {
        conn.last_activity = now;
    }

    let idle = now >= conn.last_activity + config.idle_timeout;
    if conn.http.finished(peer_closed) || idle {
        if idle {
            log::debug!(
                "http: closing idle connection from {:?}",
                socket.remote_endpoint()
            );
        }
        conn.http.abandon(handler);
        // The FIN goes out after the data already in the socket.
        socket.close();
        conn.closing_since = Some(now);
        return Some(now + CLOSE_GRACE);
    }
    Some(conn.last_activity + config.idle_timeout)
}

/// Moves received bytes into the connection's input, up to its own bound
/// and the budget shared by all connections.
fn receive(
    conn: &mut SlotConnection,
    socket: &mut tcp::Socket<'_>,
    limits: &Limits,
    now: Instant,
    budget: &mut Budget,
) {
    let head = head_allowance(limits);
    // The socket's ring may hand out its data in two pieces.
    for _ in 0..2 {
        if !socket.can_recv() {
            return;
        }
        // Beyond the head allowance, the whole request must be reserved.
        let needed = conn
            .http
            .pending_request_size(limits)
            .map_or(0, |size| size.saturating_sub(head));
        if needed > conn.reserved {
            let extra = needed - conn.reserved;
            if extra <= budget.input_left {
                budget.input_left -= extra;
                conn.reserved = needed;
            }
        }
        let allowed = (head + conn.reserved).saturating_sub(conn.http.buffered_input());
        let room = conn.http.room(limits).min(allowed);
        if room == 0 {
            return;
        }
        let got = socket.recv(|data| {
            let n = data.len().min(room);
            conn.http.receive(data.get(..n).unwrap_or_default());
            (n, n)
        });
        match got {
            Ok(0) | Err(_) => return,
            Ok(_) => conn.last_activity = now,
        }
    }
}

/// Input every connection may hold without a reservation: a whole head, and
/// one byte more so an oversized head is seen as such (431).
fn head_allowance(limits: &Limits) -> usize {
    limits.max_head_bytes + 1
}

/// Hands as much pending output to the socket as it takes.
fn transmit(
    conn: &mut SlotConnection,
    socket: &mut tcp::Socket<'_>,
    limits: &Limits,
    now: Instant,
) {
    // TLS encrypts the rest of a large answer as the first part goes out.
    for _ in 0..2 {
        if conn.http.output().is_empty() || !socket.can_send() {
            return;
        }
        match socket.send_slice(conn.http.output()) {
            Ok(n) if n > 0 => {
                conn.http.sent(n, limits);
                conn.last_activity = now;
            }
            Ok(_) => return,
            Err(e) => {
                log::debug!("http: send failed: {e}");
                return;
            }
        }
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
