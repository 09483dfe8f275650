//! The virtual switch: a learning Ethernet bridge with 802.1Q VLANs, one
//! per host, carrying every network (VLAN) the host has.
//!
//! Ports are the uplink (a bond or NIC, trunk or access), guest VIFs (access
//! on one VLAN, locked to the guest's MAC, filtered by their [`VifPolicy`])
//! and host ports (the host's own IP
//! interfaces, access on their network's VLAN). Each network has its own MTU
//! (up to 9000); frames whose payload exceeds it are dropped and counted.
//!
//! [`Switch::forward`] is a pure state machine: one frame in, the frames out
//! handed to the caller's closure as `(port, bytes)`, with a scratch buffer
//! from the caller for re-tagging. Learned addresses age out by the caller's
//! `now`. Nothing here does I/O, reads a clock, or panics on any input.

mod fdb;
pub mod fuzz;
pub mod host_port;
mod stats;
mod vif_link;
mod vif_policy;
mod vlans;

#[cfg(test)]
mod tests;

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use smoltcp::time::{Duration, Instant};

pub use fdb::{DEFAULT_AGING, DEFAULT_MAX_ENTRIES};
pub use host_port::{HOST_PORT_QUEUE, HostPort, HostPortStats};
pub use stats::{DropCounters, DropReason, PortStats, SwitchStats};
pub use vif_link::{VIF_QUEUE, VifLink, VifLinkStats, Wake};
pub use vif_policy::VifPolicy;
pub use vlans::{InvalidVlan, MAX_VLAN, VlanMode, VlanSet};

use crate::nic::MacAddress;
use crate::wire::{ETHERNET_HEADER_LEN, EtherType, VLAN_TAG_LEN, VlanTci};
use fdb::{Fdb, Learned};

/// Smallest network MTU accepted (IPv4's minimum).
pub const MIN_MTU: usize = 68;
/// Largest network MTU accepted (jumbo frames).
pub const MAX_MTU: usize = 9000;
/// Most ports one switch takes.
pub const MAX_PORTS: usize = 256;
/// Scratch a caller must offer [`Switch::forward`]: the largest frame the
/// switch passes (header, tag, [`MAX_MTU`] payload) plus room for one tag.
pub const SCRATCH_LEN: usize = ETHERNET_HEADER_LEN + 2 * VLAN_TAG_LEN + MAX_MTU;

/// IEEE 802.1D reserved group addresses 01:80:c2:00:00:00..0f.
const LINK_LOCAL_PREFIX: [u8; 5] = [0x01, 0x80, 0xc2, 0x00, 0x00];

/// A port of a [`Switch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(pub u16);

impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port {}", self.0)
    }
}

/// What sits behind a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortKind {
    /// A bond or physical NIC towards the physical switch.
    Uplink,
    /// A guest's virtual interface, which may send only from `mac`.
    Vif { mac: MacAddress },
    /// One of the host's own IP interfaces.
    Host,
}

#[derive(Debug)]
struct Port {
    kind: PortKind,
    vlans: VlanMode,
    up: bool,
    stats: PortStats,
    /// A VIF's locking policy (`Unlocked` for other ports).
    policy: VifPolicy,
}

impl Port {
    /// Whether a frame (EtherType and what follows its header) may leave
    /// through this port.
    fn admits(&self, ethertype: u16, l3: &[u8]) -> bool {
        match self.kind {
            PortKind::Vif { mac } => self.policy.admits_to_guest(mac, ethertype, l3),
            _ => true,
        }
    }
}

/// Why the switch refused a configuration change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchError {
    InvalidVlan(u16),
    /// An MTU outside [`MIN_MTU`]..=[`MAX_MTU`].
    InvalidMtu(usize),
    /// A port names a VLAN with no network defined.
    NoSuchNetwork(u16),
    NoSuchPort(PortId),
    TooManyPorts,
    /// A VIF locked to a group address could never send.
    GroupMac(MacAddress),
    /// A network still has access ports (VIFs, host ports) or is some
    /// port's native VLAN.
    NetworkInUse(u16),
    /// A VIF setting on a port that is not a VIF.
    NotAVif(PortId),
}

