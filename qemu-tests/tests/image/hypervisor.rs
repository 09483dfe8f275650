//! The hypervisor (AMD SVM with nested paging, emulated by QEMU TCG): guests
//! from `qemu-tests/guests/` are assembled, packed into the boot-module
//! archive as `guests/<name>.elf`, and started by the image at boot.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use qemu_tests::cpio::Cpio;

use super::{BOOT_TIMEOUT, health, keel};

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Assembles `qemu-tests/guests/<name>.S` into a static ELF linked at 2 MiB.
fn assemble(name: &str, out_dir: &Path) -> PathBuf {
    assemble_as(name, name, &[], out_dir)
}

/// How a test guest is linked.
const STATIC_AT_2MIB: &[&str] = &["-static", "-Ttext=0x200000"];
/// A static PIE linked at 0 and relocated by the loader, as Hermit applications are.
const STATIC_PIE: &[&str] = &["-pie", "--no-dynamic-linker", "-z", "noexecstack"];

/// Assembles `guests/<source>.S` with `--defsym` symbols into a static ELF `<name>.elf`.
fn assemble_as(source: &str, name: &str, defs: &[(&str, u64)], out_dir: &Path) -> PathBuf {
    assemble_linked(source, name, defs, STATIC_AT_2MIB, out_dir)
}

/// The same, linked as a static PIE.
fn assemble_pie(source: &str, name: &str, defs: &[(&str, u64)], out_dir: &Path) -> PathBuf {
    assemble_linked(source, name, defs, STATIC_PIE, out_dir)
}

fn assemble_linked(
    source: &str,
    name: &str,
    defs: &[(&str, u64)],
    link: &[&str],
    out_dir: &Path,
) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("guests")
        .join(format!("{source}.S"));
    let obj = out_dir.join(format!("{name}.o"));
    let elf = out_dir.join(format!("{name}.elf"));
    let mut as_cmd = Command::new("as");
    as_cmd.arg("--64");
    for (sym, value) in defs {
        as_cmd.arg("--defsym").arg(format!("{sym}={value}"));
    }
    run(as_cmd.arg("-o").arg(&obj).arg(&src));
    run(Command::new("ld")
        .args(link)
        .args(["-nostdlib", "-e", "_start", "-o"])
        .arg(&elf)
        .arg(&obj));
    elf
}

/// A newc cpio archive (the boot-module format for several files) of `files`:
/// (path inside the archive, contents). Written to the test's folder.
fn archive(dir: &Path, files: &[(String, Vec<u8>)]) -> PathBuf {
    let mut cpio = Cpio::default();
    for (path, data) in files {
        cpio.file(path, 0o644, data);
    }
    let out = dir.join("modules.cpio");
    fs::write(&out, cpio.finish()).expect("write archive");
    out
}

/// The archive of `guests/<name>.elf` for each assembled guest.
fn guest_archive(dir: &Path, guests: &[&str]) -> PathBuf {
    let files: Vec<(String, Vec<u8>)> = guests
        .iter()
        .map(|g| {
            (
                format!("guests/{g}.elf"),
                fs::read(assemble(g, dir)).expect("read guest"),
            )
        })
        .collect();
    archive(dir, &files)
}

#[test]
fn guests_run_and_hostile_guests_are_stopped() {
    let builder = keel(4, 1024);
    let archive = guest_archive(builder.dir(), &["ports", "mmio", "hello"]);
    let qemu = builder.initrd(&archive).spawn().expect("spawn QEMU");

    // Hostile guests are stopped with a reason...
    qemu.wait_for_serial("vm ports: crashed: triple fault", BOOT_TIMEOUT)
        .expect("ports guest stopped");
    qemu.wait_for_serial(
        "vm mmio: crashed: write to guest-physical 0xf0000000, which is not the VM's memory",
        BOOT_TIMEOUT,
    )
    .expect("mmio guest stopped");
    // ...while a well-behaved guest runs to its end after them,
    for line in [
        "vm hello: hello from a keel guest",
        "vm hello: hypervisor KeelKeelKeel",
        "vm hello: #GP for an unknown MSR",
        "vm hello: resumed after the #GP",
        "vm hello: halted after",
    ] {
        qemu.wait_for_serial(line, BOOT_TIMEOUT)
            .unwrap_or_else(|e| panic!("{line}: {e}"));
    }
    // ...and the host carries on.
    let (_, json) = health(&qemu);
    assert_eq!(json["status"], "ok", "{json}");
    assert_eq!(json["cpus"], 4, "{json}");
    let serial = qemu.serial();
    assert!(
        !serial.contains("KERNEL PANIC") && !serial.contains("EXCEPTION"),
        "the host faulted"
    );
}

