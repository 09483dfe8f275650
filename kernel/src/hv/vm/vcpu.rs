//! One vCPU's turn on its host CPU: run the guest, handle each exit against
//! the VM's shared board, deliver interrupts; the turn ends when the slice is
//! over, when the guest halts (the vCPU blocks) or when the VM ends.

use alloc::format;
use core::sync::atomic::Ordering;
use core::time::Duration;

use super::board::{Board, StopRequest};
use super::{VmCore, VmState};
use crate::arch::x86_64::cpu;
use crate::hv::cpuid::{self, Leaf};
use crate::hv::devices::lapic::TscClock;
use crate::hv::exit::{Exception, Vcpu, VmExit};
use crate::hv::{Segment, mmio, string_io};
use crate::{sched, time};
use iced_x86::{Mnemonic, Register};

const RFLAGS_IF: u64 = 1 << 9;
const RFLAGS_DF: u64 = 1 << 10;
const MSR_AMD64_NB_CFG: u32 = 0xc001_001f;
/// Longest a vCPU runs before the host looks at it again.
const MAX_SLICE: Duration = Duration::from_millis(10);

/// How a vCPU's turn ended.
#[derive(Debug)]
pub(super) enum Turn {
    /// The slice is over or another task on this host CPU was woken.
    Yield,
    /// The guest halted: nothing to run until a wake-up or the deadline.
    Block(Option<Duration>),
    /// The VM ends: with this state if this vCPU ended it, `None` if another did.
    End(Option<VmState>),
}

/// Runs vCPU `me` until `slice_end`, a halt, or the end of the VM.
pub(super) fn run(core: &VmCore, me: usize, vcpu: &mut impl Vcpu, slice_end: Duration) -> Turn {
    match run_inner(core, me, vcpu, slice_end) {
        Ok(turn) => turn,
        Err(end) => Turn::End(Some(end)),
    }
}

