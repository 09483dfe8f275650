//! x86_64: everything that names registers or instructions lives here.

pub mod apic;
pub mod boot;
pub mod cpu;
pub mod gdt;
pub mod idt;
pub mod ioapic;
pub mod npt;
pub mod pic;
pub mod svm;
pub mod trampoline;
pub mod trap;
