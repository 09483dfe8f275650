//! AMD SVM backend: per-CPU enable, the VMCB, and the VMRUN entry/exit path.
//! It implements `hv::Vcpu`; exit handling above it never sees the VMCB.

use core::arch::global_asm;

use super::cpu::{self, msr};
use crate::hv::exit::{Exception, GuestRegs, Vcpu, VmExit};
use crate::hv::longmode::{CODE_SELECTOR, DATA_SELECTOR, LongModeEntry};
use crate::mem;

/// SVM MSRs.
mod svm_msr {
    pub const VM_CR: u32 = 0xc001_0114;
    pub const VM_HSAVE_PA: u32 = 0xc001_0117;
    pub const VM_CR_SVMDIS: u64 = 1 << 4;
}

const EFER_SVME: u64 = 1 << 12;
const EFER_LMA: u64 = 1 << 10;

/// VMCB offsets (AMD APM vol. 2, appendix B).
mod vmcb {
    pub const INTERCEPT_CR: usize = 0x000;
    pub const INTERCEPT_EXCEPTIONS: usize = 0x008;
    pub const INTERCEPT_MISC1: usize = 0x00c;
    pub const INTERCEPT_MISC2: usize = 0x010;
    pub const IOPM_BASE: usize = 0x040;
    pub const MSRPM_BASE: usize = 0x048;
    pub const TSC_OFFSET: usize = 0x050;
    pub const GUEST_ASID: usize = 0x058;
    pub const TLB_CONTROL: usize = 0x05c;
    pub const VINTR: usize = 0x060;
    pub const INTERRUPT_SHADOW: usize = 0x068;
    pub const EXIT_CODE: usize = 0x070;
    pub const EXIT_INFO1: usize = 0x078;
    pub const EXIT_INFO2: usize = 0x080;
    pub const EXIT_INT_INFO: usize = 0x088;
    pub const NP_ENABLE: usize = 0x090;
    pub const EVENT_INJ: usize = 0x0a8;
    pub const N_CR3: usize = 0x0b0;
    pub const CLEAN_BITS: usize = 0x0c0;

    // State save area: segments are {selector u16, attrib u16, limit u32, base u64}.
    pub const ES: usize = 0x400;
    pub const CS: usize = 0x410;
    pub const SS: usize = 0x420;
    pub const DS: usize = 0x430;
    pub const FS: usize = 0x440;
    pub const GS: usize = 0x450;
    pub const GDTR: usize = 0x460;
    pub const LDTR: usize = 0x470;
    pub const IDTR: usize = 0x480;
    pub const TR: usize = 0x490;
    pub const CPL: usize = 0x4cb;
    pub const EFER: usize = 0x4d0;
    pub const CR4: usize = 0x548;
    pub const CR3: usize = 0x550;
    pub const CR0: usize = 0x558;
    pub const DR7: usize = 0x560;
    pub const DR6: usize = 0x568;
    pub const RFLAGS: usize = 0x570;
    pub const RIP: usize = 0x578;
    pub const RSP: usize = 0x5d8;
    pub const RAX: usize = 0x5f8;
    pub const STAR: usize = 0x600;
    pub const LSTAR: usize = 0x608;
    pub const CSTAR: usize = 0x610;
    pub const SFMASK: usize = 0x618;
    pub const KERNEL_GS_BASE: usize = 0x620;
    pub const SYSENTER_CS: usize = 0x628;
    pub const SYSENTER_ESP: usize = 0x630;
    pub const SYSENTER_EIP: usize = 0x638;
    pub const G_PAT: usize = 0x668;
}

