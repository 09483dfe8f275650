//! The boot media of `cargo xtask image` (`KEEL_MEDIA`): the GPT disk image
//! boots under UEFI (OVMF) and legacy BIOS (SeaBIOS), GRUB falls back from
//! an empty slot (trials and commits: `upgrade_writer.rs`); the ISO
//! boots as a CD under UEFI; the PXE tree boots a host with its own host
//! config, from RAM without a disk and with a blank local disk as its state
//! store; the signed image verifies with the build's key; two builds give
//! identical SHA256SUMS.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use host_config::artifacts::{self, PUBLIC_KEY, PXE_BOOTFILE_BIOS, SIGNED_IMAGE};
use host_config::disk_layout::{self, Role, SECTOR_BYTES};
use host_config::grubenv::EnvBlock;
use host_config::signed;
use qemu_tests::{
    QemuBuilder, TestDir, host_config_bin_from_env, image_from_env, media_from_env, workspace_root,
};

use super::{health, keel};

/// Firmware, GRUB and the image under TCG on a loaded machine.
const MEDIA_BOOT_TIMEOUT: Duration = Duration::from_secs(150);
/// The watchdog's limit for a firmware boot.
const HARD_TIMEOUT_MEDIA: Duration = Duration::from_secs(240);

fn media() -> PathBuf {
    media_from_env().expect("the boot media (KEEL_MEDIA)")
}

/// A run that boots through firmware; the kernel path is unused.
fn firmware_run() -> QemuBuilder {
    keel(2, 512).hard_timeout(HARD_TIMEOUT_MEDIA)
}

/// A private copy of the disk image: boots write to it (GRUB's `save_env`).
fn disk_copy(dir: &Path) -> PathBuf {
    let copy = dir.join("keel-disk.img");
    fs::copy(media().join(artifacts::DISK_IMAGE), &copy).expect("copy the disk image");
    copy
}

/// Byte offset of the GRUB environment block in a disk image, found the
/// way the appliance's upgrade writer will find it.
fn env_offset(disk: &[u8]) -> usize {
    let esp = disk_layout::partition(Role::Esp);
    let start = (esp.first_lba * SECTOR_BYTES) as usize;
    let end = start + (esp.sectors * SECTOR_BYTES) as usize;
    let sector = artifacts::env_sector(&disk[start..end]).expect("GRUBENV on the ESP");
    start + (sector * SECTOR_BYTES) as usize
}

fn read_env(disk: &Path) -> EnvBlock {
    let bytes = fs::read(disk).expect("read the disk");
    let at = env_offset(&bytes);
    EnvBlock::parse(&bytes[at..at + 1024]).expect("env block")
}

fn write_env(disk: &Path, env: &EnvBlock) {
    let mut bytes = fs::read(disk).expect("read the disk");
    let at = env_offset(&bytes);
    bytes[at..at + 1024].copy_from_slice(&env.render().expect("env fits"));
    fs::write(disk, bytes).expect("write the disk");
}

fn boots_to_health(builder: QemuBuilder, slot_line: &str) {
    let qemu = builder.spawn().expect("spawn QEMU");
    qemu.wait_for_serial(slot_line, MEDIA_BOOT_TIMEOUT)
        .expect("GRUB booted the expected slot");
    let (_, json) = health(&qemu);
    assert_eq!(json["status"], "ok", "{json}");
}

#[test]
fn disk_image_boots_under_uefi() {
    let builder = firmware_run().uefi().expect("OVMF");
    let disk = disk_copy(builder.dir());
    boots_to_health(
        builder.boot_disk(disk),
        "cmdline: keel.boot=disk keel.slot=a keel.slot_state=committed",
    );
}

