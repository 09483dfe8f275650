//! VIF locking modes: what a disabled, locked or unlocked VIF may send and
//! receive, and changes of mode on a live port.

use core::net::{Ipv4Addr, Ipv6Addr};

use super::*;

const A4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);
const OTHER4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 9);
const A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 5);
const OTHER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 9);
const UDP: u8 = 17;
const ICMPV6: u8 = 58;
const PPPOE: u16 = 0x8863;

fn locked() -> VifPolicy {
    VifPolicy::Locked {
        ipv4: vec![A4],
        ipv6: vec![A6],
    }
}

fn ether(dst: MacAddress, src: MacAddress, ethertype: u16, l3: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(l3);
    f
}

fn ipv4(dst: MacAddress, src: MacAddress, from: Ipv4Addr, to: Ipv4Addr) -> Vec<u8> {
    let mut ip = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, UDP, 0, 0];
    ip.extend_from_slice(&from.octets());
    ip.extend_from_slice(&to.octets());
    ip.extend_from_slice(&[0; 8]);
    ether(dst, src, 0x0800, &ip)
}

fn arp(
    dst: MacAddress,
    src: MacAddress,
    sender: (MacAddress, Ipv4Addr),
    target: Ipv4Addr,
) -> Vec<u8> {
    let mut a = vec![0, 1, 0x08, 0x00, 6, 4, 0, 1];
    a.extend_from_slice(&sender.0.0);
    a.extend_from_slice(&sender.1.octets());
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&target.octets());
    ether(dst, src, 0x0806, &a)
}

fn ipv6(dst: MacAddress, src: MacAddress, next: u8, from: Ipv6Addr, to: Ipv6Addr) -> Vec<u8> {
    let mut ip = vec![0x60, 0, 0, 0, 0, 8, next, 255];
    ip.extend_from_slice(&from.octets());
    ip.extend_from_slice(&to.octets());
    ip.extend_from_slice(&[0; 8]);
    ether(dst, src, 0x86dd, &ip)
}

/// The frame as the trunk carries it on the guests' VLAN.
fn on_trunk(mut frame: Vec<u8>) -> Vec<u8> {
    let tci = VlanTci {
        pcp: 0,
        dei: false,
        vid: GUESTS,
    }
    .to_bits()
    .to_be_bytes();
    frame.splice(12..12, [0x81, 0x00, tci[0], tci[1]]);
    frame
}

fn drops(lab: &Lab, port: PortId, reason: DropReason) -> u64 {
    lab.sw.port_stats(port).unwrap().dropped.get(reason)
}

#[test]
fn a_disabled_vif_passes_nothing_either_way_until_unlocked_again() {
    let mut lab = Lab::new();
    let hello = ipv4(MacAddress::BROADCAST, VM_A, A4, OTHER4);
    assert!(matches!(
        lab.send(lab.vif_a, &hello).0,
        Outcome::Flooded { .. }
    ));
    assert_eq!(lab.sw.lookup(GUESTS, VM_A, lab.now), Some(lab.vif_a));

    lab.sw
        .set_vif_policy(lab.vif_a, VifPolicy::Disabled)
        .unwrap();
    assert_eq!(lab.sw.vif_policy(lab.vif_a), Some(&VifPolicy::Disabled));
    assert_eq!(
        lab.sw.lookup(GUESTS, VM_A, lab.now),
        None,
        "what was learned on the VIF is forgotten"
    );
    // Out: every frame, even one from its own MAC.
    let (outcome, copies) = lab.send(lab.vif_a, &hello);
    assert_eq!(outcome, Outcome::Dropped(DropReason::VifDisabled));
    assert!(copies.is_empty());
    let (outcome, _) = lab.send(lab.vif_a, &untagged(VM_B, REMOTE, 46));
    assert_eq!(outcome, Outcome::Dropped(DropReason::VifDisabled));
    assert_eq!(drops(&lab, lab.vif_a, DropReason::VifDisabled), 2);
    // In: the frame for A floods to the other guest and never reaches A.
    let to_a = on_trunk(ipv4(VM_A, REMOTE, OTHER4, A4));
    let (outcome, copies) = lab.send(lab.uplink, &to_a);
    assert_eq!(outcome, Outcome::Flooded { ports: 1 });
    assert_eq!(Lab::ports(&copies), vec![lab.vif_b]);
    let (_, copies) = lab.send(
        lab.uplink,
        &on_trunk(untagged(MacAddress::BROADCAST, REMOTE, 46)),
    );
    assert!(!Lab::ports(&copies).contains(&lab.vif_a));
    assert_eq!(lab.sw.port_stats(lab.vif_a).unwrap().tx_filtered, 2);

    lab.sw
        .set_vif_policy(lab.vif_a, VifPolicy::Unlocked)
        .unwrap();
    assert!(matches!(
        lab.send(lab.vif_a, &hello).0,
        Outcome::Flooded { .. }
    ));
    let (outcome, _) = lab.send(lab.uplink, &to_a);
    assert_eq!(outcome, Outcome::Forwarded(lab.vif_a));
    assert_eq!(lab.sw.stats().dropped.get(DropReason::VifDisabled), 2);
}

