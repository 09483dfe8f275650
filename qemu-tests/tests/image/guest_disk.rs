//! A guest's disk: the stock Debian kernel loads its own `virtio_pci` and
//! `virtio_blk` modules (from `target/peer/modules/`, put there by `cargo
//! xtask setup`) and finds `/dev/vda` on our PCI bus. It reads what the host
//! put on the disk and writes a sector; when the VM ends the host logs a
//! checksum of the whole disk, which must match the host's copy with the
//! guest's sector in it. A second, read-only disk (as an ISO is attached)
//! reads but refuses writes. The guest's `virtio-rng` module finds our
//! virtio-rng and `/dev/hwrng` answers.

use std::fs;

use qemu_tests::cpio::Cpio;

use super::{health, keel};

/// The modules in load order (dependencies first).
const MODULES: &[&str] = &[
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "virtio_blk",
    "virtio-rng",
];

const DISK_BYTES: usize = 8 << 20;
const HOST_MARK_0: &[u8] = b"KEEL-HOST-SECTOR-0-f3a9c2";
const HOST_MARK_1M: &[u8] = b"KEEL-HOST-AT-1MIB-7b41e0";
const GUEST_MARK: &[u8] = b"KEEL-GUEST-WROTE-SECTOR-9";
const GUEST_SECTOR: usize = 9;
const ISO_MARK: &[u8] = b"KEEL-READ-ONLY-ISO-1";

