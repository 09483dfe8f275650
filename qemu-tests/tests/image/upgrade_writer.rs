//! The A/B upgrade writer (`host_config::upgrade`) against the real disk
//! image and the real boot path: the test process plays the upload (the
//! HTTP upgrade call inside the host is tested in `upgrade_api.rs`) and
//! writes the disk file between QEMU runs; GRUB picks the slot,
//! and the image reports the slots, commits a healthy trial itself and
//! reports a failed one.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use host_config::artifacts::{self, PUBLIC_KEY, SIGNED_IMAGE};
use host_config::disk_layout::{self, Role};
use host_config::signed::{self, public_key};
use host_config::upgrade::{self, BootState, Booted, Disk, Slot, Upgrade};
use qemu_tests::{QemuBuilder, TestDir, media_from_env};

use super::{health, keel};

const BOOT_TIMEOUT: Duration = Duration::from_secs(150);
const HARD_TIMEOUT: Duration = Duration::from_secs(240);

/// The disk image file as 512-byte sectors.
struct FileDisk(File);

impl Disk for FileDisk {
    type Error = std::io::Error;
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.0.seek(SeekFrom::Start(lba * 512))?;
        self.0.read_exact(buf)
    }
    fn write(&mut self, lba: u64, buf: &[u8]) -> std::io::Result<()> {
        self.0.seek(SeekFrom::Start(lba * 512))?;
        self.0.write_all(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.sync_data()
    }
}

fn open(disk: &Path) -> FileDisk {
    FileDisk(
        File::options()
            .read(true)
            .write(true)
            .open(disk)
            .expect("open the disk image"),
    )
}

fn run(name: &str, disk: &Path) -> QemuBuilder {
    keel(2, 512)
        .hard_timeout(HARD_TIMEOUT)
        .name(name)
        .expect("run dir")
        .boot_disk(disk)
}

/// Boots `disk` (SeaBIOS) until `/health` answers and the serial shows
/// `then`; returns how it booted and the `boot` object of `/health`.
fn boot(name: &str, disk: &Path, expect: &str, then: &str) -> (Booted, serde_json::Value) {
    let qemu = run(name, disk).spawn().expect("spawn QEMU");
    let line = qemu
        .wait_for_serial(expect, BOOT_TIMEOUT)
        .expect("GRUB booted the expected slot");
    qemu.wait_for_serial(then, BOOT_TIMEOUT)
        .expect("the image's boot-slot report");
    let (_, json) = health(&qemu);
    assert_eq!(json["status"], "ok", "{json}");
    let booted = Booted::from_cmdline(&line).expect("the command line names the slot");
    assert_eq!(json["boot"]["slot"], booted.slot.name(), "{json}");
    (booted, json["boot"].clone())
}

fn media_image() -> (Vec<u8>, [u8; 32]) {
    let media = media_from_env().expect("the boot media (KEEL_MEDIA)");
    let image = fs::read(media.join(SIGNED_IMAGE)).expect("keel.img");
    let key = artifacts::parse_key_hex(
        &fs::read_to_string(media.join(PUBLIC_KEY)).expect("keel-signing.pub"),
    )
    .expect("hex key");
    (image, key)
}

fn disk_copy(dir: &Path) -> std::path::PathBuf {
    let media = media_from_env().expect("the boot media (KEEL_MEDIA)");
    let disk = dir.join("keel-disk.img");
    fs::copy(media.join(artifacts::DISK_IMAGE), &disk).expect("copy the disk image");
    disk
}

const ON_A: Booted = Booted {
    slot: Slot::A,
    state: BootState::Committed,
};

