//! Two static interfaces exchanging TCP data over the wire.

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::time::Duration;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetFrame, EthernetProtocol, Ipv4Address,
};

use super::{capture_logs, logged, static_iface};
use crate::testing::{End, SimClock, Wire, run_until};
use crate::{HostInterface, MacAddress};

const IP_A: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
const IP_B: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);
const PORT: u16 = 7000;

fn tcp_socket() -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 65536]),
        tcp::SocketBuffer::new(vec![0; 65536]),
    )
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// A echoes what B sends; B sends `payload` and collects the echo.
struct Echo {
    a: HostInterface<crate::testing::WireNic>,
    b: HostInterface<crate::testing::WireNic>,
    server: SocketHandle,
    client: SocketHandle,
    payload: Vec<u8>,
    sent: usize,
    echo_backlog: Vec<u8>,
    received: Vec<u8>,
}

impl Echo {
    fn new(wire: &Wire, clock: &SimClock, macs: (MacAddress, MacAddress), len: usize) -> Self {
        let (nic_a, nic_b) = wire.pair(macs.0, macs.1);
        let mut a = static_iface("eth0", nic_a, IP_A, clock, 1);
        let mut b = static_iface("eth0", nic_b, IP_B, clock, 2);
        let server = a.add_socket(tcp_socket());
        a.sockets_mut()
            .get_mut::<tcp::Socket<'static>>(server)
            .listen(PORT)
            .unwrap();
        let client = b.add_socket(tcp_socket());
        b.connect_tcp(client, (IP_A, PORT), 49152).unwrap();
        Echo {
            a,
            b,
            server,
            client,
            payload: pattern(len),
            sent: 0,
            echo_backlog: Vec::new(),
            received: Vec::new(),
        }
    }

    /// One round of both hosts; true once the whole payload came back.
    fn step(&mut self, now: smoltcp::time::Instant) -> bool {
        self.a.poll(now);
        self.b.poll(now);

        let server = self
            .a
            .sockets_mut()
            .get_mut::<tcp::Socket<'static>>(self.server);
        if server.can_recv() {
            server
                .recv(|data| {
                    self.echo_backlog.extend_from_slice(data);
                    (data.len(), ())
                })
                .unwrap();
        }
        if !self.echo_backlog.is_empty() && server.can_send() {
            let n = server.send_slice(&self.echo_backlog).unwrap();
            self.echo_backlog.drain(..n);
        }

        let client = self
            .b
            .sockets_mut()
            .get_mut::<tcp::Socket<'static>>(self.client);
        if self.sent < self.payload.len() && client.can_send() {
            self.sent += client.send_slice(&self.payload[self.sent..]).unwrap();
        }
        if client.can_recv() {
            client
                .recv(|data| {
                    self.received.extend_from_slice(data);
                    (data.len(), ())
                })
                .unwrap();
        }
        self.received.len() >= self.payload.len()
    }
}

fn ethertype(frame: &[u8]) -> EthernetProtocol {
    EthernetFrame::new_checked(frame).unwrap().ethertype()
}

fn arp_operation(frame: &[u8]) -> ArpOperation {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    let ArpRepr::EthernetIpv4 { operation, .. } =
        ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap()).unwrap()
    else {
        unreachable!("only Ethernet/IPv4 ARP exists in smoltcp");
    };
    operation
}

