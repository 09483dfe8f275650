//! virtio devices for guests, device side (virtio 1.x, modern PCI transport,
//! split virtqueues). A device model implements [`VirtioDevice`]; the
//! transport ([`pci::VirtioPci`]) owns feature negotiation, status, queues
//! and MSI-X, so the models are plain Rust over the checked guest memory.

pub mod blk;
pub mod fuzz;
pub mod net;
pub mod pci;
pub mod queue;
pub mod rng;

use crate::hv::memory::GuestMemory;
pub use queue::{Chain, Queue, QueueError};

/// Chains a device serves per queue per `process` call: what is left waits
/// for the next call, so the host never holds the VM's memory and board
/// for long (the transport keeps the queue marked while buffers remain).
pub const BATCH: u16 = 16;

/// Feature bits common to every device.
pub const F_VERSION_1: u64 = 1 << 32;

/// Device status bits (§2.1).
pub mod status {
    pub const ACKNOWLEDGE: u8 = 1;
    pub const DRIVER: u8 = 2;
    pub const DRIVER_OK: u8 = 4;
    pub const FEATURES_OK: u8 = 8;
    pub const DEVICE_NEEDS_RESET: u8 = 64;
    pub const FAILED: u8 = 128;
}

/// Device IDs (§5).
pub const ID_NET: u16 = 1;
pub const ID_BLOCK: u16 = 2;
pub const ID_RNG: u16 = 4;

/// Copies the window at `offset` of a device's configuration structure
/// `config` into `data`; bytes past its end read as zero.
pub fn read_config_window(config: &[u8], offset: u64, data: &mut [u8]) {
    for (i, b) in data.iter_mut().enumerate() {
        *b = usize::try_from(offset + i as u64)
            .ok()
            .and_then(|at| config.get(at).copied())
            .unwrap_or(0);
    }
}

/// One device type's behaviour behind the transport.
pub trait VirtioDevice: Send + core::fmt::Debug {
    /// The virtio device ID (PCI device ID 0x1040 + this).
    fn device_id(&self) -> u16;
    /// PCI class code (`class << 16 | subclass << 8 | prog_if`).
    fn class(&self) -> u32;
    /// Device-specific feature bits offered (the transport adds `F_VERSION_1`).
    fn features(&self) -> u64;
    fn num_queues(&self) -> u16;
    /// Reads of the device-specific configuration structure.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes to it (most devices' config is read-only).
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    /// The driver accepted `features` (FEATURES_OK was granted).
    fn activate(&mut self, _features: u64) {}
    /// Takes what the driver made available on queue `index` and returns
    /// used buffers. `Ok(true)`: something was used (the driver may want an
    /// interrupt). `Err`: the guest broke the protocol; the device needs a reset.
    fn process(
        &mut self,
        index: u16,
        queue: &mut Queue,
        mem: &mut GuestMemory<'_>,
    ) -> Result<bool, QueueError>;
    /// Queues (bit per queue) the device has work for without a notify:
    /// frames waiting for a network device's receive queue.
    fn pending(&self) -> u64 {
        0
    }
    /// The driver reset the device.
    fn reset(&mut self) {}
}