/// Upload into slot B, reboot: B boots on trial and, healthy, commits
/// itself; the next boot is B for good, and A keeps the old image.
#[test]
fn upgrade_boots_on_trial_then_commits_and_keeps_the_old_slot() {
    let dir = TestDir::for_current_test().expect("test dir");
    let disk = disk_copy(dir.path());
    let (image, key) = media_image();
    let mut writer = Upgrade::new(ON_A, &[key]);
    for chunk in image.chunks(64 * 1024) {
        writer.feed(&mut open(&disk), chunk).expect("chunk");
    }
    let manifest = writer.finish(&mut open(&disk)).expect("finish");

    let (_, report) = boot(
        "upgrade-trial",
        &disk,
        "cmdline: keel.boot=disk keel.slot=b keel.slot_state=trial",
        "boot: slot b is healthy and now the committed slot",
    );
    assert_eq!(report["slot_state"], "trial", "{report}");
    assert_eq!(
        report["committed_slot"], "b",
        "committed while up: {report}"
    );
    assert_eq!(report["slot_b"], manifest.version(), "{report}");
    let (booted, report) = boot(
        "upgrade-committed",
        &disk,
        "cmdline: keel.boot=disk keel.slot=b keel.slot_state=committed",
        "boot: slot b (Committed) from blk0; committed slot b",
    );
    let status = upgrade::status(&mut open(&disk), booted).expect("status");
    assert_eq!(status.active, Slot::B);
    assert_eq!(status.slot_b.as_deref(), Some(manifest.version()));
    assert!(status.slot_a.is_some(), "the old slot is kept");
    assert_eq!(status.failed_trial, None);
    assert_eq!(report["slot_state"], "committed", "{report}");
    assert_eq!(
        report["slot_a"],
        status.slot_a.as_deref().unwrap_or(""),
        "{report}"
    );
    assert!(report["failed_upgrade_slot"].is_null(), "{report}");
}

/// A validly signed image that cannot boot: GRUB tries it once, falls back,
/// and the host (on the old slot) reports the failed upgrade.
#[test]
fn unbootable_upgrade_falls_back_and_is_reported() {
    let dir = TestDir::for_current_test().expect("test dir");
    let disk = disk_copy(dir.path());
    let seed = [3u8; 32];
    let payload = vec![0xCCu8; 64 * 1024];
    let mut image = signed::sign(&payload, "0.0.0+unbootable", &seed)
        .expect("sign")
        .to_vec();
    image.extend_from_slice(&payload);
    let mut writer = Upgrade::new(ON_A, &[public_key(&seed)]);
    writer.feed(&mut open(&disk), &image).expect("feed");
    writer.finish(&mut open(&disk)).expect("finish");

    let (booted, report) = boot(
        "upgrade-unbootable",
        &disk,
        "cmdline: keel.boot=disk keel.slot=a keel.slot_state=fallback",
        "boot: the upgrade to slot b failed",
    );
    let status = upgrade::status(&mut open(&disk), booted).expect("status");
    assert_eq!(status.failed_trial, Some(Slot::B));
    assert_eq!(report["failed_upgrade_slot"], "b", "{report}");
    assert_eq!(report["slot_state"], "fallback", "{report}");
    assert_eq!(report["slot_b"], "0.0.0+unbootable", "{report}");
    assert_eq!(status.active, Slot::A);
    assert!(!upgrade::commit(&mut open(&disk), booted).expect("no commit on fallback"));
    boot(
        "upgrade-unbootable-again",
        &disk,
        "cmdline: keel.boot=disk keel.slot=a keel.slot_state=committed",
        "slot b: 0.0.0+unbootable",
    );
}

/// A bad signature writes nothing; an upload cut halfway (power lost while
/// writing the slot) leaves the host booting its running slot.
#[test]
fn bad_signature_writes_nothing_and_a_cut_upload_still_boots_the_old_slot() {
    let dir = TestDir::for_current_test().expect("test dir");
    let disk = disk_copy(dir.path());
    let (image, key) = media_image();
    let before = fs::read(&disk).expect("read");
    let mut forged = image.clone();
    forged[100] ^= 1;
    let mut writer = Upgrade::new(ON_A, &[key]);
    assert!(writer.feed(&mut open(&disk), &forged).is_err());
    assert!(fs::read(&disk).expect("read") == before, "nothing written");

    let mut writer = Upgrade::new(ON_A, &[key]);
    writer
        .feed(&mut open(&disk), &image[..image.len() / 2])
        .expect("half");
    drop(writer);
    boot(
        "upgrade-cut",
        &disk,
        "cmdline: keel.boot=disk keel.slot=a keel.slot_state=committed",
        "slot b: empty",
    );
}

