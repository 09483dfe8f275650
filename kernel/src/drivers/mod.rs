//! Device drivers behind the traits the upper layers own.

pub mod intx;
pub mod virtio;
pub mod watchdog;
