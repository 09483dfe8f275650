//! A local SR on a host disk: QEMU gives the image a blank state disk and
//! a blank data disk. Through the PyPI XenAPI SDK, `SR.probe` of type `lvm`
//! without a device lists the data disk (not the state disk), `SR.create`
//! formats it (the state disk is refused), a VDI gets a pattern through
//! `PUT /import_raw_vdi` and `GET /export_raw_vdi` gives it back. The image
//! then boots again on the same disks: the SR is plugged again by itself,
//! the VDI is there with its data, and a Debian guest started with the VDI
//! as its virtio-blk disk reads the pattern (served from the host disk).

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use qemu_tests::cpio::Cpio;
use qemu_tests::{Qemu, TestDir, run_bounded};

use super::{BOOT_TIMEOUT, health, keel};

const PASSWORD: &str = "qemu-local-sr-password";
const STATE_BYTES: u64 = 16 << 20;
const SR_DISK_BYTES: u64 = 256 << 20;
/// Not a whole number of clusters: the last one is partly used.
const VDI_BYTES: usize = (3 << 20) + 4096;
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);
const QEMU_HARD_TIMEOUT: Duration = Duration::from_secs(360);

/// The guest's init after [`super::GUEST_INIT_PREAMBLE`].
const INIT: &str = r#"i=0
while [ ! -b /dev/vda ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
echo "KEEL-LOCAL-SECTORS=$(cat /sys/block/vda/size)" > /dev/console
echo "KEEL-LOCAL-MD5=$(md5sum /dev/vda | cut -d' ' -f1)" > /dev/console
t0=$(cut -d' ' -f1 /proc/uptime | tr -d .)
dd if=/dev/vda of=/dev/null bs=1M iflag=direct 2>/dev/null
t1=$(cut -d' ' -f1 /proc/uptime | tr -d .)
echo "KEEL-LOCAL-DD=read in $((t1 - t0))0 ms" > /dev/console
dd if=/dev/vda of=/tmp/disk bs=1M 2>/dev/null
t0=$(cut -d' ' -f1 /proc/uptime | tr -d .)
dd if=/tmp/disk of=/dev/vda bs=1M oflag=direct conv=fsync 2>/dev/null
t1=$(cut -d' ' -f1 /proc/uptime | tr -d .)
echo "KEEL-LOCAL-DD-WRITE=written in $((t1 - t0))0 ms" > /dev/console
sleep 2
poweroff -f
"#;

/// First boot: probe, create, import, export.
const CREATE_FLOW: &str = r#"
import os, sys, time, urllib.request, xml.dom.minidom
sys.path.insert(0, os.environ["FLOW_DIR"])
import XenAPI
from storage_flow import imported_vdi, login
s, url = login("local-sr-test")
x = s.xenapi
host = x.host.get_all()[0]
try:
    x.SR.probe(host, {}, "lvm", {})
    raise AssertionError("a probe without a device must fail")
except XenAPI.Failure as e:
    assert e.details[0] == "SR_BACKEND_FAILURE_90", e.details
    doc = xml.dom.minidom.parseString(e.details[3])
    disks = [{n.tagName: n.firstChild.data.strip() for n in d.childNodes
              if n.nodeType == n.ELEMENT_NODE} for d in doc.getElementsByTagName("BlockDevice")]
print("PROBED", disks)
assert [d["path"] for d in disks] == ["/dev/vdb"], disks
assert disks[0]["id"] == "/dev/disk/by-id/virtio-keel-d1", disks
assert int(disks[0]["size"]) == int(os.environ["SR_DISK_BYTES"]), disks
assert "<SRlist/>" in x.SR.probe(host, {"device": "/dev/vdb"}, "lvm", {})
try:
    x.SR.create(host, {"device": "/dev/vda"}, "0", "x", "", "lvm", "user", False, {})
    raise AssertionError("the state disk must be refused")
except XenAPI.Failure as e:
    assert e.details[0] == "SR_BACKEND_FAILURE_70", e.details
sr = x.SR.create(host, {"device": disks[0]["id"]}, "0", "local", "", "lvm", "user", False, {})
rec = x.SR.get_record(sr)
assert rec["type"] == "lvm" and rec["shared"] is False, rec
assert 0 < int(rec["physical_size"]) <= int(os.environ["SR_DISK_BYTES"]), rec
[pbd] = rec["PBDs"]
assert x.PBD.get_currently_attached(pbd) is True
assert rec["uuid"] in x.SR.probe(host, {"device": "/dev/vdb"}, "lvm", {})
data = open(os.environ["VDI_PATTERN"], "rb").read()
t0 = time.monotonic()
vdi, q = imported_vdi(s, url, sr, "local-disk", data)
t1 = time.monotonic()
with urllib.request.urlopen(f"{url}/export_raw_vdi?{q}", timeout=200) as r:
    assert r.read() == data, "the export differs from the import"
t2 = time.monotonic()
print(f"FIGURE local SR import_raw_vdi: {len(data)} bytes in {t1 - t0:.2f} s")
print(f"FIGURE local SR export_raw_vdi: {len(data)} bytes in {t2 - t1:.2f} s")
print("CREATED", rec["uuid"], x.VDI.get_uuid(vdi))
"#;

/// Second boot: the SR is plugged, the VDI holds its data; a guest reads it.
const AGAIN_FLOW: &str = r#"
import os, sys, urllib.parse, urllib.request
sys.path.insert(0, os.environ["FLOW_DIR"])
from storage_flow import debian_vm, login, wait_halted
s, url = login("local-sr-test")
x = s.xenapi
sr = x.SR.get_by_uuid(os.environ["SR_UUID"])
[pbd] = x.SR.get_PBDs(sr)
assert x.PBD.get_currently_attached(pbd) is True
vdi = x.VDI.get_by_uuid(os.environ["VDI_UUID"])
assert x.VDI.get_SR(vdi) == sr
x.SR.scan(sr)
assert x.SR.get_VDIs(sr) == [vdi]
data = open(os.environ["VDI_PATTERN"], "rb").read()
q = urllib.parse.urlencode({"session_id": s._session, "vdi": vdi})
with urllib.request.urlopen(f"{url}/export_raw_vdi?{q}", timeout=200) as r:
    assert r.read() == data, "the VDI lost its data across the reboot"
vm, _ = debian_vm(x, "local1", vdi)
x.VM.start(vm, False, False)
wait_halted(x, vm, float(os.environ["GUEST_TIMEOUT"]))
print("AGAIN-DONE")
"#;

/// A pattern that differs at every offset modulo a prime.
fn pattern() -> Vec<u8> {
    (0..VDI_BYTES)
        .map(|i| ((i * 29 + 3 + i / 521) % 241) as u8)
        .collect()
}

fn guest_initrd() -> Vec<u8> {
    let modules = [super::VIRTIO_PCI_MODULES, &["virtio_blk"]].concat();
    let init =
        format!("{}{INIT}", super::GUEST_INIT_PREAMBLE).replace("MODULES", &modules.join(" "));
    super::peer_initrd(&modules, &[("init", 0o755, init.as_bytes())])
}

/// The image on the state disk and the SR disk (`d0`, `d1`).
fn boot(dir: &Path) -> Qemu {
    let builder = keel(2, 1024).hard_timeout(QEMU_HARD_TIMEOUT);
    let module = super::compile_host_config(
        builder.dir(),
        "local-sr",
        &format!("hostname = \"keel-local-sr\"\nroot_password = \"{PASSWORD}\"\n"),
    );
    let mut cpio = Cpio::default();
    cpio.file(
        "host-config.bin",
        0o644,
        &fs::read(module).expect("the module"),
    );
    super::debian_library(&mut cpio, &guest_initrd());
    let archive = builder.dir().join("modules.cpio");
    fs::write(&archive, cpio.finish()).expect("write the archive");
    let qemu = builder
        .initrd(&archive)
        .disk(dir.join("state.img"))
        .disk(dir.join("sr.img"))
        .spawn()
        .expect("spawn QEMU");
    health(&qemu);
    qemu
}

/// Runs an SDK flow against `qemu`, asserted to exit 0 having printed
/// `marker` (its FIGURE lines passed on); its stdout.
fn flow(qemu: &Qemu, name: &str, script: &str, marker: &str, env: &[(&str, &str)]) -> String {
    let mut python = Command::new("python3");
    python
        .arg("-c")
        .arg(script)
        .env(
            "FLOW_DIR",
            qemu_tests::workspace_root().join("qemu-tests/tests/image"),
        )
        .env("KEEL_URL", format!("http://127.0.0.1:{}", qemu.http_port()))
        .env("KEEL_PASSWORD", PASSWORD);
    for (k, v) in env {
        python.env(k, v);
    }
    let finished = run_bounded(python, SCRIPT_TIMEOUT, qemu.dir(), name).expect("the flow ends");
    super::assert_flow_passed(&finished, qemu, &format!("the {name} flow"), marker);
    finished.stdout
}

#[test]
fn local_sr_on_a_host_disk_survives_a_reboot_and_serves_a_guest() {
    let dir = TestDir::for_current_test().expect("test dir");
    super::blank_disk(dir.path().join("state.img"), STATE_BYTES);
    super::blank_disk(dir.path().join("sr.img"), SR_DISK_BYTES);
    let data = pattern();
    let pattern_file = dir.path().join("pattern.bin");
    fs::write(&pattern_file, &data).expect("write the pattern");
    let pattern_path = pattern_file.to_string_lossy().into_owned();
    let size = SR_DISK_BYTES.to_string();

    let qemu = boot(dir.path());
    qemu.wait_for_serial(
        "sr: host disk /dev/vdb (/dev/disk/by-id/virtio-keel-d1",
        BOOT_TIMEOUT,
    )
    .expect("the data disk is found");
    let out = flow(
        &qemu,
        "create",
        CREATE_FLOW,
        "CREATED ",
        &[("VDI_PATTERN", &pattern_path), ("SR_DISK_BYTES", &size)],
    );
    let created = out
        .lines()
        .find_map(|l| l.strip_prefix("CREATED "))
        .unwrap_or_else(|| panic!("no CREATED line:\n{out}"));
    let (sr_uuid, vdi_uuid) = created.split_once(' ').expect("two uuids");
    let (sr_uuid, vdi_uuid) = (sr_uuid.to_string(), vdi_uuid.to_string());
    // The power goes: what was acknowledged is on the disks.
    drop(qemu);

    let qemu = boot(dir.path());
    qemu.wait_for_serial(&format!("plugged: SR {sr_uuid} with 1 VDIs"), BOOT_TIMEOUT)
        .expect("the SR is plugged again at boot");
    flow(
        &qemu,
        "again",
        AGAIN_FLOW,
        "AGAIN-DONE",
        &[
            ("VDI_PATTERN", &pattern_path),
            ("SR_UUID", &sr_uuid),
            ("VDI_UUID", &vdi_uuid),
            ("GUEST_TIMEOUT", "200"),
        ],
    );
    let serial = qemu.serial();
    assert!(
        serial.contains(&format!(
            "vm local1: KEEL-LOCAL-SECTORS={}",
            VDI_BYTES / 512
        )),
        "the guest sees the VDI's size:\n{}",
        qemu.serial_tail(60)
    );
    // The guest's direct dd of the whole VDI (its own clock; a figure, not a check).
    for mark in ["KEEL-LOCAL-DD=", "KEEL-LOCAL-DD-WRITE="] {
        if let Some(l) = serial.lines().find(|l| l.contains(mark)) {
            let at = l.find(mark).unwrap_or(0) + mark.len();
            println!(
                "FIGURE local SR guest dd of {VDI_BYTES} bytes: {}",
                &l[at..]
            );
        }
    }
    let md5 = super::md5_hex(&data);
    assert!(
        serial.contains(&format!("vm local1: KEEL-LOCAL-MD5={md5}")),
        "the guest reads the imported pattern from the host disk (md5 {md5}):\n{}",
        qemu.serial_tail(60)
    );
}
