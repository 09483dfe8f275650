//! Two hosts' networks back to back over a trunk (the in-memory wire as
//! the cable): management native on VLAN 5, storage on VLAN 20 with jumbo
//! frames. What crosses the wire is checked byte by byte.

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{Ipv4Address, Ipv4Cidr};

use crate::host_networks::{HostNetworks, HostNetworksError, NetworkConfig};
use crate::switch::{VifLink, VlanMode, VlanSet};
use crate::testing::{SimClock, Wire, WireNic, run_until};
use crate::{IpConfig, MacAddress};

const MAC_A: MacAddress = MacAddress([2, 0, 0, 0, 5, 0xa]);
const MAC_B: MacAddress = MacAddress([2, 0, 0, 0, 5, 0xb]);

fn networks(host: u8) -> Vec<NetworkConfig> {
    let ip = |net: u8| IpConfig::Static {
        address: Ipv4Cidr::new(Ipv4Address::new(10, 9, net, host), 24),
        gateway: None,
        dns: Vec::new(),
    };
    vec![
        NetworkConfig {
            name: "mgmt".into(),
            vlan: 5,
            mtu: 1500,
            ip: ip(5),
            mac: None,
        },
        NetworkConfig {
            name: "storage".into(),
            vlan: 20,
            mtu: 9000,
            ip: ip(20),
            mac: None,
        },
    ]
}

fn trunk() -> VlanMode {
    VlanMode::Trunk {
        native: Some(5),
        allowed: VlanSet::of(&[20]).unwrap(),
    }
}

fn socket() -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 128 * 1024]),
        tcp::SocketBuffer::new(vec![0; 128 * 1024]),
    )
}

struct Pair {
    a: HostNetworks<WireNic>,
    b: HostNetworks<WireNic>,
}

impl Pair {
    fn new(wire: &Wire, clock: &SimClock) -> Self {
        let (nic_a, nic_b) = wire.pair(MAC_A, MAC_B);
        Pair {
            a: HostNetworks::new(nic_a, trunk(), &networks(1), clock.now(), 1).unwrap(),
            b: HostNetworks::new(nic_b, trunk(), &networks(2), clock.now(), 100).unwrap(),
        }
    }

    fn poll(&mut self, now: Instant) {
        self.a.poll(now);
        self.b.poll(now);
    }

    /// A listens on `network` port 7000, B connects to it.
    fn connect(
        &mut self,
        network: &str,
        a_ip: impl Into<smoltcp::wire::IpAddress>,
    ) -> (SocketHandle, SocketHandle) {
        let a_ip = a_ip.into();
        let a = self.a.interface_mut(network).unwrap();
        let server = a.add_socket(socket());
        a.sockets_mut()
            .get_mut::<tcp::Socket<'static>>(server)
            .listen(7000)
            .unwrap();
        let b = self.b.interface_mut(network).unwrap();
        let client = b.add_socket(socket());
        b.connect_tcp(client, (a_ip, 7000), 49152).unwrap();
        (server, client)
    }
}

/// VLAN ID of a frame's 802.1Q tag, if it has one.
fn tag_of(frame: &[u8]) -> Option<u16> {
    (frame.get(12..14) == Some(&[0x81, 0x00]))
        .then(|| u16::from_be_bytes([frame[14], frame[15]]) & 0xfff)
}

