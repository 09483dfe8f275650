//! The server on one end of an in-memory wire, a smoltcp client on the other.

use alloc::vec::Vec;

use netstack::testing::{SimClock, Wire, WireNic};
use netstack::{HostInterface, IpConfig, MacAddress};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{Ipv4Address, Ipv4Cidr};

use super::*;
use crate::http::{Method, Status};
use crate::test_client::TestClient;

const SERVER_IP: Ipv4Address = Ipv4Address::new(10, 0, 3, 1);
const CLIENT_IP: Ipv4Address = Ipv4Address::new(10, 0, 3, 2);
const PORT: u16 = 80;

fn route(request: &Request<'_>) -> Response {
    match (request.method(), request.path()) {
        (Method::Get | Method::Head, "/health") => {
            Response::json(Status::OK, br#"{"status":"ok"}"#.to_vec())
        }
        (Method::Post, "/echo") => {
            Response::new(Status::OK).with_body("application/octet-stream", request.body.to_vec())
        }
        (Method::Get, "/big") => Response::new(Status::OK).with_body("text/plain", big_body()),
        (Method::Get, "/bye") => Response::new(Status::OK).with_close(),
        _ => Response::json_error(Status::NOT_FOUND, "not found"),
    }
}

fn big_body() -> Vec<u8> {
    (0..200 * 1024).map(|i| (i % 253) as u8).collect()
}

struct Server {
    iface: HostInterface<WireNic>,
    http: HttpServer,
    deadline: Option<Instant>,
}

impl Server {
    fn poll(&mut self, now: Instant) {
        self.iface.poll(now);
        self.deadline = self.http.poll(self.iface.sockets_mut(), now, &mut route);
        self.iface.poll(now);
    }
}

fn setup() -> (SimClock, Server, TestClient) {
    setup_with(ServerConfig {
        port: PORT,
        ..ServerConfig::default()
    })
}

fn setup_with(server_config: ServerConfig) -> (SimClock, Server, TestClient) {
    let clock = SimClock::new();
    let wire = Wire::default();
    let (server_nic, client_nic) = wire.pair(
        MacAddress([2, 0, 0, 3, 0, 1]),
        MacAddress([2, 0, 0, 3, 0, 2]),
    );
    let config = IpConfig::Static {
        address: Ipv4Cidr::new(SERVER_IP, 24),
        gateway: None,
        dns: Vec::new(),
    };
    let mut iface = HostInterface::new("eth0", server_nic, config, clock.now(), 5);
    let mut http = HttpServer::with_config(server_config);
    http.attach(iface.sockets_mut());
    let mut client = TestClient::new(client_nic, CLIENT_IP, &clock);
    client.connect((SERVER_IP, PORT));
    (
        clock,
        Server {
            iface,
            http,
            deadline: None,
        },
        client,
    )
}

const GET_HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: 10.0.3.1\r\n\r\n";

#[test]
fn attach_creates_the_listening_pool_once() {
    let (_clock, mut server, _client) = setup();
    server.http.attach(server.iface.sockets_mut());
    let listening = server
        .iface
        .sockets()
        .iter()
        .filter_map(|(_, s)| match s {
            smoltcp::socket::Socket::Tcp(t) => Some(t.is_listening()),
            _ => None,
        })
        .filter(|l| *l)
        .count();
    assert_eq!(listening, ServerConfig::default().spare_listeners);
}

#[test]
fn get_health_then_a_second_request_on_the_same_connection() {
    let (_clock, mut server, mut client) = setup();
    let mut side = |now| server.poll(now);
    let first = client.exchange(GET_HEALTH, &mut side);
    assert_eq!(first.status, 200);
    assert_eq!(first.header("connection"), Some("keep-alive"));
    assert_eq!(first.header("content-type"), Some("application/json"));
    assert_eq!(first.body, br#"{"status":"ok"}"#);
    let second = client.exchange(b"GET /nope HTTP/1.1\r\nHost: h\r\n\r\n", &mut side);
    assert_eq!(second.status, 404);
    assert_eq!(second.json()["error"], "not found");
    assert!(!client.peer_closed());
    assert_eq!(server.http.active_connections(), 1);
}

#[test]
fn head_gets_headers_only() {
    let (_clock, mut server, mut client) = setup();
    let mut side = |now| server.poll(now);
    let response = client.exchange(b"HEAD /health HTTP/1.1\r\nHost: h\r\n\r\n", &mut side);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-length"), Some("15"));
    // The next response starts right after the head: no body bytes slipped in between.
    let next = client.exchange(GET_HEALTH, &mut side);
    assert_eq!(next.body, br#"{"status":"ok"}"#);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let (_clock, mut server, mut client) = setup();
    let mut side = |now| server.poll(now);
    client.send(b"GET /health HTTP/1.1\r\nHost: h\r\n\r\nPOST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET /x HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(client.response(false, &mut side).status, 200);
    assert_eq!(client.response(false, &mut side).body, b"abc");
    assert_eq!(client.response(false, &mut side).status, 404);
}

#[test]
fn connection_close_is_honoured_and_the_socket_listens_again() {
    let (_clock, mut server, mut client) = setup();
    let mut side = |now| server.poll(now);
    let response = client.exchange(
        b"GET /health HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        &mut side,
    );
    assert_eq!(response.header("connection"), Some("close"));
    assert!(client.wait_closed(Duration::from_secs(2), &mut side));
    // Many more connections than sockets: each one is served after the previous closes.
    client.close(&mut side);
    for _ in 0..20 {
        client.connect((SERVER_IP, PORT));
        let response = client.exchange(b"GET /health HTTP/1.0\r\n\r\n", &mut side);
        assert_eq!(
            (response.status, response.header("connection")),
            (200, Some("close"))
        );
        assert!(client.wait_closed(Duration::from_secs(2), &mut side));
        client.close(&mut side);
    }
}

#[test]
fn clients_that_never_close_do_not_exhaust_the_pool() {
    let (_clock, mut server, mut client) = setup();
    let mut side = |now| server.poll(now);
    for _ in 0..20 {
        client.connect((SERVER_IP, PORT));
        assert_eq!(
            client
                .exchange(b"GET /health HTTP/1.0\r\n\r\n", &mut side)
                .status,
            200
        );
        assert!(client.wait_closed(Duration::from_secs(2), &mut side));
        // The client acknowledges the server's FIN but never sends its own.
        client.run_for(Duration::from_millis(50), &mut side);
    }
}

#[test]
fn a_handler_can_close_the_connection() {
    let (_clock, mut server, mut client) = setup();
    let mut side = |now| server.poll(now);
    let response = client.exchange(b"GET /bye HTTP/1.1\r\nHost: h\r\n\r\n", &mut side);
    assert_eq!(response.header("connection"), Some("close"));
    assert!(client.wait_closed(Duration::from_secs(2), &mut side));
}

#[test]
fn http10_keep_alive_on_request() {
    let (_clock, mut server, mut client) = setup();
    let mut side = |now| server.poll(now);
    let response = client.exchange(
        b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        &mut side,
    );
    assert_eq!(response.header("connection"), Some("keep-alive"));
    assert_eq!(
        client
            .exchange(b"GET /health HTTP/1.0\r\n\r\n", &mut side)
            .header("connection"),
        Some("close")
    );
}

#[test]
fn bad_requests_get_their_status_then_the_connection_closes() {
    for (request, status) in [
        (&b"BROKEN\r\n\r\n"[..], 400),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (
            b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5000000\r\n\r\n",
            413,
        ),
        (
            b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            501,
        ),
    ] {
        let (_clock, mut server, mut client) = setup();
        let mut side = |now| server.poll(now);
        let response = client.exchange(request, &mut side);
        assert_eq!(
            response.status,
            status,
            "{:?}",
            String::from_utf8_lossy(request)
        );
        assert_eq!(response.header("connection"), Some("close"));
        assert!(response.json()["error"].is_string());
        assert!(client.wait_closed(Duration::from_secs(2), &mut side));
    }
}

#[test]
fn oversize_header_block_gets_431() {
    let (_clock, mut server, mut client) = setup();
    let mut side = |now| server.poll(now);
    let mut request = b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: ".to_vec();
    request.extend(core::iter::repeat_n(b'x', 10_000));
    request.extend_from_slice(b"\r\n\r\n");
    let response = client.exchange(&request, &mut side);
    assert_eq!(response.status, 431);
}

#[test]
fn a_response_larger_than_the_socket_buffer_arrives_whole() {
    let (_clock, mut server, mut client) = setup();
    let mut side = |now| server.poll(now);
    let response = client.exchange(b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n", &mut side);
    assert_eq!(response.body, big_body());
    assert_eq!(client.exchange(GET_HEALTH, &mut side).status, 200);
}

#[test]
fn chunked_and_large_bodies_are_received() {
    let (_clock, mut server, mut client) = setup();
    let mut side = |now| server.poll(now);
    let chunked = b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    assert_eq!(client.exchange(chunked, &mut side).body, b"hello world");
    let body: Vec<u8> = (0..300_000).map(|i| (i % 241) as u8).collect();
    let mut request = format!(
        "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    assert_eq!(client.exchange(&request, &mut side).body, body);
}

#[test]
fn expect_continue_gets_an_interim_response() {
    let (_clock, mut server, mut client) = setup();
    let mut side = |now| server.poll(now);
    client.send(
        b"POST /echo HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
    );
    let interim = client.response(false, &mut side);
    assert_eq!(interim.status, 100);
    client.send(b"ping");
    let response = client.response(false, &mut side);
    assert_eq!(
        (response.status, response.body.as_slice()),
        (200, &b"ping"[..])
    );
}

#[test]
fn idle_connections_close_after_sixty_seconds() {
    let (clock, mut server, mut client) = setup();
    let mut side = |now| server.poll(now);
    assert_eq!(client.exchange(GET_HEALTH, &mut side).status, 200);
    let last_activity = clock.now();
    client.run_for(Duration::from_secs(59), &mut side);
    assert!(!client.peer_closed());
    assert!(client.wait_closed(Duration::from_secs(2), &mut side));
    let closed_after = clock.now() - last_activity;
    assert!(
        closed_after >= Duration::from_secs(60) && closed_after < Duration::from_secs(61),
        "{closed_after}"
    );
}

#[test]
fn poll_reports_the_idle_deadline() {
    let (clock, mut server, mut client) = setup();
    {
        let mut side = |now| server.poll(now);
        client.exchange(GET_HEALTH, &mut side);
    }
    let deadline = server.deadline.expect("an open connection has a deadline");
    let wait = deadline - clock.now();
    assert!(
        wait > Duration::from_secs(59) && wait <= Duration::from_secs(60),
        "{wait}"
    );
}

#[test]
fn a_silent_half_open_connection_is_reset_eventually() {
    let (_clock, mut server, mut client) = setup();
    let handle_count = server.iface.sockets().iter().count();
    {
        let mut side = |now| server.poll(now);
        assert_eq!(client.exchange(GET_HEALTH, &mut side).status, 200);
        // The client vanishes without a FIN: the server's idle close gets no answer.
        client.iface.nic().wire().set_link_up(false);
        client.run_for(Duration::from_secs(80), &mut side);
    }
    assert_eq!(server.http.active_connections(), 0);
    let listening = server
        .iface
        .sockets()
        .iter()
        .filter(|(_, s)| matches!(s, smoltcp::socket::Socket::Tcp(t) if t.state() == tcp::State::Listen))
        .count();
    assert_eq!(listening, ServerConfig::default().spare_listeners);
    assert_eq!(server.iface.sockets().iter().count(), handle_count);
}

/// Opens a raw connection from the client's interface (beside its own one).
fn open_raw(client: &mut TestClient, port: u16) -> smoltcp::iface::SocketHandle {
    let socket = tcp::Socket::new(
        tcp::SocketBuffer::new(alloc::vec![0; 4096]),
        tcp::SocketBuffer::new(alloc::vec![0; 4096]),
    );
    let handle = client.iface.add_socket(socket);
    client
        .iface
        .connect_tcp(handle, (SERVER_IP, PORT), port)
        .expect("connect");
    handle
}

fn raw(client: &mut TestClient, handle: smoltcp::iface::SocketHandle) -> &mut tcp::Socket<'static> {
    client
        .iface
        .sockets_mut()
        .get_mut::<tcp::Socket<'static>>(handle)
}

fn tcp_sockets(server: &Server) -> usize {
    server
        .iface
        .sockets()
        .iter()
        .filter(|(_, s)| matches!(s, smoltcp::socket::Socket::Tcp(_)))
        .count()
}

#[test]
fn connections_beyond_the_spare_listeners_grow_the_pool_then_it_shrinks() {
    let (_clock, mut server, mut client) = setup();
    let spare = ServerConfig::default().spare_listeners;
    let mut side = |now| server.poll(now);
    assert_eq!(client.exchange(GET_HEALTH, &mut side).status, 200);
    // `spare` SYNs in the same instant, then as many more while those stay
    // open: every one is accepted and answered on its own connection.
    let mut handles = Vec::new();
    for wave in 0..2u16 {
        for i in 0..spare as u16 {
            handles.push(open_raw(&mut client, 40000 + wave * 1000 + i));
        }
        client.run_for(Duration::from_millis(20), &mut side);
    }
    for (i, &handle) in handles.iter().enumerate() {
        let socket = raw(&mut client, handle);
        assert_eq!(socket.state(), tcp::State::Established, "connection {i}");
        socket.send_slice(GET_HEALTH).expect("send");
    }
    client.run_for(Duration::from_millis(50), &mut side);
    for &handle in &handles {
        let mut received = Vec::new();
        let socket = raw(&mut client, handle);
        while socket.can_recv() {
            socket
                .recv(|data| {
                    received.extend_from_slice(data);
                    (data.len(), ())
                })
                .expect("recv");
        }
        let (response, _) = crate::test_client::parse_response(&received, false)
            .expect("a whole response on every connection");
        assert_eq!(response.status, 200);
        raw(&mut client, handle).close();
    }
    client.run_for(Duration::from_millis(100), &mut side);
    // The client's own connection plus the spare listeners remain.
    assert_eq!(server.http.active_connections(), 1);
    assert_eq!(server.http.listeners(), spare);
    assert_eq!(tcp_sockets(&server), spare + 1);
}

#[test]
fn the_pool_is_bounded() {
    let (_clock, mut server, mut client) = setup();
    let max = ServerConfig::default().max_sockets;
    let mut side = |now| server.poll(now);
    let handles: Vec<_> = (0..max as u16 + 10)
        .map(|i| {
            let handle = open_raw(&mut client, 40000 + i);
            client.run_for(Duration::from_millis(2), &mut side);
            handle
        })
        .collect();
    client.run_for(Duration::from_millis(20), &mut side);
    let established = handles
        .iter()
        .filter(|&&h| raw(&mut client, h).state() == tcp::State::Established)
        .count();
    // The client's own connection holds one of the sockets.
    assert_eq!(established, max - 1);
    assert_eq!(tcp_sockets(&server), max);
}

#[test]
fn a_retransmitted_syn_taken_by_an_earlier_listener_does_not_reset_the_connection() {
    use netstack::Nic;
    use netstack::testing::End;

    let (_clock, mut server, mut client) = setup();
    let wire = client.iface.nic().wire().clone();
    let mut side = |now| server.poll(now);
    // The client's own connection takes the first socket of the set.
    assert_eq!(client.exchange(GET_HEALTH, &mut side).status, 200);
    wire.start_capture();
    let port = 41000;
    let handle = open_raw(&mut client, port);
    client.run_for(Duration::from_millis(20), &mut side);
    assert_eq!(raw(&mut client, handle).state(), tcp::State::Established);
    let syn = wire
        .take_captured()
        .into_iter()
        .find(|(end, frame)| *end == End::B && is_syn_from(frame, port))
        .map(|(_, frame)| frame)
        .expect("the client's SYN");
    // The first socket of the set closes and is freed as a surplus
    // listener; the next connection makes the pool add a listener, which
    // takes the freed place, ahead of the socket carrying the connection.
    let bye = client.exchange(b"GET /bye HTTP/1.1\r\nHost: h\r\n\r\n", &mut side);
    assert_eq!(bye.header("connection"), Some("close"));
    assert!(client.wait_closed(Duration::from_secs(2), &mut side));
    client.close(&mut side);
    let other = open_raw(&mut client, port + 1);
    client.run_for(Duration::from_millis(20), &mut side);
    assert_eq!(raw(&mut client, other).state(), tcp::State::Established);
    // The SYN arrives again, as after a lost SYN-ACK.
    let mut replay = wire.nic(End::B, MacAddress([2, 0, 0, 3, 0, 2]));
    replay.transmit(&syn).expect("replay the SYN");
    client.run_for(Duration::from_millis(20), &mut side);
    let socket = raw(&mut client, handle);
    assert_eq!(socket.state(), tcp::State::Established);
    socket.send_slice(GET_HEALTH).expect("send");
    client.run_for(Duration::from_millis(20), &mut side);
    let mut received = Vec::new();
    let socket = raw(&mut client, handle);
    while socket.can_recv() {
        socket
            .recv(|data| {
                received.extend_from_slice(data);
                (data.len(), ())
            })
            .expect("recv");
    }
    let (response, _) =
        crate::test_client::parse_response(&received, false).expect("an answer on the connection");
    assert_eq!(response.status, 200);
}

/// An Ethernet frame carrying a TCP SYN (without ACK) from `port`.
fn is_syn_from(frame: &[u8], port: u16) -> bool {
    let ip = match frame.get(12..14) {
        Some([0x08, 0x00]) => &frame[14..],
        _ => return false,
    };
    let header = usize::from(ip.first().copied().unwrap_or(0) & 0x0f) * 4;
    if ip.get(9) != Some(&6) {
        return false;
    }
    let Some(tcp) = ip.get(header..header + 14) else {
        return false;
    };
    u16::from_be_bytes([tcp[0], tcp[1]]) == port && tcp[13] & 0x12 == 0x02
}

#[test]
fn uploads_beyond_the_input_budget_wait_their_turn() {
    let budget = 64 * 1024;
    let (_clock, mut server, mut client) = setup_with(ServerConfig {
        port: PORT,
        input_budget: budget,
        ..ServerConfig::default()
    });
    let body: Vec<u8> = (0..30_000).map(|i| (i % 251) as u8).collect();
    let mut request = format!(
        "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    let uploads: Vec<_> = (0..6u16)
        .map(|i| {
            let socket = tcp::Socket::new(
                tcp::SocketBuffer::new(alloc::vec![0; 64 * 1024]),
                tcp::SocketBuffer::new(alloc::vec![0; 64 * 1024]),
            );
            let handle = client.iface.add_socket(socket);
            client
                .iface
                .connect_tcp(handle, (SERVER_IP, PORT), 42000 + i)
                .expect("connect");
            handle
        })
        .collect();
    let mut sent = alloc::vec![0usize; uploads.len()];
    let mut answers: Vec<Vec<u8>> = alloc::vec![Vec::new(); uploads.len()];
    let head = ServerConfig::default().limits.max_head_bytes + 1;
    let mut most_held = 0;
    for _ in 0..3000 {
        client.tick(&mut |now| server.poll(now));
        most_held = most_held.max(server.http.buffered().0);
        for (i, &handle) in uploads.iter().enumerate() {
            let socket = raw(&mut client, handle);
            if socket.can_send() && sent[i] < request.len() {
                sent[i] += socket.send_slice(&request[sent[i]..]).unwrap_or(0);
            }
            while socket.can_recv() {
                socket
                    .recv(|data| {
                        answers[i].extend_from_slice(data);
                        (data.len(), ())
                    })
                    .expect("recv");
            }
        }
        if answers
            .iter()
            .all(|a| crate::test_client::parse_response(a, false).is_some())
        {
            break;
        }
    }
    // More was offered than the budget at once, and never more was held.
    assert!(6 * (body.len() - head) > budget);
    assert!(most_held <= budget, "{most_held} > {budget}");
    for answer in &answers {
        let (response, _) =
            crate::test_client::parse_response(answer, false).expect("every upload is answered");
        assert_eq!((response.status, &response.body), (200, &body));
    }
    // A small request on another connection is served all along.
    assert_eq!(
        client
            .exchange(GET_HEALTH, &mut |now| server.poll(now))
            .status,
        200
    );
}

/// A console-like tunnel: echoes what it is sent, ends on `!`.
#[derive(Default)]
struct EchoTunnel {
    closed: bool,
}

impl Handler for EchoTunnel {
    fn handle(&mut self, request: &Request<'_>) -> Reply {
        if request.method() == Method::Other("CONNECT") {
            Reply::Tunnel(Ticket(3))
        } else {
            Reply::Now(route(request))
        }
    }
    fn tunnel_io(&mut self, _ticket: Ticket, input: &[u8], output: &mut Vec<u8>) -> Option<usize> {
        if input.contains(&b'!') {
            return None;
        }
        output.extend_from_slice(input);
        Some(input.len())
    }
    fn tunnel_close(&mut self, _ticket: Ticket) {
        self.closed = true;
    }
}

#[test]
fn a_quiet_tunnel_outlives_the_idle_timeout() {
    let (_clock, mut server, mut client) = setup();
    let mut handler = EchoTunnel::default();
    let mut side = |now| {
        server.iface.poll(now);
        server.deadline = server
            .http
            .poll(server.iface.sockets_mut(), now, &mut handler);
        server.iface.poll(now);
    };
    client.send(b"CONNECT /console?ref=c HTTP/1.0\r\n\r\n");
    client.run_for(Duration::from_millis(200), &mut side);
    assert!(
        client.inbox.starts_with(b"HTTP/1.1 200 "),
        "{:?}",
        String::from_utf8_lossy(&client.inbox)
    );
    client.inbox.clear();
    // A console nobody types into and whose guest prints nothing is still
    // in use: three idle timeouts pass and it stays open.
    client.run_for(Duration::from_secs(180), &mut side);
    assert!(!client.peer_closed(), "the quiet tunnel was closed");
    client.send(b"still here");
    client.run_for(Duration::from_millis(200), &mut side);
    assert_eq!(client.inbox, b"still here");
    // When the handler ends the tunnel, the connection closes.
    client.send(b"!");
    assert!(client.wait_closed(Duration::from_secs(2), &mut side));
    assert!(handler.closed);
}
