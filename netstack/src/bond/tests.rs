//! Bonds over the in-memory wire with a simulated clock.

use std::collections::HashMap;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{Ipv4Address, Ipv4Cidr};

use super::hash::tests::udp_frame;
use super::*;
use crate::lacp::LacpConfig;
use crate::testing::{End, SimClock, Wire, WireNic};
use crate::wire::SlowPdu;
use crate::{HostInterface, IpConfig};

const TICK: Duration = Duration::from_millis(10);

fn mac(side: u8, i: u8) -> MacAddress {
    MacAddress([2, 0, 0, 0, side, i])
}

fn lacp_mode(side: u8, hash: HashPolicy) -> BondMode {
    BondMode::Lacp {
        hash,
        lacp: LacpConfig::new(mac(side, 0)),
    }
}

/// Two bonds of two members each, member i of A cabled to member i of B.
struct Pair {
    a: Bond<WireNic>,
    b: Bond<WireNic>,
    wires: [Wire; 2],
    clock: SimClock,
    /// Frames each side passed up.
    a_rx: Vec<Vec<u8>>,
    b_rx: Vec<Vec<u8>>,
}

impl Pair {
    fn new(mode_a: BondMode, mode_b: BondMode) -> Self {
        let wires = [Wire::new(1500, 512), Wire::new(1500, 512)];
        let clock = SimClock::new();
        clock.advance(Duration::from_secs(1000));
        let (a0, b0) = wires[0].pair(mac(0xa, 1), mac(0xb, 1));
        let (a1, b1) = wires[1].pair(mac(0xa, 2), mac(0xb, 2));
        let a = Bond::new(BondConfig::new(mode_a), [a0, a1], clock.now()).unwrap();
        let b = Bond::new(BondConfig::new(mode_b), [b0, b1], clock.now()).unwrap();
        Pair {
            a,
            b,
            wires,
            clock,
            a_rx: Vec::new(),
            b_rx: Vec::new(),
        }
    }

    fn step(&mut self) {
        let now = self.clock.now();
        self.a.poll(now);
        self.b.poll(now);
        let mut buf = [0u8; 1514];
        while let Ok(Some(len)) = self.a.receive(&mut buf) {
            self.a_rx.push(buf[..len].to_vec());
        }
        while let Ok(Some(len)) = self.b.receive(&mut buf) {
            self.b_rx.push(buf[..len].to_vec());
        }
    }

    fn run_until(&mut self, limit: Duration, done: impl Fn(&Pair) -> bool) -> Option<Duration> {
        let start = self.clock.now();
        while self.clock.now() - start <= limit {
            self.step();
            if done(self) {
                return Some(self.clock.now() - start);
            }
            self.clock.advance(TICK);
        }
        None
    }

    fn both_usable(&self) -> bool {
        (0..2).all(|i| self.a.is_member_usable(i) && self.b.is_member_usable(i))
    }
}

/// Frames that are not slow-protocols frames, per wire, as (sent from A?, frame).
fn data_frames(wire: &Wire) -> Vec<(bool, Vec<u8>)> {
    wire.take_captured()
        .into_iter()
        .filter(|(_, f)| f.get(12..14) != Some(&[0x88, 0x09]))
        .map(|(end, f)| (end == End::A, f))
        .collect()
}

#[test]
fn lacp_bonds_negotiate_and_spread_flows_over_both_members() {
    let mut p = Pair::new(
        lacp_mode(0xa, HashPolicy::TcpUdpPorts),
        lacp_mode(0xb, HashPolicy::TcpUdpPorts),
    );
    assert!(!p.a.link_up());
    let took = p
        .run_until(Duration::from_secs(5), Pair::both_usable)
        .expect("negotiates");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(3),
        "{took}"
    );
    assert!(p.a.link_up());
    assert!(
        p.a_rx.is_empty() && p.b_rx.is_empty(),
        "LACPDUs never go up"
    );
    assert!(p.a.stats().rx_slow_protocols > 0);

    for w in &p.wires {
        w.start_capture();
    }
    for flow in 0..64u16 {
        for _ in 0..4 {
            p.a.transmit(&udp_frame(0xa, 5000 + flow, 80)).unwrap();
        }
    }
    p.step();
    assert_eq!(p.b_rx.len(), 256, "every frame arrives once");
    let mut member_of_flow: HashMap<Vec<u8>, usize> = HashMap::new();
    for (i, w) in p.wires.iter().enumerate() {
        let frames = data_frames(w);
        assert!(
            frames.len() > 40,
            "member {i} carries a share: {}",
            frames.len()
        );
        for (_, f) in frames {
            let prev = member_of_flow.insert(f[34..38].to_vec(), i);
            assert!(prev.is_none_or(|m| m == i), "a flow stays on one member");
        }
    }
}