/// Also the README's USB recipe: a host config copied onto the stick's ESP
/// with mtools is loaded by GRUB as the boot module.
#[test]
fn disk_image_boots_under_bios_with_its_config_on_the_esp() {
    let tool = host_config_bin_from_env().expect("the host-config tool");
    let builder = firmware_run();
    let dir = builder.dir().to_path_buf();
    let disk = disk_copy(&dir);
    let toml = dir.join("usb.toml");
    fs::write(&toml, "hostname = \"keel-usb-test\"\n").expect("write the config");
    let module = dir.join("host-config.bin");
    run(Command::new(&tool)
        .arg("compile")
        .arg(&toml)
        .arg("-o")
        .arg(&module));
    let esp = disk_layout::partition(Role::Esp).first_lba * SECTOR_BYTES;
    let image = format!("{}@@{esp}", disk.display());
    run(Command::new("mmd").args(["-i", &image, "::/keel"]));
    run(Command::new("mcopy")
        .args(["-i", &image])
        .arg(&module)
        .arg("::/keel/host-config.bin"));

    let qemu = builder.boot_disk(disk).spawn().expect("spawn QEMU");
    qemu.wait_for_serial(
        "cmdline: keel.boot=disk keel.slot=a keel.slot_state=committed",
        MEDIA_BOOT_TIMEOUT,
    )
    .expect("GRUB booted slot A");
    let (_, json) = health(&qemu);
    assert_eq!(json["hostname"], "keel-usb-test", "{json}");
}

