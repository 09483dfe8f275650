//! ACPI power-off (S5) and reset end QEMU cleanly (status 0 under -no-reboot).

use super::{BOOT_TIMEOUT, EXIT_TIMEOUT, keel};

#[test]
fn acpi_poweroff() {
    let qemu = keel(2, 512)
        .append("keel.selftest=poweroff")
        .spawn()
        .expect("spawn QEMU");
    qemu.wait_for_serial("power: off (ACPI S5)", BOOT_TIMEOUT)
        .expect("power-off message");
    let status = qemu.wait_exit(EXIT_TIMEOUT).expect("QEMU exits on S5");
    assert_eq!(status.code(), Some(0), "{status}");
}

#[test]
fn acpi_reboot() {
    let qemu = keel(2, 512)
        .append("keel.selftest=reboot")
        .spawn()
        .expect("spawn QEMU");
    qemu.wait_for_serial("power: reboot", BOOT_TIMEOUT)
        .expect("reboot message");
    // -no-reboot turns the reset into an exit.
    let status = qemu.wait_exit(EXIT_TIMEOUT).expect("QEMU exits on reset");
    assert_eq!(status.code(), Some(0), "{status}");
}