#[test]
fn a_cut_member_sheds_only_its_own_flows_and_comes_back() {
    let mut p = Pair::new(
        lacp_mode(0xa, HashPolicy::TcpUdpPorts),
        lacp_mode(0xb, HashPolicy::TcpUdpPorts),
    );
    p.run_until(Duration::from_secs(5), Pair::both_usable)
        .expect("negotiates");
    let flows: Vec<Vec<u8>> = (0..64).map(|f| udp_frame(0xa, 6000 + f, 80)).collect();
    let before: Vec<Option<usize>> = flows.iter().map(|f| p.a.member_for(f)).collect();
    assert!(before.contains(&Some(1)));

    p.wires[1].set_link_up(false);
    p.step();
    assert!(
        !p.a.is_member_usable(1),
        "carrier loss disables the member at once"
    );
    for (f, old) in flows.iter().zip(&before) {
        assert_eq!(p.a.member_for(f), Some(0));
        if *old == Some(0) {
            // Rehash moved nothing that was on the surviving member.
            assert_eq!(p.a.member_for(f), *old);
        }
    }
    for f in &flows {
        p.a.transmit(f).unwrap();
    }
    p.step();
    assert_eq!(p.b_rx.len(), 64, "traffic keeps flowing on member 0");

    p.wires[1].set_link_up(true);
    let took = p
        .run_until(Duration::from_secs(5), Pair::both_usable)
        .expect("member 1 rejoins");
    assert!(
        took >= Duration::from_secs(2),
        "{took}: rejoining goes through WAITING"
    );
    let lacp = p.a.lacp().unwrap();
    assert!(lacp.is_distributing(0) && lacp.is_distributing(1));
}

#[test]
fn src_mac_hashing_keeps_each_source_on_one_member() {
    let mut p = Pair::new(
        lacp_mode(0xa, HashPolicy::SrcMac),
        lacp_mode(0xb, HashPolicy::SrcMac),
    );
    p.run_until(Duration::from_secs(5), Pair::both_usable)
        .expect("negotiates");
    let mut members = std::collections::HashSet::new();
    for src in 0..32u8 {
        let m = p.a.member_for(&udp_frame(src, 1, 2));
        for port in 0..8 {
            assert_eq!(p.a.member_for(&udp_frame(src, port, 99)), m);
        }
        members.insert(m);
    }
    assert_eq!(members.len(), 2, "sources spread over both members");
}

