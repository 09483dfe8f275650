//! What the appliance needs from the machine it runs on. The image implements
//! this over the kernel (`src/main.rs`); hosted tests implement it over `std`.

use core::time::Duration;

/// Facts about the machine for `/health` and, later, `host` records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemInfo {
    /// CPUs that were brought up and are running.
    pub cpus: u32,
    /// Usable RAM in bytes.
    pub memory_total: u64,
    /// RAM not yet allocated, in bytes.
    pub memory_free: u64,
}

/// The machine under the appliance.
pub trait Platform {
    /// Monotonic time since boot.
    fn now(&self) -> Duration;

    /// Seconds since the Unix epoch, if the platform knows the date (for
    /// XenAPI datetimes). Without it, datetimes count from the epoch at boot.
    fn unix_time(&self) -> Option<u64> {
        None
    }

    /// Current CPU and memory figures.
    fn system_info(&self) -> SystemInfo;

    /// Fills `buf` with unpredictable bytes (seeds, nonces, DHCP transaction ids).
    fn fill_random(&mut self, buf: &mut [u8]);

    /// Waits until something may have happened (an interrupt) or until
    /// `deadline` (time since boot) passes; `None` waits for the next event.
    fn idle(&mut self, deadline: Option<Duration>);
}