impl fmt::Display for SwitchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SwitchError::InvalidVlan(v) => write!(f, "VLAN {v} is outside 1..=4094"),
            SwitchError::InvalidMtu(m) => {
                write!(f, "MTU {m} is outside {MIN_MTU}..={MAX_MTU}")
            }
            SwitchError::NoSuchNetwork(v) => {
                write!(f, "no network on VLAN {v}: define it before adding ports")
            }
            SwitchError::NoSuchPort(p) => write!(f, "no {p} on this switch"),
            SwitchError::TooManyPorts => write!(f, "a switch takes at most {MAX_PORTS} ports"),
            SwitchError::GroupMac(m) => write!(f, "{m} is a group address, not a station's"),
            SwitchError::NetworkInUse(v) => {
                write!(f, "the network on VLAN {v} still has ports untagged on it")
            }
            SwitchError::NotAVif(p) => write!(f, "{p} is not a guest VIF"),
        }
    }
}

impl From<InvalidVlan> for SwitchError {
    fn from(e: InvalidVlan) -> Self {
        SwitchError::InvalidVlan(e.0)
    }
}

/// What became of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Sent to the one port its destination was learned on.
    Forwarded(PortId),
    /// Sent to every other port of its VLAN (unknown unicast, broadcast,
    /// multicast).
    Flooded {
        ports: usize,
    },
    Dropped(DropReason),
}

/// The VLAN and priority a frame was classified into at ingress.
#[derive(Debug, Clone, Copy)]
struct Classified {
    vid: u16,
    pcp: u8,
    dei: bool,
    /// VID of the tag the frame arrived with (0: priority tag only).
    tag_in: Option<u16>,
}

impl Classified {
    fn header_len(&self) -> usize {
        ETHERNET_HEADER_LEN
            + if self.tag_in.is_some() {
                VLAN_TAG_LEN
            } else {
                0
            }
    }
}

/// A learning 802.1Q switch.
#[derive(Debug)]
pub struct Switch {
    ports: Vec<Option<Port>>,
    /// Network MTU per VLAN ID; 0 where no network is defined.
    mtu: Vec<u16>,
    fdb: Fdb,
    stats: SwitchStats,
}

impl Default for Switch {
    fn default() -> Self {
        Self::new()
    }
}

impl Switch {
    /// A switch with no networks and no ports, ageing entries after
    /// [`DEFAULT_AGING`].
    pub fn new() -> Self {
        Self::with_fdb(DEFAULT_AGING, DEFAULT_MAX_ENTRIES)
    }

    /// A switch whose learned addresses age out after `aging`, learning at
    /// most `max_entries` of them.
    pub fn with_fdb(aging: Duration, max_entries: usize) -> Self {
        Switch {
            ports: Vec::new(),
            mtu: vec![0; usize::from(MAX_VLAN) + 1],
            fdb: Fdb::new(aging, max_entries),
            stats: SwitchStats::default(),
        }
    }

