//! Thin, documented wrappers over the x86 instructions the kernel uses.

use core::arch::asm;

/// Model-specific registers the kernel touches, named in one place.
pub mod msr {
    pub const IA32_APIC_BASE: u32 = 0x1b;
    pub const IA32_EFER: u32 = 0xc000_0080;
    pub const IA32_GS_BASE: u32 = 0xc000_0101;
    pub const IA32_X2APIC_BASE: u32 = 0x800;
}

/// Writes a byte to an I/O port.
///
/// # Safety
/// The port must belong to a device whose state the caller is allowed to change.
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: the caller owns the device behind `port`.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    }
}

/// Writes a 16-bit word to an I/O port.
///
/// # Safety
/// As [`outb`].
pub unsafe fn outw(port: u16, value: u16) {
    // SAFETY: the caller owns the device behind `port`.
    unsafe {
        asm!("out dx, ax", in("dx") port, in("ax") value, options(nomem, nostack, preserves_flags))
    }
}

/// Writes a 32-bit word to an I/O port.
///
/// # Safety
/// As [`outb`].
pub unsafe fn outl(port: u16, value: u32) {
    // SAFETY: the caller owns the device behind `port`.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags))
    }
}

/// Reads a byte from an I/O port.
///
/// # Safety
/// Reading some ports has side effects; the caller must own the device.
pub unsafe fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: the caller owns the device behind `port`.
    unsafe {
        asm!("in al, dx", out("al") v, in("dx") port, options(nomem, nostack, preserves_flags))
    }
    v
}

/// Reads a 16-bit word from an I/O port.
///
/// # Safety
/// As [`inb`].
pub unsafe fn inw(port: u16) -> u16 {
    let v: u16;
    // SAFETY: the caller owns the device behind `port`.
    unsafe {
        asm!("in ax, dx", out("ax") v, in("dx") port, options(nomem, nostack, preserves_flags))
    }
    v
}

/// Reads a 32-bit word from an I/O port.
///
/// # Safety
/// As [`inb`].
pub unsafe fn inl(port: u16) -> u32 {
    let v: u32;
    // SAFETY: the caller owns the device behind `port`.
    unsafe {
        asm!("in eax, dx", out("eax") v, in("dx") port, options(nomem, nostack, preserves_flags))
    }
    v
}

/// Reads an MSR.
///
/// # Safety
/// The MSR must exist on this CPU (else #GP).
pub unsafe fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the caller guarantees the MSR exists.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Writes an MSR.
///
/// # Safety
/// The MSR must exist and the value must keep the system consistent.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller guarantees the MSR and value are valid.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nostack, preserves_flags))
    }
}

/// CPUID leaf/subleaf → (eax, ebx, ecx, edx).
pub fn cpuid(leaf: u32, subleaf: u32) -> (u32, u32, u32, u32) {
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    (r.eax, r.ebx, r.ecx, r.edx)
}

/// Time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC is unprivileged-safe here (ring 0) and has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// A hardware random number, if the CPU has RDRAND and it delivered one.
pub fn rdrand() -> Option<u64> {
    let (_, _, ecx, _) = cpuid(1, 0);
    if ecx & (1 << 30) == 0 {
        return None;
    }
    for _ in 0..10 {
        let v: u64;
        let ok: u8;
        // SAFETY: CPUID reported RDRAND; it only writes the output registers and CF.
        unsafe {
            asm!("rdrand {v}", "setc {ok}", v = out(reg) v, ok = out(reg_byte) ok, options(nomem, nostack))
        }
        if ok != 0 {
            return Some(v);
        }
    }
    None
}

pub fn read_cr2() -> u64 {
    let v: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) }
    v
}

pub fn read_cr3() -> u64 {
    let v: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)) }
    v
}

/// Reloads CR3, flushing non-global TLB entries.
///
/// # Safety
/// `pml4` must be the physical address of a valid PML4 that maps the running code and stack.
pub unsafe fn write_cr3(pml4: u64) {
    // SAFETY: the caller guarantees the new tables map everything in use.
    unsafe { asm!("mov cr3, {}", in(reg) pml4, options(nostack, preserves_flags)) }
}