#[test]
fn hundred_kib_round_trip_after_arp() {
    capture_logs();
    let clock = SimClock::new();
    let wire = Wire::default();
    wire.start_capture();
    let macs = (
        MacAddress([2, 0, 0, 1, 0, 0xa]),
        MacAddress([2, 0, 0, 1, 0, 0xb]),
    );
    let mut echo = Echo::new(&wire, &clock, macs, 100 * 1024);

    assert!(run_until(
        &clock,
        Duration::from_millis(1),
        Duration::from_secs(30),
        |now| echo.step(now)
    ));
    assert_eq!(echo.received, echo.payload);

    // B had to learn A's MAC before its first IPv4 frame could leave.
    let frames = wire.take_captured();
    let first_ip = frames
        .iter()
        .position(|(_, f)| ethertype(f) == EthernetProtocol::Ipv4)
        .unwrap();
    let request = frames
        .iter()
        .position(|(end, f)| {
            *end == End::B
                && ethertype(f) == EthernetProtocol::Arp
                && arp_operation(f) == ArpOperation::Request
        })
        .unwrap();
    let reply = frames
        .iter()
        .position(|(end, f)| {
            *end == End::A
                && ethertype(f) == EthernetProtocol::Arp
                && arp_operation(f) == ArpOperation::Reply
        })
        .unwrap();
    assert!(
        request < reply && reply < first_ip,
        "ARP request {request}, reply {reply}, first IP {first_ip}"
    );

    assert_eq!(echo.a.ipv4_cidr().unwrap().address(), IP_A);
    let stats = echo.b.stats();
    assert!(stats.tx_frames > 70 && stats.rx_frames > 70, "{stats:?}");
    assert!(
        stats.tx_bytes > 100 * 1024 && stats.rx_bytes > 100 * 1024,
        "{stats:?}"
    );
    assert!(logged("net: eth0 02:00:00:01:00:0a static 10.0.0.1/24"));
}

#[test]
fn a_full_transmit_queue_stalls_without_panicking_then_recovers() {
    let clock = SimClock::new();
    let wire = Wire::default();
    let macs = (
        MacAddress([2, 0, 0, 2, 0, 0xa]),
        MacAddress([2, 0, 0, 2, 0, 0xb]),
    );
    let mut echo = Echo::new(&wire, &clock, macs, 30 * 1024);

    // Nothing fits on the wire: both sides must keep polling without progress or panic.
    wire.set_queue_limit(0);
    assert!(!run_until(
        &clock,
        Duration::from_millis(1),
        Duration::from_secs(2),
        |now| echo.step(now)
    ));
    assert!(echo.received.is_empty());
    assert!(echo.b.stats().tx_deferred > 0);

    // A one-frame queue: slow, but TCP gets everything through.
    wire.set_queue_limit(1);
    assert!(run_until(
        &clock,
        Duration::from_millis(1),
        Duration::from_secs(120),
        |now| echo.step(now)
    ));
    assert_eq!(echo.received, echo.payload);
}

#[test]
fn exchange_survives_frame_loss() {
    let clock = SimClock::new();
    let wire = Wire::default();
    wire.set_drop_every(Some(11));
    let macs = (
        MacAddress([2, 0, 0, 3, 0, 0xa]),
        MacAddress([2, 0, 0, 3, 0, 0xb]),
    );
    let mut echo = Echo::new(&wire, &clock, macs, 40 * 1024);
    assert!(run_until(
        &clock,
        Duration::from_millis(1),
        Duration::from_secs(300),
        |now| echo.step(now)
    ));
    assert_eq!(echo.received, echo.payload);
    assert!(wire.stats(End::A).lost + wire.stats(End::B).lost > 0);
}

#[test]
fn poll_reports_a_deadline_while_work_is_pending() {
    let clock = SimClock::new();
    let wire = Wire::default();
    let macs = (
        MacAddress([2, 0, 0, 4, 0, 0xa]),
        MacAddress([2, 0, 0, 4, 0, 0xb]),
    );
    let (nic_a, _nic_b) = wire.pair(macs.0, macs.1);
    let mut a = static_iface("eth0", nic_a, IP_A, &clock, 1);
    assert_eq!(
        a.poll(clock.now()),
        None,
        "an idle interface waits for frames"
    );
    let client = a.add_socket(tcp_socket());
    a.connect_tcp(client, (IP_B, PORT), 49153).unwrap();
    // The SYN waits for ARP, which nobody answers: the interface asks to be polled again later.
    let deadline = a.poll(clock.now()).expect("a retry deadline");
    assert!(deadline > clock.now());
}
