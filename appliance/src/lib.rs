//! The appliance: everything in the host image above the kernel.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod app;
pub mod health;
pub mod http;
pub mod platform;
pub mod routes;
pub mod server;

#[cfg(test)]
mod test_client;

pub use app::Appliance;