/// Invalidates the TLB entry of one page.
pub fn invlpg(addr: u64) {
    // SAFETY: INVLPG only drops a cached translation.
    unsafe { asm!("invlpg [{}]", in(reg) addr, options(nostack, preserves_flags)) }
}

pub fn read_rbp() -> u64 {
    let v: u64;
    // SAFETY: reading RBP has no side effects.
    unsafe { asm!("mov {}, rbp", out(reg) v, options(nomem, nostack, preserves_flags)) }
    v
}

pub fn read_rflags() -> u64 {
    let v: u64;
    // SAFETY: PUSHFQ/POP only touch the stack slot they use.
    unsafe { asm!("pushfq", "pop {}", out(reg) v, options(nomem, preserves_flags)) }
    v
}

/// Disables maskable interrupts on this CPU.
pub fn cli() {
    // SAFETY: masking interrupts cannot break memory safety.
    unsafe { asm!("cli", options(nomem, nostack)) }
}

/// Enables interrupts and halts until one arrives, atomically (the STI
/// shadow covers HLT, so no interrupt is lost between them), then masks them again.
pub fn sti_hlt_cli() {
    // SAFETY: the IDT is loaded before any CPU idles; handlers preserve all state.
    unsafe { asm!("sti", "hlt", "cli", options(nomem, nostack)) }
}

/// Lets interrupts that arrived while they were masked be taken now (after a
/// VM exit for a physical interrupt), then masks them again.
pub fn service_pending_interrupts() {
    // SAFETY: the IDT is loaded; STI takes effect after NOP, so pending
    // interrupts are delivered between NOP and CLI; handlers preserve state.
    unsafe { asm!("sti", "nop", "cli", options(nomem, nostack)) }
}

/// Halts this CPU for good with interrupts masked (NMIs still wake it; the NMI
/// handler returns here).
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: masking interrupts and halting cannot break memory safety.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) }
    }
}

/// Hint to the CPU in spin loops.
pub fn pause() {
    core::hint::spin_loop();
}

/// An XSAVE area large enough for what the CPUs we run on report (AVX-512
/// included), 64-byte aligned; all zero, its header requests init state.
#[repr(C, align(64))]
struct InitXsaveArea([u8; 4096]);

static INIT_XSAVE: InitXsaveArea = InitXsaveArea([0; 4096]);

/// Puts the x87, SSE and AVX registers (and XCR0) of this CPU into their
/// power-on state, so a guest never sees what a previous guest left there.
/// SVM does not switch this state, and the host (soft-float) never uses it.
pub fn reset_extended_state() {
    let (_, _, ecx, _) = cpuid(1, 0);
    let has_xsave = ecx & (1 << 26) != 0;
    if has_xsave {
        let (supported_lo, _, size, supported_hi) = cpuid(0xd, 0);
        let mask = (u64::from(supported_hi) << 32) | u64::from(supported_lo);
        if size as usize <= core::mem::size_of::<InitXsaveArea>() {
            // SAFETY: CPUID reports XSAVE; setting CR4.OSXSAVE enables XSETBV
            // and XRSTOR, XCR0 gets exactly the supported component mask, and
            // XRSTOR reads a 64-byte-aligned static area large enough for
            // that mask whose zero header loads every component's init state.
            unsafe {
                asm!("mov {t}, cr4", "or {t}, {bit}", "mov cr4, {t}", t = out(reg) _, bit = const 1u64 << 18, options(nostack));
                asm!("xsetbv", in("ecx") 0u32, in("eax") mask as u32, in("edx") (mask >> 32) as u32, options(nostack));
                asm!("xrstor [{area}]", area = in(reg) &INIT_XSAVE, in("eax") u32::MAX, in("edx") u32::MAX, options(nostack, readonly));
            }
            return;
        }
    }
    // SAFETY: FNINIT only resets the x87 state.
    unsafe { asm!("fninit", options(nomem, nostack)) }
}

/// One guest's x87/SSE/AVX registers and XCR0 while another guest runs on
/// the same host CPU. Saved and restored only on a vCPU switch: the host
/// itself never touches these registers.
pub struct ExtendedState {
    area: alloc::boxed::Box<InitXsaveArea>,
    xcr0: u64,
    /// Whether `area` holds a saved state (else restoring loads the init state).
    saved: bool,
}

