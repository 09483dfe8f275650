//! One test per switching rule, on frames built byte by byte.

use alloc::vec::Vec;

use super::*;
use crate::wire::fuzz::tests::{Rng, mutate};

mod policy;

const UPLINK_NATIVE: u16 = 5;
const STORAGE: u16 = 20;
const GUESTS: u16 = 30;
const OTHER: u16 = 40;

const VM_A: MacAddress = MacAddress([0x02, 0, 0, 0, 0, 0xa]);
const VM_B: MacAddress = MacAddress([0x02, 0, 0, 0, 0, 0xb]);
const VM_C: MacAddress = MacAddress([0x02, 0, 0, 0, 0, 0xc]);
const REMOTE: MacAddress = MacAddress([0x00, 0x1b, 0x21, 0, 0, 1]);
const REMOTE2: MacAddress = MacAddress([0x00, 0x1b, 0x21, 0, 0, 2]);

/// A switch with the networks of the seed scenario: management native on
/// the trunk, storage with jumbo frames, guest networks 30 and 40.
struct Lab {
    sw: Switch,
    uplink: PortId,
    vif_a: PortId,
    vif_b: PortId,
    vif_c: PortId,
    host_mgmt: PortId,
    host_storage: PortId,
    scratch: Vec<u8>,
    now: Instant,
}

impl Lab {
    fn new() -> Self {
        let mut sw = Switch::new();
        sw.add_network(UPLINK_NATIVE, 1500).unwrap();
        sw.add_network(STORAGE, 9000).unwrap();
        sw.add_network(GUESTS, 1500).unwrap();
        sw.add_network(OTHER, 1500).unwrap();
        let uplink = sw
            .add_uplink(VlanMode::Trunk {
                native: Some(UPLINK_NATIVE),
                allowed: VlanSet::of(&[STORAGE, GUESTS, OTHER, 99]).unwrap(),
            })
            .unwrap();
        let vif_a = sw.add_vif(GUESTS, VM_A).unwrap();
        let vif_b = sw.add_vif(GUESTS, VM_B).unwrap();
        let vif_c = sw.add_vif(OTHER, VM_C).unwrap();
        let host_mgmt = sw.add_host_port(UPLINK_NATIVE).unwrap();
        let host_storage = sw.add_host_port(STORAGE).unwrap();
        Lab {
            sw,
            uplink,
            vif_a,
            vif_b,
            vif_c,
            host_mgmt,
            host_storage,
            scratch: vec![0; SCRATCH_LEN],
            now: Instant::from_secs(1000),
        }
    }

    fn send(&mut self, port: PortId, frame: &[u8]) -> (Outcome, Vec<(PortId, Vec<u8>)>) {
        let mut copies = Vec::new();
        let outcome = self
            .sw
            .forward(self.now, port, frame, &mut self.scratch, &mut |p, f| {
                copies.push((p, f.to_vec()))
            });
        (outcome, copies)
    }

    fn ports(copies: &[(PortId, Vec<u8>)]) -> Vec<PortId> {
        let mut ports: Vec<PortId> = copies.iter().map(|(p, _)| *p).collect();
        ports.sort();
        ports
    }
}

/// An untagged IPv4-ish frame with `payload` bytes after the header.
fn untagged(dst: MacAddress, src: MacAddress, payload: usize) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend((0..payload).map(|i| i as u8));
    f
}

/// The same frame with an 802.1Q tag of `pcp`, `dei`, `vid`.
fn tagged(
    dst: MacAddress,
    src: MacAddress,
    pcp: u8,
    dei: bool,
    vid: u16,
    payload: usize,
) -> Vec<u8> {
    let mut f = untagged(dst, src, payload);
    let tci = VlanTci { pcp, dei, vid }.to_bits().to_be_bytes();
    f.splice(12..12, [0x81, 0x00, tci[0], tci[1]]);
    f
}

