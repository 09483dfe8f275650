//! Fatal errors are reported on the console and end the run with the
//! isa-debug-exit status 35 (the kernel writes 0x11).

use qemu_tests::EXIT_STATUS_KERNEL_FAULT;

use super::{BOOT_TIMEOUT, EXIT_TIMEOUT, assert_serial_order, keel};

#[test]
fn panic_is_reported() {
    let qemu = keel(2, 512)
        .append("keel.selftest=panic")
        .spawn()
        .expect("spawn QEMU");
    qemu.wait_for_serial("KERNEL PANIC", BOOT_TIMEOUT)
        .expect("panic report");
    qemu.wait_for_serial("backtrace:", EXIT_TIMEOUT)
        .expect("backtrace after the panic");
    let status = qemu
        .wait_exit(EXIT_TIMEOUT)
        .expect("QEMU exits after a panic");
    assert_eq!(status.code(), Some(EXIT_STATUS_KERNEL_FAULT), "{status}");
    assert_serial_order(&qemu.serial(), "KERNEL PANIC", "backtrace:");
}

#[test]
fn page_fault_is_reported() {
    let qemu = keel(2, 512)
        .append("keel.selftest=pagefault")
        .spawn()
        .expect("spawn QEMU");
    qemu.wait_for_serial("EXCEPTION #PF", BOOT_TIMEOUT)
        .expect("page fault report");
    let status = qemu
        .wait_exit(EXIT_TIMEOUT)
        .expect("QEMU exits after a fatal exception");
    assert_eq!(status.code(), Some(EXIT_STATUS_KERNEL_FAULT), "{status}");
    assert_serial_order(&qemu.serial(), "EXCEPTION #PF", "RIP=");
}

#[test]
fn boot_stack_overflow_hits_its_guard_page() {
    let qemu = keel(2, 512)
        .append("keel.selftest=stack-overflow")
        .spawn()
        .expect("spawn QEMU");
    // The push that leaves the stack faults on the guard page; delivering
    // that #PF on the same stack faults again: a double fault, reported on
    // its own stack.
    qemu.wait_for_serial("EXCEPTION #DF", BOOT_TIMEOUT)
        .expect("double fault report");
    let status = qemu
        .wait_exit(EXIT_TIMEOUT)
        .expect("QEMU exits after a fatal exception");
    assert_eq!(status.code(), Some(EXIT_STATUS_KERNEL_FAULT), "{status}");
    assert!(!qemu.serial().contains("the stack never ran out"));
}
