//! The host's storage layer. It owns the [`BlockDevice`] trait that the
//! kernel's disk drivers, iSCSI LUNs and (hosted) files implement.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod block;

pub use block::{BlockDevice, BlockError};