#[test]
fn active_backup_uses_one_member_and_fails_over() {
    // B's ends are plain NICs on a switch that knows nothing of bonds.
    let wires = [Wire::default(), Wire::default()];
    let (a0, mut s0) = wires[0].pair(mac(0xa, 1), mac(0xc, 1));
    let (a1, mut s1) = wires[1].pair(mac(0xa, 2), mac(0xc, 2));
    let now = Instant::from_secs(1);
    let mut bond = Bond::new(BondConfig::new(BondMode::ActiveBackup), [a0, a1], now).unwrap();
    bond.poll(now);
    assert_eq!(bond.active_member(), Some(0));
    assert_eq!(bond.mac(), mac(0xa, 1));
    for f in 0..10 {
        bond.transmit(&udp_frame(0xa, f, 1)).unwrap();
    }
    assert_eq!(wires[0].pending(End::B), 10);
    assert_eq!(wires[1].pending(End::B), 0);

    let mut buf = [0u8; 1514];
    s1.transmit(&udp_frame(0xc, 1, 1)).unwrap();
    assert_eq!(
        bond.receive(&mut buf),
        Ok(None),
        "the backup's frames are dropped"
    );
    assert_eq!(bond.stats().rx_inactive, 1);
    s0.transmit(&udp_frame(0xc, 1, 1)).unwrap();
    assert_eq!(bond.receive(&mut buf), Ok(Some(42)));

    wires[0].set_link_up(false);
    bond.poll(now);
    assert_eq!(bond.active_member(), Some(1));
    bond.transmit(&udp_frame(0xa, 1, 1)).unwrap();
    assert_eq!(wires[1].pending(End::B), 1);
    s1.transmit(&udp_frame(0xc, 1, 1)).unwrap();
    assert_eq!(bond.receive(&mut buf), Ok(Some(42)));

    // No failback when member 0 returns: a flap must not move traffic twice.
    wires[0].set_link_up(true);
    bond.poll(now);
    assert_eq!(bond.active_member(), Some(1));

    wires[0].set_link_up(false);
    wires[1].set_link_up(false);
    bond.poll(now);
    assert!(!bond.link_up());
    assert_eq!(
        bond.transmit(&udp_frame(0xa, 1, 1)),
        Err(NicError::LinkDown)
    );
    assert_eq!(bond.stats().tx_no_member, 1);

    // Slow-protocol frames never go up, even outside LACP mode.
    wires[1].set_link_up(true);
    bond.poll(now);
    let mut lacpdu = vec![1, 0x80, 0xc2, 0, 0, 2, 2, 0, 0, 0, 0, 9, 0x88, 0x09];
    let mut pdu = [0u8; 110];
    SlowPdu::Lacp(Default::default()).emit(&mut pdu).unwrap();
    lacpdu.extend_from_slice(&pdu);
    s1.transmit(&lacpdu).unwrap();
    assert_eq!(bond.receive(&mut buf), Ok(None));
    assert_eq!(bond.stats().rx_slow_protocols, 1);
}

#[test]
fn balance_slb_spreads_sources_takes_broadcasts_once_and_rebalances() {
    let wires = [Wire::default(), Wire::default()];
    let (a0, mut s0) = wires[0].pair(mac(0xa, 1), mac(0xc, 1));
    let (a1, mut s1) = wires[1].pair(mac(0xa, 2), mac(0xc, 2));
    let clock = SimClock::new();
    let mut bond = Bond::new(BondConfig::new(BondMode::BalanceSlb), [a0, a1], clock.now()).unwrap();
    let next = bond.poll(clock.now()).expect("rebalancing has a deadline");
    assert_eq!(next, clock.now() + DEFAULT_REBALANCE_INTERVAL);

    let by_source: Vec<Option<usize>> = (0..32u8)
        .map(|s| bond.member_for(&udp_frame(s, 1, 1)))
        .collect();
    assert!(by_source.contains(&Some(0)) && by_source.contains(&Some(1)));

    // The switch floods a broadcast to both members: it goes up once.
    let mut bcast = udp_frame(0xc, 1, 1);
    bcast[..6].copy_from_slice(&[0xff; 6]);
    s0.transmit(&bcast).unwrap();
    s1.transmit(&bcast).unwrap();
    let mut buf = [0u8; 1514];
    assert!(bond.receive(&mut buf).unwrap().is_some());
    assert_eq!(bond.receive(&mut buf), Ok(None));
    // Unicast is taken from either member.
    s1.transmit(&udp_frame(0xc, 1, 1)).unwrap();
    assert!(bond.receive(&mut buf).unwrap().is_some());

    // Two heavy sources that hash to the same member get split at the next rebalance.
    let on = |m: usize| {
        (0..=255u8)
            .filter(|&s| bond.member_for(&udp_frame(s, 1, 1)) == Some(m))
            .take(2)
            .collect::<Vec<u8>>()
    };
    let heavy = on(0);
    for _ in 0..100 {
        for &s in &heavy {
            bond.transmit(&udp_frame(s, 1, 1)).unwrap();
        }
        while let Ok(Some(_)) = s0.receive(&mut buf) {}
        while let Ok(Some(_)) = s1.receive(&mut buf) {}
    }
    clock.advance(DEFAULT_REBALANCE_INTERVAL);
    bond.poll(clock.now());
    assert!(bond.stats().rebalanced_buckets >= 1);
    let after: Vec<Option<usize>> = heavy
        .iter()
        .map(|&s| bond.member_for(&udp_frame(s, 1, 1)))
        .collect();
    assert_ne!(
        after[0], after[1],
        "the two heavy sources now use different members"
    );
}

