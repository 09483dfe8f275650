//! What connects a host's switch to the wire: one NIC or a bond of them.

use alloc::boxed::Box;
use alloc::vec::Vec;

use smoltcp::time::Instant;

use crate::bond::Bond;
use crate::nic::{MacAddress, Nic, NicError};

/// A switch uplink: a single NIC or a bond.
#[derive(Debug, Default)]
pub enum Uplink<N: Nic> {
    Nic(N),
    /// Boxed: a bond holds its members and their LACP state.
    Bond(Box<Bond<N>>),
    /// No NIC: the uplink port leads nowhere (its link is down, what is sent
    /// to it is dropped). What stands in the uplink's place while it is
    /// rebuilt from its NICs ([`crate::HostNetworks::replace_uplink_with`]).
    #[default]
    Detached,
}

impl<N: Nic> Uplink<N> {
    /// Runs the bond's timers (LACP, carrier, rebalancing); a single NIC has
    /// none. Returns when to call again.
    pub fn poll(&mut self, now: Instant) -> Option<Instant> {
        match self {
            Uplink::Nic(_) | Uplink::Detached => None,
            Uplink::Bond(bond) => bond.poll(now),
        }
    }

    /// When [`Uplink::poll`] is due because of frames received since.
    pub fn poll_at(&self) -> Option<Instant> {
        match self {
            Uplink::Nic(_) | Uplink::Detached => None,
            Uplink::Bond(bond) => bond.poll_at(),
        }
    }

    /// The bond, when the uplink is one.
    pub fn bond(&self) -> Option<&Bond<N>> {
        match self {
            Uplink::Nic(_) | Uplink::Detached => None,
            Uplink::Bond(bond) => Some(bond),
        }
    }

    pub fn bond_mut(&mut self) -> Option<&mut Bond<N>> {
        match self {
            Uplink::Nic(_) | Uplink::Detached => None,
            Uplink::Bond(bond) => Some(bond),
        }
    }

    /// The NICs the uplink is made of (a bond's members in order), and
    /// nothing for a detached one.
    pub fn into_nics(self) -> Vec<N> {
        match self {
            Uplink::Nic(n) => alloc::vec![n],
            Uplink::Bond(bond) => bond.into_members(),
            Uplink::Detached => Vec::new(),
        }
    }
}

impl<N: Nic> Nic for Uplink<N> {
    fn mac(&self) -> MacAddress {
        match self {
            Uplink::Nic(n) => n.mac(),
            Uplink::Bond(b) => b.mac(),
            Uplink::Detached => MacAddress::default(),
        }
    }
    fn mtu(&self) -> usize {
        match self {
            Uplink::Nic(n) => n.mtu(),
            Uplink::Bond(b) => b.mtu(),
            Uplink::Detached => 0,
        }
    }
    fn link_up(&self) -> bool {
        match self {
            Uplink::Nic(n) => n.link_up(),
            Uplink::Bond(b) => b.link_up(),
            Uplink::Detached => false,
        }
    }
    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<usize>, NicError> {
        match self {
            Uplink::Nic(n) => n.receive(buf),
            Uplink::Bond(b) => b.receive(buf),
            Uplink::Detached => Ok(None),
        }
    }
    fn can_transmit(&mut self) -> bool {
        match self {
            Uplink::Nic(n) => n.can_transmit(),
            Uplink::Bond(b) => b.can_transmit(),
            Uplink::Detached => false,
        }
    }
    fn transmit(&mut self, frame: &[u8]) -> Result<(), NicError> {
        match self {
            Uplink::Nic(n) => n.transmit(frame),
            Uplink::Bond(b) => b.transmit(frame),
            Uplink::Detached => Err(NicError::LinkDown),
        }
    }
}
