//! A smoltcp HTTP client for hosted tests: one host interface on the far end
//! of an in-memory wire, one TCP connection at a time.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use netstack::testing::{SimClock, WireNic};
use netstack::{HostInterface, IpConfig};
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{Ipv4Address, Ipv4Cidr};

/// A parsed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl TestResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// Parses one response from the front of `buf` (`head`: it answers a HEAD,
/// so it has no body whatever Content-Length says).
pub fn parse_response(buf: &[u8], head: bool) -> Option<(TestResponse, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let text = core::str::from_utf8(&buf[..end]).expect("ASCII head");
    let mut lines = text.split("\r\n");
    let status_line = lines.next()?;
    let status = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').expect("header colon");
            (n.to_string(), v.trim().to_string())
        })
        .collect();
    let length: usize = match (
        head,
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length")),
    ) {
        (false, Some((_, v))) => v.parse().ok()?,
        _ => 0,
    };
    let body = buf.get(end..end + length)?.to_vec();
    Some((
        TestResponse {
            status,
            headers,
            body,
        },
        end + length,
    ))
}

pub struct TestClient {
    pub iface: HostInterface<WireNic>,
    clock: SimClock,
    socket: Option<SocketHandle>,
    next_port: u16,
    outbox: Vec<u8>,
    pub inbox: Vec<u8>,
}

impl TestClient {
    pub fn new(nic: WireNic, ip: Ipv4Address, clock: &SimClock) -> Self {
        let config = IpConfig::Static {
            address: Ipv4Cidr::new(ip, 24),
            gateway: None,
            dns: Vec::new(),
        };
        TestClient {
            iface: HostInterface::new("client0", nic, config, clock.now(), 99),
            clock: clock.clone(),
            socket: None,
            next_port: 50000,
            outbox: Vec::new(),
            inbox: Vec::new(),
        }
    }

    /// Opens a new connection (dropping any previous one).
    pub fn connect(&mut self, server: (Ipv4Address, u16)) {
        if let Some(old) = self.socket.take() {
            self.iface.sockets_mut().remove(old);
        }
        let socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 256 * 1024]),
            tcp::SocketBuffer::new(vec![0; 65536]),
        );
        let handle = self.iface.add_socket(socket);
        self.next_port += 1;
        self.iface
            .connect_tcp(handle, server, self.next_port)
            .expect("connect");
        self.socket = Some(handle);
        self.outbox.clear();
        self.inbox.clear();
    }

    fn socket(&mut self) -> &mut tcp::Socket<'static> {
        let handle = self.socket.expect("connected");
        self.iface
            .sockets_mut()
            .get_mut::<tcp::Socket<'static>>(handle)
    }

    /// Queues bytes to send.
    pub fn send(&mut self, bytes: &[u8]) {
        self.outbox.extend_from_slice(bytes);
    }

    /// One millisecond of both hosts' life.
    pub fn tick(&mut self, server_side: &mut dyn FnMut(Instant)) {
        let now = self.clock.now();
        self.iface.poll(now);
        server_side(now);
        self.iface.poll(now);
        let mut outbox = core::mem::take(&mut self.outbox);
        let socket = self.socket();
        if !outbox.is_empty() && socket.can_send() {
            let n = socket.send_slice(&outbox).unwrap_or(0);
            outbox.drain(..n);
        }
        let mut inbox = Vec::new();
        while socket.can_recv() {
            socket
                .recv(|data| {
                    inbox.extend_from_slice(data);
                    (data.len(), ())
                })
                .expect("recv");
        }
        self.outbox = outbox;
        self.inbox.extend_from_slice(&inbox);
        self.clock.advance(Duration::from_millis(1));
    }

    /// Drives both sides until a whole response has arrived.
    pub fn response(&mut self, head: bool, server_side: &mut dyn FnMut(Instant)) -> TestResponse {
        for _ in 0..10_000 {
            if let Some((response, used)) = parse_response(&self.inbox, head) {
                self.inbox.drain(..used);
                return response;
            }
            self.tick(server_side);
        }
        panic!(
            "no response within 10 s; received {:?}",
            String::from_utf8_lossy(&self.inbox)
        );
    }

    /// Sends `request` and waits for its response.
    pub fn exchange(
        &mut self,
        request: &[u8],
        server_side: &mut dyn FnMut(Instant),
    ) -> TestResponse {
        self.send(request);
        self.response(request.starts_with(b"HEAD "), server_side)
    }

    /// Whether the server has closed its side (its FIN arrived, or the connection is gone).
    pub fn peer_closed(&mut self) -> bool {
        let socket = self.socket();
        !socket.may_recv()
            && !matches!(
                socket.state(),
                tcp::State::SynSent | tcp::State::SynReceived
            )
    }

    /// Drives both sides until the server closes or `limit` passes.
    pub fn wait_closed(&mut self, limit: Duration, server_side: &mut dyn FnMut(Instant)) -> bool {
        let end = self.clock.now() + limit;
        while self.clock.now() < end {
            if self.peer_closed() {
                return true;
            }
            self.tick(server_side);
        }
        false
    }

    /// Closes the client's side and lets the FIN exchange finish, as a
    /// well-behaved client does after the server closed.
    pub fn close(&mut self, server_side: &mut dyn FnMut(Instant)) {
        self.socket().close();
        self.run_for(Duration::from_millis(50), server_side);
    }

    /// Drives both sides for `time`.
    pub fn run_for(&mut self, time: Duration, server_side: &mut dyn FnMut(Instant)) {
        let end = self.clock.now() + time;
        while self.clock.now() < end {
            self.tick(server_side);
        }
    }
}