    /// Defines (or redefines the MTU of) the network on VLAN `vid`.
    pub fn add_network(&mut self, vid: u16, mtu: usize) -> Result<(), SwitchError> {
        vlans::check_vid(vid)?;
        if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
            return Err(SwitchError::InvalidMtu(mtu));
        }
        self.mtu[usize::from(vid)] = mtu as u16;
        Ok(())
    }

    /// Undefines the network on `vid`: refused while a port carries it
    /// untagged (an access port, a trunk's native VLAN). Trunks that allow it
    /// tagged drop its frames from now on.
    pub fn remove_network(&mut self, vid: u16) -> Result<(), SwitchError> {
        vlans::check_vid(vid)?;
        if self
            .ports
            .iter()
            .flatten()
            .any(|p| p.vlans.untagged(vid) && p.vlans.carries(vid))
        {
            return Err(SwitchError::NetworkInUse(vid));
        }
        self.mtu[usize::from(vid)] = 0;
        Ok(())
    }

    /// The VLANs port `id` carries.
    pub fn port_vlans(&self, id: PortId) -> Option<&VlanMode> {
        self.port(id).map(|p| &p.vlans)
    }

    /// Changes which VLANs port `id` carries (a trunk gains or loses a VLAN).
    /// What was learned on the port is forgotten, so traffic finds its way
    /// again under the new membership.
    pub fn set_port_vlans(&mut self, id: PortId, vlans: VlanMode) -> Result<(), SwitchError> {
        vlans.validate()?;
        let untagged = match &vlans {
            VlanMode::Access(v) => Some(*v),
            VlanMode::Trunk { native, .. } => *native,
        };
        if let Some(v) = untagged {
            self.need_network(v)?;
        }
        let port = self.port_mut(id).ok_or(SwitchError::NoSuchPort(id))?;
        port.vlans = vlans;
        self.fdb.flush_port(id);
        Ok(())
    }

    /// The MTU of the network on `vid`, if one is defined.
    pub fn network_mtu(&self, vid: u16) -> Option<usize> {
        match self.mtu.get(usize::from(vid)) {
            Some(0) | None => None,
            Some(m) => Some(usize::from(*m)),
        }
    }

    /// Adds an uplink. A trunk may allow VLANs with no network yet (their
    /// frames are dropped and counted until one is defined); an access uplink
    /// and a trunk's native VLAN need theirs.
    pub fn add_uplink(&mut self, vlans: VlanMode) -> Result<PortId, SwitchError> {
        vlans.validate()?;
        let untagged = match &vlans {
            VlanMode::Access(v) => Some(*v),
            VlanMode::Trunk { native, .. } => *native,
        };
        if let Some(v) = untagged {
            self.need_network(v)?;
        }
        self.add_port(PortKind::Uplink, vlans)
    }

    /// Adds a guest VIF on network `vid`, locked to source MAC `mac`.
    pub fn add_vif(&mut self, vid: u16, mac: MacAddress) -> Result<PortId, SwitchError> {
        if mac.is_multicast() {
            return Err(SwitchError::GroupMac(mac));
        }
        self.need_network(vid)?;
        self.add_port(PortKind::Vif { mac }, VlanMode::Access(vid))
    }

    /// Adds a port for one of the host's own interfaces on network `vid`.
    pub fn add_host_port(&mut self, vid: u16) -> Result<PortId, SwitchError> {
        self.need_network(vid)?;
        self.add_port(PortKind::Host, VlanMode::Access(vid))
    }

    fn need_network(&self, vid: u16) -> Result<(), SwitchError> {
        vlans::check_vid(vid)?;
        self.network_mtu(vid)
            .map(|_| ())
            .ok_or(SwitchError::NoSuchNetwork(vid))
    }

    fn add_port(&mut self, kind: PortKind, vlans: VlanMode) -> Result<PortId, SwitchError> {
        let port = Port {
            kind,
            vlans,
            up: true,
            stats: PortStats::default(),
            policy: VifPolicy::Unlocked,
        };
        if let Some(i) = self.ports.iter().position(Option::is_none) {
            self.ports[i] = Some(port);
            return Ok(PortId(i as u16));
        }
        if self.ports.len() >= MAX_PORTS {
            return Err(SwitchError::TooManyPorts);
        }
        self.ports.push(Some(port));
        Ok(PortId((self.ports.len() - 1) as u16))
    }

    /// Removes a port and forgets the addresses learned on it.
    pub fn remove_port(&mut self, id: PortId) -> Result<(), SwitchError> {
        let slot = self
            .ports
            .get_mut(usize::from(id.0))
            .filter(|p| p.is_some())
            .ok_or(SwitchError::NoSuchPort(id))?;
        *slot = None;
        self.fdb.flush_port(id);
        Ok(())
    }

    /// Takes a port out of (or back into) forwarding, as its link goes. A
    /// port going down forgets what was learned on it, so traffic to those
    /// addresses floods (and finds them elsewhere) at once.
    pub fn set_port_up(&mut self, id: PortId, up: bool) -> Result<(), SwitchError> {
        let port = self.port_mut(id).ok_or(SwitchError::NoSuchPort(id))?;
        port.up = up;
        if !up {
            self.fdb.flush_port(id);
        }
        Ok(())
    }

    /// Sets what VIF `id` may send and receive, at once: what was learned on
    /// it is forgotten (a disabled VIF's addresses flood, and go nowhere).
    pub fn set_vif_policy(&mut self, id: PortId, policy: VifPolicy) -> Result<(), SwitchError> {
        let port = self.port_mut(id).ok_or(SwitchError::NoSuchPort(id))?;
        if !matches!(port.kind, PortKind::Vif { .. }) {
            return Err(SwitchError::NotAVif(id));
        }
        port.policy = policy;
        self.fdb.flush_port(id);
        Ok(())
    }

    /// The locking policy of VIF `id`.
    pub fn vif_policy(&self, id: PortId) -> Option<&VifPolicy> {
        self.port(id)
            .filter(|p| matches!(p.kind, PortKind::Vif { .. }))
            .map(|p| &p.policy)
    }

    fn port_mut(&mut self, id: PortId) -> Option<&mut Port> {
        self.ports.get_mut(usize::from(id.0))?.as_mut()
    }

    fn port(&self, id: PortId) -> Option<&Port> {
        self.ports.get(usize::from(id.0))?.as_ref()
    }

    pub fn port_kind(&self, id: PortId) -> Option<PortKind> {
        self.port(id).map(|p| p.kind)
    }

    pub fn port_stats(&self, id: PortId) -> Option<PortStats> {
        self.port(id).map(|p| p.stats)
    }

    pub fn stats(&self) -> SwitchStats {
        self.stats
    }

    /// Where `mac` on `vid` was learned, if it has not aged out by `now`.
    pub fn lookup(&self, vid: u16, mac: MacAddress, now: Instant) -> Option<PortId> {
        self.fdb.lookup(vid, mac, now)
    }

    /// Addresses currently in the forwarding database (aged ones included
    /// until the next [`Switch::poll`]).
    pub fn learned(&self) -> usize {
        self.fdb.len()
    }

    /// Ages the forwarding database; returns when the next entry expires.
    pub fn poll(&mut self, now: Instant) -> Option<Instant> {
        let (gone, next) = self.fdb.age(now);
        self.stats.aged_out += gone as u64;
        next
    }

    /// Switches one frame that arrived on `ingress`: every copy that leaves
    /// goes to `out(port, bytes)`. `scratch` (at least the frame's length
    /// plus [`VLAN_TAG_LEN`]; [`SCRATCH_LEN`] always suffices) is where
    /// re-tagged copies are built.
    pub fn forward<F>(
        &mut self,
        now: Instant,
        ingress: PortId,
        frame: &[u8],
        scratch: &mut [u8],
        out: &mut F,
    ) -> Outcome
    where
        F: FnMut(PortId, &[u8]),
    {
        let outcome = self.switch_frame(now, ingress, frame, scratch, out);
        match outcome {
            Outcome::Dropped(reason) => {
                self.stats.dropped.bump(reason);
                if let Some(port) = self.port_mut(ingress) {
                    port.stats.dropped.bump(reason);
                }
            }
            Outcome::Forwarded(_) => self.stats.forwarded += 1,
            Outcome::Flooded { .. } => {
                self.stats.flooded += 1;
                if let Some(port) = self.port_mut(ingress) {
                    port.stats.flooded += 1;
                }
            }
        }
        outcome
    }

    fn switch_frame<F>(
        &mut self,
        now: Instant,
        ingress: PortId,
        frame: &[u8],
        scratch: &mut [u8],
        out: &mut F,
    ) -> Outcome
    where
        F: FnMut(PortId, &[u8]),
    {
        use Outcome::Dropped;
        let Some(port) = self.port_mut(ingress).filter(|p| p.up) else {
            return Dropped(DropReason::PortUnavailable);
        };
        port.stats.rx_frames += 1;
        port.stats.rx_bytes += frame.len() as u64;
        let (kind, class) = match classify(&port.vlans, frame) {
            Ok(class) => (port.kind, class),
            Err(reason) => return Dropped(reason),
        };
        let (Some(dst), Some(src)) = (mac_at(frame, 0), mac_at(frame, 6)) else {
            return Dropped(DropReason::Truncated);
        };
        if src.is_multicast() {
            return Dropped(DropReason::GroupSource);
        }
        if dst.0[..5] == LINK_LOCAL_PREFIX && dst.0[5] & 0xf0 == 0 {
            return Dropped(DropReason::LinkLocal);
        }
        let Some(mtu) = self.network_mtu(class.vid) else {
            return Dropped(DropReason::NoNetwork);
        };
        if frame.len() - class.header_len() > mtu {
            return Dropped(DropReason::Oversize);
        }
        let (ethertype, l3) = l3_of(frame, class);
        if let PortKind::Vif { mac } = kind
            && let Some(port) = self.port(ingress)
        {
            if port.policy == VifPolicy::Disabled {
                return Dropped(DropReason::VifDisabled);
            }
            if mac != src {
                return Dropped(DropReason::MacLocked);
            }
            if let Err(reason) = port.policy.check_from_guest(mac, ethertype, l3) {
                return Dropped(reason);
            }
        }
        if scratch.len() < frame.len() + VLAN_TAG_LEN {
            return Dropped(DropReason::ScratchTooSmall);
        }
        match self.fdb.learn(class.vid, src, ingress, now) {
            Learned::Fresh => {}
            Learned::Moved { .. } => self.stats.mac_moves += 1,
            Learned::TableFull => self.stats.fdb_full += 1,
        }

        let known = if dst.is_multicast() {
            None
        } else {
            self.fdb.lookup(class.vid, dst, now)
        };
        if let Some(egress) = known {
            if egress == ingress {
                return Dropped(DropReason::SamePort);
            }
            if let Some(port) = self.port_mut(egress)
                && port.up
                && port.vlans.carries(class.vid)
            {
                if !port.admits(ethertype, l3) {
                    port.stats.tx_filtered += 1;
                    return Dropped(DropReason::LockedDestination);
                }
                let untagged = port.vlans.untagged(class.vid);
                let copy: &[u8] = if is_input_form(class, untagged) {
                    frame
                } else {
                    let len = build_form(frame, class, untagged, scratch);
                    &scratch[..len]
                };
                port.stats.tx_frames += 1;
                port.stats.tx_bytes += copy.len() as u64;
                out(egress, copy);
                return Outcome::Forwarded(egress);
            }
            // Learned on a port that has since stopped carrying the VLAN:
            // look for the station everywhere.
        }
        let mut sent = 0;
        let mut filtered = 0;
        // Untagged copies first, then tagged ones: each form is built at
        // most once in the one scratch buffer.
        for untagged in [true, false] {
            let mut built: Option<usize> = None;
            for (i, slot) in self.ports.iter_mut().enumerate() {
                let id = PortId(i as u16);
                let Some(port) = slot.as_mut() else { continue };
                if id == ingress
                    || !port.up
                    || !port.vlans.carries(class.vid)
                    || port.vlans.untagged(class.vid) != untagged
                {
                    continue;
                }
                if !port.admits(ethertype, l3) {
                    port.stats.tx_filtered += 1;
                    filtered += 1;
                    continue;
                }
                let copy: &[u8] = if is_input_form(class, untagged) {
                    frame
                } else {
                    let len =
                        *built.get_or_insert_with(|| build_form(frame, class, untagged, scratch));
                    &scratch[..len]
                };
                port.stats.tx_frames += 1;
                port.stats.tx_bytes += copy.len() as u64;
                out(id, copy);
                sent += 1;
            }
        }
        if sent == 0 && filtered > 0 {
            return Dropped(DropReason::LockedDestination);
        }
        if sent == 0 {
            return Dropped(DropReason::NoEgress);
        }
        Outcome::Flooded { ports: sent }
    }
}