#[test]
fn management_untagged_and_storage_jumbo_tagged_over_one_trunk() {
    // NICs carry an 802.1Q tag on top of their MTU (Linux allows the same 4
    // bytes); the in-memory wire counts whole frames.
    let wire = Wire::new(9000 + 4, 512);
    let clock = SimClock::new();
    let mut pair = Pair::new(&wire, &clock);
    wire.start_capture();

    // Management: a TCP connection on the native VLAN.
    let (server, client) = pair.connect("mgmt", Ipv4Address::new(10, 9, 5, 1));
    let up = run_until(
        &clock,
        Duration::from_millis(1),
        Duration::from_secs(5),
        |now| {
            pair.poll(now);
            pair.a
                .interface("mgmt")
                .unwrap()
                .sockets()
                .get::<tcp::Socket<'static>>(server)
                .is_active()
                && pair
                    .b
                    .interface("mgmt")
                    .unwrap()
                    .sockets()
                    .get::<tcp::Socket<'static>>(client)
                    .may_send()
        },
    );
    assert!(up, "management TCP connection established");
    let frames = wire.take_captured();
    assert!(!frames.is_empty());
    for (_, frame) in &frames {
        assert_eq!(tag_of(frame), None, "management travels untagged");
        assert!(frame.len() <= 1514);
    }

    // Storage: 256 KiB in jumbo frames, tagged 20.
    let (server, client) = pair.connect("storage", Ipv4Address::new(10, 9, 20, 1));
    let payload: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    let mut sent = 0;
    let mut received = Vec::new();
    let done = run_until(
        &clock,
        Duration::from_millis(1),
        Duration::from_secs(20),
        |now| {
            pair.poll(now);
            let b = pair.b.interface_mut("storage").unwrap();
            let c = b.sockets_mut().get_mut::<tcp::Socket<'static>>(client);
            if c.can_send() && sent < payload.len() {
                sent += c.send_slice(&payload[sent..]).unwrap();
            }
            let a = pair.a.interface_mut("storage").unwrap();
            let s = a.sockets_mut().get_mut::<tcp::Socket<'static>>(server);
            while s.can_recv() {
                s.recv(|d| {
                    received.extend_from_slice(d);
                    (d.len(), ())
                })
                .unwrap();
            }
            received.len() == payload.len()
        },
    );
    assert!(done, "storage transfer finished ({} bytes)", received.len());
    assert_eq!(received, payload);
    let frames = wire.take_captured();
    let jumbo = frames
        .iter()
        .filter(|(_, f)| tag_of(f) == Some(20) && f.len() == 9018)
        .count();
    // Most segments fill a jumbo frame (a few are cut short by the window).
    assert!(jumbo >= 20, "{jumbo} full-size jumbo frames");
    assert!(
        frames.iter().all(|(_, f)| tag_of(f) == Some(20)),
        "storage is all VLAN 20"
    );
    assert_eq!(pair.a.switch().stats().dropped.total(), 0);
    assert_eq!(pair.a.uplink_stats().tx_errors, 0);
}

#[test]
fn uplink_carrier_reaches_the_interfaces() {
    let wire = Wire::new(9000, 64);
    let clock = SimClock::new();
    let mut pair = Pair::new(&wire, &clock);
    pair.poll(clock.now());
    assert!(pair.a.interfaces().all(|i| i.link_up()));
    assert_eq!(pair.a.primary().name(), "mgmt");
    wire.set_link_up(false);
    clock.advance(Duration::from_millis(10));
    pair.poll(clock.now());
    assert!(pair.a.interfaces().all(|i| !i.link_up()));
    wire.set_link_up(true);
    clock.advance(Duration::from_millis(10));
    pair.poll(clock.now());
    assert!(pair.a.interface("storage").unwrap().link_up());
}

#[test]
fn bad_configurations_are_refused() {
    let wire = Wire::new(1500, 64);
    let clock = SimClock::new();
    let (nic, _) = wire.pair(MAC_A, MAC_B);
    let err = HostNetworks::new(nic, trunk(), &networks(1), clock.now(), 1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "network storage wants MTU 9000 but the uplink carries 1500: raise the NIC MTU"
    );
    let wire = Wire::new(9000, 64);
    let (nic, _) = wire.pair(MAC_A, MAC_B);
    let mut twice = networks(1);
    twice[1].name = "mgmt".into();
    assert!(HostNetworks::new(nic, trunk(), &twice, clock.now(), 1).is_err());
    let (nic, _) = wire.pair(MAC_A, MAC_B);
    assert!(HostNetworks::new(nic, trunk(), &[], clock.now(), 1).is_err());
    let (nic, _) = wire.pair(MAC_A, MAC_B);
    let mut bad_vlan = networks(1);
    bad_vlan[1].vlan = 4095;
    assert!(HostNetworks::new(nic, trunk(), &bad_vlan, clock.now(), 1).is_err());
}

/// An ARP request for `target` from `mac`/`ip`, as a guest sends it.
fn arp_request(mac: [u8; 6], ip: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target);
    f
}

