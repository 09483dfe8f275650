//! The host's network layer: the NIC trait drivers implement, and the host IP
//! interfaces built on `smoltcp`. VLANs, LACP bonds and the virtual switch
//! build on the same NIC trait.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;
// The hosted adapter runs on Linux; in test builds std is there already.
#[cfg(all(feature = "hosted", not(test)))]
extern crate std;

pub mod bond;
pub mod device;
#[cfg(feature = "hosted")]
pub mod hosted;
pub mod iface;
pub mod lacp;
pub mod nic;
pub mod wire;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod tests;

pub use device::{DeviceStats, NicDevice};
pub use iface::{HostInterface, IpConfig};
pub use nic::{MacAddress, Nic, NicError};