/// Runs one mtools command on the disk's ESP; returns its output.
fn mtools(disk: &Path, tool: &str, args: &[&str]) -> String {
    let esp = disk_layout::partition(Role::Esp).first_lba * disk_layout::SECTOR_BYTES;
    let image = format!("{}@@{esp}", disk.display());
    let output = Command::new(tool)
        .args(["-i", &image])
        .args(args)
        .output()
        .expect("run mtools");
    assert!(
        output.status.success(),
        "{tool} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The trial deadline the failing trials get (the default, 240 s, would
/// only make the tests slower).
const TRIAL_DEADLINE_SECONDS: u64 = 30;

/// Writes the media's payload, signed as `version`, into slot B and marks
/// it for a trial boot.
fn write_trial_slot(disk: &Path, version: &str) {
    let (image, _) = media_image();
    let seed = [5u8; 32];
    let payload = &image[signed::HEADER_BYTES..];
    let mut next = signed::sign(payload, version, &seed)
        .expect("sign")
        .to_vec();
    next.extend_from_slice(payload);
    let mut writer = Upgrade::new(ON_A, &[public_key(&seed)]);
    for chunk in next.chunks(64 * 1024) {
        writer.feed(&mut open(disk), chunk).expect("chunk");
    }
    writer.finish(&mut open(disk)).expect("finish");
}

/// Adds `args` to the kernel command line of trial boots only, in the ESP's
/// `grub.cfg` (committed and fallback boots are unchanged).
fn trial_args(disk: &Path, dir: &Path, args: &str) {
    let cfg = mtools(disk, "mtype", &["::/boot/grub/grub.cfg"]);
    let edited = cfg
        .replace(
            "  set keel_boot=trial\n",
            &format!("  set keel_boot=trial\n  set keel_test_args=\"{args}\"\n"),
        )
        .replace("export keel_disk", "export keel_test_args keel_disk")
        .replace(
            "keel.slot_state=$keel_boot\n",
            "keel.slot_state=$keel_boot $keel_test_args\n",
        );
    assert_eq!(
        edited.matches("keel_test_args").count(),
        3,
        "grub.cfg changed shape:\n{cfg}"
    );
    let cfg_path = dir.join("grub.cfg");
    fs::write(&cfg_path, &edited).expect("write grub.cfg");
    let cfg_arg = cfg_path.display().to_string();
    mtools(disk, "mcopy", &["-o", &cfg_arg, "::/boot/grub/grub.cfg"]);
}

/// The boot after a failed trial: slot a, committed, reporting slot b failed.
fn falls_back(name: &str, disk: &Path, version: &str) {
    let (booted, report) = boot(
        name,
        disk,
        "cmdline: keel.boot=disk keel.slot=a keel.slot_state=committed",
        "boot: the upgrade to slot b failed",
    );
    assert_eq!(report["failed_upgrade_slot"], "b", "{report}");
    assert_eq!(report["slot_b"], version, "{report}");
    assert_eq!(report["committed_slot"], "a", "{report}");
    let status = upgrade::status(&mut open(disk), booted).expect("status");
    assert_eq!(status.active, Slot::A);
    assert_eq!(status.failed_trial, Some(Slot::B));
}

/// An upgrade that hangs on its trial boot: the watchdog, armed before the
/// appliance starts, resets the machine; GRUB boots the committed slot and
/// the host reports the failed upgrade. The slot holds a valid image; the
/// hang comes from the trial boot's command line (`keel.selftest=hang`,
/// which spins with interrupts off), added to the ESP's `grub.cfg` for the
/// trial entry only, as an image that hangs early would behave.
#[test]
fn hung_trial_is_reset_by_the_watchdog_and_falls_back() {
    let dir = TestDir::for_current_test().expect("test dir");
    let disk = disk_copy(dir.path());
    write_trial_slot(&disk, "0.0.0+hangs");
    let hang = format!("keel.selftest=hang keel.trial_deadline={TRIAL_DEADLINE_SECONDS}");
    trial_args(&disk, dir.path(), &hang);

    let qemu = run("upgrade-hang", &disk).spawn().expect("spawn QEMU");
    qemu.wait_for_serial(
        &format!("keel.slot=b keel.slot_state=trial {hang}"),
        BOOT_TIMEOUT,
    )
    .expect("GRUB boots slot b on trial, told to hang");
    qemu.wait_for_serial("watchdog: armed (30.0 s) for the trial boot", BOOT_TIMEOUT)
        .expect("the watchdog is armed early in the trial");
    qemu.wait_for_serial("selftest: hanging with interrupts off", BOOT_TIMEOUT)
        .expect("the trial hangs");
    let hung = Instant::now();
    let status = qemu
        .wait_exit(Duration::from_secs(TRIAL_DEADLINE_SECONDS * 4))
        .expect("the watchdog resets the machine (QEMU exits under -no-reboot)");
    let hang_to_reset = hung.elapsed();
    assert_eq!(
        status.code(),
        Some(0),
        "a reset, not a panic exit: {status}"
    );
    let serial = qemu.serial();
    let after = &serial[serial
        .find("selftest: hanging with interrupts off")
        .expect("the hang line")..];
    assert!(
        after.lines().count() <= 1,
        "nothing ran after the hang: {after}"
    );
    drop(qemu);

    let fallback = Instant::now();
    falls_back("upgrade-hang-fallback", &disk, "0.0.0+hangs");
    // Figures for the report, never asserted.
    eprintln!(
        "FIGURE upgrade_hang deadline_s={TRIAL_DEADLINE_SECONDS} hang_to_reset_s={:.1} \
         reset_to_fallback_health_s={:.1}",
        hang_to_reset.as_secs_f64(),
        fallback.elapsed().as_secs_f64()
    );
}

/// An upgrade whose trial boots and serves but never becomes healthy: its
/// database on the state partition was written by a newer keel (schema
/// version 1000), which this build refuses to open. The trial does not
/// commit, the watchdog stays armed while the API answers, resets the
/// machine, and the host falls back and reports the failed upgrade.
#[test]
fn unhealthy_trial_does_not_commit_and_falls_back() {
    let dir = TestDir::for_current_test().expect("test dir");
    let disk = disk_copy(dir.path());
    write_trial_slot(&disk, "0.0.0+unhealthy");
    trial_args(
        &disk,
        dir.path(),
        &format!("keel.trial_deadline={TRIAL_DEADLINE_SECONDS}"),
    );
    let state = disk_layout::partition(Role::State);
    let mut dev = storage::file::FileBlockDevice::open(&disk, 512, false).expect("open the disk");
    let region = storage::region::Region {
        start_lba: state.first_lba,
        blocks: state.sectors,
    };
    let mut store =
        storage::config_store::ConfigStore::format(&mut dev, region, 0x6b65_656c_7465_7374)
            .expect("format the state store");
    let mut batch = storage::config_store::Batch::new();
    batch
        .put("host/OpaqueRef:from-the-future", b"?")
        .schema_version(1000);
    store.commit(&mut dev, batch).expect("commit");
    drop(dev);

    let qemu = run("upgrade-unhealthy", &disk).spawn().expect("spawn QEMU");
    qemu.wait_for_serial("keel.slot=b keel.slot_state=trial", BOOT_TIMEOUT)
        .expect("GRUB boots slot b on trial");
    qemu.wait_for_serial("schema version 1000", BOOT_TIMEOUT)
        .expect("the database does not open");
    qemu.wait_for_serial("boot: slot b is unhealthy and stays on trial", BOOT_TIMEOUT)
        .expect("the trial is unhealthy");
    qemu.wait_for_serial("watchdog: stays armed", BOOT_TIMEOUT)
        .expect("the watchdog stays armed");
    let (_, json) = health(&qemu);
    assert_eq!(json["boot"]["slot_state"], "trial", "{json}");
    assert_eq!(json["boot"]["committed_slot"], "a", "not committed: {json}");
    let status = qemu
        .wait_exit(Duration::from_secs(TRIAL_DEADLINE_SECONDS * 4))
        .expect("the watchdog resets the machine (QEMU exits under -no-reboot)");
    assert_eq!(
        status.code(),
        Some(0),
        "a reset, not a panic exit: {status}"
    );
    let serial = qemu.serial();
    assert!(
        !serial.contains("now the committed slot") && !serial.contains("power: reboot"),
        "{serial}"
    );
    drop(qemu);

    falls_back("upgrade-unhealthy-fallback", &disk, "0.0.0+unhealthy");
}
