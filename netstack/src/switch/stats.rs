//! Why the switch dropped a frame, and the counters it keeps per port.

use core::fmt;

/// Why a frame went nowhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Shorter than an Ethernet header (or a tagged one).
    Truncated,
    /// Payload larger than the network's MTU.
    Oversize,
    /// A group (multicast or broadcast) source address, which no station has.
    GroupSource,
    /// Addressed to an IEEE 802.1D reserved group (01:80:c2:00:00:0x: LACP,
    /// STP, pause...), which bridges never forward.
    LinkLocal,
    /// An 802.1Q tag on a port that takes only untagged frames (access).
    TagNotAllowed,
    /// A tagged VLAN the trunk does not allow, or an untagged frame on a trunk
    /// without a native VLAN.
    VlanNotAllowed,
    /// VID 4095, reserved.
    ReservedVlan,
    /// The VLAN is allowed but no network is defined for it.
    NoNetwork,
    /// A guest sent from a source MAC other than the one its VIF is locked to.
    MacLocked,
    /// The ingress port does not exist or is down.
    PortUnavailable,
    /// The destination was learned on the ingress port itself.
    SamePort,
    /// No other port carries the VLAN.
    NoEgress,
    /// The caller's scratch buffer cannot hold the frame plus a tag.
    ScratchTooSmall,
    /// From a VIF whose locking mode is `disabled`.
    VifDisabled,
    /// From a locked VIF: an IPv4/IPv6 source or ARP sender not among its
    /// allowed addresses (or a malformed header, which cannot show one).
    LockedSource,
    /// From a locked VIF: an EtherType other than IPv4, ARP and IPv6.
    LockedProtocol,
    /// Unicast to a VIF whose locking policy refuses it (disabled, or
    /// locked and not for one of its addresses).
    LockedDestination,
}

impl DropReason {
    pub const COUNT: usize = 17;

    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::Truncated,
        DropReason::Oversize,
        DropReason::GroupSource,
        DropReason::LinkLocal,
        DropReason::TagNotAllowed,
        DropReason::VlanNotAllowed,
        DropReason::ReservedVlan,
        DropReason::NoNetwork,
        DropReason::MacLocked,
        DropReason::PortUnavailable,
        DropReason::SamePort,
        DropReason::NoEgress,
        DropReason::ScratchTooSmall,
        DropReason::VifDisabled,
        DropReason::LockedSource,
        DropReason::LockedProtocol,
        DropReason::LockedDestination,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            DropReason::Truncated => "truncated frame",
            DropReason::Oversize => "payload over the network MTU",
            DropReason::GroupSource => "group source address",
            DropReason::LinkLocal => "reserved link-local destination",
            DropReason::TagNotAllowed => "802.1Q tag on an access port",
            DropReason::VlanNotAllowed => "VLAN not allowed on the port",
            DropReason::ReservedVlan => "reserved VLAN 4095",
            DropReason::NoNetwork => "no network defined for the VLAN",
            DropReason::MacLocked => "source MAC not the one the VIF is locked to",
            DropReason::PortUnavailable => "ingress port missing or down",
            DropReason::SamePort => "destination is on the ingress port",
            DropReason::NoEgress => "no other port on the VLAN",
            DropReason::ScratchTooSmall => "scratch buffer too small",
            DropReason::VifDisabled => "VIF locking mode is disabled",
            DropReason::LockedSource => "source address not allowed on the locked VIF",
            DropReason::LockedProtocol => "protocol not allowed on the locked VIF",
            DropReason::LockedDestination => "destination VIF's locking refuses the frame",
        };
        f.write_str(text)
    }
}

/// Drop counters, one per [`DropReason`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounters([u64; DropReason::COUNT]);

impl DropCounters {
    pub fn get(&self, reason: DropReason) -> u64 {
        self.0[reason.index()]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    pub(super) fn bump(&mut self, reason: DropReason) {
        self.0[reason.index()] += 1;
    }
}

/// Counters of one switch port, from the switch's point of view: `rx` is
/// what the port handed the switch, `tx` what the switch handed the port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// Frames from this port sent to every port of their VLAN.
    pub flooded: u64,
    /// Copies withheld from this port (a VIF) by its locking policy.
    pub tx_filtered: u64,
    /// Frames from this port dropped, by reason.
    pub dropped: DropCounters,
}

/// Switch-wide counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SwitchStats {
    pub forwarded: u64,
    pub flooded: u64,
    pub dropped: DropCounters,
    /// Addresses seen moving from one port to another.
    pub mac_moves: u64,
    /// Source addresses not learned because the table was full.
    pub fdb_full: u64,
    /// Entries removed by ageing.
    pub aged_out: u64,
}
