//! Fatal errors: stop the other CPUs, report on the serial console, and exit
//! (QEMU's debug-exit device) or halt.

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crate::arch::x86_64::{apic, cpu};
use crate::{backtrace, percpu, power, serial};

static HALTING: AtomicBool = AtomicBool::new(false);
static FATAL_CPU: AtomicU32 = AtomicU32::new(u32::MAX);

/// Whether a fatal error is being reported (NMIs then mean "stop").
pub fn is_halting() -> bool {
    HALTING.load(Ordering::Acquire)
}

/// Claims the fatal path for this CPU and stops the others. A second CPU that
/// fails at the same time just halts, so one report is printed.
pub fn begin_fatal() {
    cpu::cli();
    let me = percpu::index();
    if FATAL_CPU
        .compare_exchange(u32::MAX, me, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
        && FATAL_CPU.load(Ordering::Acquire) != me
    {
        cpu::halt_forever();
    }
    HALTING.store(true, Ordering::Release);
    if crate::smp::started() {
        apic::send_nmi_all_but_self();
    }
}

/// Ends a fatal report: exit QEMU with [`power::EXIT_FATAL`], else halt.
pub fn finish_fatal() -> ! {
    power::debug_exit(power::EXIT_FATAL);
    cpu::halt_forever()
}

#[cfg(not(test))]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    begin_fatal();
    serial::with_console_forced(|c| {
        let _ = writeln!(
            c,
            "\nKERNEL PANIC on cpu{}: {}",
            percpu::index(),
            info.message()
        );
        if let Some(loc) = info.location() {
            let _ = writeln!(c, "  at {}:{}:{}", loc.file(), loc.line(), loc.column());
        }
        backtrace::print(c, cpu::read_rbp());
    });
    finish_fatal()
}
