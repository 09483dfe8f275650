//! VMs through the XenAPI, in the image: `vm_flow.py` drives the PyPI
//! `XenAPI` SDK against a host whose boot archive carries the Debian peer
//! kernel and an initrd in `library/` (`PV_kernel = boot:debian/vmlinuz`).
//! The guest's init loads `button.ko` (from the peer's kernel package) and
//! powers off when the ACPI power button is pressed, as acpid would make a
//! distribution do; then it runs a shell on the serial console.

use std::fs;
use std::process::Command;
use std::time::Duration;

use qemu_tests::cpio::Cpio;
use qemu_tests::{PortRelay, run_bounded, workspace_root};

use super::{BOOT_TIMEOUT, assert_flow_passed, debian_library, health, keel};

pub(super) const PASSWORD: &str = "qemu-vm-password";
/// Three guest boots under our hypervisor under TCG.
const FLOW_TIMEOUT: Duration = Duration::from_secs(840);
const HARD_TIMEOUT: Duration = Duration::from_secs(900);

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
insmod /modules/button.ko || echo KEEL-INSMOD-FAILED button
(
    while :; do
        read n rest < /sys/firmware/acpi/interrupts/ff_pwr_btn
        if [ "${n:-0}" != 0 ]; then echo KEEL-VM-POWER-BUTTON > /dev/console; poweroff -f; fi
        sleep 0.2
    done
) &
echo KEEL-VM-INIT-READY
exec sh </dev/console >/dev/console 2>&1
"#;

/// `button.ko` out of the peer's kernel package.
pub(super) fn button_module(peer: &std::path::Path) -> Vec<u8> {
    let deb = fs::read_dir(peer)
        .expect("target/peer (run `cargo xtask setup`)")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .expect("the peer's linux-image .deb in target/peer");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "dpkg-deb --fsys-tarfile '{}' | tar -xO --wildcards '*/drivers/acpi/button.ko'",
            deb.display()
        ))
        .output()
        .expect("dpkg-deb");
    assert!(
        out.status.success() && !out.stdout.is_empty(),
        "button.ko from {}: {}",
        deb.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub(super) fn guest_initrd(peer: &std::path::Path) -> Vec<u8> {
    let mut overlay = Cpio::default();
    overlay.directory("modules");
    overlay.file("modules/button.ko", 0o644, &button_module(peer));
    overlay.file("init", 0o755, INIT.as_bytes());
    let mut initrd = fs::read(peer.join("initrd.gz")).expect("target/peer/initrd.gz");
    initrd.resize(initrd.len().div_ceil(4) * 4, 0);
    initrd.extend(overlay.finish());
    initrd
}

pub(super) fn host_config(dir: &std::path::Path) -> Vec<u8> {
    fs::read(super::compile_host_config(
        dir,
        "vm",
        &format!("hostname = \"keel-vm-test\"\nroot_password = \"{PASSWORD}\"\n"),
    ))
    .expect("the compiled config")
}

#[test]
fn xenapi_runs_a_debian_vm_from_the_template() {
    let builder = keel(2, 1024).hard_timeout(HARD_TIMEOUT);
    let peer = workspace_root().join("target/peer");
    let mut cpio = Cpio::default();
    cpio.file("host-config.bin", 0o644, &host_config(builder.dir()));
    debian_library(&mut cpio, &guest_initrd(&peer));
    let archive = builder.dir().join("modules.cpio");
    fs::write(&archive, cpio.finish()).expect("write archive");
    let qemu = builder.initrd(&archive).spawn().expect("spawn QEMU");
    health(&qemu);
    qemu.wait_for_serial("DHCP lease", BOOT_TIMEOUT)
        .expect("the management address");
    qemu.wait_for_serial("vm: boot file boot:debian/vmlinuz", BOOT_TIMEOUT)
        .expect("the library is listed");
    let relay = PortRelay::start(([127, 0, 0, 1], qemu.http_port()).into()).expect("relay");
    let mut python = Command::new("python3");
    python
        .current_dir(workspace_root())
        .arg("qemu-tests/tests/image/vm_flow.py")
        .env("KEEL_URL", format!("http://127.0.0.1:{}", relay.port()))
        .env("KEEL_PASSWORD", PASSWORD);
    let finished = run_bounded(python, FLOW_TIMEOUT, qemu.dir(), "vm_flow").expect("vm_flow ends");
    let serial = assert_flow_passed(&finished, &qemu, "vm_flow.py", "KEEL-VM-FLOW-OK");
    // The clean shutdown went through the guest's ACPI power button.
    // (The shell's prompt may share the line.)
    assert!(
        serial
            .lines()
            .any(|l| l.contains("vm deb1: ") && l.contains("KEEL-VM-POWER-BUTTON")),
        "{serial}"
    );
    let (_, json) = health(&qemu);
    assert_eq!(json["status"], "ok", "{json}");
}