#[test]
fn a_bad_guest_image_is_refused_and_the_host_carries_on() {
    let builder = keel(2, 512);
    let junk = (
        String::from("guests/junk.elf"),
        b"\x7fELF this is not a real executable".to_vec(),
    );
    let archive = archive(builder.dir(), &[junk]);
    let qemu = builder.initrd(&archive).spawn().expect("spawn QEMU");
    qemu.wait_for_serial(
        "vm junk: not started: the guest image cannot be loaded",
        BOOT_TIMEOUT,
    )
    .expect("junk image refused");
    let (_, json) = health(&qemu);
    assert_eq!(json["status"], "ok", "{json}");
}

/// The stock Debian kernel and busybox initramfs that `cargo xtask setup`
/// fetches for the boot benchmark.
fn debian_guest(name: &str, cmdline: &str) -> Vec<(String, Vec<u8>)> {
    let peer = qemu_tests::workspace_root().join("target/peer");
    let read = |f: &str| {
        fs::read(peer.join(f))
            .unwrap_or_else(|e| panic!("{}/{f}: {e} (run `cargo xtask setup`)", peer.display()))
    };
    vec![
        (format!("guests/{name}/kernel"), read("vmlinuz")),
        (format!("guests/{name}/initrd"), read("initrd.gz")),
        (
            format!("guests/{name}/cmdline"),
            cmdline.as_bytes().to_vec(),
        ),
    ]
}

/// The guest sees ACPI tables (MADT with its LAPIC and the IOAPIC, FADT with
/// the PM timer and S5); these guests have no PCI devices, so `pci=off`
/// spares their boot the bus scan (`guest_disk` boots with PCI).
const LINUX_CMDLINE: &str = "console=ttyS0 pci=off";

#[test]
fn debian_kernel_boots_as_a_guest_beside_another_guest() {
    let builder = keel(4, 1024).hard_timeout(std::time::Duration::from_secs(240));
    let mut files = debian_guest("debian", LINUX_CMDLINE);
    // An odd number of MiB: the last MiB is mapped with 4 KiB nested pages.
    files.push(("guests/debian/memory_mib".into(), b"131".to_vec()));
    let hello = assemble("hello", builder.dir());
    files.push((
        "guests/hello.elf".into(),
        fs::read(hello).expect("read guest"),
    ));
    let archive = archive(builder.dir(), &files);
    let qemu = builder.initrd(&archive).spawn().expect("spawn QEMU");

    let timeout = std::time::Duration::from_secs(200);
    qemu.wait_for_serial("vm debian: [    0.000000] Linux version", timeout)
        .expect("Linux starts");
    qemu.wait_for_serial("vm hello: halted after", timeout)
        .expect("the other guest runs too");
    qemu.wait_for_serial("vm debian: KEEL-PEER-INIT-REACHED", timeout)
        .expect("busybox /init runs");
    qemu.wait_for_serial("vm debian: powered off (ACPI S5)", timeout)
        .expect("poweroff -f powers the VM off through ACPI");
    qemu.wait_for_serial("vm debian: halted after", timeout)
        .expect("the VM is reported stopped");
    let (_, json) = health(&qemu);
    assert_eq!(json["status"], "ok", "{json}");
    let serial = qemu.serial();
    assert!(
        serial.contains("vm debian: [    0.000000] Command line: console=ttyS0 pci=off"),
        "command line reached Linux"
    );
    assert!(
        serial.contains("-0x00000000082fffff] usable"),
        "the guest's memory map ends at exactly 131 MiB"
    );
    assert!(
        !serial.contains("Kernel panic"),
        "the guest kernel panicked"
    );
}

