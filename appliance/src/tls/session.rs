//! One HTTPS connection: TLS records in and out, the HTTP state machine
//! inside. The carrier (a smoltcp socket, a std stream) moves ciphertext;
//! every method returns without waiting.

use alloc::sync::Arc;
use alloc::vec::Vec;

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, InsufficientSizeError};

use crate::http::Limits;
use crate::server::{Connection, Handler};

/// Ciphertext held at most before it is decrypted: two full records.
pub const MAX_INCOMING: usize = 2 * (16 * 1024 + 2048 + 5);
/// Decrypted bytes waiting for room in the HTTP input, above which no
/// further record is decrypted (the peer is held back by TCP).
const PLAIN_HIGH_WATER: usize = 32 * 1024;
/// Plaintext encrypted per round while ciphertext waits to be sent.
const ENCRYPT_CHUNK: usize = 64 * 1024;

pub struct TlsConnection {
    tls: UnbufferedServerConnection,
    /// Ciphertext received and not yet processed.
    incoming: Vec<u8>,
    /// Ciphertext to send, from `written` on.
    outgoing: Vec<u8>,
    written: usize,
    /// Plaintext decrypted and not yet taken by `http`.
    plain: Vec<u8>,
    http: Connection,
    /// A TLS error (bad record, failed handshake): the connection is dropped.
    failed: bool,
    /// The peer sent close_notify.
    peer_closed: bool,
    /// Our close_notify is queued.
    close_sent: bool,
}

impl core::fmt::Debug for TlsConnection {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TlsConnection")
            .field("incoming", &self.incoming.len())
            .field("outgoing", &self.output().len())
            .field("failed", &self.failed)
            .field("http", &self.http)
            .finish_non_exhaustive()
    }
}

impl TlsConnection {
    pub fn new(config: Arc<rustls::ServerConfig>) -> Result<Self, rustls::Error> {
        Ok(TlsConnection {
            tls: UnbufferedServerConnection::new(config)?,
            incoming: Vec::new(),
            outgoing: Vec::new(),
            written: 0,
            plain: Vec::new(),
            http: Connection::new(),
            failed: false,
            peer_closed: false,
            close_sent: false,
        })
    }

    /// How many more ciphertext bytes may be taken now.
    pub fn room(&self) -> usize {
        if self.failed || self.plain.len() >= PLAIN_HIGH_WATER {
            return 0;
        }
        MAX_INCOMING.saturating_sub(self.incoming.len())
    }

    /// Takes received ciphertext (at most [`TlsConnection::room`] of it).
    pub fn receive(&mut self, data: &[u8]) {
        if !self.failed {
            self.incoming.extend_from_slice(data);
        }
    }

    /// Request bytes held, decrypted (the HTTP input and what waits for it).
    pub fn buffered_input(&self) -> usize {
        self.http.buffered_input() + self.plain.len()
    }

    pub fn pending_request_size(&self, limits: &Limits) -> Option<usize> {
        self.http.pending_request_size(limits)
    }

    /// Ciphertext waiting to be sent.
    pub fn output(&self) -> &[u8] {
        self.outgoing.get(self.written..).unwrap_or_default()
    }

    /// Marks `n` bytes of [`TlsConnection::output`] as sent.
    pub fn sent(&mut self, n: usize) {
        self.written = (self.written + n).min(self.outgoing.len());
        if self.written == self.outgoing.len() {
            self.outgoing.clear();
            self.written = 0;
        }
    }

    pub fn is_waiting(&self) -> bool {
        self.http.is_waiting()
    }

    pub fn is_sending(&self) -> bool {
        self.http.is_sending()
    }

    pub fn is_streaming(&self) -> bool {
        self.http.is_streaming()
    }

    /// Whether the TLS layer failed (the connection is then closed).
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Whether the connection should now be closed: all ciphertext is sent,
    /// and TLS failed, or we said close_notify, or the peer went away with
    /// nothing left to answer.
    pub fn finished(&self, transport_closed: bool) -> bool {
        self.output().is_empty()
            && (self.failed
                || self.close_sent
                || (transport_closed && self.http.finished(true) && self.plain.is_empty()))
    }

    pub fn abandon<H: Handler + ?Sized>(&mut self, handler: &mut H) {
        self.http.abandon(handler);
    }

    /// Decrypts what arrived, answers every complete request, encrypts the
    /// answers (see [`crate::server::Connection::respond`]).
    pub fn respond<H: Handler + ?Sized>(
        &mut self,
        handler: &mut H,
        limits: &Limits,
        transport_closed: bool,
    ) {
        self.process(limits);
        if self.failed {
            return;
        }
        let closed = transport_closed || self.peer_closed;
        self.http
            .respond(handler, limits, closed && self.plain.is_empty());
        self.process(limits);
    }

