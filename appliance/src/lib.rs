//! The appliance: everything in the host image above the kernel.
#![cfg_attr(not(any(test, feature = "hosted")), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod app;
pub mod health;
#[cfg(feature = "hosted")]
pub mod hosted;
pub mod http;
pub mod iscsi;
pub mod local_disks;
pub mod platform;
pub mod routes;
pub mod server;
pub mod state_store;
pub mod tls;
pub mod xenapi;

#[cfg(test)]
mod test_client;

pub use app::Appliance;
