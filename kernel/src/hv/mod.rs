//! The hypervisor: what a VM is made of and how its exits are handled,
//! independent of SVM or VMX (the backends live in `arch::x86_64`).

pub mod acpi;
pub mod cpuid;
pub mod devices;
pub mod elf;
pub mod exit;
pub mod hermit;
pub mod linux;
pub mod longmode;
pub mod memory;
pub mod mmio;
pub mod pci;
pub mod profile;
pub mod ramdisk;
pub mod string_io;
pub mod virtio;
#[cfg(target_os = "none")]
pub mod vm;

pub use exit::{Exception, GuestRegs, Segment, Vcpu, VmExit};
pub use memory::{GuestAddress, GuestMemory};
