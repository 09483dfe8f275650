//! The local APIC, in x2APIC mode (MSRs) when the CPU has it, else xAPIC (MMIO).
//! Used for the per-CPU one-shot timer, IPIs (including INIT/SIPI start-up)
//! and EOIs.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::cpu::{self, msr};
use super::idt::vector;

/// Register offsets (xAPIC MMIO offset; the x2APIC MSR is 0x800 + offset/16).
mod reg {
    pub const ID: u32 = 0x20;
    pub const TPR: u32 = 0x80;
    pub const EOI: u32 = 0xb0;
    pub const SVR: u32 = 0xf0;
    pub const ESR: u32 = 0x280;
    pub const ICR_LOW: u32 = 0x300;
    pub const ICR_HIGH: u32 = 0x310;
    pub const LVT_TIMER: u32 = 0x320;
    pub const LVT_LINT0: u32 = 0x350;
    pub const LVT_LINT1: u32 = 0x360;
    pub const LVT_ERROR: u32 = 0x370;
    pub const TIMER_INITIAL: u32 = 0x380;
    pub const TIMER_CURRENT: u32 = 0x390;
    pub const TIMER_DIVIDE: u32 = 0x3e0;
}

const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;
const SVR_ENABLE: u32 = 1 << 8;
const LVT_MASKED: u32 = 1 << 16;
const ICR_DELIVERY_PENDING: u32 = 1 << 12;
const ICR_LEVEL_ASSERT: u32 = 1 << 14;
const ICR_INIT: u32 = 0b101 << 8;
const ICR_STARTUP: u32 = 0b110 << 8;
const ICR_NMI: u32 = 0b100 << 8;
const ICR_ALL_EXCLUDING_SELF: u32 = 0b11 << 18;
/// Divide configuration value for "divide by 16".
const TIMER_DIVIDE_16: u32 = 0b0011;

static X2APIC: AtomicBool = AtomicBool::new(false);
/// Virtual address of the xAPIC registers (direct map), when not in x2APIC mode.
static XAPIC_BASE: AtomicU64 = AtomicU64::new(0);

fn read(r: u32) -> u32 {
    if X2APIC.load(Ordering::Relaxed) {
        // SAFETY: x2APIC mode is enabled on this CPU, so its register MSRs exist.
        unsafe { cpu::rdmsr(msr::IA32_X2APIC_BASE + (r >> 4)) as u32 }
    } else {
        let base = XAPIC_BASE.load(Ordering::Relaxed);
        // SAFETY: `base` maps the 4 KiB xAPIC register page (set in `init_bsp`),
        // and `r` is one of the aligned 32-bit register offsets above.
        unsafe { core::ptr::read_volatile((base + u64::from(r)) as *const u32) }
    }
}

fn write(r: u32, v: u32) {
    if X2APIC.load(Ordering::Relaxed) {
        // SAFETY: as in `read`; the values written are valid register contents.
        unsafe { cpu::wrmsr(msr::IA32_X2APIC_BASE + (r >> 4), u64::from(v)) }
    } else {
        let base = XAPIC_BASE.load(Ordering::Relaxed);
        // SAFETY: as in `read`.
        unsafe { core::ptr::write_volatile((base + u64::from(r)) as *mut u32, v) }
    }
}

/// Chooses the mode from CPUID and enables the BSP's APIC. `phys_to_virt`
/// maps the xAPIC page.
pub fn init_bsp(phys_to_virt: fn(u64) -> u64) -> bool {
    let x2 = cpu::has_x2apic();
    X2APIC.store(x2, Ordering::Relaxed);
    // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU.
    let base = unsafe { cpu::rdmsr(msr::IA32_APIC_BASE) };
    XAPIC_BASE.store(
        phys_to_virt(base & 0x000f_ffff_ffff_f000),
        Ordering::Relaxed,
    );
    init_this_cpu();
    x2
}