    /// Encrypts more of the HTTP output, if it waits (call after sending).
    pub fn flush(&mut self, limits: &Limits) {
        if !self.http.output().is_empty() {
            self.process(limits);
        }
    }

    /// Runs the TLS state machine as far as it goes without the peer.
    fn process(&mut self, limits: &Limits) {
        self.feed_http(limits);
        // Each round takes at least one step; the bound only guards a loop.
        for _ in 0..64 {
            if self.failed || self.plain.len() >= PLAIN_HIGH_WATER {
                return;
            }
            let status = self.tls.process_tls_records(&mut self.incoming);
            let discard = status.discard;
            let mut again = true;
            match status.state {
                Err(e) => {
                    log::debug!("tls: connection dropped: {e}");
                    self.failed = true;
                    again = false;
                }
                Ok(ConnectionState::ReadTraffic(mut read)) => {
                    while let Some(record) = read.next_record() {
                        match record {
                            Ok(record) => self.plain.extend_from_slice(record.payload),
                            Err(e) => {
                                log::debug!("tls: bad record: {e}");
                                self.failed = true;
                                break;
                            }
                        }
                    }
                }
                Ok(ConnectionState::ReadEarlyData(_)) => {
                    // Never enabled (`max_early_data_size` is 0).
                    self.failed = true;
                    again = false;
                }
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    let start = self.outgoing.len();
                    let mut size = 4096;
                    loop {
                        self.outgoing.resize(start + size, 0);
                        let out = self.outgoing.get_mut(start..).unwrap_or_default();
                        match encode.encode(out) {
                            Ok(n) => {
                                self.outgoing.truncate(start + n);
                                break;
                            }
                            Err(EncodeError::InsufficientSize(InsufficientSizeError {
                                required_size,
                            })) if required_size > size => size = required_size,
                            Err(e) => {
                                log::debug!("tls: encoding a handshake record: {e}");
                                self.outgoing.truncate(start);
                                self.failed = true;
                                break;
                            }
                        }
                    }
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    // Queued in `outgoing`; the carrier sends it in order.
                    transmit.done();
                }
                Ok(ConnectionState::BlockedHandshake) => again = false,
                Ok(ConnectionState::PeerClosed) => self.peer_closed = true,
                Ok(ConnectionState::Closed) => {
                    self.peer_closed = true;
                    again = false;
                }
                Ok(ConnectionState::WriteTraffic(mut write)) => {
                    again = false;
                    let pending = self.http.output();
                    if !pending.is_empty() && self.outgoing.len() - self.written < ENCRYPT_CHUNK {
                        let take = pending.len().min(ENCRYPT_CHUNK);
                        let plain = pending.get(..take).unwrap_or_default();
                        match encrypt_into(&mut self.outgoing, |out| write.encrypt(plain, out)) {
                            Ok(()) => self.http.sent(take),
                            Err(e) => {
                                log::debug!("tls: encrypting: {e}");
                                self.failed = true;
                            }
                        }
                        again = !self.http.output().is_empty()
                            && self.outgoing.len() - self.written < ENCRYPT_CHUNK;
                    }
                    let closed = self.peer_closed && self.plain.is_empty();
                    if !self.close_sent
                        && self.http.output().is_empty()
                        && self.http.finished(closed)
                    {
                        match encrypt_into(&mut self.outgoing, |out| write.queue_close_notify(out))
                        {
                            Ok(()) => self.close_sent = true,
                            Err(_) => self.failed = true,
                        }
                        again = false;
                    }
                }
                Ok(_) => again = false,
            }
            self.incoming.drain(..discard.min(self.incoming.len()));
            self.feed_http(limits);
            if !again {
                return;
            }
        }
    }

    /// Moves decrypted bytes into the HTTP input, as far as it has room.
    fn feed_http(&mut self, limits: &Limits) {
        if self.plain.is_empty() {
            return;
        }
        let n = self.http.room(limits).min(self.plain.len());
        if n > 0 {
            self.http.receive(self.plain.get(..n).unwrap_or_default());
            self.plain.drain(..n);
        }
    }
}