/// The EtherType of a classified frame and what follows its header.
fn l3_of(frame: &[u8], class: Classified) -> (u16, &[u8]) {
    let at = class.header_len();
    let ethertype = match frame.get(at - 2..at) {
        Some(&[hi, lo]) => u16::from_be_bytes([hi, lo]),
        _ => 0,
    };
    (ethertype, frame.get(at..).unwrap_or(&[]))
}

/// The MAC address at `at`, when the frame is long enough.
fn mac_at(frame: &[u8], at: usize) -> Option<MacAddress> {
    let bytes = frame.get(at..at + 6)?;
    let mut mac = [0u8; 6];
    mac.copy_from_slice(bytes);
    Some(MacAddress(mac))
}

/// Works out a frame's VLAN and priority from its tag (if any) and the
/// ingress port's mode.
fn classify(mode: &VlanMode, frame: &[u8]) -> Result<Classified, DropReason> {
    if frame.len() < ETHERNET_HEADER_LEN {
        return Err(DropReason::Truncated);
    }
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    if ethertype != EtherType::VLAN.0 {
        let vid = match mode {
            VlanMode::Access(v) => *v,
            VlanMode::Trunk { native, .. } => native.ok_or(DropReason::VlanNotAllowed)?,
        };
        return Ok(Classified {
            vid,
            pcp: 0,
            dei: false,
            tag_in: None,
        });
    }
    let tci_bytes = frame.get(14..16).ok_or(DropReason::Truncated)?;
    // A tag must be followed by the inner EtherType.
    if frame.len() < ETHERNET_HEADER_LEN + VLAN_TAG_LEN {
        return Err(DropReason::Truncated);
    }
    let tci = VlanTci::from_bits(u16::from_be_bytes([tci_bytes[0], tci_bytes[1]]));
    let vid = match (mode, tci.vid) {
        (_, 4095) => return Err(DropReason::ReservedVlan),
        // A priority tag: the frame belongs to the port's untagged VLAN.
        (VlanMode::Access(v), 0) => *v,
        (VlanMode::Access(_), _) => return Err(DropReason::TagNotAllowed),
        (VlanMode::Trunk { native, .. }, 0) => native.ok_or(DropReason::VlanNotAllowed)?,
        (mode, vid) if mode.carries(vid) => vid,
        _ => return Err(DropReason::VlanNotAllowed),
    };
    Ok(Classified {
        vid,
        pcp: tci.pcp,
        dei: tci.dei,
        tag_in: Some(tci.vid),
    })
}

