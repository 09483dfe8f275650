//! keel's library OS: boot, memory, interrupts, SMP, ACPI, PCI and drivers,
//! linked with the appliance into the host image. Later: the hypervisor.
//!
//! Hardware code only builds for `target_os = "none"`; the pure parts (boot
//! information, frame bitmap, command line, `_S5` scan) also build on the
//! host, where their unit tests run.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod acpi_s5;
pub mod bootinfo;
pub mod cmdline;
pub mod cpio;
pub mod hv;
pub mod le;
pub mod mem;
pub mod tco;

#[cfg(target_os = "none")]
pub mod acpi;
#[cfg(target_os = "none")]
pub mod arch;
#[cfg(target_os = "none")]
mod backtrace;
#[cfg(target_os = "none")]
pub mod drivers;
#[cfg(target_os = "none")]
pub mod entropy;
#[cfg(target_os = "none")]
mod logger;
#[cfg(target_os = "none")]
mod panic;
#[cfg(target_os = "none")]
pub mod pci;
#[cfg(target_os = "none")]
pub mod percpu;
#[cfg(target_os = "none")]
pub mod power;
#[cfg(target_os = "none")]
pub mod sched;
#[cfg(target_os = "none")]
pub mod serial;
#[cfg(target_os = "none")]
pub mod smp;
#[cfg(target_os = "none")]
pub mod time;

#[cfg(target_os = "none")]
mod boot;
#[cfg(target_os = "none")]
pub use boot::{Boot, cpus_online, fill_random, idle, memory, now};

/// Declares the image's main function, which the kernel calls on the BSP once
/// the machine is up: `kernel::entry_point!(main); fn main(boot: kernel::Boot) -> !`.
#[macro_export]
macro_rules! entry_point {
    ($main:path) => {
        #[unsafe(export_name = "keel_main")]
        extern "Rust" fn __keel_main(boot: $crate::Boot) -> ! {
            $main(boot)
        }
    };
}