fn run(command: &mut Command) {
    let output = command.output().expect("run a tool");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The committed slot is empty (say, a damaged write): GRUB's fallback entry
/// boots the other slot.
#[test]
fn empty_committed_slot_falls_back_to_the_other() {
    let builder = firmware_run();
    let disk = disk_copy(builder.dir());
    let mut env = read_env(&disk);
    env.set("keel_active", "b").expect("set");
    write_env(&disk, &env);
    boots_to_health(
        builder.boot_disk(disk),
        "cmdline: keel.boot=disk keel.slot=a keel.slot_state=fallback",
    );
}

#[test]
fn iso_boots_as_cd_under_uefi() {
    let builder = firmware_run().uefi().expect("OVMF");
    boots_to_health(
        builder.cdrom(media().join(artifacts::ISO_IMAGE)),
        "cmdline: keel.boot=iso",
    );
}

#[test]
fn pxe_boots_with_its_host_config() {
    let builder = firmware_run().pxe(media().join(artifacts::PXE_DIR), PXE_BOOTFILE_BIOS);
    let qemu = builder.spawn().expect("spawn QEMU");
    qemu.wait_for_serial("cmdline: keel.boot=pxe", MEDIA_BOOT_TIMEOUT)
        .expect("GRUB booted the image over TFTP");
    let (_, json) = health(&qemu);
    assert_eq!(
        json["hostname"], "keel-pxe-test",
        "the host config for this MAC came over TFTP: {json}"
    );
}

/// Stateless mode: booted over PXE with no local disk, the host runs from
/// RAM with the host config it got over TFTP (its database in memory only);
/// with a blank local disk it formats it as its state store, and the next
/// PXE boot opens the database the first one left there.
#[test]
fn pxe_runs_from_ram_without_a_disk_and_keeps_its_state_on_a_local_disk() {
    let pxe =
        |builder: QemuBuilder| builder.pxe(media().join(artifacts::PXE_DIR), PXE_BOOTFILE_BIOS);
    let qemu = pxe(firmware_run()).spawn().expect("spawn QEMU");
    qemu.wait_for_serial("cmdline: keel.boot=pxe", MEDIA_BOOT_TIMEOUT)
        .expect("booted over TFTP");
    let (_, json) = health(&qemu);
    assert_eq!(json["hostname"], "keel-pxe-test", "{json}");
    assert!(json["boot"].is_null(), "no A/B slots: {json}");
    let serial = qemu.serial();
    assert!(
        serial.contains("db: no state disk; the database is kept in memory only"),
        "runs from RAM: {}",
        qemu.serial_tail(30)
    );
    drop(qemu);

    let dir = TestDir::for_current_test().expect("test dir");
    let disk = super::blank_disk(dir.path().join("local.img"), 64 << 20);
    let qemu = pxe(firmware_run().disk(&disk)).spawn().expect("spawn QEMU");
    qemu.wait_for_serial("cmdline: keel.boot=pxe", MEDIA_BOOT_TIMEOUT)
        .expect("booted over TFTP with a local disk");
    qemu.wait_for_serial(
        "db: blk0 was blank: formatted the whole disk as the state store",
        MEDIA_BOOT_TIMEOUT,
    )
    .expect("the blank local disk becomes the state store");
    let (_, json) = health(&qemu);
    assert_eq!(json["hostname"], "keel-pxe-test", "{json}");
    drop(qemu);

    let qemu = pxe(firmware_run().disk(&disk)).spawn().expect("spawn QEMU");
    let line = qemu
        .wait_for_serial(
            "db: database on blk0 (the whole disk): ",
            MEDIA_BOOT_TIMEOUT,
        )
        .expect("the next PXE boot opens the state store");
    let loaded: usize = line
        .split("the whole disk): ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("objects loaded: {line}"));
    assert!(loaded > 0, "the first boot's objects are there: {line}");
    let (_, json) = health(&qemu);
    assert_eq!(json["hostname"], "keel-pxe-test", "{json}");
}

#[test]
fn pxe_boots_under_uefi_with_its_host_config() {
    let builder = firmware_run().uefi().expect("OVMF").pxe(
        media().join(artifacts::PXE_DIR),
        artifacts::PXE_BOOTFILE_EFI,
    );
    let qemu = builder.spawn().expect("spawn QEMU");
    qemu.wait_for_serial("cmdline: keel.boot=pxe", MEDIA_BOOT_TIMEOUT)
        .expect("GRUB (UEFI) booted the image over TFTP");
    let (_, json) = health(&qemu);
    assert_eq!(json["hostname"], "keel-pxe-test", "{json}");
}

#[test]
fn signed_image_verifies_with_the_build_key_only() {
    let dir = media();
    let image = fs::read(dir.join(SIGNED_IMAGE)).expect("keel.img");
    let text = fs::read_to_string(dir.join(PUBLIC_KEY)).expect("keel-signing.pub");
    let key = artifacts::parse_key_hex(&text).expect("hex key");
    let manifest = signed::verify(&image, &[key]).expect("the build's signature verifies");
    assert!(
        manifest.version().starts_with(env!("CARGO_PKG_VERSION")),
        "{}",
        manifest.version()
    );
    assert!(image.len() as u64 <= artifacts::IMAGE_BUDGET_BYTES);
    let mut flipped = image.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert_eq!(
        signed::verify(&flipped, &[key]),
        Err(signed::VerifyError::DigestMismatch)
    );
    assert_eq!(
        signed::verify(&image, &[[0x42; 32]]),
        Err(signed::VerifyError::UntrustedKey)
    );
    // The slot on the disk image holds exactly this signed image.
    let disk = fs::read(dir.join(artifacts::DISK_IMAGE)).expect("disk image");
    let a = disk_layout::partition(Role::SlotA);
    let at = (a.first_lba * SECTOR_BYTES) as usize;
    assert_eq!(&disk[at..at + image.len()], &image[..]);
}

/// Two `cargo xtask image` runs into two folders, seconds apart: the same
/// bytes. Both reuse the ELF under test (reproducible on its own, and other
/// tests are booting it, so it is not rebuilt here): two media builds.
#[test]
fn two_image_builds_are_identical() {
    let dir = TestDir::for_current_test().expect("test dir");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let elf = image_from_env().expect("the keel image (KEEL_IMAGE)");
    let mut sums = Vec::new();
    for name in ["first", "second"] {
        let out = dir.path().join(name);
        let output = Command::new(&cargo)
            .current_dir(workspace_root())
            .args(["xtask", "image", "--elf"])
            .arg(&elf)
            .arg("--out")
            .arg(&out)
            .env_remove("SOURCE_DATE_EPOCH")
            .output()
            .expect("run cargo xtask image");
        assert!(
            output.status.success(),
            "cargo xtask image --out {}: {}",
            out.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        sums.push(fs::read_to_string(out.join("SHA256SUMS")).expect("SHA256SUMS"));
        std::thread::sleep(Duration::from_secs(2));
    }
    assert_eq!(sums[0], sums[1], "the two builds differ");
    for name in [
        "keel.elf",
        SIGNED_IMAGE,
        artifacts::DISK_IMAGE,
        artifacts::ISO_IMAGE,
        "pxe/boot/grub/i386-pc/core.0",
    ] {
        assert!(
            sums[0].lines().any(|l| l.ends_with(&format!("  {name}"))),
            "{name} missing from SHA256SUMS:\n{}",
            sums[0]
        );
    }
}