/// The exit loop; `Err` carries the state in which this vCPU ends the VM.
fn run_inner(
    core: &VmCore,
    me: usize,
    vcpu: &mut impl Vcpu,
    slice_end: Duration,
) -> Result<Turn, VmState> {
    // A turn enters the guest at least once, so a vCPU makes progress
    // however often other tasks on its CPU are woken.
    let mut entered = false;
    loop {
        if core.stopping() {
            return Ok(Turn::End(None));
        }
        if core.handle.is_paused() {
            // The task blocks on its next turn until unpaused.
            return Ok(Turn::Yield);
        }
        let now = time::now();
        if now >= slice_end || (entered && sched::should_yield()) {
            return Ok(Turn::Yield);
        }
        let next_timer = {
            let mut b = core.board.lock();
            let next = b.update_interrupts(me, now);
            if !vcpu.event_pending() && b.pending_interrupt(me).is_some() {
                if vcpu.interruptible() {
                    if let Some(v) = b.acknowledge_interrupt(me) {
                        vcpu.inject_interrupt(v);
                    }
                    vcpu.request_interrupt_window(false);
                } else {
                    vcpu.request_interrupt_window(true);
                }
            }
            core.kick_from(me, &mut b);
            next
        };
        // The host CPU's timer bounds how long the guest runs without an
        // exit, so device timers are delivered on time even to a guest that
        // spins without touching a device.
        let bound = slice_end.min(now + MAX_SLICE);
        time::arm_timer(next_timer.map_or(bound, |t| t.min(bound)));
        let exit = vcpu.run();
        entered = true;
        core.handle.exits.fetch_add(1, Ordering::Relaxed);
        core.handle.profile.lock().record(&exit);
        match exit {
            VmExit::Io {
                string: true,
                port,
                size,
                next_rip,
                ..
            } => string_io(core, me, vcpu, port, size, next_rip)?,
            VmExit::Io {
                port,
                size,
                write,
                next_rip,
                ..
            } => {
                let rax = vcpu.regs().rax;
                let (read, stop) = {
                    let mut b = core.board.lock();
                    let read = b.io(port, size, write, rax, time::now());
                    core.kick_from(me, &mut b);
                    (read, b.stop)
                };
                if !write {
                    let mask = if size >= 4 {
                        u64::from(u32::MAX)
                    } else {
                        (1u64 << (size * 8)) - 1
                    };
                    // A 32-bit IN zero-extends into RAX; 8/16-bit ones merge.
                    let keep = if size >= 4 { 0 } else { rax & !mask };
                    vcpu.regs().rax = keep | (read & mask);
                }
                vcpu.set_rip(next_rip);
                match stop {
                    Some(StopRequest::PowerOff) => {
                        log::info!("vm {}: powered off (ACPI S5)", core.handle.name);
                        return Err(VmState::Halted);
                    }
                    Some(StopRequest::Reset) => {
                        log::info!("vm {}: reset", core.handle.name);
                        core.reset.store(true, Ordering::Release);
                        return Err(VmState::Halted);
                    }
                    None => {}
                }
            }
            VmExit::Cpuid => {
                let regs = vcpu.regs();
                let host = |a, b| {
                    let (eax, ebx, ecx, edx) = cpu::cpuid(a, b);
                    Leaf { eax, ebx, ecx, edx }
                };
                let l = cpuid::guest_leaf(
                    regs.rax as u32,
                    regs.rcx as u32,
                    host,
                    me as u32,
                    core.vcpus as u32,
                );
                (regs.rax, regs.rbx, regs.rcx, regs.rdx) =
                    (l.eax.into(), l.ebx.into(), l.ecx.into(), l.edx.into());
                step_over(core, vcpu, Mnemonic::Cpuid)?;
            }
            VmExit::MsrRead => {
                let msr = vcpu.regs().rcx as u32;
                let value = vcpu.read_arch_msr(msr).or_else(|| match msr {
                    MSR_AMD64_NB_CFG => Some(core.board.lock().nb_cfg),
                    _ => match core.board.lock().apic_msr_read(me, msr, time::now()) {
                        Some(read) => read.ok(),
                        None => platform_msr_read(msr),
                    },
                });
                match value {
                    Some(v) => {
                        let regs = vcpu.regs();
                        regs.rax = v & 0xffff_ffff;
                        regs.rdx = v >> 32;
                        step_over(core, vcpu, Mnemonic::Rdmsr)?;
                    }
                    None => {
                        log::debug!("vm {}: #GP for read of MSR {msr:#x}", core.handle.name);
                        vcpu.inject(Exception::GeneralProtection)
                    }
                }
            }
            VmExit::MsrWrite => {
                let regs = vcpu.regs();
                let (msr, value) = (regs.rcx as u32, (regs.rdx << 32) | (regs.rax & 0xffff_ffff));
                let ok = vcpu.write_arch_msr(msr, value).or_else(|| match msr {
                    MSR_AMD64_NB_CFG => {
                        core.board.lock().nb_cfg = value;
                        Some(true)
                    }
                    _ => {
                        let clock = TscClock {
                            now: time::now(),
                            tsc: cpu::rdtsc(),
                            hz: time::tsc_hz(),
                        };
                        let mut b = core.board.lock();
                        let done = b.apic_msr_write(me, msr, value, clock);
                        core.kick_from(me, &mut b);
                        drop(b);
                        match done {
                            Some(result) => Some(result.is_ok()),
                            None => platform_msr_write(msr, value),
                        }
                    }
                });
                if ok == Some(true) {
                    step_over(core, vcpu, Mnemonic::Wrmsr)?;
                } else {
                    log::debug!(
                        "vm {}: #GP for write of {value:#x} to MSR {msr:#x}",
                        core.handle.name
                    );
                    vcpu.inject(Exception::GeneralProtection)
                }
            }
            VmExit::Hlt => {
                step_over(core, vcpu, Mnemonic::Hlt)?;
                if let Some(turn) = halt(core, me, vcpu.rflags() & RFLAGS_IF != 0) {
                    return Ok(turn);
                }
            }
            VmExit::Hypercall => vcpu.inject(Exception::InvalidOpcode),
            VmExit::NestedPageFault {
                gpa, fetch: false, ..
            } if Board::is_device(gpa) => {
                if let Err(why) = emulate_mmio(core, me, vcpu, gpa) {
                    return Err(VmState::Crashed(why));
                }
            }
            VmExit::NestedPageFault { gpa, write, fetch } => {
                let what = if fetch {
                    "instruction fetch from"
                } else if write {
                    "write to"
                } else {
                    "read from"
                };
                return Err(VmState::Crashed(format!(
                    "{what} guest-physical {gpa:#x}, which is not the VM's memory"
                )));
            }
            VmExit::Shutdown => {
                return Err(VmState::Crashed(format!(
                    "triple fault at rip {:#x}",
                    vcpu.rip()
                )));
            }
            VmExit::Interrupt => cpu::service_pending_interrupts(),
            VmExit::InterruptWindow => vcpu.request_interrupt_window(false),
            VmExit::Nmi => {}
            VmExit::InvalidState => {
                return Err(VmState::Crashed("the CPU refused the guest state".into()));
            }
            VmExit::Unknown(code) => {
                return Err(VmState::Crashed(format!(
                    "unhandled exit {code:#x} at rip {:#x}",
                    vcpu.rip()
                )));
            }
        }
    }
}