#[test]
fn construction_limits() {
    let wire = Wire::default();
    let nics = |n: u8| {
        (0..n)
            .map(|i| wire.nic(End::A, mac(0xa, i)))
            .collect::<Vec<_>>()
    };
    let config = BondConfig::new(BondMode::ActiveBackup);
    assert_eq!(
        Bond::new(config, nics(0), Instant::ZERO).unwrap_err(),
        BondError::NoMembers
    );
    assert_eq!(
        Bond::new(config, nics(5), Instant::ZERO).unwrap_err(),
        BondError::TooManyMembers { given: 5 }
    );
    assert!(Bond::new(config, nics(4), Instant::ZERO).is_ok());
    let fixed = BondConfig {
        mac: Some(mac(0xf, 0)),
        ..config
    };
    assert_eq!(
        Bond::new(fixed, nics(1), Instant::ZERO).unwrap().mac(),
        mac(0xf, 0)
    );
}

const IP_A: Ipv4Address = Ipv4Address::new(10, 9, 0, 1);
const IP_B: Ipv4Address = Ipv4Address::new(10, 9, 0, 2);

fn host(
    nic: Bond<WireNic>,
    ip: Ipv4Address,
    clock: &SimClock,
    seed: u64,
) -> HostInterface<Bond<WireNic>> {
    let config = IpConfig::Static {
        address: Ipv4Cidr::new(ip, 24),
        gateway: None,
        dns: Vec::new(),
    };
    HostInterface::new("bond0", nic, config, clock.now(), seed)
}

fn tcp_socket() -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 65536]),
        tcp::SocketBuffer::new(vec![0; 65536]),
    )
}

#[test]
fn tcp_over_lacp_bonds_survives_losing_a_member() {
    let Pair {
        a, b, wires, clock, ..
    } = Pair::new(
        lacp_mode(0xa, HashPolicy::TcpUdpPorts),
        lacp_mode(0xb, HashPolicy::TcpUdpPorts),
    );
    let mut a = host(a, IP_A, &clock, 1);
    let mut b = host(b, IP_B, &clock, 2);
    let server: SocketHandle = a.add_socket(tcp_socket());
    a.sockets_mut()
        .get_mut::<tcp::Socket<'static>>(server)
        .listen(7)
        .unwrap();
    let client = b.add_socket(tcp_socket());
    b.connect_tcp(client, (IP_A, 7), 49152).unwrap();

    let total = 400 * 1024;
    let (mut sent, mut received) = (0usize, 0usize);
    let mut cut_done = false;
    let start = clock.now();
    while received < total && clock.now() - start < Duration::from_secs(60) {
        let now = clock.now();
        a.nic_mut().poll(now);
        b.nic_mut().poll(now);
        a.poll(now);
        b.poll(now);
        let c = b.sockets_mut().get_mut::<tcp::Socket<'static>>(client);
        if c.can_send() && sent < total {
            sent += c.send_slice(&vec![0x5a; (total - sent).min(8192)]).unwrap();
        }
        let s = a.sockets_mut().get_mut::<tcp::Socket<'static>>(server);
        if s.can_recv() {
            received += s.recv(|d| (d.len(), d.len())).unwrap();
        }
        if !cut_done && received > total / 3 {
            // Cut whichever member carries the flow.
            let carrier = (0..2)
                .find(|&i| wires[i].stats(End::B).carried > 50)
                .unwrap_or(0);
            wires[carrier].set_link_up(false);
            cut_done = true;
        }
        clock.advance(Duration::from_millis(1));
    }
    assert!(cut_done);
    assert_eq!(
        received, total,
        "the transfer completes over the surviving member"
    );
    assert!(a.nic().lacp().is_some());
    // Data frames went up, LACPDUs did not.
    assert!(a.nic().stats().rx_frames > 100);
}