/// The peer's initramfs with its `/init` replaced: Linux unpacks concatenated
/// archives (each starting 4-byte aligned) and later files win.
fn initrd_reporting_cpus() -> Vec<u8> {
    let mut overlay = Cpio::default();
    overlay.file(
        "init",
        0o755,
        b"#!/bin/busybox sh\n\
          /bin/busybox mkdir -p /proc\n\
          /bin/busybox mount -t proc proc /proc\n\
          echo \"KEEL-GUEST-CPUS=$(/bin/busybox grep -c ^processor /proc/cpuinfo)\" > /dev/console\n\
          /bin/busybox sleep 2\n\
          /bin/busybox poweroff -f\n",
    );
    let peer = qemu_tests::workspace_root().join("target/peer/initrd.gz");
    let mut initrd = fs::read(&peer)
        .unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask setup`)", peer.display()));
    initrd.resize(initrd.len().div_ceil(4) * 4, 0);
    initrd.extend(overlay.finish());
    initrd
}

#[test]
fn two_smp_debian_guests_at_once() {
    // Four vCPUs on the two host CPUs besides the one serving I/O: each
    // host CPU runs two of them in time slices.
    let builder = keel(3, 1536).hard_timeout(std::time::Duration::from_secs(300));
    let initrd = initrd_reporting_cpus();
    let mut files = Vec::new();
    for name in ["left", "right"] {
        let mut guest = debian_guest(name, LINUX_CMDLINE);
        guest[1].1 = initrd.clone();
        guest.push((format!("guests/{name}/vcpus"), b"2".to_vec()));
        files.extend(guest);
    }
    let archive = archive(builder.dir(), &files);
    let qemu = builder.initrd(&archive).spawn().expect("spawn QEMU");
    let timeout = std::time::Duration::from_secs(280);
    for name in ["left", "right"] {
        qemu.wait_for_serial(
            &format!("vm {name}: [    0.000000] smpboot: Allowing 2 CPUs"),
            timeout,
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for name in ["left", "right"] {
        for line in [
            format!("vm {name}: KEEL-GUEST-CPUS=2"),
            format!("vm {name}: powered off (ACPI S5)"),
            format!("vm {name}: halted after"),
        ] {
            qemu.wait_for_serial(&line, timeout)
                .unwrap_or_else(|e| panic!("{line}: {e}"));
        }
    }
    let (_, json) = health(&qemu);
    assert_eq!(json["status"], "ok", "{json}");
    let serial = qemu.serial();
    assert!(
        serial.contains("smp: Brought up 1 node, 2 CPUs"),
        "the guests started their second vCPU"
    );
    assert!(!serial.contains("Kernel panic"), "a guest kernel panicked");
}

#[test]
fn a_guest_never_sees_the_registers_an_earlier_guest_left() {
    // Two CPUs: both guests run, one after the other, on the only AP.
    let builder = keel(2, 512);
    let archive = guest_archive(builder.dir(), &["secret", "snoop"]);
    let qemu = builder.initrd(&archive).spawn().expect("spawn QEMU");
    qemu.wait_for_serial("vm secret: halted after", BOOT_TIMEOUT)
        .expect("secret guest ran");
    let line = qemu
        .wait_for_serial("vm snoop: xmm0=", BOOT_TIMEOUT)
        .expect("snoop guest ran");
    assert!(
        line.contains("vm snoop: xmm0=0000000000000000"),
        "state leaked between guests: {line}"
    );
    assert!(
        qemu.serial().contains("started, 1 vCPU(s) on cpu[1]"),
        "both guests ran on cpu1"
    );
}

#[test]
fn vcpus_share_a_host_cpu_in_time_slices_and_keep_their_registers() {
    // Two CPUs: the boot CPU serves I/O, so both guests share the only AP.
    let builder = keel(2, 512);
    let dir = builder.dir().to_path_buf();
    let forever = assemble_as(
        "spin",
        "forever",
        &[("PATTERN", 0x1234_5678), ("ROUNDS", 0), ("XCR0", 3)],
        &dir,
    );
    let finite = assemble_as(
        "spin",
        "finite",
        &[("PATTERN", 0x9abc_def0), ("ROUNDS", 64), ("XCR0", 1)],
        &dir,
    );
    let files = vec![
        (
            "guests/forever.elf".to_string(),
            fs::read(forever).expect("read guest"),
        ),
        (
            "guests/finite.elf".to_string(),
            fs::read(finite).expect("read guest"),
        ),
    ];
    let archive = archive(&dir, &files);
    let qemu = builder.initrd(&archive).spawn().expect("spawn QEMU");
    // `forever` is started first and never yields by itself: `finite` only
    // gets to finish if the host preempts it.
    qemu.wait_for_serial("vm finite: spun, registers intact", BOOT_TIMEOUT)
        .expect("the second guest ran to its end beside a guest that never stops");
    qemu.wait_for_serial("vm finite: halted after", BOOT_TIMEOUT)
        .expect("finite halted");
    // `forever` kept running, with its registers, after `finite` ended.
    let ticks = |s: &str| s.matches("vm forever: tick").count();
    let before = ticks(&qemu.serial());
    let deadline = std::time::Instant::now() + BOOT_TIMEOUT;
    while ticks(&qemu.serial()) <= before + 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "forever stopped ticking after finite ended:\n{}",
            qemu.serial_tail(20)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let serial = qemu.serial();
    assert!(
        serial.contains("vm forever: started, 1 vCPU(s) on cpu[1]")
            && serial.contains("vm finite: started, 1 vCPU(s) on cpu[1]"),
        "both guests were placed on cpu1"
    );
    assert!(
        ticks(&serial[..serial.find("vm finite: spun").expect("finite line")]) > 0,
        "forever ran while finite was running"
    );
    assert!(
        !serial.contains("REGISTERS CHANGED"),
        "a guest's extended registers or XCR0 changed under it"
    );
    let (_, json) = health(&qemu);
    assert_eq!(json["status"], "ok", "{json}");
}

#[test]
fn a_guest_uses_x2apic_and_the_tsc_deadline_timer() {
    let builder = keel(2, 512);
    let archive = guest_archive(builder.dir(), &["x2apic"]);
    let qemu = builder.initrd(&archive).spawn().expect("spawn QEMU");
    for line in [
        "vm x2apic: x2APIC mode on, ID 0",
        "vm x2apic: TSC-deadline timer fired",
        "vm x2apic: self IPI through x2APIC delivered",
        "vm x2apic: halted after",
    ] {
        qemu.wait_for_serial(line, BOOT_TIMEOUT)
            .unwrap_or_else(|e| panic!("{line}: {e}\n{}", qemu.serial_tail(20)));
    }
    assert!(!qemu.serial().contains("CHECK FAILED"));
}

#[test]
fn a_hermit_image_starts_the_way_uhyve_starts_it() {
    let builder = keel(2, 512);
    let dir = builder.dir().to_path_buf();
    let good = assemble_pie("hermit", "hermit", &[], &dir);
    let newer = assemble_pie("hermit", "newer", &[("ENTRY_VERSION", 9)], &dir);
    let files = vec![
        (
            "guests/hermit.elf".to_string(),
            fs::read(good).expect("read guest"),
        ),
        (
            "guests/newer.elf".to_string(),
            fs::read(newer).expect("read guest"),
        ),
    ];
    let archive = archive(&dir, &files);
    let qemu = builder.initrd(&archive).spawn().expect("spawn QEMU");
    for line in [
        "vm newer: not started: the Hermit image cannot be started: Hermit entry version 9",
        "vm hermit: entered in 64-bit mode as CPU 0",
        "vm hermit: boot info: serial 0x3f8, uhyve platform, 1 CPU, image range ok",
        "vm hermit: relocations applied",
        "vm hermit: halted after",
    ] {
        qemu.wait_for_serial(line, BOOT_TIMEOUT)
            .unwrap_or_else(|e| panic!("{line}: {e}\n{}", qemu.serial_tail(20)));
    }
    assert!(!qemu.serial().contains("CHECK FAILED"));
    let (_, json) = health(&qemu);
    assert_eq!(json["status"], "ok", "{json}");
}

#[test]
fn a_guest_that_resets_is_restarted() {
    let builder = keel(2, 512);
    let dir = builder.dir().to_path_buf();
    let cf9 = assemble_as("reboot", "cf9", &[], &dir);
    let kbd = assemble_as("reboot", "kbd", &[("KBD", 1)], &dir);
    let files = vec![
        (
            "guests/cf9.elf".to_string(),
            fs::read(cf9).expect("read guest"),
        ),
        (
            "guests/kbd.elf".to_string(),
            fs::read(kbd).expect("read guest"),
        ),
    ];
    let archive = archive(&dir, &files);
    let qemu = builder.initrd(&archive).spawn().expect("spawn QEMU");
    for name in ["cf9", "kbd"] {
        let boots = |s: &str| {
            s.matches(&format!("vm {name}: booting, then resetting"))
                .count()
        };
        let deadline = std::time::Instant::now() + BOOT_TIMEOUT;
        while boots(&qemu.serial()) < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "{name} was not restarted after its reset:\n{}",
                qemu.serial_tail(20)
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(
            qemu.serial()
                .contains(&format!("vm {name}: restarting after the guest reset")),
            "{name}: the restart is logged"
        );
    }
    let serial = qemu.serial();
    assert!(
        !serial.contains("STILL RUNNING"),
        "a reset did not stop the guest"
    );
    assert!(!serial.contains("crashed"), "a restart failed");
    let (_, json) = health(&qemu);
    assert_eq!(json["status"], "ok", "{json}");
}

#[test]
fn string_port_io_is_emulated() {
    let builder = keel(2, 512);
    let archive = guest_archive(builder.dir(), &["strio"]);
    let qemu = builder.initrd(&archive).spawn().expect("spawn QEMU");
    for line in [
        "vm strio: REP OUTSB printed this line",
        "vm strio: INSB read the line status",
        "vm strio: OUTSW through FS advanced RSI",
        "vm strio: halted after",
    ] {
        qemu.wait_for_serial(line, BOOT_TIMEOUT)
            .unwrap_or_else(|e| panic!("{line}: {e}\n{}", qemu.serial_tail(20)));
    }
    assert!(!qemu.serial().contains("CHECK FAILED"));
}

#[test]
fn a_hostile_virtio_driver_gets_its_device_reset_not_the_host() {
    let builder = keel(2, 1024);
    let files = vec![
        (
            "guests/vhostile.elf".to_string(),
            fs::read(assemble("virtio_hostile", builder.dir())).expect("read guest"),
        ),
        ("guests/vhostile.disk".to_string(), vec![0x5a; 4096]),
        (
            "guests/hello.elf".to_string(),
            fs::read(assemble("hello", builder.dir())).expect("read guest"),
        ),
    ];
    let archive = archive(builder.dir(), &files);
    let qemu = builder.initrd(&archive).spawn().expect("spawn QEMU");
    for line in [
        "vm vhostile: disk vda (4096 bytes) is virtio-blk at 00:01.0",
        "vm vhostile: KEEL-VIRTIO-FEATURES-OK",
        "vm vhostile: disk vda: needs reset: a descriptor chain is longer than the queue (a loop)",
        "vm vhostile: KEEL-VIRTIO-NEEDS-RESET",
        "vm vhostile: KEEL-VIRTIO-GARBAGE-DONE",
        "vm vhostile: halted after",
        "vm hello: halted after",
    ] {
        qemu.wait_for_serial(line, BOOT_TIMEOUT)
            .unwrap_or_else(|e| panic!("{line}: {e}"));
    }
    let (_, json) = health(&qemu);
    assert_eq!(json["status"], "ok", "{json}");
    assert!(
        !qemu.serial().contains("vm vhostile: crashed"),
        "garbage in the device's BAR and config space is absorbed, as on a real bus"
    );
}

#[test]
fn a_boot_file_too_big_for_the_heap_is_skipped_not_a_panic() {
    let builder = keel(2, 512);
    let files = vec![
        (
            "guests/hello.elf".to_string(),
            fs::read(assemble("hello", builder.dir())).expect("read guest"),
        ),
        // The archive itself fits in the heap; a copy of this file beside it does not.
        ("library/big.iso".to_string(), vec![0xa5; 20 << 20]),
    ];
    let archive = archive(builder.dir(), &files);
    let qemu = builder.initrd(&archive).spawn().expect("spawn QEMU");
    qemu.wait_for_serial(
        "boot file library/big.iso (20971520 bytes) does not fit in the heap",
        BOOT_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", qemu.serial_tail(20)));
    qemu.wait_for_serial("vm hello: halted after", BOOT_TIMEOUT)
        .unwrap_or_else(|e| {
            panic!(
                "the other boot file still runs: {e}\n{}",
                qemu.serial_tail(20)
            )
        });
    let (_, json) = health(&qemu);
    assert_eq!(json["status"], "ok", "{json}");
}