impl core::fmt::Debug for ExtendedState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ExtendedState")
            .field("xcr0", &self.xcr0)
            .field("saved", &self.saved)
            .finish_non_exhaustive()
    }
}

impl Default for ExtendedState {
    fn default() -> Self {
        ExtendedState {
            area: alloc::boxed::Box::new(InitXsaveArea([0; 4096])),
            xcr0: 1,
            saved: false,
        }
    }
}

/// The XSAVE components this CPU supports, if XSAVE is usable with our area.
fn xsave_mask() -> Option<u64> {
    let (_, _, ecx, _) = cpuid(1, 0);
    if ecx & (1 << 26) == 0 {
        return None;
    }
    let (lo, _, size, hi) = cpuid(0xd, 0);
    (size as usize <= core::mem::size_of::<InitXsaveArea>())
        .then_some((u64::from(hi) << 32) | u64::from(lo))
}

impl ExtendedState {
    /// Saves this CPU's extended registers and XCR0 (the guest's, which SVM
    /// leaves live). Without XSAVE the CPU only has what `fninit` resets, and
    /// nothing is kept.
    pub fn save(&mut self) {
        let Some(mask) = xsave_mask() else { return };
        // SAFETY: XSAVE is supported and CR4.OSXSAVE was set when this CPU's
        // first guest started (`reset_extended_state`); XGETBV(0) reads XCR0.
        // XCR0 is widened to every supported component before XSAVE so SSE
        // state is kept even if the guest left XCR0 at x87 only; the area is
        // 64-byte aligned, large enough for `mask` and exclusively borrowed.
        unsafe {
            let (lo, hi): (u32, u32);
            asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi, options(nomem, nostack));
            self.xcr0 = (u64::from(hi) << 32) | u64::from(lo);
            asm!("xsetbv", in("ecx") 0u32, in("eax") mask as u32, in("edx") (mask >> 32) as u32, options(nostack));
            asm!("xsave [{area}]", area = in(reg) &mut *self.area, in("eax") mask as u32, in("edx") (mask >> 32) as u32, options(nostack));
        }
        self.saved = true;
    }

    /// Loads what `save` kept, or the power-on state if nothing was saved.
    pub fn restore(&self) {
        if !self.saved {
            reset_extended_state();
            return;
        }
        let Some(mask) = xsave_mask() else { return };
        // SAFETY: as in `save`; the area was written by XSAVE with the same
        // mask on a CPU of the same model, so XRSTOR accepts its header, and
        // `xcr0` was a value this guest had loaded, so XSETBV accepts it.
        unsafe {
            asm!("xsetbv", in("ecx") 0u32, in("eax") mask as u32, in("edx") (mask >> 32) as u32, options(nostack));
            asm!("xrstor [{area}]", area = in(reg) &*self.area, in("eax") mask as u32, in("edx") (mask >> 32) as u32, options(nostack, readonly));
            asm!("xsetbv", in("ecx") 0u32, in("eax") self.xcr0 as u32, in("edx") (self.xcr0 >> 32) as u32, options(nostack));
        }
    }
}

/// Whether the CPU has the x2APIC.
pub fn has_x2apic() -> bool {
    cpuid(1, 0).2 & (1 << 21) != 0
}

/// Whether the CPU reports AMD SVM (CPUID 8000_0001h ECX bit 2).
pub fn has_svm() -> bool {
    cpuid(0x8000_0001, 0).2 & (1 << 2) != 0
}

/// Whether the CPU reports Intel VMX (CPUID 1 ECX bit 5).
pub fn has_vmx() -> bool {
    cpuid(1, 0).2 & (1 << 5) != 0
}

/// The CPU's brand string (CPUID 8000_0002h..4h).
pub fn brand_string(out: &mut [u8; 48]) -> &str {
    for (i, leaf) in (0x8000_0002u32..=0x8000_0004).enumerate() {
        let (a, b, c, d) = cpuid(leaf, 0);
        for (j, reg) in [a, b, c, d].iter().enumerate() {
            let at = i * 16 + j * 4;
            out[at..at + 4].copy_from_slice(&reg.to_le_bytes());
        }
    }
    let end = out.iter().position(|&b| b == 0).unwrap_or(out.len());
    core::str::from_utf8(&out[..end]).unwrap_or("?").trim()
}
