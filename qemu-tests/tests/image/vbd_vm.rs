//! A VM's disk on an iSCSI SR: the image logs in to tgtd with mutual CHAP
//! (`SR.create`), a VDI gets a pattern through `PUT /import_raw_vdi`, a
//! disk VBD joins it to a VM cloned from the template, and `VM.start` boots
//! the Debian peer kernel with that VDI as its virtio-blk `/dev/vda`, served
//! through the disk channel by the disk's iSCSI session (and SR batch jobs
//! for what needs the SR). The guest prints the MD5 of the whole disk
//! (compared with the pattern's), times a direct read and a direct write of
//! the disk onto itself, writes a sector, discards one whole cluster
//! (`blkdiscard`: virtio-blk discard, the SR reclaims the cluster) and powers
//! off; the VBD is detached, the VDI's `physical_utilisation` is a cluster
//! less, and `GET /export_raw_vdi` shows the guest's sector and the zeros. Then `VM.clone` of the halted VM clones its
//! disk copy-on-write and the clone's guest reads the same data. Both VMs
//! also have a CD drive (`type` `CD`, `mode` `RO`) of an ISO uploaded into
//! an ISO library (an `iso` SR on a second LUN): the guests see it as a
//! read-only `/dev/vdb` holding the ISO's bytes, and a write to it fails.

use std::fs;
use std::process::Command;
use std::time::Duration;

use qemu_tests::cpio::Cpio;
use qemu_tests::{TestDir, run_bounded};

use super::iscsi_sr::Tgtd;
use super::{BOOT_TIMEOUT, health, keel};

const PASSWORD: &str = "qemu-vbd-password";
const VDI_BYTES: usize = 4 << 20;
const GUEST_MARK: &[u8] = b"KEEL-GUEST-WROTE-VBD-SECTOR-21";
const GUEST_SECTOR: usize = 21;
/// The range the guest discards: one whole 1 MiB cluster of the SR, which
/// reads as zeros afterwards and goes back to the SR's free space.
const DISCARD: std::ops::Range<usize> = (2 << 20)..(3 << 20);
const ISO_BYTES: usize = (2 << 20) + 6 * 2048;
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(900);
const QEMU_HARD_TIMEOUT: Duration = Duration::from_secs(960);