/// Intercept bits of the two "misc" vectors.
mod intercept {
    pub const INTR: u32 = 1 << 0;
    pub const NMI: u32 = 1 << 1;
    pub const VINTR: u32 = 1 << 4;
    pub const INIT: u32 = 1 << 3;
    pub const CPUID: u32 = 1 << 18;
    pub const INVD: u32 = 1 << 22;
    pub const HLT: u32 = 1 << 24;
    pub const IOIO: u32 = 1 << 27;
    pub const MSR: u32 = 1 << 28;
    pub const TASK_SWITCH: u32 = 1 << 29;
    pub const SHUTDOWN: u32 = 1 << 31;
    // misc2
    pub const VMRUN: u32 = 1 << 0;
    pub const VMMCALL: u32 = 1 << 1;
    pub const VMLOAD: u32 = 1 << 2;
    pub const VMSAVE: u32 = 1 << 3;
    pub const STGI: u32 = 1 << 4;
    pub const CLGI: u32 = 1 << 5;
    pub const SKINIT: u32 = 1 << 6;
}

/// SVM exit codes.
mod code {
    pub const EXCP_BASE: u64 = 0x40;
    pub const INTR: u64 = 0x60;
    pub const NMI: u64 = 0x61;
    pub const VINTR: u64 = 0x64;
    pub const CPUID: u64 = 0x72;
    pub const HLT: u64 = 0x78;
    pub const IOIO: u64 = 0x7b;
    pub const MSR: u64 = 0x7c;
    pub const SHUTDOWN: u64 = 0x7f;
    pub const VMMCALL: u64 = 0x81;
    pub const NPF: u64 = 0x400;
    pub const INVALID: u64 = u64::MAX;
}

const IOPM_PAGES: u64 = 3;
const MSRPM_PAGES: u64 = 2;
const EVENT_VALID: u64 = 1 << 31;
const EVENT_TYPE_EXCEPTION: u64 = 3 << 8;
const EVENT_ERROR_VALID: u64 = 1 << 11;
const TLB_FLUSH_ALL: u8 = 1;
const EVENT_TYPE_INTR: u64 = 0;
/// V_INTR_MASKING: the guest's IF masks only virtual interrupts.
const VINTR_MASKING: u64 = 1 << 24;
/// A virtual interrupt request used only to learn when the guest opens its
/// interrupt window: V_IRQ, highest priority, TPR ignored.
const VINTR_WINDOW: u64 = (1 << 8) | (0xf << 16) | (1 << 20);
const RFLAGS_IF: u64 = 1 << 9;

/// Why SVM cannot be used on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SvmError {
    NotSupported,
    DisabledByFirmware,
    OutOfMemory,
}

/// Turns SVM on for the calling CPU (idempotent).
pub fn enable_this_cpu() -> Result<(), SvmError> {
    if !cpu::has_svm() {
        return Err(SvmError::NotSupported);
    }
    // SAFETY: VM_CR exists on CPUs with SVM (checked above).
    if unsafe { cpu::rdmsr(svm_msr::VM_CR) } & svm_msr::VM_CR_SVMDIS != 0 {
        return Err(SvmError::DisabledByFirmware);
    }
    // SAFETY: EFER exists; reading it has no side effects.
    let efer = unsafe { cpu::rdmsr(msr::IA32_EFER) };
    if efer & EFER_SVME != 0 {
        return Ok(());
    }
    let hsave = mem::alloc_frames(1, 1).ok_or(SvmError::OutOfMemory)?;
    // SAFETY: SVM is supported and not disabled; the host save area is a
    // fresh frame owned by this CPU for good; setting EFER.SVME only enables
    // the SVM instructions.
    unsafe {
        cpu::wrmsr(svm_msr::VM_HSAVE_PA, hsave);
        cpu::wrmsr(msr::IA32_EFER, efer | EFER_SVME);
    }
    Ok(())
}

unsafe extern "C" {
    /// Runs the guest of `vmcb_pa` with `regs` until the next #VMEXIT.
    fn svm_run(regs: *mut GuestRegs, vmcb_pa: u64, host_vmcb_pa: u64);
}

