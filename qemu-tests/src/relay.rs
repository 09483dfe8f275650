//! A loopback TCP relay in front of QEMU's user-network port forward.
//!
//! QEMU's slirp listens for a host forward with a backlog of one
//! (`ss -ltn` shows `Send-Q 1`) and accepts from its main loop. A client
//! that opens many connections at once — Xen Orchestra's `xen-api` opens
//! one per object class, about twenty — overflows that queue; the host
//! kernel drops the extra SYNs and the client backs off (1 s, 2 s, ... up to
//! tens of seconds) although the guest would have answered at once.
//!
//! The relay listens with the kernel's default backlog, so a client's
//! connections complete immediately, and opens its own connection to the
//! forward for each one, giving up on a SYN that is not answered quickly
//! and trying again rather than waiting for the kernel's back-off. Bytes
//! are copied both ways; a half-close or an error on one side is passed on
//! to the other.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// One SYN to the forward unanswered this long is assumed dropped. The
/// handshake is between two loopback sockets in the host kernel, so a
/// live queue answers within microseconds.
const CONNECT_ATTEMPT: Duration = Duration::from_millis(200);
/// How long a client's connection may wait for the forward to take it.
const CONNECT_DEADLINE: Duration = Duration::from_secs(60);

/// A running relay; dropping it stops accepting (open connections run on
/// until either side closes).
#[derive(Debug)]
pub struct PortRelay {
    port: u16,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl PortRelay {
    /// Relays a fresh loopback port to `target`.
    pub fn start(target: SocketAddr) -> io::Result<PortRelay> {
        PortRelay::on(0, target)
    }

    /// Relays loopback port `port` (0: a fresh one) to `target`.
    pub fn on(port: u16, target: SocketAddr) -> io::Result<PortRelay> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let acceptor = thread::Builder::new()
            .name(format!("relay-{port}"))
            .spawn(move || accept_loop(&listener, target, &stopping))?;
        Ok(PortRelay {
            port,
            stop,
            acceptor: Some(acceptor),
        })
    }

    /// The loopback port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PortRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor blocked in accept().
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, target: SocketAddr, stop: &AtomicBool) {
    for client in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let _ = thread::Builder::new()
            .name("relay-conn".into())
            .spawn(move || relay(client, target));
    }
}

/// Connects to `target`, retrying a SYN the forward's full queue dropped.
fn connect(target: SocketAddr) -> io::Result<TcpStream> {
    let deadline = Instant::now() + CONNECT_DEADLINE;
    loop {
        match TcpStream::connect_timeout(&target, CONNECT_ATTEMPT) {
            Ok(stream) => return Ok(stream),
            Err(e) if e.kind() == io::ErrorKind::TimedOut && Instant::now() < deadline => {}
            Err(e) => return Err(e),
        }
    }
}

fn relay(client: TcpStream, target: SocketAddr) {
    let Ok(upstream) = connect(target) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (Ok(client_reader), Ok(upstream_writer)) = (client.try_clone(), upstream.try_clone())
    else {
        return;
    };
    let outbound = thread::Builder::new()
        .name("relay-out".into())
        .spawn(move || pipe(client_reader, upstream_writer));
    pipe(upstream, client);
    if let Ok(outbound) = outbound {
        let _ = outbound.join();
    }
}

/// Copies `from` to `to` until `from` ends (end of stream or an error), then
/// half-closes `to` so what was copied is still delivered before its FIN.
/// When `to` stops taking bytes (a server that answered 413 and closed while
/// the client still sends its body), the rest of `from` is read and dropped
/// rather than left unread: closing a socket with unread data resets it, and
/// the reset would destroy the answer on its way to the client.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buffer = [0u8; 64 * 1024];
    let mut forwarding = true;
    loop {
        match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                if forwarding && to.write_all(&buffer[..n]).is_err() {
                    forwarding = false;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_and_half_closes_cross_the_relay() {
        let server = TcpListener::bind("127.0.0.1:0").expect("bind");
        let target = server.local_addr().expect("addr");
        let echo = thread::spawn(move || {
            let (mut conn, _) = server.accept().expect("accept");
            let mut request = Vec::new();
            conn.read_to_end(&mut request)
                .expect("read to the client's FIN");
            request.reverse();
            conn.write_all(&request).expect("answer");
        });
        let relay = PortRelay::start(target).expect("relay");
        let mut client = TcpStream::connect(("127.0.0.1", relay.port())).expect("connect");
        client.write_all(b"hello relay").expect("send");
        client.shutdown(Shutdown::Write).expect("half-close");
        let mut answer = String::new();
        client.read_to_string(&mut answer).expect("answer and FIN");
        assert_eq!(answer, "yaler olleh");
        echo.join().expect("echo server");
    }

    #[test]
    fn a_client_is_closed_when_the_target_refuses() {
        // A port nobody listens on: bind, note it, close.
        let target = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let relay = PortRelay::start(target).expect("relay");
        let mut client = TcpStream::connect(("127.0.0.1", relay.port())).expect("connect");
        let mut buffer = Vec::new();
        // EOF or a reset: either way the relay does not keep the client hanging.
        let _ = client.read_to_end(&mut buffer);
        assert!(buffer.is_empty());
    }
}
