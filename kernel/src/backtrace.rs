//! Frame-pointer backtraces (the kernel is built with frame pointers), bounded
//! to the current CPU's stack so a corrupt chain cannot fault the reporter.

use core::fmt::Write;

use crate::percpu;

const MAX_FRAMES: usize = 32;

/// Prints return addresses walking the RBP chain starting at `rbp`.
/// Symbolise with `addr2line -e target/x86_64-unknown-none/release/keel`.
pub fn print(out: &mut impl Write, mut rbp: u64) {
    let (bottom, top) = percpu::current().map_or((0, 0), |p| (p.stack_bottom, p.stack_top));
    let _ = writeln!(out, "backtrace:");
    for i in 0..MAX_FRAMES {
        let in_stack = rbp >= bottom && rbp.saturating_add(16) <= top;
        if rbp == 0 || !rbp.is_multiple_of(8) || !in_stack {
            break;
        }
        // SAFETY: `rbp` is 8-aligned and [rbp, rbp + 16) lies inside this
        // CPU's stack, which is mapped; the values read are plain integers.
        let (next, ret) = unsafe {
            (
                core::ptr::read(rbp as *const u64),
                core::ptr::read((rbp + 8) as *const u64),
            )
        };
        if ret == 0 {
            break;
        }
        let _ = writeln!(out, "  #{i:<2} {ret:#018x}");
        if next <= rbp {
            break;
        }
        rbp = next;
    }
}