// Offsets into GuestRegs (rax is in the VMCB and copied by Rust).
global_asm!(
    r#"
    .section .text.svm, "ax"
    .global svm_run
svm_run:
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    push rdi                    /* [rsp+16] regs */
    push rdx                    /* [rsp+8]  host vmcb */
    push rsi                    /* [rsp]    guest vmcb */
    clgi
    /* physical interrupts cause #VMEXIT while the guest runs; GIF=0 holds them until stgi */
    sti
    mov rax, rdx
    vmsave rax                  /* host FS/GS/TR/LDTR/syscall MSRs */
    mov rax, rsi
    vmload rax                  /* the guest's */
    mov rbx, [rdi + 0]
    mov rcx, [rdi + 8]
    mov rdx, [rdi + 16]
    mov rsi, [rdi + 24]
    mov rbp, [rdi + 40]
    mov r8,  [rdi + 48]
    mov r9,  [rdi + 56]
    mov r10, [rdi + 64]
    mov r11, [rdi + 72]
    mov r12, [rdi + 80]
    mov r13, [rdi + 88]
    mov r14, [rdi + 96]
    mov r15, [rdi + 104]
    mov rdi, [rdi + 32]
    vmrun rax
    /* #VMEXIT: rax and rsp are the host's again */
    push rdi
    mov rdi, [rsp + 24]
    mov [rdi + 0], rbx
    mov [rdi + 8], rcx
    mov [rdi + 16], rdx
    mov [rdi + 24], rsi
    mov [rdi + 40], rbp
    mov [rdi + 48], r8
    mov [rdi + 56], r9
    mov [rdi + 64], r10
    mov [rdi + 72], r11
    mov [rdi + 80], r12
    mov [rdi + 88], r13
    mov [rdi + 96], r14
    mov [rdi + 104], r15
    pop rax
    mov [rdi + 32], rax
    mov rax, [rsp]
    vmsave rax
    mov rax, [rsp + 8]
    vmload rax                  /* host GS base (per-CPU data) is back */
    cli
    stgi
    add rsp, 24
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    ret
    .text
"#
);

/// One guest CPU on SVM.
#[derive(Debug)]
pub struct SvmVcpu {
    vmcb: u64,
    host_vmcb: u64,
    iopm: u64,
    msrpm: u64,
    regs: GuestRegs,
    flush_tlb: bool,
}

// SAFETY: the VMCB and bitmaps are frames owned by this vCPU; it runs on one
// CPU at a time (moved, never shared).
unsafe impl Send for SvmVcpu {}

impl SvmVcpu {
    fn w64(&mut self, off: usize, v: u64) {
        // SAFETY: the VMCB is a 4 KiB frame owned by this vCPU (direct map);
        // `off` is one of the aligned offsets in `vmcb`, below 4096.
        unsafe {
            core::ptr::write_volatile((mem::phys_to_virt(self.vmcb) + off as u64) as *mut u64, v)
        }
    }
    fn r64(&self, off: usize) -> u64 {
        // SAFETY: as in `w64`.
        unsafe {
            core::ptr::read_volatile((mem::phys_to_virt(self.vmcb) + off as u64) as *const u64)
        }
    }
    fn r32(&self, off: usize) -> u32 {
        // SAFETY: as in `w64` (4-byte aligned offsets).
        unsafe {
            core::ptr::read_volatile((mem::phys_to_virt(self.vmcb) + off as u64) as *const u32)
        }
    }
    fn w32(&mut self, off: usize, v: u32) {
        // SAFETY: as in `w64`.
        unsafe {
            core::ptr::write_volatile((mem::phys_to_virt(self.vmcb) + off as u64) as *mut u32, v)
        }
    }
    fn w8(&mut self, off: usize, v: u8) {
        // SAFETY: as in `w64`.
        unsafe {
            core::ptr::write_volatile((mem::phys_to_virt(self.vmcb) + off as u64) as *mut u8, v)
        }
    }
    fn segment(&mut self, off: usize, selector: u16, attrib: u16, limit: u32, base: u64) {
        self.w64(
            off,
            u64::from(selector) | (u64::from(attrib) << 16) | (u64::from(limit) << 32),
        );
        self.w64(off + 8, base);
    }