#[test]
fn a_locked_vif_sends_only_from_its_addresses() {
    let mut lab = Lab::new();
    lab.sw.set_vif_policy(lab.vif_a, locked()).unwrap();
    let b = MacAddress::BROADCAST;
    let passes = [
        ipv4(b, VM_A, A4, OTHER4),
        arp(b, VM_A, (VM_A, A4), OTHER4),
        ipv6(b, VM_A, UDP, A6, OTHER6),
        ipv6(b, VM_A, ICMPV6, VM_A.ipv6_link_local(), OTHER6),
        // Duplicate address detection.
        ipv6(b, VM_A, ICMPV6, Ipv6Addr::UNSPECIFIED, OTHER6),
    ];
    for frame in &passes {
        let (outcome, copies) = lab.send(lab.vif_a, frame);
        assert!(matches!(outcome, Outcome::Flooded { .. }), "{outcome:?}");
        assert!(!copies.is_empty());
    }
    let source_refused = [
        ipv4(b, VM_A, OTHER4, A4),
        // DHCP: a locked VIF has static addresses.
        ipv4(b, VM_A, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST),
        arp(b, VM_A, (VM_A, OTHER4), A4),
        // ARP poisoning for another station's MAC.
        arp(b, VM_A, (VM_B, A4), OTHER4),
        ipv6(b, VM_A, UDP, OTHER6, A6),
        ipv6(b, VM_A, ICMPV6, VM_B.ipv6_link_local(), A6),
        ipv6(b, VM_A, UDP, Ipv6Addr::UNSPECIFIED, A6),
        // Headers too short to show a source, or of another version.
        ether(b, VM_A, 0x0800, &[0x45, 0, 0, 20]),
        ether(b, VM_A, 0x0806, &[0, 1, 8, 0, 6, 4]),
        ether(b, VM_A, 0x86dd, &[0x60; 20]),
        ether(b, VM_A, 0x0800, &ipv6(b, VM_A, UDP, A6, A6)[14..]),
        ether(b, VM_A, 0x0800, &[]),
    ];
    for frame in &source_refused {
        let (outcome, copies) = lab.send(lab.vif_a, frame);
        assert_eq!(
            outcome,
            Outcome::Dropped(DropReason::LockedSource),
            "{frame:02x?}"
        );
        assert!(copies.is_empty());
    }
    let (outcome, _) = lab.send(lab.vif_a, &ether(b, VM_A, PPPOE, &[0; 46]));
    assert_eq!(outcome, Outcome::Dropped(DropReason::LockedProtocol));
    // The MAC lock still holds: an allowed address from another MAC.
    let (outcome, _) = lab.send(lab.vif_a, &ipv4(b, VM_B, A4, OTHER4));
    assert_eq!(outcome, Outcome::Dropped(DropReason::MacLocked));
    assert_eq!(
        drops(&lab, lab.vif_a, DropReason::LockedSource),
        source_refused.len() as u64
    );
    assert_eq!(drops(&lab, lab.vif_a, DropReason::LockedProtocol), 1);
    // A priority-tagged frame is checked past its tag.
    let mut tagged_ok = ipv4(b, VM_A, A4, OTHER4);
    tagged_ok.splice(12..12, [0x81, 0x00, 0x20, 0x00]);
    assert!(matches!(
        lab.send(lab.vif_a, &tagged_ok).0,
        Outcome::Flooded { .. }
    ));
    let mut tagged_bad = ipv4(b, VM_A, OTHER4, OTHER4);
    tagged_bad.splice(12..12, [0x81, 0x00, 0x20, 0x00]);
    assert_eq!(
        lab.send(lab.vif_a, &tagged_bad).0,
        Outcome::Dropped(DropReason::LockedSource)
    );
    // VIF B, unlocked, sends anything from its MAC.
    let (outcome, _) = lab.send(lab.vif_b, &ether(b, VM_B, PPPOE, &[0; 46]));
    assert!(matches!(outcome, Outcome::Flooded { .. }));
}