#[test]
fn a_guest_vif_reaches_the_host_interface_and_is_mac_locked() {
    use crate::switch::{VifLink, Wake};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug, Default)]
    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    let wire = Wire::new(9000 + 4, 512);
    let clock = SimClock::new();
    let mut pair = Pair::new(&wire, &clock);
    let guest_mac = [0x00, 0x16, 0x3e, 1, 2, 3];
    let link = VifLink::new();
    let host_woken = Arc::new(Count::default());
    let guest_woken = Arc::new(Count::default());
    link.set_guest_waker(guest_woken.clone());
    pair.a.set_vif_waker(host_woken.clone());
    let port = pair
        .a
        .add_vif(5, MacAddress(guest_mac), link.clone())
        .unwrap();
    assert_eq!(pair.a.switch().network_mtu(5), Some(1500));
    assert!(
        pair.a
            .add_vif(77, MacAddress(guest_mac), VifLink::new())
            .is_err()
    );

    // The guest asks for host A's management address; A answers it.
    assert!(link.guest_send(&arp_request(guest_mac, [10, 9, 5, 50], [10, 9, 5, 1])));
    assert_eq!(host_woken.0.load(Ordering::SeqCst), 1);
    // A spoofed source never leaves the VIF's port.
    link.guest_send(&arp_request(
        [0x00, 0x16, 0x3e, 9, 9, 9],
        [10, 9, 5, 51],
        [10, 9, 5, 1],
    ));
    assert!(run_until(
        &clock,
        Duration::from_millis(1),
        Duration::from_secs(1),
        |now| {
            pair.poll(now);
            link.guest_has_frames()
        }
    ));
    let reply = link.guest_receive().expect("an ARP reply");
    assert_eq!(&reply[..6], &guest_mac, "to the guest");
    assert_eq!(&reply[12..14], &[0x08, 0x06]);
    assert_eq!(reply[21], 2, "an ARP reply");
    assert_eq!(&reply[28..32], &[10, 9, 5, 1], "from A's address");
    assert_eq!(guest_woken.0.load(Ordering::SeqCst), 1);
    for _ in 0..20 {
        clock.advance(Duration::from_millis(10));
        pair.poll(clock.now());
    }
    assert_eq!(
        link.guest_receive(),
        None,
        "one reply: the spoofed request was dropped"
    );
    let stats = pair.a.switch().port_stats(port).unwrap();
    assert_eq!(link.stats().to_host, 2);
    assert_eq!(
        (stats.rx_frames, stats.dropped.total()),
        (2, 1),
        "{stats:?}"
    );

    pair.a.remove_vif(port).unwrap();
    assert!(pair.a.vif_link(port).is_none());
    assert!(pair.a.remove_vif(port).is_err());
}

#[test]
fn a_guest_vlan_carried_at_run_time_joins_vifs_on_two_hosts_over_the_trunk() {
    let wire = Wire::new(9000 + 4, 512);
    let clock = SimClock::new();
    let mut pair = Pair::new(&wire, &clock);
    let (mac_a, mac_b) = ([0x00, 0x16, 0x3e, 0, 0, 0xa], [0x00, 0x16, 0x3e, 0, 0, 0xb]);
    assert!(
        pair.a
            .add_vif(30, MacAddress(mac_a), VifLink::new())
            .is_err(),
        "no network on VLAN 30 yet"
    );
    assert!(matches!(
        pair.a.carry_vlan(31, 20_000),
        Err(HostNetworksError::UplinkMtu { mtu: 20_000, .. })
    ));
    for host in [&mut pair.a, &mut pair.b] {
        host.carry_vlan(30, 1500).unwrap();
    }
    let uplink = pair.a.uplink_port();
    assert_eq!(
        pair.a.switch().port_vlans(uplink),
        Some(&VlanMode::Trunk {
            native: Some(5),
            allowed: VlanSet::of(&[20, 30]).unwrap()
        })
    );
    let (link_a, link_b) = (VifLink::new(), VifLink::new());
    let port_a = pair
        .a
        .add_vif(30, MacAddress(mac_a), link_a.clone())
        .unwrap();
    pair.b
        .add_vif(30, MacAddress(mac_b), link_b.clone())
        .unwrap();
    // Neither host has an address on VLAN 30: the request crosses the trunk
    // to the other guest, and the management network does not see it.
    assert!(link_a.guest_send(&arp_request(mac_a, [10, 30, 0, 1], [10, 30, 0, 2])));
    assert!(run_until(
        &clock,
        Duration::from_millis(1),
        Duration::from_secs(1),
        |now| {
            pair.poll(now);
            link_b.guest_has_frames()
        }
    ));
    let got = link_b.guest_receive().unwrap();
    assert_eq!(&got[6..12], &mac_a);
    assert_eq!(tag_of(&got), None, "guests see their VLAN untagged");

    // In use: not dropped; the host's own networks never are.
    assert!(pair.a.drop_vlan(30).is_err());
    assert!(pair.a.drop_vlan(20).is_err());
    pair.a.remove_vif(port_a).unwrap();
    pair.a.drop_vlan(30).unwrap();
    assert_eq!(pair.a.switch().network_mtu(30), None);
    assert_eq!(pair.a.switch().port_vlans(uplink), Some(&trunk()));
    // B's guest calls again: A no longer carries VLAN 30.
    let dropped_before = pair.a.switch().stats().dropped.total();
    assert!(link_b.guest_send(&arp_request(mac_b, [10, 30, 0, 2], [10, 30, 0, 1])));
    for _ in 0..20 {
        clock.advance(Duration::from_millis(10));
        pair.poll(clock.now());
    }
    assert!(pair.a.switch().stats().dropped.total() > dropped_before);
}