/// The init after [`super::GUEST_INIT_PREAMBLE`].
const INIT: &str = r#"i=0
while [ ! -b /dev/vda ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done
echo "KEEL-VDA-SECTORS=$(cat /sys/block/vda/size)" > /dev/console
echo "KEEL-VDA-WRITE-ZEROES-MAX=$(cat /sys/block/vda/queue/write_zeroes_max_bytes)" > /dev/console
echo "KEEL-VDA-SERIAL=$(cat /sys/block/vda/serial)" > /dev/console
echo "KEEL-VDA-READ0=$(dd if=/dev/vda bs=512 count=1 2>/dev/null | head -c 25)" > /dev/console
echo "KEEL-VDA-READ1M=$(dd if=/dev/vda bs=512 skip=2048 count=1 2>/dev/null | head -c 24)" > /dev/console
printf 'GUEST_MARK' > /tmp/mark
dd if=/tmp/mark of=/dev/vda bs=512 seek=GUEST_SECTOR count=1 conv=sync,fsync 2>/dev/null && echo KEEL-VDA-WRITTEN > /dev/console
t0=$(cut -d' ' -f1 /proc/uptime | tr -d .)
for pass in 1 2 3 4; do dd if=/dev/vda of=/dev/null bs=1M count=8 iflag=direct 2>/dev/null; done
t1=$(cut -d' ' -f1 /proc/uptime | tr -d .)
echo "KEEL-VDA-DD=32 MiB in $((t1 - t0))0 ms" > /dev/console
echo "KEEL-VDB-RO=$(cat /sys/block/vdb/ro) $(dd if=/dev/vdb bs=512 count=1 2>/dev/null | head -c 20)" > /dev/console
dd if=/tmp/mark of=/dev/vdb bs=512 count=1 conv=sync,fsync 2>/dev/null || echo KEEL-VDB-WRITE-REFUSED > /dev/console
echo "KEEL-PCI=$(cat /sys/bus/pci/devices/0000:00:01.0/vendor):$(cat /sys/bus/pci/devices/0000:00:01.0/device)" > /dev/console
grep -E 'CPU|virtio0' /proc/interrupts > /dev/console
echo "KEEL-HWRNG=$(cat /sys/class/misc/hw_random/rng_current) $(dd if=/dev/hwrng bs=32 count=1 2>/dev/null | wc -c)" > /dev/console
echo "KEEL-VDA-MSIX=$(grep -c 'virtio0-req' /proc/interrupts)" > /dev/console
# The console drains before the kernel prints its power-off lines into it.
sleep 2
poweroff -f
"#;

/// FNV-1a, 64-bit, as the host logs it.
fn fnv1a64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn disk_image() -> Vec<u8> {
    let mut d: Vec<u8> = (0..DISK_BYTES).map(|i| (i / 512 * 7 + i) as u8).collect();
    d[..HOST_MARK_0.len()].copy_from_slice(HOST_MARK_0);
    d[1 << 20..(1 << 20) + HOST_MARK_1M.len()].copy_from_slice(HOST_MARK_1M);
    d
}

fn guest_initrd() -> Vec<u8> {
    let init = format!("{}{INIT}", super::GUEST_INIT_PREAMBLE)
        .replace("MODULES", &MODULES.join(" "))
        .replace("GUEST_MARK", &String::from_utf8_lossy(GUEST_MARK))
        .replace("GUEST_SECTOR", &GUEST_SECTOR.to_string());
    super::peer_initrd(MODULES, &[("init", 0o755, init.as_bytes())])
}

#[test]
fn debian_guest_reads_and_writes_its_virtio_disk() {
    let builder = keel(2, 1024).hard_timeout(std::time::Duration::from_secs(300));
    let peer = qemu_tests::workspace_root().join("target/peer");
    let disk = disk_image();
    let mut iso = vec![0u8; 1 << 20];
    iso[..ISO_MARK.len()].copy_from_slice(ISO_MARK);
    let mut cpio = Cpio::default();
    let files: Vec<(String, Vec<u8>)> = vec![
        (
            "guests/vdisk/kernel".into(),
            fs::read(peer.join("vmlinuz")).expect("target/peer/vmlinuz (run `cargo xtask setup`)"),
        ),
        ("guests/vdisk/initrd".into(), guest_initrd()),
        ("guests/vdisk/cmdline".into(), b"console=ttyS0".to_vec()),
        // Two vCPUs: Linux may aim the queue's MSI-X vector at either.
        ("guests/vdisk/vcpus".into(), b"2".to_vec()),
        ("guests/vdisk/disk".into(), disk.clone()),
        ("guests/vdisk/iso".into(), iso.clone()),
    ];
    for (path, data) in &files {
        cpio.file(path, 0o644, data);
    }
    let archive = builder.dir().join("modules.cpio");
    fs::write(&archive, cpio.finish()).expect("write archive");
    let qemu = builder.initrd(&archive).spawn().expect("spawn QEMU");

    let timeout = std::time::Duration::from_secs(280);
    qemu.wait_for_serial(
        "vm vdisk: disk vda (8388608 bytes) is virtio-blk at 00:01.0",
        timeout,
    )
    .expect("the host attaches the disk");
    for line in [
        format!("vm vdisk: KEEL-VDA-SECTORS={}", DISK_BYTES / 512),
        "vm vdisk: KEEL-VDA-SERIAL=vda".to_string(),
        // VIRTIO_BLK_F_WRITE_ZEROES was negotiated, with our limit (8192 sectors:
        // zeros move through host memory as a write does, so 4 MiB like one).
        "vm vdisk: KEEL-VDA-WRITE-ZEROES-MAX=4194304".to_string(),
        format!(
            "vm vdisk: KEEL-VDA-READ0={}",
            std::str::from_utf8(HOST_MARK_0).unwrap()
        ),
        format!(
            "vm vdisk: KEEL-VDA-READ1M={}",
            std::str::from_utf8(HOST_MARK_1M).unwrap()
        ),
        "vm vdisk: KEEL-VDA-WRITTEN".to_string(),
        "vm vdisk: disk vdb (1048576 bytes, read-only) is virtio-blk at 00:02.0".to_string(),
        format!(
            "vm vdisk: KEEL-VDB-RO=1 {}",
            String::from_utf8_lossy(ISO_MARK)
        ),
        "vm vdisk: KEEL-VDB-WRITE-REFUSED".to_string(),
        "vm vdisk: KEEL-PCI=0x1af4:0x1042".to_string(),
        "vm vdisk: KEEL-HWRNG=virtio_rng.0 32".to_string(),
        "vm vdisk: powered off (ACPI S5)".to_string(),
    ] {
        qemu.wait_for_serial(&line, timeout)
            .unwrap_or_else(|e| panic!("{line}: {e}"));
    }
    let mut expected = disk;
    let at = GUEST_SECTOR * 512;
    expected[at..at + 512].fill(0);
    expected[at..at + GUEST_MARK.len()].copy_from_slice(GUEST_MARK);
    let line = format!(
        "vm vdisk: disk vda: {DISK_BYTES} bytes, fnv1a64 {:016x}",
        fnv1a64(&expected)
    );
    qemu.wait_for_serial(&line, timeout)
        .unwrap_or_else(|e| panic!("the disk holds the host's data and the guest's sector: {e}"));
    // Direct 1 MiB reads of the whole RAM disk, four times, timed by the guest's uptime (10 ms steps).
    for l in qemu.serial().lines().filter(|l| l.contains("KEEL-VDA-DD=")) {
        let at = l.find("KEEL-VDA-DD=").unwrap_or(0) + "KEEL-VDA-DD=".len();
        println!("FIGURE guest virtio-blk direct reads: {}", &l[at..]);
    }
    let (_, json) = health(&qemu);
    assert_eq!(json["status"], "ok", "{json}");
    let serial = qemu.serial();
    assert!(
        !serial.contains("KEEL-INSMOD-FAILED"),
        "a module did not load"
    );
    assert!(
        serial.contains("PCI: MMCONFIG at [mem 0xe0000000-0xe00fffff] reserved"),
        "Linux uses the MCFG's ECAM window"
    );
    assert!(
        serial.contains("vm vdisk: KEEL-VDA-MSIX=1"),
        "completions arrive as MSI-X interrupts"
    );
    assert!(
        !serial.contains("Kernel panic"),
        "the guest kernel panicked"
    );
}
