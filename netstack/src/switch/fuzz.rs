//! Fuzz entry point for the switch: arbitrary bytes as a sequence of frames
//! arriving on arbitrary ports of a switch with every kind of port (and a
//! VIF in each locking mode). It must never panic, and every copy it sends
//! must obey the switch's rules.

use alloc::vec;
use core::net::{Ipv4Addr, Ipv6Addr};

use smoltcp::time::{Duration, Instant};

use super::{Outcome, PortId, SCRATCH_LEN, Switch, VifPolicy, VlanMode, VlanSet};
use crate::nic::MacAddress;
use crate::wire::{ETHERNET_HEADER_LEN, VLAN_TAG_LEN};

/// The MAC the fuzzed VIF is locked to.
const VIF_MAC: MacAddress = MacAddress([0x02, 0, 0, 0, 0, 0x10]);
/// A locked VIF's MAC, and a disabled one's.
const LOCKED_MAC: MacAddress = MacAddress([0x02, 0, 0, 0, 0, 0x11]);
const DISABLED_MAC: MacAddress = MacAddress([0x02, 0, 0, 0, 0, 0x12]);

/// Input: records of `[port, time step, len_hi, len_lo, frame...]`.
pub fn fuzz_switch(data: &[u8]) {
    let mut switch = Switch::with_fdb(Duration::from_secs(2), 16);
    // Networks 5 (native, 1500) and 20 (jumbo) on a trunk that also allows
    // 30, which has no network.
    let _ = switch.add_network(5, 1500);
    let _ = switch.add_network(20, 9000);
    let Ok(allowed) = VlanSet::of(&[20, 30]) else {
        return;
    };
    let ports = [
        switch.add_uplink(VlanMode::Trunk {
            native: Some(5),
            allowed,
        }),
        switch.add_vif(20, VIF_MAC),
        switch.add_host_port(5),
        switch.add_host_port(20),
        switch.add_vif(20, LOCKED_MAC),
        switch.add_vif(5, DISABLED_MAC),
    ];
    let (Ok(locked), Ok(disabled)) = (ports[4], ports[5]) else {
        return;
    };
    let policy = VifPolicy::Locked {
        ipv4: vec![Ipv4Addr::new(10, 0, 0, 1)],
        ipv6: vec![Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)],
    };
    if switch.set_vif_policy(locked, policy).is_err()
        || switch
            .set_vif_policy(disabled, VifPolicy::Disabled)
            .is_err()
    {
        return;
    }
    let mut scratch = vec![0u8; SCRATCH_LEN];
    let mut now = Instant::ZERO;
    let mut rest = data;
    while let [port, step, hi, lo, tail @ ..] = rest {
        let len = (usize::from(*hi) << 8 | usize::from(*lo)).min(tail.len());
        let (frame, next) = tail.split_at(len);
        rest = next;
        now += Duration::from_millis(u64::from(*step) * 50);
        // One port id past the last, to try a missing port.
        let ingress = PortId(u16::from(*port) % (ports.len() as u16 + 1));
        let mut copies = 0;
        let outcome = switch.forward(now, ingress, frame, &mut scratch, &mut |to, copy| {
            copies += 1;
            assert_ne!(to, ingress, "never back out of the ingress port");
            assert_ne!(to, disabled, "nothing reaches a disabled VIF");
            assert!(copy.len() >= ETHERNET_HEADER_LEN);
            assert!(copy.len() <= ETHERNET_HEADER_LEN + VLAN_TAG_LEN + 9000);
            assert_eq!(copy[..12], frame[..12], "addresses are never rewritten");
        });
        match outcome {
            Outcome::Forwarded(_) => assert_eq!(copies, 1),
            Outcome::Flooded { ports } => assert_eq!(copies, ports),
            Outcome::Dropped(_) => assert_eq!(copies, 0),
        }
        if ingress == disabled {
            assert_eq!(copies, 0, "nothing leaves a disabled VIF");
        }
        let _ = switch.poll(now);
    }
    let stats = switch.stats();
    assert!(switch.learned() <= 16);
    let _ = stats.dropped.total();
}
