//! The host's network layer: the NIC trait drivers implement, and the host IP
//! interfaces built on `smoltcp`. VLANs, LACP bonds and the virtual switch
//! build on the same NIC trait.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod nic;

pub use nic::{MacAddress, Nic, NicError};