#[test]
fn a_locked_vif_receives_only_what_is_for_its_addresses() {
    let mut lab = Lab::new();
    lab.sw.set_vif_policy(lab.vif_a, locked()).unwrap();
    let b = MacAddress::BROADCAST;
    let solicited = |a: Ipv6Addr| {
        let o = a.octets();
        Ipv6Addr::from([
            0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15],
        ])
    };
    let v6_multicast = MacAddress([0x33, 0x33, 0xff, 0, 0, 5]);
    let reaches_a = [
        ipv4(b, REMOTE, OTHER4, A4),
        // A broadcast ARP request for A's address, and a reply to it.
        arp(b, REMOTE, (REMOTE, OTHER4), A4),
        arp(VM_A, REMOTE, (REMOTE, OTHER4), A4),
        ipv6(v6_multicast, REMOTE, UDP, OTHER6, A6),
        ipv6(v6_multicast, REMOTE, ICMPV6, OTHER6, solicited(A6)),
        ipv6(
            v6_multicast,
            REMOTE,
            ICMPV6,
            OTHER6,
            solicited(VM_A.ipv6_link_local()),
        ),
        ipv6(
            v6_multicast,
            REMOTE,
            ICMPV6,
            OTHER6,
            "ff02::1".parse().unwrap(),
        ),
        ipv6(v6_multicast, REMOTE, ICMPV6, OTHER6, VM_A.ipv6_link_local()),
    ];
    for frame in &reaches_a {
        let (_, copies) = lab.send(lab.uplink, &on_trunk(frame.clone()));
        assert!(Lab::ports(&copies).contains(&lab.vif_a), "{frame:02x?}");
        assert!(Lab::ports(&copies).contains(&lab.vif_b));
    }
    let withheld = [
        ipv4(b, REMOTE, OTHER4, OTHER4),
        ipv4(b, REMOTE, A4, Ipv4Addr::BROADCAST),
        arp(b, REMOTE, (REMOTE, A4), OTHER4),
        ipv6(v6_multicast, REMOTE, UDP, A6, OTHER6),
        ipv6(v6_multicast, REMOTE, ICMPV6, OTHER6, solicited(OTHER6)),
        ether(b, REMOTE, PPPOE, &[0; 46]),
        ether(b, REMOTE, 0x0800, &[0x45]),
    ];
    for frame in &withheld {
        let (outcome, copies) = lab.send(lab.uplink, &on_trunk(frame.clone()));
        assert_eq!(Lab::ports(&copies), vec![lab.vif_b], "{frame:02x?}");
        assert_eq!(outcome, Outcome::Flooded { ports: 1 });
    }
    assert_eq!(
        lab.sw.port_stats(lab.vif_a).unwrap().tx_filtered,
        withheld.len() as u64
    );
    // Once A is learned, a unicast frame not for its address is dropped.
    lab.send(lab.vif_a, &ipv4(b, VM_A, A4, OTHER4));
    let (outcome, copies) = lab.send(lab.uplink, &on_trunk(ipv4(VM_A, REMOTE, OTHER4, OTHER4)));
    assert_eq!(outcome, Outcome::Dropped(DropReason::LockedDestination));
    assert!(copies.is_empty());
    assert_eq!(drops(&lab, lab.uplink, DropReason::LockedDestination), 1);
    let (outcome, _) = lab.send(lab.uplink, &on_trunk(ipv4(VM_A, REMOTE, OTHER4, A4)));
    assert_eq!(outcome, Outcome::Forwarded(lab.vif_a));
    // Between guests too: B cannot reach A at an address not A's.
    let (outcome, _) = lab.send(lab.vif_b, &ipv4(VM_A, VM_B, OTHER4, OTHER4));
    assert_eq!(outcome, Outcome::Dropped(DropReason::LockedDestination));
}