    /// A vCPU that starts in 64-bit mode at `entry`, on nested page tables
    /// rooted at `npt_root`, with address-space ID `asid` (never 0).
    pub fn new(npt_root: u64, asid: u32, entry: &LongModeEntry) -> Result<SvmVcpu, SvmError> {
        let vmcb = mem::alloc_frames(1, 1).ok_or(SvmError::OutOfMemory)?;
        let host_vmcb = mem::alloc_frames(1, 1).ok_or(SvmError::OutOfMemory)?;
        let iopm = mem::alloc_frames(IOPM_PAGES, 1).ok_or(SvmError::OutOfMemory)?;
        let msrpm = mem::alloc_frames(MSRPM_PAGES, 1).ok_or(SvmError::OutOfMemory)?;
        // Every port and every MSR exits: the guest reaches no host device.
        // SAFETY: the bitmaps are fresh frames owned by this vCPU.
        unsafe {
            core::ptr::write_bytes(
                mem::phys_to_virt(iopm) as *mut u8,
                0xff,
                (IOPM_PAGES * 4096) as usize,
            );
            core::ptr::write_bytes(
                mem::phys_to_virt(msrpm) as *mut u8,
                0xff,
                (MSRPM_PAGES * 4096) as usize,
            );
        }
        let mut v = SvmVcpu {
            vmcb,
            host_vmcb,
            iopm,
            msrpm,
            regs: GuestRegs::default(),
            flush_tlb: true,
        };
        v.w32(vmcb::INTERCEPT_CR, 0);
        v.w32(vmcb::INTERCEPT_EXCEPTIONS, 1 << 18); // #MC
        v.w32(
            vmcb::INTERCEPT_MISC1,
            intercept::INTR
                | intercept::NMI
                | intercept::INIT
                | intercept::CPUID
                | intercept::INVD
                | intercept::HLT
                | intercept::IOIO
                | intercept::MSR
                | intercept::TASK_SWITCH
                | intercept::SHUTDOWN,
        );
        v.w32(
            vmcb::INTERCEPT_MISC2,
            intercept::VMRUN
                | intercept::VMMCALL
                | intercept::VMLOAD
                | intercept::VMSAVE
                | intercept::STGI
                | intercept::CLGI
                | intercept::SKINIT,
        );
        v.w64(vmcb::IOPM_BASE, v.iopm);
        v.w64(vmcb::MSRPM_BASE, v.msrpm);
        v.w64(vmcb::TSC_OFFSET, 0);
        v.w32(vmcb::GUEST_ASID, asid.max(1));
        v.w64(vmcb::VINTR, VINTR_MASKING);
        v.w64(vmcb::NP_ENABLE, 1);
        v.w64(vmcb::N_CR3, npt_root);

        let data_attr = 0x0c93; // present, writable data, DPL 0, 4 KiB granularity, 32-bit
        v.segment(vmcb::CS, CODE_SELECTOR, 0x029b, 0xffff_ffff, 0); // present, code, long mode
        for seg in [vmcb::DS, vmcb::ES, vmcb::SS, vmcb::FS, vmcb::GS] {
            v.segment(seg, DATA_SELECTOR, data_attr, 0xffff_ffff, 0);
        }
        v.segment(vmcb::GDTR, 0, 0, u32::from(entry.gdt_limit), entry.gdt_base);
        v.segment(vmcb::IDTR, 0, 0, 0, 0);
        v.segment(vmcb::LDTR, 0, 0x0082, 0xffff, 0);
        v.segment(vmcb::TR, 0, 0x008b, 0x67, 0);
        v.w8(vmcb::CPL, 0);
        v.w64(vmcb::EFER, entry.efer | EFER_SVME);
        v.w64(vmcb::CR0, entry.cr0);
        v.w64(vmcb::CR3, entry.cr3);
        v.w64(vmcb::CR4, entry.cr4);
        v.w64(vmcb::DR6, 0xffff_0ff0);
        v.w64(vmcb::DR7, 0x400);
        v.w64(vmcb::RFLAGS, 0x2);
        v.w64(vmcb::RIP, entry.rip);
        v.w64(vmcb::RSP, entry.rsp);
        v.w64(vmcb::G_PAT, 0x0007_0406_0007_0406);
        v.regs.rdi = entry.rdi;
        v.regs.rsi = entry.rsi;
        Ok(v)
    }