/// Appends what `encrypt` writes to `out`, growing the space it gets until
/// it fits.
fn encrypt_into(
    out: &mut Vec<u8>,
    mut encrypt: impl FnMut(&mut [u8]) -> Result<usize, EncryptError>,
) -> Result<(), EncryptError> {
    let start = out.len();
    let mut size = 1024;
    loop {
        out.resize(start + size, 0);
        match encrypt(out.get_mut(start..).unwrap_or_default()) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size }))
                if required_size > size =>
            {
                size = required_size;
            }
            Err(e) => {
                out.truncate(start);
                return Err(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Request, Response, Status};
    use crate::tls::{Clock, Identity, Subject, server_config};
    use std::io::{Read, Write};

    fn identity() -> Identity {
        let mut n = 7u8;
        let subject = Subject {
            hostname: "keel-test",
            address: Some([127, 0, 0, 1]),
            unix_now: Some(1_796_515_200),
        };
        Identity::generate(&subject, &mut |buf: &mut [u8]| {
            for b in buf {
                n = n.wrapping_mul(13).wrapping_add(5);
                *b = n;
            }
        })
        .unwrap()
    }

    fn new_server(identity: &Identity) -> TlsConnection {
        // A platform that does not know the date: the handshake still completes.
        let clock = Arc::new(Clock::default());
        clock.set(None, core::time::Duration::from_secs(5));
        TlsConnection::new(server_config(identity, clock).unwrap()).unwrap()
    }

    fn client(
        identity: &Identity,
        version: &'static rustls::SupportedProtocolVersion,
    ) -> rustls::ClientConnection {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(identity.cert_der.clone().into()).unwrap();
        let config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls_rustcrypto::provider()))
                .with_protocol_versions(&[version])
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        rustls::ClientConnection::new(Arc::new(config), "keel-test".try_into().unwrap()).unwrap()
    }

    /// Moves bytes both ways until neither side has anything to say.
    fn pump(
        client: &mut rustls::ClientConnection,
        server: &mut TlsConnection,
        handler: &mut impl FnMut(&Request<'_>) -> Response,
        received: &mut Vec<u8>,
    ) {
        let limits = Limits::default();
        for _ in 0..50 {
            let mut wire = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut wire).unwrap();
            }
            let mut rest = &wire[..];
            loop {
                let n = server.room().min(rest.len());
                server.receive(&rest[..n]);
                rest = &rest[n..];
                server.respond(handler, &limits, false);
                if rest.is_empty() {
                    break;
                }
            }
            let out = server.output().to_vec();
            server.sent(out.len());
            server.flush(&limits);
            if wire.is_empty() && out.is_empty() && server.output().is_empty() {
                return;
            }
            let mut rest = &out[..];
            while !rest.is_empty() {
                client.read_tls(&mut rest).unwrap();
                client.process_new_packets().unwrap();
                let _ = client.reader().read_to_end(received);
            }
        }
        panic!("the conversation never settled");
    }

    #[test]
    fn a_rustls_client_is_answered_over_tls_1_3_and_1_2() {
        let identity = identity();
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let mut server = new_server(&identity);
            let mut client = client(&identity, version);
            let mut handler =
                |request: &Request<'_>| Response::json_error(Status::NOT_FOUND, request.path());
            client
                .writer()
                .write_all(b"GET /over-tls HTTP/1.1\r\nHost: keel-test\r\n\r\n")
                .unwrap();
            let mut received = Vec::new();
            pump(&mut client, &mut server, &mut handler, &mut received);
            assert_eq!(client.protocol_version(), Some(version.version));
            let answer = String::from_utf8_lossy(&received);
            assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
            assert!(answer.contains("/over-tls"), "{answer}");
            assert!(!server.failed() && !server.finished(false));

            // A large answer spans many records and several encryption rounds.
            let big = "x".repeat(300_000);
            let mut handler = |_: &Request<'_>| Response::json_error(Status::NOT_FOUND, &big);
            client
                .writer()
                .write_all(b"GET /big HTTP/1.1\r\nHost: keel-test\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut answer = Vec::new();
            pump(&mut client, &mut server, &mut handler, &mut answer);
            assert!(answer.len() > 300_000, "{}", answer.len());
            assert!(answer.starts_with(b"HTTP/1.1 404"));
            // Connection: close ends with close_notify, then the connection is done.
            assert!(server.finished(false));
        }
    }

    fn other_identity() -> Identity {
        let mut n = 99u8;
        let subject = Subject {
            hostname: "keel-other",
            address: None,
            unix_now: None,
        };
        Identity::generate(&subject, &mut |buf: &mut [u8]| {
            for b in buf {
                n = n.wrapping_mul(29).wrapping_add(11);
                *b = n;
            }
        })
        .unwrap()
    }

    fn supplied(cert: &Identity, key: &Identity) -> host_config::SuppliedTls {
        host_config::SuppliedTls {
            certificate_chain: vec![cert.cert_der.clone()],
            key: key.key_pkcs8().unwrap(),
            key_kind: host_config::KeyKind::Pkcs8,
        }
    }

    #[test]
    fn a_supplied_certificate_is_served_and_a_bad_one_refused() {
        use crate::tls::{Source, host_tls, supplied_server_config};
        let identity = identity();
        let clock = Arc::new(Clock::default());
        let (config, certificate) =
            supplied_server_config(&supplied(&identity, &identity), Arc::clone(&clock)).unwrap();
        assert_eq!(certificate.sha256, identity.fingerprint());
        assert_eq!(certificate.pem, identity.cert_pem());
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let mut server = TlsConnection::new(Arc::clone(&config)).unwrap();
            let mut client = client(&identity, version);
            let mut handler =
                |request: &Request<'_>| Response::json_error(Status::NOT_FOUND, request.path());
            client
                .writer()
                .write_all(b"GET /supplied HTTP/1.1\r\nHost: keel-test\r\n\r\n")
                .unwrap();
            let mut received = Vec::new();
            pump(&mut client, &mut server, &mut handler, &mut received);
            let answer = String::from_utf8_lossy(&received);
            assert!(answer.contains("/supplied"), "{answer}");
        }

        // A key of another certificate, a key that is no key, a certificate
        // that is no certificate, no certificate at all: each refused with its reason.
        let other = other_identity();
        let mismatched = supplied(&identity, &other);
        let e = supplied_server_config(&mismatched, Arc::clone(&clock)).unwrap_err();
        assert!(e.contains("does not match the certificate"), "{e}");
        let mut garbage_key = supplied(&identity, &identity);
        garbage_key.key = vec![0x30, 3, 2, 1, 0];
        let e = supplied_server_config(&garbage_key, Arc::clone(&clock)).unwrap_err();
        assert!(e.contains("the key does not load"), "{e}");
        let mut sec1_label = supplied(&identity, &identity);
        sec1_label.key_kind = host_config::KeyKind::Pkcs1;
        let e = supplied_server_config(&sec1_label, Arc::clone(&clock)).unwrap_err();
        assert!(e.contains("the key does not load"), "{e}");
        let mut garbage_cert = supplied(&identity, &identity);
        garbage_cert.certificate_chain = vec![vec![0x30, 0x03, 1, 2, 3]];
        let e = supplied_server_config(&garbage_cert, Arc::clone(&clock)).unwrap_err();
        assert!(e.contains("the certificate cannot be read"), "{e}");
        let mut none = supplied(&identity, &identity);
        none.certificate_chain.clear();
        let e = supplied_server_config(&none, Arc::clone(&clock)).unwrap_err();
        assert!(e.contains("no certificate"), "{e}");

        // host_tls serves the supplied one, and falls back to the host's own
        // when the supplied one is unusable.
        let subject = Subject {
            hostname: "keel-test",
            address: None,
            unix_now: None,
        };
        let mut n = 1u8;
        let mut random = |buf: &mut [u8]| {
            for b in buf {
                n = n.wrapping_add(3);
                *b = n;
            }
        };
        let good = supplied(&identity, &identity);
        let served =
            host_tls(Some(&good), None, &subject, &mut random, Arc::clone(&clock)).unwrap();
        assert_eq!(served.source, Source::Supplied);
        assert_eq!(served.certificate.sha256, identity.fingerprint());
        assert_eq!(served.refused, None);
        let served = host_tls(
            Some(&mismatched),
            None,
            &subject,
            &mut random,
            Arc::clone(&clock),
        )
        .unwrap();
        assert_eq!(served.source, Source::Generated);
        assert!(served.refused.unwrap().contains("does not match"));
        assert_ne!(served.certificate.sha256, identity.fingerprint());
        assert_ne!(served.certificate.sha256, other.fingerprint());
    }

    #[test]
    fn bad_tls_input_fails_the_connection_without_an_answer() {
        let identity = identity();
        let limits = Limits::default();
        let mut handler = |_: &Request<'_>| -> Response { panic!("no request may get through") };
        let inputs: [&[u8]; 4] = [
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            &[0x16, 0x03, 0x03, 0xff, 0xff, 0, 0, 0],
            &[
                0x17, 0x03, 0x03, 0x00, 0x10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
            ],
            &[0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00],
        ];
        for input in inputs {
            let mut server = new_server(&identity);
            server.receive(input);
            server.respond(&mut handler, &limits, false);
            assert!(server.failed(), "{input:?}");
            assert_eq!(server.room(), 0);
            assert!(server.finished(false) || !server.output().is_empty());
        }
        // A truncated hello waits for more; the peer going away ends it.
        let mut server = new_server(&identity);
        server.receive(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01]);
        server.respond(&mut handler, &limits, false);
        assert!(!server.failed() && !server.finished(false));
        server.respond(&mut handler, &limits, true);
        assert!(server.finished(true));
        // Deterministic garbage of every length never panics.
        let mut x = 1u32;
        for len in 0..300 {
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let mut server = new_server(&identity);
            server.receive(&junk);
            server.respond(&mut handler, &limits, true);
        }
    }
}
