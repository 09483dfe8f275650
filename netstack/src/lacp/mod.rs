//! The Link Aggregation Control Protocol (IEEE 802.1AX, formerly 802.3ad).
//!
//! [`LacpPort`] is one member's actor: the receive, periodic, mux (with
//! WAITING), transmit and churn machines, the marker responder and its
//! counters. [`Lacp`] is the bond's side of the protocol: it owns the ports,
//! runs the selection logic (which ports share an aggregator, loopback) and
//! the aggregate-wait `Ready` condition across them.
//!
//! Both are pure state machines: the caller passes `now` and slow-protocol
//! payloads in, gets frames out through a closure, and calls
//! [`Lacp::poll`] again by the deadline it returns.

mod churn;
mod group;
mod port;
mod timers;

#[cfg(test)]
mod tests;

pub use churn::ChurnState;
pub use group::{Lacp, LagId};
pub use port::{LacpPort, MuxState, PortCounters, RxState, Selected};
pub use timers::*;

use crate::MacAddress;

/// Whether a port starts the conversation (active) or only answers (passive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LacpMode {
    Active,
    Passive,
}

/// The rate we ask the partner to send at: every second with a 3 s timeout
/// (fast), or every 30 s with a 90 s timeout (slow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LacpRate {
    Fast,
    Slow,
}

/// The bond-wide LACP settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LacpConfig {
    /// With `system`, the System ID the partner sees; lower is preferred.
    pub system_priority: u16,
    /// A stable MAC identifying this host's LACP system.
    pub system: MacAddress,
    /// The operational key shared by every port of the bond.
    pub key: u16,
    pub mode: LacpMode,
    pub rate: LacpRate,
}

impl LacpConfig {
    /// Active, fast rate (so a partner such as Open vSwitch never falls back
    /// to the 30 s rate), default priority, key 1.
    pub fn new(system: MacAddress) -> Self {
        LacpConfig {
            system_priority: DEFAULT_SYSTEM_PRIORITY,
            system,
            key: 1,
            mode: LacpMode::Active,
            rate: LacpRate::Fast,
        }
    }
}

/// One member's LACP identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortConfig {
    /// The member's MAC: source address of the LACPDUs it sends.
    pub mac: MacAddress,
    /// The port number the partner sees; must be non-zero and unique in the bond.
    pub number: u16,
    pub priority: u16,
}

/// System priority used when none is configured (802.1AX's default).
pub const DEFAULT_SYSTEM_PRIORITY: u16 = 32768;
/// Port priority used when none is configured.
pub const DEFAULT_PORT_PRIORITY: u16 = 32768;