    /// A vCPU that starts the way a start-up IPI leaves an application
    /// processor: real mode at `vector << 12` (CS = vector << 8, IP = 0).
    pub fn new_startup(npt_root: u64, asid: u32, vector: u8) -> Result<SvmVcpu, SvmError> {
        // Begin from a long-mode template, then load the architectural
        // INIT/SIPI state over it.
        let template = LongModeEntry {
            gdt_limit: 0xffff,
            ..LongModeEntry::default()
        };
        let mut v = SvmVcpu::new(npt_root, asid, &template)?;
        let base = u64::from(vector) << 12;
        v.segment(vmcb::CS, u16::from(vector) << 8, 0x009b, 0xffff, base);
        for seg in [vmcb::DS, vmcb::ES, vmcb::SS, vmcb::FS, vmcb::GS] {
            v.segment(seg, 0, 0x0093, 0xffff, 0);
        }
        v.segment(vmcb::GDTR, 0, 0, 0xffff, 0);
        v.segment(vmcb::IDTR, 0, 0, 0xffff, 0);
        // CD | NW | ET, as after INIT.
        v.w64(vmcb::CR0, 0x6000_0010);
        v.w64(vmcb::EFER, EFER_SVME);
        v.w64(vmcb::RIP, 0);
        v.w64(vmcb::RSP, 0);
        v.w64(vmcb::RFLAGS, 0x2);
        Ok(v)
    }

    fn decode_exit(&self) -> VmExit {
        let code = self.r64(vmcb::EXIT_CODE);
        let info1 = self.r64(vmcb::EXIT_INFO1);
        let info2 = self.r64(vmcb::EXIT_INFO2);
        match code {
            code::IOIO => VmExit::Io {
                port: (info1 >> 16) as u16,
                size: match (info1 >> 4) & 0b111 {
                    0b001 => 1,
                    0b010 => 2,
                    _ => 4,
                },
                write: info1 & 1 == 0,
                string: info1 & (1 << 2) != 0,
                rep: info1 & (1 << 3) != 0,
                next_rip: info2,
            },
            code::HLT => VmExit::Hlt,
            code::CPUID => VmExit::Cpuid,
            code::MSR if info1 == 0 => VmExit::MsrRead,
            code::MSR => VmExit::MsrWrite,
            code::VMMCALL => VmExit::Hypercall,
            code::NPF => VmExit::NestedPageFault {
                gpa: info2,
                write: info1 & (1 << 1) != 0,
                fetch: info1 & (1 << 4) != 0,
            },
            code::SHUTDOWN => VmExit::Shutdown,
            code::INTR => VmExit::Interrupt,
            code::NMI => VmExit::Nmi,
            code::VINTR => VmExit::InterruptWindow,
            code::INVALID => VmExit::InvalidState,
            c if (code::EXCP_BASE..code::EXCP_BASE + 32).contains(&c) => VmExit::Unknown(c),
            c => VmExit::Unknown(c),
        }
    }
}