/// Whether a port that wants frames untagged (or tagged) can take the
/// frame exactly as it arrived.
fn is_input_form(class: Classified, untagged: bool) -> bool {
    match class.tag_in {
        None => untagged,
        Some(vid) => !untagged && vid == class.vid,
    }
}

/// Builds in `scratch` the frame as it leaves a port that wants it
/// untagged (pop the tag) or tagged (push one, or rewrite a priority tag,
/// keeping the priority bits); returns its length. The caller has checked
/// that `scratch` holds the frame plus a tag and that the frame holds its
/// (tagged, if `class.tag_in`) header.
fn build_form(frame: &[u8], class: Classified, untagged: bool, scratch: &mut [u8]) -> usize {
    let rest = class.header_len() - 2;
    scratch[..12].copy_from_slice(&frame[..12]);
    let at = if untagged {
        12
    } else {
        let tci = VlanTci {
            pcp: class.pcp,
            dei: class.dei,
            vid: class.vid,
        };
        scratch[12..14].copy_from_slice(&EtherType::VLAN.0.to_be_bytes());
        scratch[14..16].copy_from_slice(&tci.to_bits().to_be_bytes());
        16
    };
    let len = at + frame.len() - rest;
    scratch[at..len].copy_from_slice(&frame[rest..]);
    len
}
