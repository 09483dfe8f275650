//! Bonds: up to [`MAX_MEMBERS`] NICs seen as one [`Nic`], in the three modes
//! XenServer offers.
//!
//! - `lacp`: 802.1AX link aggregation with a partner switch. Flows are hashed
//!   ([`HashPolicy`]) onto the members that are collecting and distributing;
//!   LACPDUs go out on each member from its own MAC and are never passed up.
//! - `active-backup`: one member carries everything; another takes over when
//!   its carrier goes.
//! - `balance-slb`: source-MAC load balancing needing no switch support;
//!   sources are moved between members by measured load every
//!   [`BondConfig::rebalance_interval`].
//!
//! The bond runs its timers only in [`Bond::poll`], which takes `now` from the
//! caller. Frames received through [`Nic::receive`] between two polls are
//! processed with the time of the last poll.

mod buckets;
mod carrier;
mod hash;

#[cfg(test)]
mod tests;

use core::fmt;

use heapless::Vec as BoundedVec;
use smoltcp::time::{Duration, Instant};

pub use buckets::BUCKETS;
pub use hash::{HashPolicy, flow_hash};

use crate::lacp::{DEFAULT_PORT_PRIORITY, Lacp, LacpConfig, PortConfig};
use crate::nic::{MacAddress, Nic, NicError};
use crate::wire::{ETHERNET_HEADER_LEN, EtherType, EthernetFrame};
use buckets::Buckets;
use carrier::CarrierFilter;

/// Most members a bond takes (XenServer's limit).
pub const MAX_MEMBERS: usize = 4;

/// Default interval between `balance-slb` rebalancing runs (Open vSwitch's).
pub const DEFAULT_REBALANCE_INTERVAL: Duration = Duration::from_secs(10);

/// Frames one member may hand the bond per [`Nic::receive`] call before the
/// bond moves on, so LACPDUs or dropped frames cannot starve the caller.
const MAX_FRAMES_PER_MEMBER: usize = 16;

/// How the bond uses its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BondMode {
    /// 802.1AX with a partner; `lacp.system` is usually the bond's MAC.
    Lacp {
        hash: HashPolicy,
        lacp: LacpConfig,
    },
    ActiveBackup,
    BalanceSlb,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BondConfig {
    pub mode: BondMode,
    /// The bond's MAC; the first member's when `None`.
    pub mac: Option<MacAddress>,
    pub rebalance_interval: Duration,
    /// How long a member's carrier must be back before the bond uses it
    /// (XenServer sets 31 s on its bonds; 0 here).
    pub updelay: Duration,
    /// How long a member's carrier must be gone before the bond stops using
    /// it (XenServer: 200 ms; 0 here, for the fastest failover).
    pub downdelay: Duration,
    /// LACP port priority of every member (lower is preferred).
    pub port_priority: u16,
}

impl BondConfig {
    pub fn new(mode: BondMode) -> Self {
        BondConfig {
            mode,
            mac: None,
            rebalance_interval: DEFAULT_REBALANCE_INTERVAL,
            updelay: Duration::ZERO,
            downdelay: Duration::ZERO,
            port_priority: DEFAULT_PORT_PRIORITY,
        }
    }
}

/// Why a bond could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BondError {
    NoMembers,
    TooManyMembers { given: usize },
}

impl fmt::Display for BondError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BondError::NoMembers => write!(f, "a bond needs at least one member NIC"),
            BondError::TooManyMembers { given } => {
                write!(
                    f,
                    "a bond takes at most {MAX_MEMBERS} members, {given} given"
                )
            }
        }
    }
}

/// Bond-level counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BondStats {
    /// Frames passed up.
    pub rx_frames: u64,
    /// Slow-protocol frames consumed by the bond (never passed up).
    pub rx_slow_protocols: u64,
    /// Frames dropped because they arrived on a member not collecting.
    pub rx_inactive: u64,
    /// Frames shorter than an Ethernet header, or longer than the buffer a driver claims.
    pub rx_malformed: u64,
    pub tx_frames: u64,
    /// Frames dropped because no member could carry them.
    pub tx_no_member: u64,
    /// Times the set of usable members changed.
    pub member_changes: u64,
    /// Buckets moved by `balance-slb` rebalancing.
    pub rebalanced_buckets: u64,
}

#[derive(Debug)]
struct Member<N> {
    nic: N,
    /// Carrier after `updelay`/`downdelay`: what the bond acts on.
    carrier: CarrierFilter,
    /// Whether the bond sends on this member.
    usable: bool,
}

/// A bond of member NICs, itself a [`Nic`].
#[derive(Debug)]
pub struct Bond<N: Nic> {
    config: BondConfig,
    mac: MacAddress,
    members: BoundedVec<Member<N>, MAX_MEMBERS>,
    lacp: Option<Lacp>,
    buckets: Buckets,
    /// The member carrying everything (active-backup), or receiving
    /// broadcast and multicast (balance-slb).
    active: Option<usize>,
    now: Instant,
    lacp_due: bool,
    next_rebalance: Instant,
    next_rx: usize,
    stats: BondStats,
}