#[test]
fn locked_with_no_addresses_passes_no_traffic() {
    let mut lab = Lab::new();
    let none = VifPolicy::Locked {
        ipv4: Vec::new(),
        ipv6: Vec::new(),
    };
    lab.sw.set_vif_policy(lab.vif_a, none).unwrap();
    let b = MacAddress::BROADCAST;
    for frame in [
        ipv4(b, VM_A, A4, OTHER4),
        arp(b, VM_A, (VM_A, A4), OTHER4),
        ipv6(b, VM_A, ICMPV6, VM_A.ipv6_link_local(), OTHER6),
        ipv6(b, VM_A, ICMPV6, Ipv6Addr::UNSPECIFIED, OTHER6),
    ] {
        assert_eq!(
            lab.send(lab.vif_a, &frame).0,
            Outcome::Dropped(DropReason::LockedSource)
        );
    }
    let (_, copies) = lab.send(
        lab.uplink,
        &on_trunk(ipv6(b, REMOTE, ICMPV6, OTHER6, VM_A.ipv6_link_local())),
    );
    assert!(!Lab::ports(&copies).contains(&lab.vif_a));
    // IPv4 only: IPv6 (even link-local) stays out.
    lab.sw
        .set_vif_policy(
            lab.vif_a,
            VifPolicy::Locked {
                ipv4: vec![A4],
                ipv6: Vec::new(),
            },
        )
        .unwrap();
    assert!(matches!(
        lab.send(lab.vif_a, &ipv4(b, VM_A, A4, OTHER4)).0,
        Outcome::Flooded { .. }
    ));
    assert_eq!(
        lab.send(
            lab.vif_a,
            &ipv6(b, VM_A, ICMPV6, VM_A.ipv6_link_local(), OTHER6)
        )
        .0,
        Outcome::Dropped(DropReason::LockedSource)
    );
}

#[test]
fn policies_are_for_vifs_only() {
    let mut lab = Lab::new();
    assert_eq!(lab.sw.vif_policy(lab.vif_b), Some(&VifPolicy::Unlocked));
    assert_eq!(lab.sw.vif_policy(lab.uplink), None);
    for port in [lab.uplink, lab.host_mgmt] {
        assert_eq!(
            lab.sw.set_vif_policy(port, VifPolicy::Disabled),
            Err(SwitchError::NotAVif(port))
        );
    }
    assert_eq!(
        lab.sw.set_vif_policy(PortId(200), VifPolicy::Disabled),
        Err(SwitchError::NoSuchPort(PortId(200)))
    );
    // A port reused after removal starts unlocked.
    lab.sw
        .set_vif_policy(lab.vif_b, VifPolicy::Disabled)
        .unwrap();
    lab.sw.remove_port(lab.vif_b).unwrap();
    let again = lab.sw.add_vif(GUESTS, VM_B).unwrap();
    assert_eq!(again, lab.vif_b);
    assert_eq!(lab.sw.vif_policy(again), Some(&VifPolicy::Unlocked));
}

#[test]
fn the_eui64_link_local_address_follows_the_mac() {
    assert_eq!(
        MacAddress([0x00, 0x16, 0x3e, 0x12, 0x34, 0x56]).ipv6_link_local(),
        "fe80::216:3eff:fe12:3456".parse::<Ipv6Addr>().unwrap()
    );
}
