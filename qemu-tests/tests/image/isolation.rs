//! Isolation (issue 8): a guest that hammers its disk does not stop another
//! guest's console from answering or the API from responding. The boot
//! archive's guest `hammer` loads the peer's virtio modules and loops direct
//! I/O writes and reads over its 8 MiB virtio disk for as long as it lives;
//! meanwhile `isolation_flow.py` starts a XenAPI VM from the template, types
//! commands into its serial console over `CONNECT /console` and reads the
//! answers, and calls `host.get_record` and `GET /health`. All waits are
//! bounded; the latencies are printed as FIGURE lines, not asserted.

use std::fs;
use std::process::Command;
use std::time::Duration;

use qemu_tests::cpio::Cpio;
use qemu_tests::{PortRelay, run_bounded, workspace_root};

use super::vm_lifecycle::{PASSWORD, guest_initrd, host_config};
use super::{BOOT_TIMEOUT, health, keel};

/// One guest boot under our hypervisor under TCG, beside the hammer.
const FLOW_TIMEOUT: Duration = Duration::from_secs(420);
const HARD_TIMEOUT: Duration = Duration::from_secs(600);
const HAMMER_DISK_BYTES: usize = 8 << 20;

/// The modules in load order (dependencies first).
const MODULES: &[&str] = &[
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "virtio_blk",
];

const HAMMER_INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in MODULES; do
    insmod /modules/$m.ko || echo "KEEL-INSMOD-FAILED $m" > /dev/console
done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done
[ -b /dev/vda ] || echo KEEL-HAMMER-NO-DISK > /dev/console
n=0
while :; do
    dd if=/dev/urandom of=/dev/vda bs=64k count=128 oflag=direct 2>/dev/null || echo KEEL-HAMMER-WRITE-FAILED > /dev/console
    dd if=/dev/vda of=/dev/null bs=64k count=128 iflag=direct 2>/dev/null || echo KEEL-HAMMER-READ-FAILED > /dev/console
    n=$((n+1))
    echo "KEEL-HAMMER-PASS $n" > /dev/console
done
"#;

fn hammer_initrd() -> Vec<u8> {
    let init = HAMMER_INIT.replace("MODULES", &MODULES.join(" "));
    super::peer_initrd(MODULES, &[("init", 0o755, init.as_bytes())])
}

/// The highest `KEEL-HAMMER-PASS n` in `serial`, if any.
fn hammer_passes(serial: &str) -> Option<u64> {
    serial
        .lines()
        .filter_map(|l| l.split("vm hammer: KEEL-HAMMER-PASS ").nth(1))
        .filter_map(|n| n.trim().parse().ok())
        .max()
}

#[test]
fn a_disk_hammering_guest_does_not_starve_another_guests_console_or_the_api() {
    let builder = keel(2, 1024).hard_timeout(HARD_TIMEOUT);
    let peer = workspace_root().join("target/peer");
    let vmlinuz =
        fs::read(peer.join("vmlinuz")).expect("target/peer/vmlinuz (run `cargo xtask setup`)");
    let mut cpio = Cpio::default();
    cpio.file("host-config.bin", 0o644, &host_config(builder.dir()));
    cpio.directory("library");
    cpio.directory("library/debian");
    cpio.file("library/debian/vmlinuz", 0o644, &vmlinuz);
    cpio.file("library/debian/initrd", 0o644, &guest_initrd(&peer));
    cpio.file("guests/hammer/kernel", 0o644, &vmlinuz);
    cpio.file("guests/hammer/initrd", 0o644, &hammer_initrd());
    cpio.file("guests/hammer/cmdline", 0o644, b"console=ttyS0 quiet");
    cpio.file("guests/hammer/disk", 0o644, &vec![0u8; HAMMER_DISK_BYTES]);
    let archive = builder.dir().join("modules.cpio");
    fs::write(&archive, cpio.finish()).expect("write archive");
    let qemu = builder.initrd(&archive).spawn().expect("spawn QEMU");
    health(&qemu);
    qemu.wait_for_serial("DHCP lease", BOOT_TIMEOUT)
        .expect("the management address");
    qemu.wait_for_serial("vm hammer: KEEL-HAMMER-PASS 2", Duration::from_secs(240))
        .expect("the hammer guest loops over its disk");
    let before = hammer_passes(&qemu.serial()).unwrap_or(0);

    let relay = PortRelay::start(([127, 0, 0, 1], qemu.http_port()).into()).expect("relay");
    let mut python = Command::new("python3");
    python
        .current_dir(workspace_root())
        .arg("qemu-tests/tests/image/isolation_flow.py")
        .env("KEEL_URL", format!("http://127.0.0.1:{}", relay.port()))
        .env("KEEL_PASSWORD", PASSWORD);
    let finished =
        run_bounded(python, FLOW_TIMEOUT, qemu.dir(), "isolation_flow").expect("the flow ends");
    let serial = qemu.serial();
    let tail = serial
        .get(serial.len().saturating_sub(6000)..)
        .unwrap_or(&serial);
    assert!(
        finished.status.success() && finished.stdout.contains("KEEL-ISOLATION-FLOW-OK"),
        "isolation_flow.py failed ({}):\n{}\n--- serial (last 6000 bytes) ---\n{tail}",
        finished.status,
        finished.output(),
    );
    for line in finished.stdout.lines().filter(|l| l.starts_with("FIGURE ")) {
        println!("{line}");
    }
    // The hammer kept going while the other guest and the API answered.
    let after = hammer_passes(&serial).unwrap_or(0);
    assert!(
        after > before,
        "the hammer guest made no progress during the flow ({before} passes before, {after} after)\n{tail}"
    );
    println!(
        "FIGURE hammer passes (8 MiB direct write + read) during the flow: {}",
        after - before
    );
    for bad in [
        "KEEL-INSMOD-FAILED",
        "KEEL-HAMMER-NO-DISK",
        "KEEL-HAMMER-WRITE-FAILED",
        "KEEL-HAMMER-READ-FAILED",
        "Kernel panic",
    ] {
        assert!(!serial.contains(bad), "{bad}\n{tail}");
    }
    let (_, json) = health(&qemu);
    assert_eq!(json["status"], "ok", "{json}");
}