/// The init after [`super::GUEST_INIT_PREAMBLE`].
const INIT: &str = r#"i=0
while [ ! -b /dev/vda ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
echo "KEEL-VBD-SECTORS=$(cat /sys/block/vda/size)" > /dev/console
t0=$(cut -d' ' -f1 /proc/uptime | tr -d .)
dd if=/dev/vda of=/dev/null bs=1M iflag=direct 2>/dev/null
t1=$(cut -d' ' -f1 /proc/uptime | tr -d .)
echo "KEEL-VBD-DD=VDI_MIB MiB in $((t1 - t0))0 ms" > /dev/console
echo "KEEL-VBD-MD5=$(md5sum /dev/vda | cut -d' ' -f1)" > /dev/console
i=0
while [ ! -b /dev/vdb ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
echo "KEEL-CD-RO=$(cat /sys/block/vdb/ro) KEEL-CD-MD5=$(md5sum /dev/vdb | cut -d' ' -f1)" > /dev/console
if dd if=/dev/zero of=/dev/vdb bs=512 count=1 oflag=direct conv=fsync 2>/dev/null; then echo KEEL-CD-WRITE-ACCEPTED > /dev/console; else echo KEEL-CD-WRITE-REFUSED > /dev/console; fi
dd if=/dev/vda of=/tmp/disk bs=1M 2>/dev/null
t0=$(cut -d' ' -f1 /proc/uptime | tr -d .)
dd if=/tmp/disk of=/dev/vda bs=1M oflag=direct conv=fsync 2>/dev/null && rm /tmp/disk
t1=$(cut -d' ' -f1 /proc/uptime | tr -d .)
echo "KEEL-VBD-DD-WRITE=VDI_MIB MiB in $((t1 - t0))0 ms" > /dev/console
printf 'GUEST_MARK' > /tmp/mark
dd if=/tmp/mark of=/dev/vda bs=512 seek=GUEST_SECTOR count=1 conv=sync,fsync 2>/dev/null && echo KEEL-VBD-WRITTEN > /dev/console
if [ "$(cat /sys/block/vda/queue/discard_max_bytes)" != 0 ] && blkdiscard -o DISCARD_AT -l DISCARD_LEN /dev/vda 2>/dev/null; then echo KEEL-VBD-DISCARDED > /dev/console; else echo KEEL-VBD-DISCARD-FAILED > /dev/console; fi
# The console drains before the kernel prints its power-off lines into it.
sleep 2
poweroff -f
"#;

/// The SDK side: SR, VDI, import, VBD, VM, start, wait for Halted, export.
const FLOW: &str = r#"
import os, sys, urllib.request
sys.path.insert(0, os.environ["FLOW_DIR"])
from storage_flow import debian_vm, imported_vdi, iscsi_sr, iso_library, login, wait_halted
s, url = login("vbd-test")
x = s.xenapi
host = x.host.get_all()[0]
sr = iscsi_sr(x, host, "vbd-sr")
vdi, q = imported_vdi(s, url, sr, "disk0", open(os.environ["VDI_PATTERN"], "rb").read())
vm, vbd = debian_vm(x, "vbd1", vdi)
# An ISO uploaded into an ISO library on the second LUN, as a CD drive.
isos = iso_library(x, host, "isos")
iso, iq = imported_vdi(s, url, isos, "test.iso", open(os.environ["ISO_PATTERN"], "rb").read())
assert x.VDI.get_read_only(iso) is True
x.VBD.create({"VM": vm, "VDI": iso, "userdevice": "3", "bootable": False, "mode": "RO",
              "type": "CD", "empty": False, "other_config": {}})
x.VM.start(vm, False, False)
assert x.VBD.get_currently_attached(vbd) is True
wait_halted(x, vm, float(os.environ["GUEST_TIMEOUT"]))
assert x.VBD.get_currently_attached(vbd) is False
# The guest discarded one whole cluster: the SR got it back.
x.SR.scan(sr)
print("VDI-PHYSICAL", x.VDI.get_physical_utilisation(vdi))
with urllib.request.urlopen(f"{url}/export_raw_vdi?{q}", timeout=200) as r:
    out = r.read()
open(os.environ["VDI_OUT"], "wb").write(out)
# The halted VM cloned: its disk is a copy-on-write clone of the VDI, and
# the clone's guest reads what the first guest left there.
clone = x.VM.clone(vm, "vbd2")
[cvbd] = [v for v in x.VM.get_VBDs(clone) if x.VBD.get_type(v) == "Disk"]
cvdi = x.VBD.get_VDI(cvbd)
assert cvdi != vdi and x.VDI.get_SR(cvdi) == sr
assert x.VBD.get_userdevice(cvbd) == "0" and x.VBD.get_bootable(cvbd) is True
x.VM.start(clone, False, False)
wait_halted(x, clone, float(os.environ["GUEST_TIMEOUT"]), "the clone's guest")
print("FLOW-DONE", len(out))
"#;

/// A pattern that differs at every offset modulo a prime.
fn pattern() -> Vec<u8> {
    (0..VDI_BYTES)
        .map(|i| ((i * 31 + 7 + i / 509) % 251) as u8)
        .collect()
}

fn guest_initrd() -> Vec<u8> {
    let modules = [super::VIRTIO_PCI_MODULES, &["virtio_blk"]].concat();
    let init = format!("{}{INIT}", super::GUEST_INIT_PREAMBLE)
        .replace("MODULES", &modules.join(" "))
        .replace("VDI_MIB", &(VDI_BYTES >> 20).to_string())
        .replace("GUEST_MARK", &String::from_utf8_lossy(GUEST_MARK))
        .replace("GUEST_SECTOR", &GUEST_SECTOR.to_string())
        .replace("DISCARD_AT", &DISCARD.start.to_string())
        .replace("DISCARD_LEN", &DISCARD.len().to_string());
    super::peer_initrd(&modules, &[("init", 0o755, init.as_bytes())])
}

fn host_config(dir: &std::path::Path) -> Vec<u8> {
    fs::read(super::compile_host_config(
        dir,
        "vbd",
        &format!("hostname = \"keel-vbd-test\"\nroot_password = \"{PASSWORD}\"\n"),
    ))
    .expect("the compiled config")
}

#[test]
fn vm_start_gives_the_guest_its_iscsi_vdi_as_virtio_blk() {
    let dir = TestDir::for_current_test().expect("test dir");
    let tgtd = Tgtd::start(dir.path(), QEMU_HARD_TIMEOUT);
    let builder = keel(2, 1024).hard_timeout(QEMU_HARD_TIMEOUT);
    let mut cpio = Cpio::default();
    cpio.file("host-config.bin", 0o644, &host_config(builder.dir()));
    super::debian_library(&mut cpio, &guest_initrd());
    let archive = builder.dir().join("modules.cpio");
    fs::write(&archive, cpio.finish()).expect("write archive");
    let qemu = builder.initrd(&archive).spawn().expect("spawn QEMU");
    health(&qemu);
    qemu.wait_for_serial("DHCP lease", BOOT_TIMEOUT)
        .expect("the management address");

    let data = pattern();
    let pattern_file = dir.path().join("pattern.bin");
    let out_file = dir.path().join("export.bin");
    fs::write(&pattern_file, &data).expect("write the pattern");
    let iso: Vec<u8> = (0..ISO_BYTES)
        .map(|i| ((i * 17 + i / 2039) % 239) as u8)
        .collect();
    let iso_file = dir.path().join("iso.bin");
    fs::write(&iso_file, &iso).expect("write the ISO");
    tgtd.add_lun(super::iscsi_sr::LUN_BYTES);
    let mut python = Command::new("python3");
    python
        .arg("-c")
        .arg(FLOW)
        .env(
            "FLOW_DIR",
            qemu_tests::workspace_root().join("qemu-tests/tests/image"),
        )
        .env("KEEL_URL", format!("http://127.0.0.1:{}", qemu.http_port()))
        .env("KEEL_PASSWORD", PASSWORD)
        .env("VDI_PATTERN", &pattern_file)
        .env("VDI_OUT", &out_file)
        .env("ISO_PATTERN", &iso_file)
        .env("GUEST_TIMEOUT", "400");
    tgtd.sdk_env(&mut python, "10.0.2.2");
    let finished =
        run_bounded(python, SCRIPT_TIMEOUT, qemu.dir(), "vbd-flow").expect("the flow finishes");
    let serial = super::assert_flow_passed(&finished, &qemu, "the SDK flow", "FLOW-DONE");
    assert!(
        !serial.contains("KEEL-INSMOD-FAILED"),
        "a module did not load"
    );
    assert!(
        serial.contains(&format!("vm vbd1: KEEL-VBD-SECTORS={}", VDI_BYTES / 512)),
        "the guest sees the VDI's size:\n{}",
        qemu.serial_tail(80)
    );
    let md5 = super::md5_hex(&data);
    assert!(
        serial.contains(&format!("vm vbd1: KEEL-VBD-MD5={md5}")),
        "the guest reads the imported pattern (md5 {md5}):\n{}",
        qemu.serial_tail(80)
    );
    assert!(
        serial.contains("vm vbd1: KEEL-VBD-WRITTEN"),
        "the guest's write completed"
    );
    for guest in ["vbd1", "vbd2"] {
        assert!(
            serial.contains(&format!("vm {guest}: KEEL-VBD-DISCARDED")),
            "{guest}'s blkdiscard of a whole cluster succeeded:\n{}",
            qemu.serial_tail(80)
        );
    }
    // The discarded cluster went back to the SR: the VDI holds one cluster less.
    let physical = finished
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("VDI-PHYSICAL "))
        .and_then(|v| v.trim().parse::<usize>().ok());
    assert_eq!(
        physical,
        Some(VDI_BYTES - DISCARD.len()),
        "the VDI's physical_utilisation after the guest's discard:\n{}",
        finished.output()
    );
    let exported = fs::read(&out_file).expect("the export");
    let mut expected = data;
    let at = GUEST_SECTOR * 512;
    expected[at..at + 512].fill(0);
    expected[at..at + GUEST_MARK.len()].copy_from_slice(GUEST_MARK);
    expected[DISCARD].fill(0);
    assert_eq!(exported.len(), expected.len());
    assert!(
        exported == expected,
        "the export holds the pattern, the guest's sector and zeros where it discarded"
    );
    let md5 = super::md5_hex(&expected);
    assert!(
        serial.contains(&format!("vm vbd2: KEEL-VBD-MD5={md5}")),
        "the clone's guest reads the VDI as the first guest left it (md5 {md5}):\n{}",
        qemu.serial_tail(80)
    );
    for (mark, what, clone) in [
        ("KEEL-VBD-DD=", "read", ""),
        (
            "KEEL-VBD-DD-WRITE=",
            "write (of what it read, with fsync)",
            ": the first write to each cluster copies it through the SR",
        ),
    ] {
        for l in serial.lines().filter(|l| l.contains(mark)) {
            let at = l.find(mark).unwrap_or(0) + mark.len();
            let of = if l.contains("vm vbd2:") {
                format!(" (the clone's copy-on-write VDI{clone})")
            } else {
                String::new()
            };
            println!(
                "FIGURE guest virtio-blk direct {what} of an iSCSI VDI through the disk channel{of}: {}",
                &l[at..]
            );
        }
    }
    // Each guest sees the CD read-only with the ISO's bytes, and its
    // write to it fails.
    let iso_md5 = super::md5_hex(&iso);
    for guest in ["vbd1", "vbd2"] {
        assert!(
            serial.contains(&format!("vm {guest}: KEEL-CD-RO=1 KEEL-CD-MD5={iso_md5}")),
            "{guest} reads the ISO (md5 {iso_md5}) from a read-only /dev/vdb:\n{}",
            qemu.serial_tail(80)
        );
        assert!(
            serial.contains(&format!("vm {guest}: KEEL-CD-WRITE-REFUSED")),
            "{guest}'s write to the CD fails:\n{}",
            qemu.serial_tail(80)
        );
    }
    // Each guest's disk and CD had its own session, which logged out when
    // the VM halted.
    let sessions: Vec<&str> = serial
        .lines()
        .filter(|l| l.contains("disk session done"))
        .collect();
    assert_eq!(
        sessions.len(),
        4,
        "a session per guest's disk and CD, ended at detach:\n{}",
        qemu.serial_tail(80)
    );
    for l in sessions {
        let at = l.find("iscsi: job").unwrap_or(0);
        println!("FIGURE the disk's iSCSI session: {}", &l[at..]);
    }
    assert!(
        !serial.contains("Kernel panic"),
        "the guest kernel panicked"
    );
    drop(tgtd);
}