#[test]
fn unknown_unicast_floods_within_its_vlan_then_is_learned() {
    let mut lab = Lab::new();
    let (outcome, copies) = lab.send(lab.vif_a, &untagged(VM_B, VM_A, 46));
    assert_eq!(outcome, Outcome::Flooded { ports: 2 });
    // Guests network 30: the other VIF and the trunk; never VLAN 40's VIF C
    // or the host ports.
    assert_eq!(Lab::ports(&copies), vec![lab.uplink, lab.vif_b]);
    // B answers: A was learned on its VIF, so the answer goes there alone.
    let (outcome, copies) = lab.send(lab.vif_b, &untagged(VM_A, VM_B, 46));
    assert_eq!(outcome, Outcome::Forwarded(lab.vif_a));
    assert_eq!(copies.len(), 1);
    assert_eq!(copies[0].1, untagged(VM_A, VM_B, 46));
    let (outcome, _) = lab.send(lab.vif_a, &untagged(VM_B, VM_A, 46));
    assert_eq!(outcome, Outcome::Forwarded(lab.vif_b));
    assert_eq!(lab.sw.lookup(GUESTS, VM_A, lab.now), Some(lab.vif_a));
    assert_eq!(
        lab.sw.lookup(OTHER, VM_A, lab.now),
        None,
        "learning is per VLAN"
    );
    assert_eq!(lab.sw.stats().forwarded, 2);
    assert_eq!(lab.sw.stats().flooded, 1);
}

#[test]
fn broadcast_and_multicast_flood_within_the_vlan_only() {
    let mut lab = Lab::new();
    let multicast = MacAddress([0x01, 0x00, 0x5e, 0, 0, 0xfb]);
    for dst in [MacAddress::BROADCAST, multicast] {
        let (outcome, copies) = lab.send(lab.vif_c, &untagged(dst, VM_C, 60));
        assert_eq!(outcome, Outcome::Flooded { ports: 1 });
        assert_eq!(Lab::ports(&copies), vec![lab.uplink]);
        assert_eq!(copies[0].1, tagged(dst, VM_C, 0, false, OTHER, 60));
    }
    // Learned multicast never becomes a unicast destination.
    let (_, copies) = lab.send(lab.uplink, &untagged(MacAddress::BROADCAST, REMOTE, 60));
    assert_eq!(Lab::ports(&copies), vec![lab.host_mgmt]);
    assert_eq!(lab.sw.port_stats(lab.uplink).unwrap().flooded, 1);
}

#[test]
fn trunk_egress_pushes_the_tag_and_access_egress_pops_it() {
    let mut lab = Lab::new();
    // From the trunk on VLAN 30 with priority 5 and DEI: the VIFs get it
    // untagged.
    let from_wire = tagged(MacAddress::BROADCAST, REMOTE, 5, true, GUESTS, 50);
    let (_, copies) = lab.send(lab.uplink, &from_wire);
    assert_eq!(Lab::ports(&copies), vec![lab.vif_a, lab.vif_b]);
    for (_, copy) in &copies {
        assert_eq!(copy, &untagged(MacAddress::BROADCAST, REMOTE, 50));
    }
    // The guest's answer leaves the trunk tagged 30.
    let (outcome, copies) = lab.send(lab.vif_a, &untagged(REMOTE, VM_A, 50));
    assert_eq!(outcome, Outcome::Forwarded(lab.uplink));
    assert_eq!(copies[0].1, tagged(REMOTE, VM_A, 0, false, GUESTS, 50));
}

#[test]
fn priority_bits_are_preserved() {
    let mut lab = Lab::new();
    // A guest's priority-tagged frame (VID 0, PCP 6) belongs to its access
    // VLAN and leaves the trunk tagged with that VLAN and the same priority.
    let (outcome, copies) = lab.send(lab.vif_a, &tagged(REMOTE, VM_A, 6, false, 0, 40));
    assert!(matches!(outcome, Outcome::Flooded { .. }));
    let to_trunk = copies.iter().find(|(p, _)| *p == lab.uplink).unwrap();
    assert_eq!(to_trunk.1, tagged(REMOTE, VM_A, 6, false, GUESTS, 40));
    // And the other VIF gets it without a tag.
    let to_b = copies.iter().find(|(p, _)| *p == lab.vif_b).unwrap();
    assert_eq!(to_b.1, untagged(REMOTE, VM_A, 40));

    // Trunk to trunk keeps the tag bit for bit.
    let second = lab
        .sw
        .add_uplink(VlanMode::Trunk {
            native: None,
            allowed: VlanSet::of(&[STORAGE]).unwrap(),
        })
        .unwrap();
    let frame = tagged(MacAddress::BROADCAST, REMOTE, 7, true, STORAGE, 100);
    let (_, copies) = lab.send(lab.uplink, &frame);
    let to_second = copies.iter().find(|(p, _)| *p == second).unwrap();
    assert_eq!(to_second.1, frame);
}

