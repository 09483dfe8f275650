//! Interrupt and exception dispatch (called by the IDT stubs).

use core::fmt::Write;
use core::sync::atomic::Ordering;

use super::idt::{TrapFrame, vector};
use super::{apic, cpu};
use crate::{backtrace, panic, percpu, serial};

const EXCEPTION_NAMES: [&str; 32] = [
    "#DE (divide error)",
    "#DB (debug)",
    "NMI",
    "#BP (breakpoint)",
    "#OF (overflow)",
    "#BR (bound range)",
    "#UD (invalid opcode)",
    "#NM (device not available)",
    "#DF (double fault)",
    "coprocessor segment overrun",
    "#TS (invalid TSS)",
    "#NP (segment not present)",
    "#SS (stack fault)",
    "#GP (general protection)",
    "#PF (page fault)",
    "reserved 15",
    "#MF (x87 error)",
    "#AC (alignment check)",
    "#MC (machine check)",
    "#XM (SIMD error)",
    "#VE (virtualization)",
    "#CP (control protection)",
    "reserved 22",
    "reserved 23",
    "reserved 24",
    "reserved 25",
    "reserved 26",
    "reserved 27",
    "#HV (hypervisor injection)",
    "#VC (VMM communication)",
    "#SX (security)",
    "reserved 31",
];

#[unsafe(no_mangle)]
extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    let v = frame.vector as u8;
    match v {
        vector::NMI if panic::is_halting() => cpu::halt_forever(),
        0..=31 => fatal_exception(frame),
        // The timer only wakes an idle CPU or forces a VM exit; nothing to count.
        vector::TIMER => {
            apic::eoi();
        }
        vector::IPI_WAKE => {
            if let Some(p) = percpu::current() {
                p.ipis.fetch_add(1, Ordering::Release);
            }
            apic::eoi();
        }
        vector::PCI_INTX => {
            crate::drivers::intx::on_interrupt();
            apic::eoi();
        }
        vector::SPURIOUS => {}
        _ => {
            log::warn!("unexpected interrupt vector {v:#x}");
            apic::eoi();
        }
    }
}

fn fatal_exception(f: &TrapFrame) -> ! {
    panic::begin_fatal();
    let name = EXCEPTION_NAMES
        .get(f.vector as usize)
        .copied()
        .unwrap_or("?");
    serial::with_console_forced(|c| {
        let _ = writeln!(
            c,
            "\nEXCEPTION {name} on cpu{} (vector {}, error code {:#x})",
            percpu::index(),
            f.vector,
            f.error_code
        );
        if f.vector == 14 {
            let _ = writeln!(c, "  faulting address CR2={:#018x}", cpu::read_cr2());
        }
        let _ = writeln!(
            c,
            "  RIP={:#018x} CS={:#06x} RFLAGS={:#018x}",
            f.rip, f.cs, f.rflags
        );
        let _ = writeln!(
            c,
            "  RSP={:#018x} SS={:#06x} CR3={:#018x}",
            f.rsp,
            f.ss,
            cpu::read_cr3()
        );
        let _ = writeln!(
            c,
            "  RAX={:#018x} RBX={:#018x} RCX={:#018x} RDX={:#018x}",
            f.rax, f.rbx, f.rcx, f.rdx
        );
        let _ = writeln!(
            c,
            "  RSI={:#018x} RDI={:#018x} RBP={:#018x}",
            f.rsi, f.rdi, f.rbp
        );
        let _ = writeln!(
            c,
            "  R8 ={:#018x} R9 ={:#018x} R10={:#018x} R11={:#018x}",
            f.r8, f.r9, f.r10, f.r11
        );
        let _ = writeln!(
            c,
            "  R12={:#018x} R13={:#018x} R14={:#018x} R15={:#018x}",
            f.r12, f.r13, f.r14, f.r15
        );
        let _ = writeln!(c, "  #0  {:#018x} (faulting instruction)", f.rip);
        backtrace::print(c, f.rbp);
    });
    panic::finish_fatal()
}