impl<N: Nic> Bond<N> {
    /// Builds a bond over `members` (1 to [`MAX_MEMBERS`]). Carrier is read at
    /// the first [`Bond::poll`].
    pub fn new(
        config: BondConfig,
        members: impl IntoIterator<Item = N>,
        now: Instant,
    ) -> Result<Self, BondError> {
        let mut list = BoundedVec::new();
        let mut given = 0;
        for nic in members {
            given += 1;
            // Keep counting past the limit for the error message.
            let _ = list.push(Member {
                nic,
                carrier: CarrierFilter::new(),
                usable: false,
            });
        }
        if given > MAX_MEMBERS {
            return Err(BondError::TooManyMembers { given });
        }
        let first: &Member<N> = list.first().ok_or(BondError::NoMembers)?;
        let mac = config.mac.unwrap_or_else(|| first.nic.mac());
        let lacp = match config.mode {
            BondMode::Lacp { lacp, .. } => {
                let mut entity = Lacp::new(lacp);
                for (i, m) in list.iter().enumerate() {
                    entity.add_port(PortConfig {
                        mac: m.nic.mac(),
                        number: i as u16 + 1,
                        priority: config.port_priority,
                    });
                }
                Some(entity)
            }
            _ => None,
        };
        Ok(Bond {
            config,
            mac,
            members: list,
            lacp,
            buckets: Buckets::new(),
            active: None,
            now,
            lacp_due: true,
            next_rebalance: now + config.rebalance_interval,
            next_rx: 0,
            stats: BondStats::default(),
        })
    }