#[test]
fn native_vlan_travels_untagged_and_is_also_accepted_tagged() {
    let mut lab = Lab::new();
    let (_, copies) = lab.send(lab.host_mgmt, &untagged(MacAddress::BROADCAST, VM_A, 28));
    assert_eq!(Lab::ports(&copies), vec![lab.uplink]);
    assert_eq!(copies[0].1, untagged(MacAddress::BROADCAST, VM_A, 28));
    // A switch that tags its native VLAN anyway: taken as VLAN 5 and popped.
    let (_, copies) = lab.send(
        lab.uplink,
        &tagged(MacAddress::BROADCAST, REMOTE, 3, false, UPLINK_NATIVE, 28),
    );
    assert_eq!(Lab::ports(&copies), vec![lab.host_mgmt]);
    assert_eq!(copies[0].1, untagged(MacAddress::BROADCAST, REMOTE, 28));
    // So is a priority tag on the trunk.
    let (_, copies) = lab.send(
        lab.uplink,
        &tagged(MacAddress::BROADCAST, REMOTE, 3, false, 0, 28),
    );
    assert_eq!(Lab::ports(&copies), vec![lab.host_mgmt]);
}

#[test]
fn tags_on_access_ports_are_dropped_and_counted() {
    let mut lab = Lab::new();
    for vid in [GUESTS, OTHER, 1] {
        let (outcome, copies) = lab.send(lab.vif_a, &tagged(REMOTE, VM_A, 0, false, vid, 40));
        assert_eq!(outcome, Outcome::Dropped(DropReason::TagNotAllowed));
        assert!(copies.is_empty());
    }
    let port = lab.sw.port_stats(lab.vif_a).unwrap();
    assert_eq!(port.dropped.get(DropReason::TagNotAllowed), 3);
    assert_eq!(port.rx_frames, 3);
    assert_eq!(lab.sw.stats().dropped.total(), 3);
    assert_eq!(
        lab.sw.lookup(GUESTS, VM_A, lab.now),
        None,
        "nothing learned"
    );
}

#[test]
fn trunk_refuses_vlans_it_does_not_allow() {
    let mut lab = Lab::new();
    let cases = [
        (
            tagged(VM_A, REMOTE, 0, false, 6, 40),
            DropReason::VlanNotAllowed,
        ),
        (
            tagged(VM_A, REMOTE, 0, false, 4095, 40),
            DropReason::ReservedVlan,
        ),
        // Allowed, but no network defined for it.
        (
            tagged(VM_A, REMOTE, 0, false, 99, 40),
            DropReason::NoNetwork,
        ),
    ];
    for (frame, reason) in cases {
        assert_eq!(lab.send(lab.uplink, &frame).0, Outcome::Dropped(reason));
    }
    // A trunk without a native VLAN takes no untagged (or priority-tagged) frames.
    let bare = lab
        .sw
        .add_uplink(VlanMode::Trunk {
            native: None,
            allowed: VlanSet::of(&[GUESTS]).unwrap(),
        })
        .unwrap();
    assert_eq!(
        lab.send(bare, &untagged(VM_A, REMOTE2, 40)).0,
        Outcome::Dropped(DropReason::VlanNotAllowed)
    );
    assert_eq!(
        lab.send(bare, &tagged(VM_A, REMOTE2, 1, false, 0, 40)).0,
        Outcome::Dropped(DropReason::VlanNotAllowed)
    );
    assert_eq!(
        lab.sw
            .port_stats(lab.uplink)
            .unwrap()
            .dropped
            .get(DropReason::VlanNotAllowed),
        1
    );
}

#[test]
fn a_guest_cannot_send_from_another_mac() {
    let mut lab = Lab::new();
    // VM A pretends to be VM B, then the remote router.
    for spoofed in [VM_B, REMOTE] {
        let (outcome, copies) = lab.send(lab.vif_a, &untagged(MacAddress::BROADCAST, spoofed, 40));
        assert_eq!(outcome, Outcome::Dropped(DropReason::MacLocked));
        assert!(copies.is_empty());
    }
    assert_eq!(
        lab.sw
            .port_stats(lab.vif_a)
            .unwrap()
            .dropped
            .get(DropReason::MacLocked),
        2
    );
    // Nothing was learned: traffic for B still floods to B's real port.
    let (_, copies) = lab.send(lab.uplink, &tagged(VM_B, REMOTE, 0, false, GUESTS, 40));
    assert!(Lab::ports(&copies).contains(&lab.vif_b));
    assert_eq!(lab.sw.lookup(GUESTS, REMOTE, lab.now), Some(lab.uplink));
    // Host ports and the uplink are not locked.
    let (outcome, _) = lab.send(lab.host_mgmt, &untagged(MacAddress::BROADCAST, VM_B, 40));
    assert_eq!(outcome, Outcome::Flooded { ports: 1 });
}