impl Vcpu for SvmVcpu {
    fn run(&mut self) -> VmExit {
        self.w64(vmcb::RAX, self.regs.rax);
        self.w8(
            vmcb::TLB_CONTROL,
            if self.flush_tlb { TLB_FLUSH_ALL } else { 0 },
        );
        // Nothing is cached across runs yet: every field is reloaded.
        self.w32(vmcb::CLEAN_BITS, 0);
        // SAFETY: SVM is enabled on this CPU (`vm` calls `enable_this_cpu`
        // first), the VMCB describes a consistent guest on nested paging that
        // maps only the VM's RAM, and all intercepts that could reach host
        // state (I/O, MSRs, SVM instructions) are set; `svm_run` restores
        // every host register and hidden segment state before returning.
        unsafe { svm_run(&mut self.regs, self.vmcb, self.host_vmcb) };
        self.flush_tlb = false;
        self.regs.rax = self.r64(vmcb::RAX);
        // An event that was being delivered when the exit hit is delivered again.
        let interrupted = self.r64(vmcb::EXIT_INT_INFO);
        self.w64(
            vmcb::EVENT_INJ,
            if interrupted & EVENT_VALID != 0 {
                interrupted
            } else {
                0
            },
        );
        self.decode_exit()
    }

    fn regs(&mut self) -> &mut GuestRegs {
        &mut self.regs
    }

    fn rip(&self) -> u64 {
        self.r64(vmcb::RIP)
    }

    fn set_rip(&mut self, rip: u64) {
        self.w64(vmcb::RIP, rip);
    }

    fn rflags(&self) -> u64 {
        self.r64(vmcb::RFLAGS)
    }

    fn inject(&mut self, e: Exception) {
        let event = match e {
            Exception::InvalidOpcode => 6 | EVENT_TYPE_EXCEPTION | EVENT_VALID,
            Exception::GeneralProtection => {
                13 | EVENT_TYPE_EXCEPTION | EVENT_VALID | EVENT_ERROR_VALID
            }
        };
        self.w64(vmcb::EVENT_INJ, event);
    }

    fn paging(&self) -> crate::hv::mmio::Paging {
        // VMCB segment attributes: bit 9 is CS.L, bit 10 CS.D.
        let attrib = self.r32(vmcb::CS) >> 16;
        let efer = self.r64(vmcb::EFER) & !EFER_SVME;
        let code_bits = if efer & EFER_LMA != 0 && attrib & (1 << 9) != 0 {
            64
        } else if attrib & (1 << 10) != 0 {
            32
        } else {
            16
        };
        crate::hv::mmio::Paging {
            cr0: self.r64(vmcb::CR0),
            cr3: self.r64(vmcb::CR3),
            cr4: self.r64(vmcb::CR4),
            efer,
            cs_base: self.r64(vmcb::CS + 8),
            code_bits,
        }
    }

    fn segment_base(&self, seg: crate::hv::Segment) -> u64 {
        use crate::hv::Segment;
        let at = match seg {
            Segment::Es => vmcb::ES,
            Segment::Cs => vmcb::CS,
            Segment::Ss => vmcb::SS,
            Segment::Ds => vmcb::DS,
            Segment::Fs => vmcb::FS,
            Segment::Gs => vmcb::GS,
        };
        // In 64-bit code only FS and GS have a base.
        let flat = self.paging().code_bits == 64 && !matches!(seg, Segment::Fs | Segment::Gs);
        if flat { 0 } else { self.r64(at + 8) }
    }

    fn rsp(&self) -> u64 {
        self.r64(vmcb::RSP)
    }

    fn set_rsp(&mut self, rsp: u64) {
        self.w64(vmcb::RSP, rsp);
    }

    fn event_pending(&self) -> bool {
        self.r64(vmcb::EVENT_INJ) & EVENT_VALID != 0
    }

    fn interruptible(&self) -> bool {
        self.r64(vmcb::RFLAGS) & RFLAGS_IF != 0 && self.r64(vmcb::INTERRUPT_SHADOW) & 1 == 0
    }

