//! A connection as its carrier sees it: HTTP straight on the bytes, or
//! HTTP inside TLS. Both the smoltcp server and the hosted server hold one.

use alloc::boxed::Box;
use alloc::sync::Arc;

use super::{Connection, Handler};
use crate::http::Limits;
use crate::tls::TlsConnection;

#[derive(Debug)]
pub enum Stream {
    Plain(Connection),
    Tls(Box<TlsConnection>),
}

impl Stream {
    /// A connection on a plain port, or a TLS one with `tls`. `None` if
    /// rustls refuses to start one (it does not with a config that built).
    pub fn new(tls: Option<&Arc<rustls::ServerConfig>>) -> Option<Stream> {
        match tls {
            None => Some(Stream::Plain(Connection::new())),
            Some(config) => match TlsConnection::new(Arc::clone(config)) {
                Ok(conn) => Some(Stream::Tls(Box::new(conn))),
                Err(e) => {
                    log::error!("tls: cannot start a connection: {e}");
                    None
                }
            },
        }
    }

    /// How many more bytes (plain or ciphertext) may be taken now.
    pub fn room(&self, limits: &Limits) -> usize {
        match self {
            Stream::Plain(c) => c.room(limits),
            Stream::Tls(t) => t.room(),
        }
    }

    pub fn receive(&mut self, data: &[u8]) {
        match self {
            Stream::Plain(c) => c.receive(data),
            Stream::Tls(t) => t.receive(data),
        }
    }

    /// Request bytes held (decrypted, for TLS).
    pub fn buffered_input(&self) -> usize {
        match self {
            Stream::Plain(c) => c.buffered_input(),
            Stream::Tls(t) => t.buffered_input(),
        }
    }

    pub fn pending_request_size(&self, limits: &Limits) -> Option<usize> {
        match self {
            Stream::Plain(c) => c.pending_request_size(limits),
            Stream::Tls(t) => t.pending_request_size(limits),
        }
    }

    /// Bytes to send.
    pub fn output(&self) -> &[u8] {
        match self {
            Stream::Plain(c) => c.output(),
            Stream::Tls(t) => t.output(),
        }
    }

    pub fn sent(&mut self, n: usize, limits: &Limits) {
        match self {
            Stream::Plain(c) => c.sent(n),
            Stream::Tls(t) => {
                t.sent(n);
                t.flush(limits);
            }
        }
    }

    pub fn is_waiting(&self) -> bool {
        match self {
            Stream::Plain(c) => c.is_waiting(),
            Stream::Tls(t) => t.is_waiting(),
        }
    }

    /// Whether a streamed response body is being sent.
    pub fn is_sending(&self) -> bool {
        match self {
            Stream::Plain(c) => c.is_sending(),
            Stream::Tls(t) => t.is_sending(),
        }
    }

    pub fn finished(&self, peer_closed: bool) -> bool {
        match self {
            Stream::Plain(c) => c.finished(peer_closed),
            Stream::Tls(t) => t.finished(peer_closed),
        }
    }

    pub fn abandon<H: Handler + ?Sized>(&mut self, handler: &mut H) {
        match self {
            Stream::Plain(c) => c.abandon(handler),
            Stream::Tls(t) => t.abandon(handler),
        }
    }

    pub fn respond<H: Handler + ?Sized>(
        &mut self,
        handler: &mut H,
        limits: &Limits,
        peer_closed: bool,
    ) {
        match self {
            Stream::Plain(c) => c.respond(handler, limits, peer_closed),
            Stream::Tls(t) => t.respond(handler, limits, peer_closed),
        }
    }
}
