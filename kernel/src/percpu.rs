//! Per-CPU data, found through the GS base register.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crate::arch::x86_64::cpu::{self, msr};

/// What each CPU knows about itself. `self_ptr` must stay first: `current()`
/// reads it at `gs:[0]`.
#[repr(C)]
pub struct PerCpu {
    self_ptr: *const PerCpu,
    pub index: u32,
    pub apic_id: u32,
    pub stack_bottom: u64,
    pub stack_top: u64,
    pub online: AtomicBool,
    pub ipis: AtomicU64,
}

impl core::fmt::Debug for PerCpu {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PerCpu")
            .field("index", &self.index)
            .field("apic_id", &self.apic_id)
            .finish_non_exhaustive()
    }
}

// SAFETY: `self_ptr` is only a back-pointer to the same immutable-after-setup
// structure; the mutable fields are atomics or behind a lock.
unsafe impl Sync for PerCpu {}
// SAFETY: as above.
unsafe impl Send for PerCpu {}

impl PerCpu {
    pub const fn new(index: u32, apic_id: u32, stack_bottom: u64, stack_top: u64) -> PerCpu {
        PerCpu {
            self_ptr: core::ptr::null(),
            index,
            apic_id,
            stack_bottom,
            stack_top,
            online: AtomicBool::new(false),
            ipis: AtomicU64::new(0),
        }
    }
}

static GS_READY: AtomicU32 = AtomicU32::new(0);

/// Makes `p` the calling CPU's per-CPU block.
pub fn install(p: &'static mut PerCpu) {
    p.self_ptr = p as *const PerCpu;
    // SAFETY: IA32_GS_BASE exists on x86_64; `p` is 'static, so `gs:[0]` stays valid.
    unsafe { cpu::wrmsr(msr::IA32_GS_BASE, p as *const PerCpu as u64) };
    GS_READY.fetch_add(1, Ordering::Release);
}

/// The calling CPU's block, or `None` before `install` ran on the BSP.
pub fn current() -> Option<&'static PerCpu> {
    if GS_READY.load(Ordering::Acquire) == 0 {
        return None;
    }
    let p: *const PerCpu;
    // SAFETY: once any CPU installed its block, every CPU running kernel code
    // has done so too (APs install before logging); gs:[0] holds `self_ptr`.
    unsafe {
        core::arch::asm!("mov {}, gs:[0]", out(reg) p, options(nostack, readonly, preserves_flags))
    };
    // SAFETY: `self_ptr` points to a 'static PerCpu.
    unsafe { p.as_ref() }
}

/// Index of the calling CPU (0 = BSP).
pub fn index() -> u32 {
    current().map_or(0, |p| p.index)
}
