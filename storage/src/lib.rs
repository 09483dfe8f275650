//! The host's storage layer. It owns the [`BlockDevice`] trait that the
//! kernel's disk drivers, iSCSI LUNs and (hosted) files implement, the
//! iSCSI initiator with its SCSI command layer, storage repositories with
//! their virtual disks ([`sr`]), and the appliance's configuration store
//! ([`config_store`]) on a crash-safe [`journal`].
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(all(feature = "std", not(target_os = "none")))]
extern crate std;

pub mod block;
pub mod channel;
pub mod config_store;
#[cfg(test)]
mod crash;
pub mod fuzz;
pub mod iscsi;
pub mod journal;
pub mod mem;
pub mod region;
pub mod scsi;
pub mod sr;
pub mod staged;

pub use block::{BlockDevice, BlockError};
#[cfg(all(feature = "std", not(target_os = "none")))]
pub mod file;