/// Enables the calling CPU's APIC in the mode chosen by `init_bsp`: software
/// enable, spurious vector, LVTs masked, timer one-shot and masked, TPR 0.
pub fn init_this_cpu() {
    // SAFETY: IA32_APIC_BASE exists; setting the enable (and x2APIC) bit is the
    // architected way to turn the APIC on, and the base address is unchanged.
    unsafe {
        let mut base = cpu::rdmsr(msr::IA32_APIC_BASE) | APIC_BASE_ENABLE;
        if X2APIC.load(Ordering::Relaxed) {
            base |= APIC_BASE_X2APIC;
        }
        cpu::wrmsr(msr::IA32_APIC_BASE, base);
    }
    write(reg::TPR, 0);
    write(reg::LVT_LINT0, LVT_MASKED);
    write(reg::LVT_LINT1, LVT_MASKED);
    write(reg::LVT_ERROR, LVT_MASKED);
    write(reg::TIMER_DIVIDE, TIMER_DIVIDE_16);
    write(reg::LVT_TIMER, LVT_MASKED | u32::from(vector::TIMER));
    write(reg::SVR, SVR_ENABLE | u32::from(vector::SPURIOUS));
    write(reg::ESR, 0);
    eoi();
}

/// The calling CPU's APIC ID.
pub fn id() -> u32 {
    let v = read(reg::ID);
    if X2APIC.load(Ordering::Relaxed) {
        v
    } else {
        v >> 24
    }
}

/// Signals end of interrupt.
pub fn eoi() {
    write(reg::EOI, 0);
}

/// Starts the timer counting down from `ticks` (bus clock / 16) with the timer
/// interrupt unmasked; it fires once.
pub fn timer_oneshot(ticks: u32) {
    write(reg::LVT_TIMER, u32::from(vector::TIMER));
    write(reg::TIMER_INITIAL, ticks.max(1));
}

/// Starts a free-running countdown with the interrupt masked (for calibration).
pub fn timer_start_masked() {
    write(reg::LVT_TIMER, LVT_MASKED | u32::from(vector::TIMER));
    write(reg::TIMER_INITIAL, u32::MAX);
}

pub fn timer_current() -> u32 {
    read(reg::TIMER_CURRENT)
}

pub fn timer_stop() {
    write(reg::TIMER_INITIAL, 0);
}

fn send_icr(dest: u32, low: u32) {
    if X2APIC.load(Ordering::Relaxed) {
        let v = (u64::from(dest) << 32) | u64::from(low);
        // SAFETY: x2APIC mode is on; the ICR MSR (0x830) takes destination and command together.
        unsafe { cpu::wrmsr(msr::IA32_X2APIC_BASE + (reg::ICR_LOW >> 4), v) }
    } else {
        while read(reg::ICR_LOW) & ICR_DELIVERY_PENDING != 0 {
            cpu::pause();
        }
        write(reg::ICR_HIGH, dest << 24);
        write(reg::ICR_LOW, low);
        while read(reg::ICR_LOW) & ICR_DELIVERY_PENDING != 0 {
            cpu::pause();
        }
    }
}

/// Sends a fixed interrupt with `vector` to the CPU with APIC ID `dest`.
pub fn send_ipi(dest: u32, vector: u8) {
    send_icr(dest, ICR_LEVEL_ASSERT | u32::from(vector));
}

/// Sends an NMI to every other CPU.
pub fn send_nmi_all_but_self() {
    send_icr(0, ICR_ALL_EXCLUDING_SELF | ICR_LEVEL_ASSERT | ICR_NMI);
}

/// INIT IPI to `dest` (first step of AP start-up).
pub fn send_init(dest: u32) {
    send_icr(dest, ICR_LEVEL_ASSERT | ICR_INIT);
}

/// Start-up IPI to `dest`: the AP begins in real mode at `page << 12`.
pub fn send_startup(dest: u32, page: u8) {
    send_icr(dest, ICR_STARTUP | u32::from(page));
}