/// The guest executed HLT. A halted vCPU costs no host CPU: it blocks until
/// an interrupt can be due. `None`: an interrupt is pending, run on.
fn halt(core: &VmCore, me: usize, interrupts_on: bool) -> Option<Turn> {
    let alone = core.vcpus == 1;
    if !interrupts_on {
        // Only INIT could wake it (another vCPU of an SMP VM); a lone vCPU is done.
        if alone {
            log_unclaimed(core);
            return Some(Turn::End(Some(VmState::Halted)));
        }
        return Some(Turn::Block(None));
    }
    let (pending, deadline) = {
        let mut b = core.board.lock();
        let deadline = b.update_interrupts(me, time::now());
        (b.pending_interrupt(me).is_some(), deadline)
    };
    if pending {
        return None;
    }
    if alone && deadline.is_none() {
        log_unclaimed(core);
        return Some(Turn::End(Some(VmState::Halted)));
    }
    Some(Turn::Block(deadline))
}

fn log_unclaimed(core: &VmCore) {
    let n = core.board.lock().unclaimed_ports;
    if n > 0 {
        log::info!(
            "vm {}: {n} accesses to ports without a device",
            core.handle.name
        );
    }
}

fn gpr_get(vcpu: &mut impl Vcpu, r: mmio::Gpr) -> u64 {
    let g = vcpu.regs();
    match r.0 {
        0 => g.rax,
        1 => g.rcx,
        2 => g.rdx,
        3 => g.rbx,
        5 => g.rbp,
        6 => g.rsi,
        7 => g.rdi,
        8 => g.r8,
        9 => g.r9,
        10 => g.r10,
        11 => g.r11,
        12 => g.r12,
        13 => g.r13,
        14 => g.r14,
        15 => g.r15,
        _ => vcpu.rsp(),
    }
}

fn gpr_set(vcpu: &mut impl Vcpu, r: mmio::Gpr, v: u64) {
    let g = vcpu.regs();
    let slot = match r.0 {
        0 => &mut g.rax,
        1 => &mut g.rcx,
        2 => &mut g.rdx,
        3 => &mut g.rbx,
        5 => &mut g.rbp,
        6 => &mut g.rsi,
        7 => &mut g.rdi,
        8 => &mut g.r8,
        9 => &mut g.r9,
        10 => &mut g.r10,
        11 => &mut g.r11,
        12 => &mut g.r12,
        13 => &mut g.r13,
        14 => &mut g.r14,
        15 => &mut g.r15,
        _ => return vcpu.set_rsp(v),
    };
    *slot = v;
}

/// Emulates the instruction with which vCPU `me` touched device memory at `gpa`.
fn emulate_mmio(
    core: &VmCore,
    me: usize,
    vcpu: &mut impl Vcpu,
    gpa: u64,
) -> Result<(), alloc::string::String> {
    let paging = vcpu.paging();
    let rip = vcpu.rip();
    let mut bytes = [0u8; 15];
    let decoded = core
        .with_memory(|mem| {
            let n = paging
                .fetch(mem, rip, &mut bytes)
                .map_err(|e| format!("{e}"))?;
            mmio::decode(&bytes[..n], paging.code_bits, rip).map_err(|e| format!("{e}"))
        })
        .ok_or_else(|| alloc::string::String::from("guest RAM is gone"))??;
    let now = time::now();
    let mask = |size: u8| {
        if size >= 8 {
            u64::MAX
        } else {
            (1u64 << (size * 8)) - 1
        }
    };
    match decoded.access {
        mmio::Access::Write { size, source } => {
            let value = match source {
                mmio::Source::Reg(r) => gpr_get(vcpu, r),
                mmio::Source::Imm(v) => v,
            } & mask(size);
            let mut b = core.board.lock();
            let claimed = b.mmio_write(me, gpa, size, value, now);
            core.kick_from(me, &mut b);
            let work = b.pci.has_work();
            drop(b);
            if !claimed {
                return Err(format!(
                    "{size}-byte write to device memory at {gpa:#x}, which no device accepts"
                ));
            }
            if work {
                // A virtqueue notify: the device task serves it; this vCPU
                // goes back to the guest.
                core.io_waker.wake();
            }
        }
        mmio::Access::Read {
            size,
            dest,
            dest_size,
        } => {
            let Some(value) = core.board.lock().mmio_read(me, gpa, size, now) else {
                return Err(format!(
                    "{size}-byte read of device memory at {gpa:#x}, which no device accepts"
                ));
            };
            let value = value & mask(size);
            let merged = match dest_size {
                4 | 8 => value,
                n => (gpr_get(vcpu, dest) & !mask(n)) | value,
            };
            gpr_set(vcpu, dest, merged);
        }
    }
    vcpu.set_rip(rip.wrapping_add(u64::from(decoded.len)));
    Ok(())
}

