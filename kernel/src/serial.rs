//! 16550 UART on COM1: the host console and log sink.

use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

use spin::Mutex;

use crate::arch::x86_64::cpu::{inb, outb};

const COM1: u16 = 0x3f8;
const DATA: u16 = 0;
const INT_ENABLE: u16 = 1;
const FIFO_CTRL: u16 = 2;
const LINE_CTRL: u16 = 3;
const MODEM_CTRL: u16 = 4;
const LINE_STATUS: u16 = 5;
const LSR_THR_EMPTY: u8 = 1 << 5;
const LCR_DLAB: u8 = 1 << 7;
const LCR_8N1: u8 = 0x03;

#[derive(Debug)]
pub struct Serial {
    base: u16,
}

impl Serial {
    fn write_byte(&mut self, b: u8) {
        // Bounded wait: a missing UART must not hang the kernel.
        for _ in 0..100_000 {
            // SAFETY: COM1 is owned by this driver.
            if unsafe { inb(self.base + LINE_STATUS) } & LSR_THR_EMPTY != 0 {
                break;
            }
            core::hint::spin_loop();
        }
        // SAFETY: COM1 is owned by this driver.
        unsafe { outb(self.base + DATA, b) };
    }
}

impl fmt::Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.write_byte(b'\r');
            }
            self.write_byte(b);
        }
        Ok(())
    }
}

static PORT: Mutex<Serial> = Mutex::new(Serial { base: COM1 });
static READY: AtomicBool = AtomicBool::new(false);

/// Programs COM1 for 115200 8N1 with FIFOs, interrupts off.
pub fn init() {
    // SAFETY: COM1 is a standard PC UART that nothing else drives.
    unsafe {
        outb(COM1 + INT_ENABLE, 0);
        outb(COM1 + LINE_CTRL, LCR_DLAB);
        outb(COM1 + DATA, 1); // divisor 1: 115200 baud
        outb(COM1 + INT_ENABLE, 0);
        outb(COM1 + LINE_CTRL, LCR_8N1);
        outb(COM1 + FIFO_CTRL, 0xc7);
        outb(COM1 + MODEM_CTRL, 0x03);
    }
    READY.store(true, Ordering::Release);
}

/// Runs `f` with the console. Interrupts are off in kernel code, so the lock
/// is never taken reentrantly except by a fault inside `f`, which uses
/// [`with_console_forced`].
pub fn with_console<R>(f: impl FnOnce(&mut Serial) -> R) -> R {
    f(&mut PORT.lock())
}

/// For fatal paths: takes the console even if its lock is held (the holder may
/// be the code that faulted, or a CPU we just stopped).
pub fn with_console_forced<R>(f: impl FnOnce(&mut Serial) -> R) -> R {
    for _ in 0..1_000_000 {
        if let Some(mut g) = PORT.try_lock() {
            return f(&mut g);
        }
        core::hint::spin_loop();
    }
    let mut s = Serial { base: COM1 };
    f(&mut s)
}