#[test]
fn frames_over_the_network_mtu_are_dropped_and_counted() {
    let mut lab = Lab::new();
    let storage_peer = REMOTE;
    // Jumbo on storage: 9000 bytes of payload pass, 9001 do not.
    let (outcome, copies) = lab.send(
        lab.uplink,
        &tagged(MacAddress::BROADCAST, storage_peer, 0, false, STORAGE, 9000),
    );
    assert_eq!(outcome, Outcome::Flooded { ports: 1 });
    assert_eq!(copies[0].0, lab.host_storage);
    assert_eq!(copies[0].1.len(), 9014);
    let (outcome, _) = lab.send(
        lab.uplink,
        &tagged(MacAddress::BROADCAST, storage_peer, 0, false, STORAGE, 9001),
    );
    assert_eq!(outcome, Outcome::Dropped(DropReason::Oversize));
    let (outcome, _) = lab.send(lab.host_storage, &untagged(storage_peer, VM_A, 9000));
    assert_eq!(outcome, Outcome::Forwarded(lab.uplink));
    // Management stays at 1500, counted without the tag.
    assert_eq!(
        lab.send(lab.host_mgmt, &untagged(REMOTE, VM_A, 1500)).0,
        Outcome::Flooded { ports: 1 }
    );
    assert_eq!(
        lab.send(lab.host_mgmt, &untagged(REMOTE, VM_A, 1501)).0,
        Outcome::Dropped(DropReason::Oversize)
    );
    assert_eq!(
        lab.send(
            lab.uplink,
            &tagged(
                MacAddress::BROADCAST,
                REMOTE2,
                0,
                false,
                UPLINK_NATIVE,
                1500
            )
        )
        .0,
        Outcome::Flooded { ports: 1 }
    );
    assert_eq!(
        lab.send(
            lab.uplink,
            &tagged(
                MacAddress::BROADCAST,
                REMOTE2,
                0,
                false,
                UPLINK_NATIVE,
                1501
            )
        )
        .0,
        Outcome::Dropped(DropReason::Oversize)
    );
    assert_eq!(lab.sw.stats().dropped.get(DropReason::Oversize), 3);
}

#[test]
fn learned_addresses_age_out_by_the_callers_clock() {
    let mut lab = Lab::new();
    lab.sw = Switch::with_fdb(Duration::from_secs(300), 100);
    lab.sw.add_network(GUESTS, 1500).unwrap();
    let a = lab.sw.add_vif(GUESTS, VM_A).unwrap();
    let b = lab.sw.add_vif(GUESTS, VM_B).unwrap();
    let t0 = lab.now;
    lab.send(a, &untagged(MacAddress::BROADCAST, VM_A, 40));
    assert_eq!(lab.sw.poll(t0), Some(t0 + Duration::from_secs(300)));
    lab.now = t0 + Duration::from_secs(299);
    assert_eq!(
        lab.send(b, &untagged(VM_A, VM_B, 40)).0,
        Outcome::Forwarded(a)
    );
    // A stays silent; at 300 s its entry is gone and traffic to it floods.
    lab.now = t0 + Duration::from_secs(300);
    assert_eq!(
        lab.send(b, &untagged(VM_A, VM_B, 40)).0,
        Outcome::Flooded { ports: 1 }
    );
    // B was refreshed by each frame it sent: it ages 300 s after the last.
    assert_eq!(
        lab.sw.poll(lab.now),
        Some(lab.now + Duration::from_secs(300))
    );
    assert_eq!(lab.sw.stats().aged_out, 1);
    assert_eq!(lab.sw.learned(), 1);
}

