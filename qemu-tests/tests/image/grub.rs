//! The multiboot2 path: GRUB (Debian's `grub-pc-bin`, through `grub-mkrescue`)
//! loads the image and its host-config module from an ISO, as it will from a
//! USB stick; the kernel must find its memory map, command line, module and
//! ACPI tables in the multiboot2 information.

use std::fs;
use std::process::Command;

use qemu_tests::{HARD_TIMEOUT_GRUB, host_config_bin_from_env, image_from_env};

use super::{BOOT_TIMEOUT, health, keel};

const CONFIG: &str = "hostname = \"keel-grub-test\"\n";

const GRUB_CFG: &str = "\
set timeout=0
set default=0
menuentry \"keel\" {
    multiboot2 /boot/keel.elf loglevel=info keel.via=grub
    module2 /boot/host-config.bin
    boot
}
";

#[test]
fn multiboot2_via_grub() {
    let image = image_from_env().expect("the keel image (KEEL_IMAGE)");
    let tool = host_config_bin_from_env().expect("the host-config tool");
    let builder = keel(2, 512).hard_timeout(HARD_TIMEOUT_GRUB);
    let dir = builder.dir().to_path_buf();
    let root = dir.join("iso");
    fs::create_dir_all(root.join("boot/grub")).expect("create the ISO tree");
    fs::copy(&image, root.join("boot/keel.elf")).expect("copy the image");
    fs::write(root.join("boot/grub/grub.cfg"), GRUB_CFG).expect("write grub.cfg");
    let toml = dir.join("grub.toml");
    fs::write(&toml, CONFIG).expect("write the host config");
    let compiled = Command::new(&tool)
        .arg("compile")
        .arg(&toml)
        .arg("-o")
        .arg(root.join("boot/host-config.bin"))
        .output()
        .expect("run host-config");
    assert!(
        compiled.status.success(),
        "{}",
        String::from_utf8_lossy(&compiled.stderr)
    );

    let iso = dir.join("keel.iso");
    let made = Command::new("grub-mkrescue")
        .arg("-o")
        .arg(&iso)
        .arg(&root)
        .output()
        .expect("run grub-mkrescue (package grub-pc-bin, xorriso, mtools)");
    assert!(
        made.status.success(),
        "grub-mkrescue failed: {}",
        String::from_utf8_lossy(&made.stderr)
    );

    let qemu = builder.cdrom(&iso).spawn().expect("spawn QEMU");
    qemu.wait_for_serial("booting via Multiboot2", BOOT_TIMEOUT)
        .expect("the kernel entered through the multiboot2 header");
    qemu.wait_for_serial("smp: 2 of 2 CPUs online", BOOT_TIMEOUT)
        .expect("ACPI tables found through the multiboot2 RSDP tag");
    let (_, json) = health(&qemu);
    assert_eq!(
        json["hostname"], "keel-grub-test",
        "module2 reached the appliance: {json}"
    );
    assert_eq!(json["cpus"], 2, "{json}");
    assert!(
        qemu.serial()
            .contains("cmdline: loglevel=info keel.via=grub"),
        "the multiboot2 command line reached the kernel"
    );
}
