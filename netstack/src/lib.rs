//! The host's network layer: the NIC trait drivers implement ([`nic`]), wire
//! formats ([`wire`]: Ethernet, 802.1Q, LACPDU, Marker), the 802.1AX LACP
//! state machines ([`lacp`]), bonds that are themselves NICs ([`bond`]), and
//! the host IP interfaces built on `smoltcp` ([`iface`]), the learning
//! 802.1Q virtual switch that joins uplink, guest VIFs and host interfaces
//! ([`switch`]). With the `hosted` feature, [`hosted`] adds a
//! Linux packet-socket NIC for tests against real peers.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;
// The hosted adapter runs on Linux; in test builds std is there already.
#[cfg(all(feature = "hosted", not(test)))]
extern crate std;

pub mod bond;
pub mod device;
pub mod host_networks;
#[cfg(feature = "hosted")]
pub mod hosted;
pub mod iface;
pub mod lacp;
pub mod nic;
pub mod switch;
pub mod uplink;
pub mod wire;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod tests;

pub use device::{DeviceStats, NicDevice};
pub use host_networks::{HostNetworks, NetworkConfig};
pub use iface::{HostInterface, IpConfig};
pub use nic::{MacAddress, Nic, NicError};
pub use uplink::Uplink;