    /// Reads carrier, runs LACP and rebalancing, and re-spreads flows when
    /// the usable members change. Returns when to poll again (carrier changes
    /// come from the driver's link interrupt, not a deadline; pending
    /// `updelay`/`downdelay` expiries do have one).
    pub fn poll(&mut self, now: Instant) -> Option<Instant> {
        self.now = now;
        self.lacp_due = false;
        let (updelay, downdelay) = (self.config.updelay, self.config.downdelay);
        let mut carrier_due: Option<Instant> = None;
        for (i, member) in self.members.iter_mut().enumerate() {
            let raw = member.nic.link_up();
            if let Some(up) = member.carrier.update(now, raw, updelay, downdelay) {
                log::info!(
                    "bond: member {i} {} carrier {}",
                    member.nic.mac(),
                    if up { "up" } else { "down" }
                );
                if let Some(lacp) = self.lacp.as_mut() {
                    lacp.on_carrier(now, i, up);
                }
            }
            if let Some(t) = member.carrier.deadline(updelay, downdelay) {
                carrier_due = Some(carrier_due.map_or(t, |d| d.min(t)));
            }
        }
        let mut next = None;
        if let Some(lacp) = self.lacp.as_mut() {
            let members = &mut self.members;
            next = lacp.poll(now, &mut |i, frame| {
                if let Some(m) = members.get_mut(i)
                    && m.carrier.effective()
                    && let Err(e) = m.nic.transmit(frame)
                {
                    log::debug!("bond: LACPDU on member {i} not sent: {e}");
                }
            });
        }
        self.update_usable();
        if self.config.mode == BondMode::BalanceSlb {
            if now >= self.next_rebalance {
                let usable = self.usable_flags();
                let moved = self.buckets.rebalance(&usable[..self.members.len()]);
                self.stats.rebalanced_buckets += moved as u64;
                self.next_rebalance = now + self.config.rebalance_interval;
            }
            next = Some(next.map_or(self.next_rebalance, |n: Instant| n.min(self.next_rebalance)));
        }
        match (next, carrier_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// When [`Bond::poll`] should run next because of frames received since
    /// the last poll (a LACPDU may call for an answer).
    pub fn poll_at(&self) -> Option<Instant> {
        self.lacp_due.then_some(self.now)
    }

    fn usable_flags(&self) -> [bool; MAX_MEMBERS] {
        let mut flags = [false; MAX_MEMBERS];
        for (flag, m) in flags.iter_mut().zip(self.members.iter()) {
            *flag = m.usable;
        }
        flags
    }

    fn update_usable(&mut self) {
        let mut changed = false;
        for (i, member) in self.members.iter_mut().enumerate() {
            let usable = match &self.lacp {
                Some(lacp) => lacp.is_distributing(i),
                None => member.carrier.effective(),
            };
            if usable != member.usable {
                member.usable = usable;
                changed = true;
                log::info!(
                    "bond: member {i} {} {}",
                    member.nic.mac(),
                    if usable { "enabled" } else { "disabled" }
                );
            }
        }
        // Active-backup keeps its active member while it is up (no failback).
        if self
            .active
            .is_none_or(|a| !self.members.get(a).is_some_and(|m| m.usable))
        {
            let next = self.members.iter().position(|m| m.usable);
            if next != self.active {
                if let Some(a) = next {
                    log::info!("bond: member {a} is now active");
                }
                self.active = next;
                changed = true;
            }
        }
        if changed {
            self.stats.member_changes += 1;
            let usable = self.usable_flags();
            self.buckets.rebuild(&usable[..self.members.len()]);
        }
    }

    /// The member a frame would leave on now.
    pub fn member_for(&self, frame: &[u8]) -> Option<usize> {
        match self.config.mode {
            BondMode::ActiveBackup => self.active,
            BondMode::Lacp { hash, .. } => {
                self.buckets.owner(Buckets::bucket(flow_hash(hash, frame)))
            }
            BondMode::BalanceSlb => self
                .buckets
                .owner(Buckets::bucket(flow_hash(HashPolicy::SrcMac, frame))),
        }
    }

    /// Whether a frame that arrived on member `i` goes up the stack.
    fn accepts(&self, i: usize, frame: &[u8]) -> bool {
        let Some(member) = self.members.get(i) else {
            return false;
        };
        match self.config.mode {
            BondMode::Lacp { .. } => self.lacp.as_ref().is_some_and(|l| l.is_collecting(i)),
            BondMode::ActiveBackup => self.active == Some(i),
            // The switch floods broadcasts to every member; take them once.
            BondMode::BalanceSlb => {
                member.usable
                    && (frame.first().is_some_and(|b| b & 1 == 0) || self.active == Some(i))
            }
        }
    }

    pub fn mode(&self) -> BondMode {
        self.config.mode
    }
    pub fn config(&self) -> &BondConfig {
        &self.config
    }
    /// Dissolves the bond: its member NICs, in order (to build another
    /// uplink of them).
    pub fn into_members(self) -> alloc::vec::Vec<N> {
        self.members.into_iter().map(|m| m.nic).collect()
    }
    pub fn stats(&self) -> BondStats {
        self.stats
    }
    /// The LACP state, in `lacp` mode.
    pub fn lacp(&self) -> Option<&Lacp> {
        self.lacp.as_ref()
    }
    pub fn member_count(&self) -> usize {
        self.members.len()
    }
    pub fn member(&self, i: usize) -> Option<&N> {
        self.members.get(i).map(|m| &m.nic)
    }
    pub fn member_mut(&mut self, i: usize) -> Option<&mut N> {
        self.members.get_mut(i).map(|m| &mut m.nic)
    }
    /// Whether the bond sends on member `i`.
    pub fn is_member_usable(&self, i: usize) -> bool {
        self.members.get(i).is_some_and(|m| m.usable)
    }
    /// The active member (active-backup) or broadcast receiver (balance-slb).
    pub fn active_member(&self) -> Option<usize> {
        self.active
    }
}

impl<N: Nic> Nic for Bond<N> {
    fn mac(&self) -> MacAddress {
        self.mac
    }

    fn mtu(&self) -> usize {
        self.members.iter().map(|m| m.nic.mtu()).min().unwrap_or(0)
    }

    fn link_up(&self) -> bool {
        self.members.iter().any(|m| m.usable)
    }

    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<usize>, NicError> {
        let n = self.members.len();
        let mut first_error = None;
        for k in 0..n {
            let i = (self.next_rx + k) % n;
            for _ in 0..MAX_FRAMES_PER_MEMBER {
                let Some(member) = self.members.get_mut(i) else {
                    break;
                };
                let len = match member.nic.receive(buf) {
                    Ok(None) => break,
                    Ok(Some(len)) => len,
                    Err(e) => {
                        first_error.get_or_insert(e);
                        break;
                    }
                };
                let Some(frame) = buf.get(..len) else {
                    self.stats.rx_malformed += 1;
                    continue;
                };
                let Ok(eth) = EthernetFrame::new_checked(frame) else {
                    self.stats.rx_malformed += 1;
                    continue;
                };
                if eth.ethertype() == EtherType::SLOW_PROTOCOLS {
                    self.stats.rx_slow_protocols += 1;
                    if let Some(lacp) = self.lacp.as_mut() {
                        // Malformed PDUs are counted on the port.
                        let _ = lacp.on_slow_protocols(self.now, i, eth.payload());
                        self.lacp_due = true;
                    }
                    continue;
                }
                if !self.accepts(i, frame) {
                    self.stats.rx_inactive += 1;
                    continue;
                }
                self.stats.rx_frames += 1;
                self.next_rx = (i + 1) % n;
                return Ok(Some(len));
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }

    fn can_transmit(&mut self) -> bool {
        self.members
            .iter_mut()
            .any(|m| m.usable && m.nic.can_transmit())
    }

    fn transmit(&mut self, frame: &[u8]) -> Result<(), NicError> {
        if frame.len() < ETHERNET_HEADER_LEN {
            return Err(NicError::BadLength {
                len: frame.len(),
                max: self.mtu() + ETHERNET_HEADER_LEN,
            });
        }
        let member = self
            .member_for(frame)
            .and_then(|i| self.members.get_mut(i))
            .filter(|m| m.usable);
        let Some(member) = member else {
            self.stats.tx_no_member += 1;
            return Err(NicError::LinkDown);
        };
        member.nic.transmit(frame)?;
        self.stats.tx_frames += 1;
        if self.config.mode == BondMode::BalanceSlb {
            let bucket = Buckets::bucket(flow_hash(HashPolicy::SrcMac, frame));
            self.buckets.account(bucket, frame.len());
        }
        Ok(())
    }
}
