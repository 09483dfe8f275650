//! The bond's side of LACP: its member ports, the selection logic that puts
//! ports facing the same partner system and key on one aggregator, and the
//! `Ready` condition that holds a new aggregator back until every member
//! joining it has waited its [`super::AGGREGATE_WAIT_TIME`].
//!
//! Like Linux bonding and Open vSwitch, a bond has one active aggregator:
//! ports facing any other partner are kept in standby.

use alloc::vec::Vec;

use smoltcp::time::Instant;

use super::{LacpConfig, LacpPort, PortConfig, Selected};
use crate::MacAddress;
use crate::wire::{LacpduRepr, WireError};

/// What a set of aggregatable links has in common: the partner system and key
/// (the actor side is the same for the whole bond). An individual link (one
/// side not aggregatable) gets an aggregator of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LagId {
    pub partner_system_priority: u16,
    pub partner_system: MacAddress,
    pub partner_key: u16,
    /// The port index, for an individual link.
    pub individual: Option<usize>,
}

/// LACP for one bond.
#[derive(Debug, Clone)]
pub struct Lacp {
    config: LacpConfig,
    ports: Vec<LacpPort>,
    aggregator: Option<LagId>,
}

impl Lacp {
    pub fn new(config: LacpConfig) -> Self {
        Lacp {
            config,
            ports: Vec::new(),
            aggregator: None,
        }
    }

    pub fn config(&self) -> &LacpConfig {
        &self.config
    }

    /// Adds a member port (without carrier until [`Lacp::on_carrier`]); returns its index.
    pub fn add_port(&mut self, port: PortConfig) -> usize {
        self.ports.push(LacpPort::new(&self.config, port));
        self.ports.len() - 1
    }

    pub fn ports(&self) -> &[LacpPort] {
        &self.ports
    }

    pub fn port(&self, index: usize) -> Option<&LacpPort> {
        self.ports.get(index)
    }

    /// The partner system and key traffic is aggregated towards, if any.
    pub fn aggregator(&self) -> Option<LagId> {
        self.aggregator
    }

    /// Whether member `index` carries traffic (collecting and distributing).
    pub fn is_distributing(&self, index: usize) -> bool {
        self.ports.get(index).is_some_and(LacpPort::is_distributing)
    }

    pub fn is_collecting(&self, index: usize) -> bool {
        self.ports.get(index).is_some_and(LacpPort::is_collecting)
    }

    /// Carrier changed on member `index`.
    pub fn on_carrier(&mut self, now: Instant, index: usize, up: bool) {
        if let Some(port) = self.ports.get_mut(index) {
            port.on_carrier(now, up);
        }
    }

    /// A slow-protocols payload arrived on member `index`. Malformed PDUs are
    /// counted on the port and reported.
    pub fn on_slow_protocols(
        &mut self,
        now: Instant,
        index: usize,
        payload: &[u8],
    ) -> Result<(), WireError> {
        match self.ports.get_mut(index) {
            Some(port) => port.on_slow_protocols(now, payload),
            None => Ok(()),
        }
    }

    /// A parsed LACPDU arrived on member `index`.
    pub fn on_pdu(&mut self, now: Instant, index: usize, pdu: &LacpduRepr) {
        if let Some(port) = self.ports.get_mut(index) {
            port.on_pdu(now, pdu);
        }
    }

    /// Changes the bond's key, as when an operator reconfigures it: every
    /// port detaches and rejoins under the new key.
    pub fn set_key(&mut self, key: u16) {
        self.config.key = key;
        for port in &mut self.ports {
            port.set_key(key);
        }
    }

    /// Runs every machine of every member; frames to send come out through
    /// `tx(member index, frame)`. Returns when to poll next.
    pub fn poll(&mut self, now: Instant, tx: &mut impl FnMut(usize, &[u8])) -> Option<Instant> {
        for port in &mut self.ports {
            port.poll_receive(now);
        }
        // Let ports a PDU unselected reach DETACHED before they are selected
        // again, so a partner change always goes through WAITING.
        let ready = self.ready(now);
        for port in &mut self.ports {
            port.poll_mux(now, ready);
        }
        self.select();
        let ready = self.ready(now);
        for port in &mut self.ports {
            port.poll_mux(now, ready);
        }
        let mut next: Option<Instant> = None;
        for (index, port) in self.ports.iter_mut().enumerate() {
            port.poll_transmit(now, &mut |frame| tx(index, frame));
            if let Some(t) = port.deadline(now) {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        next
    }

    fn lag_id(index: usize, port: &LacpPort) -> LagId {
        use crate::wire::LacpState;
        let partner = port.partner();
        let aggregatable = port.actor().state.has(LacpState::AGGREGATION)
            && partner.state.has(LacpState::AGGREGATION);
        LagId {
            partner_system_priority: partner.system_priority,
            partner_system: partner.system,
            partner_key: partner.key,
            individual: (!aggregatable).then_some(index),
        }
    }

    /// The selection logic. The active aggregator stays while any port still
    /// faces it; otherwise the partner with the most ports (then the lowest
    /// port index) wins. Only a DETACHED port is given a new selection.
    fn select(&mut self) {
        let faces = |lag: LagId| {
            self.ports
                .iter()
                .enumerate()
                .filter(|(i, p)| p.has_partner() && Self::lag_id(*i, p) == lag)
                .count()
        };
        if self.aggregator.is_none_or(|lag| faces(lag) == 0) {
            self.aggregator = self
                .ports
                .iter()
                .enumerate()
                .filter(|(_, p)| p.has_partner())
                .map(|(i, p)| (i, Self::lag_id(i, p)))
                .min_by_key(|(i, lag)| (core::cmp::Reverse(faces(*lag)), *i))
                .map(|(_, lag)| lag);
            if let Some(lag) = self.aggregator {
                log::info!(
                    "lacp: aggregating towards {} key {}",
                    lag.partner_system,
                    lag.partner_key
                );
            }
        }
        let aggregator = self.aggregator;
        for (i, port) in self.ports.iter_mut().enumerate() {
            let wanted = if !port.has_partner() {
                Selected::Unselected
            } else if Some(Self::lag_id(i, port)) == aggregator {
                Selected::Selected
            } else {
                Selected::Standby
            };
            let detached = port.mux_state() == super::MuxState::Detached;
            if wanted == Selected::Unselected || port.selected != Selected::Unselected || detached {
                port.selected = wanted;
            }
        }
    }

    /// 802.1AX `Ready`: every port selected for the aggregator and waiting
    /// has finished its wait.
    fn ready(&self, now: Instant) -> bool {
        self.ports
            .iter()
            .filter(|p| {
                p.selected() == Selected::Selected && p.mux_state() == super::MuxState::Waiting
            })
            .all(|p| p.waited(now))
    }
}
