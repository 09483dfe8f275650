//! Host configuration: first-boot settings of one host.
//!
//! An operator writes TOML; the host tool (`host-config`, `std` feature)
//! validates it and compiles it into a compact boot module that the appliance
//! decodes at boot (`no_std`).
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod schema;

pub use schema::{HostConfig, IpMode, Management, StaticIpv4};