#[test]
fn an_access_uplink_becomes_a_trunk_with_its_vlan_native() {
    let wire = Wire::new(1500 + 4, 64);
    let clock = SimClock::new();
    let (nic, _peer) = wire.pair(MAC_A, MAC_B);
    let mgmt = networks(1).into_iter().take(1).collect::<Vec<_>>();
    let mut host = HostNetworks::new(nic, VlanMode::Access(5), &mgmt, clock.now(), 1).unwrap();
    host.carry_vlan(30, 1500).unwrap();
    let uplink = host.uplink_port();
    assert_eq!(
        host.switch().port_vlans(uplink),
        Some(&VlanMode::Trunk {
            native: Some(5),
            allowed: VlanSet::of(&[30]).unwrap()
        })
    );
    // Carrying it again changes nothing but the MTU.
    host.carry_vlan(30, 1400).unwrap();
    assert_eq!(host.switch().network_mtu(30), Some(1400));
    host.drop_vlan(30).unwrap();
    assert_eq!(
        host.switch().port_vlans(uplink),
        Some(&VlanMode::Trunk {
            native: Some(5),
            allowed: VlanSet::empty()
        })
    );
}

#[test]
fn every_host_interface_answers_tcp_on_its_ipv6_link_local_address() {
    let wire = Wire::new(9000 + 4, 512);
    let clock = SimClock::new();
    let mut pair = Pair::new(&wire, &clock);
    wire.start_capture();
    let a_ll = pair.a.interface("storage").unwrap().ipv6_link_local();
    // fe80::/64 and the modified EUI-64 of A's MAC (02:00:00:00:05:0a).
    assert_eq!(
        a_ll,
        smoltcp::wire::Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0xff, 0xfe00, 0x050a)
    );
    let (server, client) = pair.connect("storage", a_ll);
    let mut got = Vec::new();
    let mut sent = false;
    let done = run_until(
        &clock,
        Duration::from_millis(1),
        Duration::from_secs(5),
        |now| {
            pair.poll(now);
            let b = pair.b.interface_mut("storage").unwrap();
            let c = b.sockets_mut().get_mut::<tcp::Socket<'static>>(client);
            if !sent && c.can_send() {
                sent = c.send_slice(b"over IPv6").unwrap() == 9;
            }
            let a = pair.a.interface_mut("storage").unwrap();
            let s = a.sockets_mut().get_mut::<tcp::Socket<'static>>(server);
            while s.can_recv() {
                s.recv(|d| {
                    got.extend_from_slice(d);
                    (d.len(), ())
                })
                .unwrap();
            }
            got == b"over IPv6"
        },
    );
    assert!(done, "TCP over link-local: got {got:?}");
    let frames = wire.take_captured();
    // Neighbour discovery, then TCP, all IPv6 (EtherType 0x86dd) on VLAN 20.
    assert!(
        frames
            .iter()
            .any(|(_, f)| tag_of(f) == Some(20) && f.get(16..18) == Some(&[0x86, 0xdd][..])),
        "IPv6 frames tagged 20"
    );
}