#[test]
fn bad_frames_are_dropped_and_counted_never_a_panic() {
    let mut lab = Lab::new();
    let full = tagged(MacAddress::BROADCAST, REMOTE, 0, false, GUESTS, 40);
    for len in 0..18 {
        let (outcome, copies) = lab.send(lab.uplink, &full[..len]);
        assert_eq!(
            outcome,
            Outcome::Dropped(DropReason::Truncated),
            "len {len}"
        );
        assert!(copies.is_empty());
    }
    // A bare tagged header (18 bytes, empty payload) is a frame.
    assert!(matches!(
        lab.send(lab.uplink, &full[..18]).0,
        Outcome::Flooded { .. }
    ));
    assert_eq!(
        lab.send(lab.vif_a, &untagged(VM_B, MacAddress::BROADCAST, 40))
            .0,
        Outcome::Dropped(DropReason::GroupSource)
    );
    let lacp = MacAddress([0x01, 0x80, 0xc2, 0, 0, 0x02]);
    let stp = MacAddress([0x01, 0x80, 0xc2, 0, 0, 0x00]);
    for dst in [lacp, stp] {
        assert_eq!(
            lab.send(lab.uplink, &untagged(dst, REMOTE, 40)).0,
            Outcome::Dropped(DropReason::LinkLocal)
        );
    }
    // 01:80:c2:00:00:10 is outside the reserved block: flooded.
    let outside = MacAddress([0x01, 0x80, 0xc2, 0, 0, 0x10]);
    assert!(matches!(
        lab.send(lab.uplink, &untagged(outside, REMOTE, 40)).0,
        Outcome::Flooded { .. }
    ));
    assert_eq!(
        lab.send(PortId(200), &untagged(VM_A, REMOTE, 40)).0,
        Outcome::Dropped(DropReason::PortUnavailable)
    );
    let mut small = [0u8; 50];
    let frame = untagged(VM_A, REMOTE, 40);
    let outcome = lab
        .sw
        .forward(lab.now, lab.uplink, &frame, &mut small, &mut |_, _| {
            panic!("nothing may leave")
        });
    assert_eq!(outcome, Outcome::Dropped(DropReason::ScratchTooSmall));
    let stats = lab.sw.port_stats(lab.uplink).unwrap();
    assert_eq!(stats.dropped.get(DropReason::Truncated), 18);
    assert_eq!(stats.dropped.get(DropReason::LinkLocal), 2);
}

#[test]
fn frames_never_go_back_where_they_came_from() {
    let mut lab = Lab::new();
    lab.send(
        lab.uplink,
        &tagged(MacAddress::BROADCAST, REMOTE, 0, false, GUESTS, 40),
    );
    lab.send(
        lab.uplink,
        &tagged(MacAddress::BROADCAST, REMOTE2, 0, false, GUESTS, 40),
    );
    // REMOTE to REMOTE2 both behind the uplink: the physical switch already
    // delivered it.
    assert_eq!(
        lab.send(lab.uplink, &tagged(REMOTE2, REMOTE, 0, false, GUESTS, 40))
            .0,
        Outcome::Dropped(DropReason::SamePort)
    );
    // A VLAN with one port has nowhere to flood.
    let mut sw = Switch::new();
    sw.add_network(GUESTS, 1500).unwrap();
    let lone = sw.add_vif(GUESTS, VM_A).unwrap();
    let mut scratch = vec![0; SCRATCH_LEN];
    let frame = untagged(MacAddress::BROADCAST, VM_A, 40);
    let outcome = sw.forward(Instant::ZERO, lone, &frame, &mut scratch, &mut |_, _| {});
    assert_eq!(outcome, Outcome::Dropped(DropReason::NoEgress));
}

#[test]
fn down_and_removed_ports_take_no_traffic_and_lose_their_addresses() {
    let mut lab = Lab::new();
    lab.send(lab.vif_b, &untagged(MacAddress::BROADCAST, VM_B, 40));
    lab.sw.set_port_up(lab.vif_b, false).unwrap();
    assert_eq!(lab.sw.lookup(GUESTS, VM_B, lab.now), None);
    let (outcome, copies) = lab.send(lab.vif_a, &untagged(VM_B, VM_A, 40));
    assert_eq!(outcome, Outcome::Flooded { ports: 1 });
    assert_eq!(Lab::ports(&copies), vec![lab.uplink]);
    assert_eq!(
        lab.send(lab.vif_b, &untagged(VM_A, VM_B, 40)).0,
        Outcome::Dropped(DropReason::PortUnavailable)
    );
    lab.sw.set_port_up(lab.vif_b, true).unwrap();
    lab.send(lab.vif_b, &untagged(VM_A, VM_B, 40));
    lab.sw.remove_port(lab.vif_b).unwrap();
    assert_eq!(lab.sw.lookup(GUESTS, VM_B, lab.now), None);
    assert_eq!(lab.sw.port_stats(lab.vif_b), None);
    assert_eq!(
        lab.sw.remove_port(lab.vif_b),
        Err(SwitchError::NoSuchPort(lab.vif_b))
    );
    // The slot is reused by the next port.
    assert_eq!(lab.sw.add_vif(GUESTS, VM_B), Ok(lab.vif_b));
}