/// Emulates the INS or OUTS (REP or not) at RIP that exited for `port`.
fn string_io(
    core: &VmCore,
    me: usize,
    vcpu: &mut impl Vcpu,
    port: u16,
    size: u8,
    next_rip: u64,
) -> Result<(), VmState> {
    let paging = vcpu.paging();
    let rip = vcpu.rip();
    let mut bytes = [0u8; 15];
    let op = core
        .with_memory(|mem| {
            let n = paging.fetch(mem, rip, &mut bytes)?;
            string_io::decode(&bytes[..n], paging.code_bits, rip)
        })
        .ok_or_else(|| VmState::Crashed("guest RAM is gone".into()))?
        .map_err(|e| VmState::Crashed(format!("string I/O at rip {rip:#x}: {e}")))?;
    let segment = match op.segment {
        Register::ES => Segment::Es,
        Register::CS => Segment::Cs,
        Register::SS => Segment::Ss,
        Register::FS => Segment::Fs,
        Register::GS => Segment::Gs,
        _ => Segment::Ds,
    };
    let mut regs = string_io::StringRegs {
        rsi: vcpu.regs().rsi,
        rdi: vcpu.regs().rdi,
        rcx: vcpu.regs().rcx,
        down: vcpu.rflags() & RFLAGS_DF != 0,
        segment_base: vcpu.segment_base(segment),
    };
    let now = time::now();
    let done = core
        .with_memory(|mem| {
            string_io::run(op, size, &mut regs, mem, &paging, |value| {
                let mut b = core.board.lock();
                let read = b.io(port, size, value.is_some(), value.unwrap_or(0), now);
                core.kick_from(me, &mut b);
                read
            })
        })
        .ok_or_else(|| VmState::Crashed("guest RAM is gone".into()))?
        .map_err(|e| VmState::Crashed(format!("string I/O at rip {rip:#x}: {e}")))?;
    let g = vcpu.regs();
    (g.rsi, g.rdi, g.rcx) = (regs.rsi, regs.rdi, regs.rcx);
    if done {
        vcpu.set_rip(next_rip);
    }
    Ok(())
}

/// Steps over the instruction that caused an exit. TCG saves no next RIP,
/// so the instruction is fetched through the guest's code segment and page
/// tables and decoded: prefixes make its length vary. If the bytes at RIP
/// are not the instruction that exited (the guest rewrote them from another
/// vCPU), the VM cannot be resumed consistently and ends.
fn step_over(core: &VmCore, vcpu: &mut impl Vcpu, expected: Mnemonic) -> Result<(), VmState> {
    let paging = vcpu.paging();
    let rip = vcpu.rip();
    let mut bytes = [0u8; 15];
    let decoded = core
        .with_memory(|mem| {
            let n = paging.fetch(mem, rip, &mut bytes)?;
            mmio::length(&bytes[..n], paging.code_bits, rip)
        })
        .ok_or_else(|| VmState::Crashed("guest RAM is gone".into()))?;
    match decoded {
        Ok((mnemonic, len)) if mnemonic == expected => {
            vcpu.set_rip(rip.wrapping_add(u64::from(len)));
            Ok(())
        }
        Ok((other, _)) => Err(VmState::Crashed(format!(
            "exit for {expected:?} but {other:?} at rip {rip:#x}"
        ))),
        Err(e) => Err(VmState::Crashed(format!(
            "cannot decode the {expected:?} at rip {rip:#x}: {e}"
        ))),
    }
}

/// MSRs the hypervisor answers itself (not kept by the backend or the APIC).
fn platform_msr_read(msr: u32) -> Option<u64> {
    match msr {
        0x10 => Some(cpu::rdtsc()), // IA32_TSC
        0xfe => Some(0),            // IA32_MTRRCAP: no MTRRs
        0x2ff => Some(0),           // IA32_MTRR_DEF_TYPE
        0x1a0 => Some(1),           // IA32_MISC_ENABLE: fast strings
        _ => None,
    }
}

fn platform_msr_write(msr: u32, value: u64) -> Option<bool> {
    match msr {
        0x2ff => Some(value & !0xcff == 0),
        _ => None,
    }
}
