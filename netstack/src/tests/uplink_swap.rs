//! Replacing a running host's uplink (`HostNetworks::replace_uplink_with`):
//! a single NIC becomes an LACP bond of it and a second NIC, and back, while
//! a TCP connection on the management network keeps moving data, a guest
//! VLAN stays carried and a VIF stays plugged.

use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{Ipv4Address, Ipv4Cidr};

use crate::bond::{Bond, BondConfig, BondMode, HashPolicy};
use crate::host_networks::{HostNetworks, NetworkConfig};
use crate::lacp::LacpConfig;
use crate::switch::{VifLink, VlanMode, VlanSet};
use crate::testing::{SimClock, Wire, WireNic, run_until};
use crate::{IpConfig, MacAddress, Nic, Uplink};

type Host = HostNetworks<Uplink<WireNic>>;

fn mac(host: u8, nic: u8) -> MacAddress {
    MacAddress([2, 0, 0, 0x5a, host, nic])
}

fn host(uplink: WireNic, host: u8, clock: &SimClock) -> Host {
    let networks = [NetworkConfig {
        name: "mgmt".into(),
        vlan: 5,
        mtu: 1500,
        ip: IpConfig::Static {
            address: Ipv4Cidr::new(Ipv4Address::new(10, 9, 5, host), 24),
            gateway: None,
            dns: Vec::new(),
        },
        mac: None,
    }];
    let trunk = VlanMode::Trunk {
        native: Some(5),
        allowed: VlanSet::of(&[]).unwrap(),
    };
    HostNetworks::new(
        Uplink::Nic(uplink),
        trunk,
        &networks,
        clock.now(),
        host.into(),
    )
    .unwrap()
}

/// An LACP bond of `nics` (fast rate), identified by the first one's MAC.
fn lacp(nics: Vec<WireNic>, now: Instant) -> Uplink<WireNic> {
    let system = nics[0].mac();
    let mode = BondMode::Lacp {
        hash: HashPolicy::TcpUdpPorts,
        lacp: LacpConfig::new(system),
    };
    Uplink::Bond(Box::new(
        Bond::new(BondConfig::new(mode), nics, now).unwrap(),
    ))
}

/// Makes `host`'s uplink an LACP bond of its NIC and `spare`.
fn bond_with(host: &mut Host, spare: WireNic, now: Instant) {
    host.replace_uplink_with(|old| {
        let mut nics = old.into_nics();
        nics.push(spare);
        (lacp(nics, now), ())
    });
}

fn socket() -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 64 * 1024]),
        tcp::SocketBuffer::new(vec![0; 64 * 1024]),
    )
}

fn poll(hosts: &mut [&mut Host], now: Instant) {
    for h in hosts.iter_mut() {
        h.uplink_mut().poll(now);
        h.poll(now);
        if h.uplink().poll_at().is_some() {
            h.uplink_mut().poll(now);
        }
    }
}

/// Both members of `host`'s bond carry traffic.
fn both_usable(host: &Host) -> bool {
    host.uplink()
        .bond()
        .is_some_and(|b| b.member_count() == 2 && (0..2).all(|i| b.is_member_usable(i)))
}

#[test]
fn a_single_nic_becomes_an_lacp_bond_and_back_while_tcp_flows() {
    let (first, second) = (Wire::new(1504, 512), Wire::new(1504, 512));
    let clock = SimClock::new();
    let (a0, b0) = first.pair(mac(1, 0), mac(2, 0));
    let (a1, b1) = second.pair(mac(1, 1), mac(2, 1));
    let mut a = host(a0, 1, &clock);
    let mut b = host(b0, 2, &clock);
    // A guest VLAN carried and a VIF on it: both must survive the swaps.
    a.carry_vlan(30, 1500).unwrap();
    let vif = VifLink::new();
    let vif_port = a
        .add_vif(30, MacAddress([0, 0x16, 0x3e, 0, 0, 1]), vif.clone())
        .unwrap();
    let vlans = a.switch().port_vlans(a.uplink_port()).cloned();

    // B sends a stream to A over management.
    let server = a.primary_mut().add_socket(socket());
    a.primary_mut()
        .sockets_mut()
        .get_mut::<tcp::Socket<'static>>(server)
        .listen(7000)
        .unwrap();
    let client = b.primary_mut().add_socket(socket());
    b.primary_mut()
        .connect_tcp(client, (Ipv4Address::new(10, 9, 5, 1), 7000), 49152)
        .unwrap();
    let mut sent = 0u64;
    let mut received = Vec::new();
    let mut exchange = |a: &mut Host, b: &mut Host, now: Instant, until: usize| {
        poll(&mut [&mut *a, &mut *b], now);
        let c = b
            .primary_mut()
            .sockets_mut()
            .get_mut::<tcp::Socket<'static>>(client);
        while c.can_send() && (sent as usize) < until {
            let chunk: Vec<u8> = (sent..sent + 512).map(|i| (i % 251) as u8).collect();
            sent += c.send_slice(&chunk).unwrap() as u64;
        }
        let s = a
            .primary_mut()
            .sockets_mut()
            .get_mut::<tcp::Socket<'static>>(server);
        while s.can_recv() {
            s.recv(|d| {
                received.extend_from_slice(d);
                (d.len(), ())
            })
            .unwrap();
        }
        received.len()
    };
    let tick = Duration::from_millis(5);
    let limit = Duration::from_secs(20);
    assert!(run_until(&clock, tick, limit, |now| exchange(
        &mut a,
        &mut b,
        now,
        64 * 1024
    ) >= 64 * 1024));

    // Both hosts bond their NIC with a second one, as Bond.create does;
    // LACP brings both members up and the stream goes on.
    bond_with(&mut a, a1, clock.now());
    bond_with(&mut b, b1, clock.now());
    assert_eq!(a.uplink().mac(), mac(1, 0), "the bond keeps the NIC's MAC");
    assert!(run_until(&clock, tick, limit, |now| {
        exchange(&mut a, &mut b, now, 256 * 1024) >= 256 * 1024 && both_usable(&a)
    }));
    assert!(both_usable(&b));
    assert!(
        second.stats(crate::testing::End::A).carried > 0,
        "the new member carries frames"
    );

    // Switch side unchanged: the uplink trunks what it did, the VIF is there.
    assert_eq!(a.switch().port_vlans(a.uplink_port()).cloned(), vlans);
    assert_eq!(a.switch().network_mtu(30), Some(1500));
    assert!(a.vif_link(vif_port).is_some());

    // Back to the first NIC alone on both hosts (Bond.destroy).
    for h in [&mut a, &mut b] {
        let spare = h.replace_uplink_with(|old| {
            let mut nics = old.into_nics().into_iter();
            let first = nics.next().unwrap();
            (Uplink::Nic(first), nics.next())
        });
        assert!(spare.is_some(), "the second member is handed back");
    }
    assert!(run_until(&clock, tick, limit, |now| exchange(
        &mut a,
        &mut b,
        now,
        320 * 1024
    ) >= 320 * 1024));
    let expected: Vec<u8> = (0..received.len() as u64)
        .map(|i| (i % 251) as u8)
        .collect();
    assert!(received == expected, "every byte arrived in order");
    assert!(matches!(a.uplink(), Uplink::Nic(_)));
    assert!(a.interfaces().all(|i| i.link_up()));
}
