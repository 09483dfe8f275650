//! Image tests: the real keel image boots in QEMU (TCG) and is driven over
//! its serial console, its HTTP port (forwarded from loopback) and its exit
//! status. `cargo xtask test` runs them with `KEEL_IMAGE` and
//! `KEEL_HOST_CONFIG_BIN` set.

mod bench_guest_io;
mod bochs;
mod bond;
mod bond_api;
mod boot;
mod disk;
mod faults;
mod grub;
mod guest_disk;
mod guest_net;
mod host_config;
mod hypervisor;
mod iscsi_sr;
mod isolation;
mod lacp_switch;
mod local_sr;
mod media;
mod persistence;
mod power;
mod upgrade_api;
mod upgrade_writer;
mod vbd_vm;
mod vm_lifecycle;
mod workflow;
mod xenapi;

use std::time::Duration;

use qemu_tests::{HttpResponse, Qemu, QemuBuilder};
use serde_json::Value;

/// How long a boot may take to reach a given point (TCG on a loaded 2-core machine).
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(90);
/// The watchdog's limit for every image run.
pub const HARD_TIMEOUT: Duration = Duration::from_secs(120);
/// How long after a self-test's message QEMU must have exited.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// A keel run with `cpus` CPUs and `memory_mib` MiB under the hard timeout.
pub fn keel(cpus: u32, memory_mib: u32) -> QemuBuilder {
    Qemu::keel()
        .expect("the keel image (KEEL_IMAGE)")
        .cpus(cpus)
        .memory_mib(memory_mib)
        .hard_timeout(HARD_TIMEOUT)
}

/// Compiles `toml` with the host-config tool (`KEEL_HOST_CONFIG_BIN`) into
/// `dir/NAME.bin` (the source kept beside it as `NAME.toml`); returns the module's path.
pub fn compile_host_config(dir: &std::path::Path, name: &str, toml: &str) -> std::path::PathBuf {
    let tool = qemu_tests::host_config_bin_from_env().expect("the host-config tool");
    let (source, module) = (
        dir.join(format!("{name}.toml")),
        dir.join(format!("{name}.bin")),
    );
    std::fs::write(&source, toml).expect("write the config");
    let output = std::process::Command::new(&tool)
        .arg("compile")
        .arg(&source)
        .arg("-o")
        .arg(&module)
        .output()
        .expect("run host-config");
    assert!(
        output.status.success(),
        "host-config compile failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    module
}

/// A blank disk image of `bytes` at `path` (sparse, reads as zeros): a state
/// disk, a data disk or a LUN's backing file; returns `path`.
pub fn blank_disk(path: std::path::PathBuf, bytes: u64) -> std::path::PathBuf {
    std::fs::File::create(&path)
        .and_then(|f| f.set_len(bytes))
        .unwrap_or_else(|e| panic!("blank disk {}: {e}", path.display()));
    path
}

/// The Debian peer's initramfs (`target/peer/initrd.gz`, from `cargo xtask
/// setup`) with an overlay holding the peer's `modules` (`NAME.ko` under
/// `modules/`) and `files` (path, mode, bytes), such as the guest's `init`.
pub fn peer_initrd(modules: &[&str], files: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let peer = qemu_tests::workspace_root().join("target/peer");
    let read = |p: &std::path::Path| {
        std::fs::read(p)
            .unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask setup`)", p.display()))
    };
    let mut overlay = qemu_tests::cpio::Cpio::default();
    overlay.directory("modules");
    for m in modules {
        let file = format!("{m}.ko");
        overlay.file(
            &format!("modules/{file}"),
            0o644,
            &read(&peer.join("modules").join(&file)),
        );
    }
    for (path, mode, bytes) in files {
        overlay.file(path, *mode, bytes);
    }
    let mut initrd = read(&peer.join("initrd.gz"));
    // The kernel takes concatenated archives at 4-byte boundaries.
    initrd.resize(initrd.len().div_ceil(4) * 4, 0);
    initrd.extend(overlay.finish());
    initrd
}

/// The stock Debian kernel's virtio-pci transport modules, in load order:
/// what a guest loads before its virtio-blk or virtio-net driver.
pub const VIRTIO_PCI_MODULES: &[&str] = &[
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
];

/// The first lines of a Debian guest's initrd `/init`: busybox's applets,
/// proc, sys and devtmpfs mounted, then each of `MODULES` (replaced by the
/// caller with the names) loaded from `/modules`, a failure said on the console.
pub const GUEST_INIT_PREAMBLE: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in MODULES; do
    insmod /modules/$m.ko || echo "KEEL-INSMOD-FAILED $m" > /dev/console
done
"#;

/// Puts the Debian peer's kernel and `initrd` in the boot archive's
/// library: the VMs' `PV_kernel = boot:debian/vmlinuz` and
/// `PV_ramdisk = boot:debian/initrd`.
pub fn debian_library(cpio: &mut qemu_tests::cpio::Cpio, initrd: &[u8]) {
    let vmlinuz = qemu_tests::workspace_root().join("target/peer/vmlinuz");
    cpio.directory("library");
    cpio.directory("library/debian");
    cpio.file(
        "library/debian/vmlinuz",
        0o644,
        &std::fs::read(&vmlinuz)
            .unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask setup`)", vmlinuz.display())),
    );
    cpio.file("library/debian/initrd", 0o644, initrd);
}

/// The last 6000 bytes of a serial log, for failure messages.
pub fn serial_end(serial: &str) -> &str {
    let mut at = serial.len().saturating_sub(6000);
    while !serial.is_char_boundary(at) {
        at += 1;
    }
    &serial[at..]
}

/// Asserts that the SDK flow `name` (run by `run_bounded`) exited 0 and
/// printed `marker`, with its output and the serial log's end if not;
/// passes its FIGURE lines on. Returns the serial log.
pub fn assert_flow_passed(
    finished: &qemu_tests::process::Finished,
    qemu: &Qemu,
    name: &str,
    marker: &str,
) -> String {
    let serial = qemu.serial();
    assert!(
        finished.status.success() && finished.stdout.contains(marker),
        "{name} failed ({}):\n{}\n--- serial (last 6000 bytes) ---\n{}",
        finished.status,
        finished.output(),
        serial_end(&serial)
    );
    for line in finished.stdout.lines().filter(|l| l.starts_with("FIGURE ")) {
        println!("{line}");
    }
    serial
}

/// `GET /health`, asserted to be a 200 JSON answer; returns it and its parsed body.
pub fn health(qemu: &Qemu) -> (HttpResponse, Value) {
    let response = qemu
        .http_get("/health", BOOT_TIMEOUT)
        .expect("GET /health answers");
    assert_eq!(response.status, 200, "GET /health: {response:?}");
    let content_type = response.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "Content-Type {content_type:?}"
    );
    let json: Value = serde_json::from_str(&response.body)
        .unwrap_or_else(|e| panic!("GET /health body is not JSON ({e}): {:?}", response.body));
    (response, json)
}

/// The serial log must show `first`, and `then` after it.
pub fn assert_serial_order(serial: &str, first: &str, then: &str) {
    let at = serial
        .find(first)
        .unwrap_or_else(|| panic!("serial lacks {first:?}"));
    assert!(
        serial[at..].contains(then),
        "serial lacks {then:?} after {first:?}"
    );
}

/// The MD5 of `data` as `md5sum` prints it (what guests print of their disks).
pub fn md5_hex(data: &[u8]) -> String {
    let mut child = std::process::Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("md5sum");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(data)
        .expect("feed md5sum");
    let out = child.wait_with_output().expect("md5sum output");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}