    fn inject_interrupt(&mut self, vector: u8) {
        self.w64(
            vmcb::EVENT_INJ,
            u64::from(vector) | EVENT_TYPE_INTR | EVENT_VALID,
        );
    }

    fn request_interrupt_window(&mut self, on: bool) {
        let misc1 = self.r32(vmcb::INTERCEPT_MISC1);
        if on {
            self.w64(vmcb::VINTR, VINTR_MASKING | VINTR_WINDOW);
            self.w32(vmcb::INTERCEPT_MISC1, misc1 | intercept::VINTR);
        } else {
            self.w64(vmcb::VINTR, VINTR_MASKING);
            self.w32(vmcb::INTERCEPT_MISC1, misc1 & !intercept::VINTR);
        }
    }

    fn read_arch_msr(&self, msr: u32) -> Option<u64> {
        if msr == guest_msr::EFER {
            return Some(self.r64(vmcb::EFER) & !EFER_SVME);
        }
        vmcb_msr_slot(msr).map(|off| self.r64(off))
    }

    fn write_arch_msr(&mut self, msr: u32, value: u64) -> Option<bool> {
        if msr == guest_msr::EFER {
            // SCE, LME, LMA, NXE only; the guest always keeps SVME from the host's view.
            const ALLOWED: u64 = 1 | (1 << 8) | (1 << 10) | (1 << 11);
            if value & !ALLOWED != 0 {
                return Some(false);
            }
            self.w64(vmcb::EFER, value | EFER_SVME);
            return Some(true);
        }
        let off = vmcb_msr_slot(msr)?;
        self.w64(off, value);
        Some(true)
    }
}

/// Guest MSRs whose state the VMCB holds (loaded and saved by VMLOAD/VMSAVE
/// or VMRUN).
mod guest_msr {
    pub const EFER: u32 = 0xc000_0080;
    pub const STAR: u32 = 0xc000_0081;
    pub const LSTAR: u32 = 0xc000_0082;
    pub const CSTAR: u32 = 0xc000_0083;
    pub const SFMASK: u32 = 0xc000_0084;
    pub const FS_BASE: u32 = 0xc000_0100;
    pub const GS_BASE: u32 = 0xc000_0101;
    pub const KERNEL_GS_BASE: u32 = 0xc000_0102;
    pub const SYSENTER_CS: u32 = 0x174;
    pub const SYSENTER_ESP: u32 = 0x175;
    pub const SYSENTER_EIP: u32 = 0x176;
    pub const PAT: u32 = 0x277;
}

/// Where the VMCB keeps MSR `msr` (EFER aside, which needs filtering).
fn vmcb_msr_slot(msr: u32) -> Option<usize> {
    Some(match msr {
        guest_msr::STAR => vmcb::STAR,
        guest_msr::LSTAR => vmcb::LSTAR,
        guest_msr::CSTAR => vmcb::CSTAR,
        guest_msr::SFMASK => vmcb::SFMASK,
        // The base lives in the segment's second quadword.
        guest_msr::FS_BASE => vmcb::FS + 8,
        guest_msr::GS_BASE => vmcb::GS + 8,
        guest_msr::KERNEL_GS_BASE => vmcb::KERNEL_GS_BASE,
        guest_msr::SYSENTER_CS => vmcb::SYSENTER_CS,
        guest_msr::SYSENTER_ESP => vmcb::SYSENTER_ESP,
        guest_msr::SYSENTER_EIP => vmcb::SYSENTER_EIP,
        guest_msr::PAT => vmcb::G_PAT,
        _ => return None,
    })
}

impl Drop for SvmVcpu {
    fn drop(&mut self) {
        mem::free_frames(self.vmcb, 1);
        mem::free_frames(self.host_vmcb, 1);
        mem::free_frames(self.iopm, IOPM_PAGES);
        mem::free_frames(self.msrpm, MSRPM_PAGES);
    }
}