#[test]
fn downdelay_rides_out_a_blip_and_updelay_holds_a_returning_member() {
    let wires = [Wire::default(), Wire::default()];
    let (a0, _s0) = wires[0].pair(mac(0xa, 1), mac(0xc, 1));
    let (a1, _s1) = wires[1].pair(mac(0xa, 2), mac(0xc, 2));
    let config = BondConfig {
        updelay: Duration::from_secs(1),
        downdelay: Duration::from_millis(200),
        ..BondConfig::new(BondMode::ActiveBackup)
    };
    let clock = SimClock::new();
    let mut bond = Bond::new(config, [a0, a1], clock.now()).unwrap();
    assert_eq!(bond.poll(clock.now()), None);
    assert!(
        bond.is_member_usable(0),
        "members present at start count at once"
    );

    wires[0].set_link_up(false);
    let due = bond
        .poll(clock.now())
        .expect("a pending carrier change has a deadline");
    assert_eq!(due, clock.now() + Duration::from_millis(200));
    clock.advance(Duration::from_millis(100));
    wires[0].set_link_up(true);
    bond.poll(clock.now());
    assert_eq!(bond.active_member(), Some(0), "a 100 ms blip moves nothing");

    wires[0].set_link_up(false);
    bond.poll(clock.now());
    clock.advance(Duration::from_millis(200));
    bond.poll(clock.now());
    assert_eq!(
        bond.active_member(),
        Some(1),
        "a real outage fails over after 200 ms"
    );

    wires[0].set_link_up(true);
    bond.poll(clock.now());
    clock.advance(Duration::from_millis(999));
    bond.poll(clock.now());
    assert!(!bond.is_member_usable(0), "not before the up delay");
    clock.advance(Duration::from_millis(1));
    bond.poll(clock.now());
    assert!(bond.is_member_usable(0));
}

#[test]
fn garbage_from_the_partner_is_dropped_or_passed_but_never_panics() {
    use crate::wire::fuzz::tests::{Rng, mutate};
    let mut p = Pair::new(
        lacp_mode(0xa, HashPolicy::TcpUdpPorts),
        lacp_mode(0xb, HashPolicy::TcpUdpPorts),
    );
    p.run_until(Duration::from_secs(5), Pair::both_usable)
        .expect("negotiates");
    let mut lacpdu = vec![1, 0x80, 0xc2, 0, 0, 2, 2, 0, 0, 0, 0xb, 1, 0x88, 0x09];
    let mut pdu = [0u8; 110];
    SlowPdu::Lacp(Default::default()).emit(&mut pdu).unwrap();
    lacpdu.extend_from_slice(&pdu);
    let seeds = [lacpdu, udp_frame(0xb, 1, 2), vec![0; 14], Vec::new()];
    // Inject from B's side of each wire, bypassing B's bond.
    let mut raw = [
        p.wires[0].nic(End::B, mac(0xb, 1)),
        p.wires[1].nic(End::B, mac(0xb, 2)),
    ];
    let mut rng = Rng::new(0xb0d);
    let mut buf = [0u8; 1514];
    for round in 0..5000 {
        let mut frame = seeds[rng.below(seeds.len())].clone();
        for _ in 0..=rng.below(3) {
            mutate(&mut rng, &mut frame);
        }
        let _ = raw[round % 2].transmit(&frame);
        while let Ok(Some(len)) = p.a.receive(&mut buf) {
            assert_ne!(&buf[12..14], &[0x88, 0x09], "slow protocols never go up");
            assert!(len >= 14);
        }
        if round % 100 == 0 {
            p.clock.advance(TICK);
            p.a.poll(p.clock.now());
        }
    }
    let bad: u64 =
        p.a.lacp()
            .unwrap()
            .ports()
            .iter()
            .map(|x| x.counters().bad)
            .sum();
    assert!(bad > 100, "malformed LACPDUs are counted: {bad}");
}