#[test]
fn addresses_move_and_a_full_table_still_forwards() {
    let mut sw = Switch::with_fdb(DEFAULT_AGING, 2);
    sw.add_network(GUESTS, 1500).unwrap();
    let up = sw.add_uplink(VlanMode::Access(GUESTS)).unwrap();
    let host = sw.add_host_port(GUESTS).unwrap();
    let mut scratch = vec![0; SCRATCH_LEN];
    let mut send = |sw: &mut Switch, port, frame: &[u8]| {
        sw.forward(Instant::ZERO, port, frame, &mut scratch, &mut |_, _| {})
    };
    send(&mut sw, up, &untagged(MacAddress::BROADCAST, REMOTE, 40));
    send(&mut sw, host, &untagged(MacAddress::BROADCAST, REMOTE, 40));
    assert_eq!(sw.stats().mac_moves, 1);
    assert_eq!(sw.lookup(GUESTS, REMOTE, Instant::ZERO), Some(host));
    send(&mut sw, up, &untagged(MacAddress::BROADCAST, REMOTE2, 40));
    assert_eq!(
        send(&mut sw, up, &untagged(REMOTE, VM_C, 40)),
        Outcome::Forwarded(host),
        "a full table still forwards what it knows"
    );
    assert_eq!(sw.stats().fdb_full, 1);
    assert_eq!(sw.learned(), 2);
}

#[test]
fn configuration_mistakes_are_refused() {
    let mut sw = Switch::new();
    assert_eq!(sw.add_network(0, 1500), Err(SwitchError::InvalidVlan(0)));
    assert_eq!(
        sw.add_network(4095, 1500),
        Err(SwitchError::InvalidVlan(4095))
    );
    assert_eq!(sw.add_network(5, 9001), Err(SwitchError::InvalidMtu(9001)));
    assert_eq!(sw.add_network(5, 67), Err(SwitchError::InvalidMtu(67)));
    assert_eq!(sw.add_host_port(5), Err(SwitchError::NoSuchNetwork(5)));
    assert_eq!(
        sw.add_uplink(VlanMode::Trunk {
            native: Some(5),
            allowed: VlanSet::empty()
        }),
        Err(SwitchError::NoSuchNetwork(5))
    );
    sw.add_network(5, 1500).unwrap();
    assert_eq!(
        sw.add_vif(5, MacAddress::BROADCAST),
        Err(SwitchError::GroupMac(MacAddress::BROADCAST))
    );
    assert_eq!(
        sw.set_port_up(PortId(3), true),
        Err(SwitchError::NoSuchPort(PortId(3)))
    );
    for _ in 0..MAX_PORTS {
        sw.add_host_port(5).unwrap();
    }
    assert_eq!(sw.add_host_port(5), Err(SwitchError::TooManyPorts));
    assert_eq!(sw.network_mtu(5), Some(1500));
    assert_eq!(sw.network_mtu(6), None);
    assert_eq!(sw.network_mtu(60000), None);
}

#[test]
fn mutated_frames_never_panic() {
    let mut lab = Lab::new();
    let seeds = [
        untagged(MacAddress::BROADCAST, VM_A, 46),
        tagged(VM_A, REMOTE, 5, true, GUESTS, 46),
        tagged(MacAddress::BROADCAST, REMOTE, 0, false, 0, 20),
        untagged(VM_B, VM_A, 1500),
    ];
    let ports = [
        lab.uplink,
        lab.vif_a,
        lab.vif_b,
        lab.vif_c,
        lab.host_mgmt,
        lab.host_storage,
    ];
    let mut rng = Rng::new(0x5357_4954);
    for seed in &seeds {
        for _ in 0..2000 {
            let mut input = seed.clone();
            for _ in 0..=rng.below(4) {
                mutate(&mut rng, &mut input);
            }
            let port = ports[rng.below(ports.len())];
            lab.now += Duration::from_millis(rng.below(1000) as u64);
            let (outcome, copies) = lab.send(port, &input);
            if let Outcome::Dropped(_) = outcome {
                assert!(copies.is_empty());
            }
            // The fuzz entry point takes the same inputs as records.
            let mut record = vec![
                rng.below(8) as u8,
                1,
                (input.len() >> 8) as u8,
                input.len() as u8,
            ];
            record.extend_from_slice(&input);
            fuzz::fuzz_switch(&record);
        }
    }
    fuzz::fuzz_switch(&[]);
    fuzz::fuzz_switch(&[0, 0, 0xff, 0xff, 1, 2, 3]);
}
