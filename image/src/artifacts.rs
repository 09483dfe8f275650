//! The boot media of one image build, made reproducibly: the signed image,
//! the GPT disk image (USB sticks, server disks), the hybrid ISO and the PXE
//! tree, plus `SHA256SUMS`.
//!
//! GRUB (Debian's `grub-pc-bin`, `grub-efi-amd64-bin`) boots every medium;
//! `grub-mkimage`, `mtools` and `xorriso` make the pieces, all with fixed
//! inputs: `SOURCE_DATE_EPOCH` for every timestamp, ids derived from the
//! build id, no temporary names. The partition table, the MBR boot code
//! placement and the environment block are written here ([`crate::gpt`],
//! [`crate::biosboot`], [`crate::grubenv`]).

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use crate::biosboot;
use crate::disk_layout::{self, DISK_SECTORS, Guid, PARTITIONS, Role, SECTOR_BYTES};
use crate::gpt;
use crate::grubenv::EnvBlock;
use crate::signed;

/// The bootable host image may not grow past this (kernel + appliance).
pub const IMAGE_BUDGET_BYTES: u64 = 8 * 1024 * 1024;

/// File names inside the output folder.
pub const SIGNED_IMAGE: &str = "keel.img";
pub const DISK_IMAGE: &str = "keel-disk.img";
pub const ISO_IMAGE: &str = "keel.iso";
pub const PXE_DIR: &str = "pxe";
/// What a PXE client's DHCP `bootfile` names (BIOS, then UEFI).
pub const PXE_BOOTFILE_BIOS: &str = "boot/grub/i386-pc/core.0";
pub const PXE_BOOTFILE_EFI: &str = "boot/grub/x86_64-efi/core.efi";
pub const PUBLIC_KEY: &str = "keel-signing.pub";
pub const SUMS: &str = "SHA256SUMS";

/// Where GRUB's platform files are (Debian).
pub const GRUB_LIB: &str = "/usr/lib/grub";

/// Modules every GRUB image here carries (no module folder is installed).
const MODULES_COMMON: &[&str] = &[
    "normal",
    "configfile",
    "echo",
    "test",
    "multiboot2",
    "serial",
    "terminal",
];
const MODULES_DISK: &[&str] = &["part_gpt", "fat", "regexp", "loadenv", "blocklist"];
const MODULES_ISO: &[&str] = &["iso9660", "search", "search_fs_file"];
const MODULES_NET: &[&str] = &["net", "tftp"];

/// A host's compiled config, served over PXE to the NIC with this MAC.
#[derive(Debug, Clone)]
pub struct PxeHost {
    /// Lower-case, colon-separated (GRUB's `$net_default_mac`).
    pub mac: String,
    pub module: Vec<u8>,
}

/// What a build needs.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The image ELF as `cargo xtask build` makes it (with debug info).
    pub elf: PathBuf,
    pub out: PathBuf,
    /// `<package version>+<build id>`, signed into the image header.
    pub version: String,
    /// The build id (commit); GUIDs and volume ids derive from it.
    pub build_id: String,
    pub source_date_epoch: u64,
    /// The ed25519 secret key (32-byte seed).
    pub signing_seed: [u8; 32],
    pub pxe_hosts: Vec<PxeHost>,
    /// `/usr/lib/grub` unless testing.
    pub grub_lib: PathBuf,
}

/// One produced file, relative to the output folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub name: String,
    pub bytes: u64,
}

/// What went wrong, said so that a user can act on it.
#[derive(Debug)]
pub enum ArtifactError {
    Io { context: String, source: io::Error },
    Tool { command: String, detail: String },
    Invalid(String),
    OverBudget { bytes: u64 },
}

impl fmt::Display for ArtifactError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { context, source } => write!(f, "{context}: {source}"),
            Self::Tool { command, detail } => write!(
                f,
                "`{command}` failed: {detail} (packages grub-pc-bin, grub-efi-amd64-bin, mtools, xorriso, binutils; `cargo xtask setup`)"
            ),
            Self::Invalid(message) => f.write_str(message),
            Self::OverBudget { bytes } => write!(
                f,
                "the bootable image {SIGNED_IMAGE} is {bytes} bytes, over its budget of {IMAGE_BUDGET_BYTES} bytes (8 MiB)"
            ),
        }
    }
}

impl std::error::Error for ArtifactError {}

type Result<T> = std::result::Result<T, ArtifactError>;

fn io_context(context: impl Into<String>) -> impl FnOnce(io::Error) -> ArtifactError {
    let context = context.into();
    move |source| ArtifactError::Io { context, source }
}

/// Builds everything into `inputs.out`; returns the artifacts, `SHA256SUMS` last.
pub fn build(inputs: &Inputs) -> Result<Vec<Artifact>> {
    let out = &inputs.out;
    fs::create_dir_all(out).map_err(io_context(format!("creating {}", out.display())))?;
    let work = out.join(".work");
    if work.exists() {
        fs::remove_dir_all(&work).map_err(io_context(format!("clearing {}", work.display())))?;
    }
    fs::create_dir_all(&work).map_err(io_context(format!("creating {}", work.display())))?;
    let result = build_in(inputs, &work);
    let _ = fs::remove_dir_all(&work);
    result
}

fn build_in(inputs: &Inputs, work: &Path) -> Result<Vec<Artifact>> {
    let out = &inputs.out;
    let tools = Tools {
        epoch: inputs.source_date_epoch,
    };
    // The boot loader needs the loadable segments only; debug info stays in keel.elf.
    let stripped = work.join("keel.elf");
    tools.run(
        Command::new("objcopy")
            .arg("--strip-debug")
            .arg(&inputs.elf)
            .arg(&stripped),
    )?;
    let elf = read(&stripped)?;
    let header = signed::sign(&elf, &inputs.version, &inputs.signing_seed)
        .map_err(|e| ArtifactError::Invalid(format!("signing the image: {e}")))?;
    let mut image = header.to_vec();
    image.extend_from_slice(&elf);
    let image_bytes = image.len() as u64;
    let max_payload = disk_layout::SLOT_PAYLOAD_SECTORS * SECTOR_BYTES;
    if elf.len() as u64 > max_payload {
        return Err(ArtifactError::Invalid(format!(
            "the image ELF is {} bytes, a slot holds {max_payload}",
            elf.len()
        )));
    }

    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    files.insert("keel.elf".into(), read(&inputs.elf)?);
    let public = signed::public_key(&inputs.signing_seed);
    files.insert(
        PUBLIC_KEY.into(),
        format!("{}\n", hex(&public)).into_bytes(),
    );
    files.insert(DISK_IMAGE.into(), disk_image(inputs, &tools, work, &image)?);
    files.insert(ISO_IMAGE.into(), iso_image(inputs, &tools, work, &elf)?);
    for (name, bytes) in pxe_tree(inputs, &tools, work, &elf)? {
        files.insert(format!("{PXE_DIR}/{name}"), bytes);
    }
    files.insert(SIGNED_IMAGE.into(), image);

    let pxe = out.join(PXE_DIR);
    if pxe.exists() {
        fs::remove_dir_all(&pxe).map_err(io_context(format!("clearing {}", pxe.display())))?;
    }
    let mut sums = String::new();
    let mut artifacts = Vec::new();
    for (name, bytes) in &files {
        let path = out.join(name);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io_context(format!("creating {}", dir.display())))?;
        }
        write(&path, bytes)?;
        sums.push_str(&format!("{}  {name}\n", hex(&Sha256::digest(bytes))));
        artifacts.push(Artifact {
            name: name.clone(),
            bytes: bytes.len() as u64,
        });
    }
    write(&out.join(SUMS), sums.as_bytes())?;
    artifacts.push(Artifact {
        name: SUMS.into(),
        bytes: sums.len() as u64,
    });
    if image_bytes > IMAGE_BUDGET_BYTES {
        return Err(ArtifactError::OverBudget { bytes: image_bytes });
    }
    Ok(artifacts)
}

/// Runs the external tools with the build's fixed time.
struct Tools {
    epoch: u64,
}

impl Tools {
    fn run(&self, command: &mut Command) -> Result<()> {
        command.env("SOURCE_DATE_EPOCH", self.epoch.to_string());
        command.env("TZ", "UTC");
        let shown = format!(
            "{} {}",
            command.get_program().to_string_lossy(),
            command
                .get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let output = command.output().map_err(|e| ArtifactError::Tool {
            command: shown.clone(),
            detail: e.to_string(),
        })?;
        if output.status.success() {
            Ok(())
        } else {
            Err(ArtifactError::Tool {
                command: shown,
                detail: format!(
                    "{}: {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            })
        }
    }

    /// `grub-mkimage` for `format` with the given modules, prefix and optional embedded config.
    fn grub_image(
        &self,
        inputs: &Inputs,
        format: &str,
        prefix: &str,
        modules: &[&[&str]],
        config: Option<&Path>,
        output: &Path,
    ) -> Result<Vec<u8>> {
        let platform = if format.starts_with("x86_64-efi") {
            "x86_64-efi"
        } else {
            "i386-pc"
        };
        let mut command = Command::new("grub-mkimage");
        command
            .arg("-d")
            .arg(inputs.grub_lib.join(platform))
            .args(["-O", format, "-p", prefix, "-o"])
            .arg(output);
        if let Some(config) = config {
            command.arg("-c").arg(config);
        }
        for list in modules {
            command.args(*list);
        }
        self.run(&mut command)?;
        read(output)
    }

    /// A FAT image made by mtools.
    fn fat_image(&self, work: &Path, spec: &FatSpec<'_>) -> Result<Vec<u8>> {
        let FatSpec {
            name,
            sectors,
            hidden_sectors,
            serial,
            label,
            files,
        } = *spec;
        let image = work.join(name);
        let _ = fs::remove_file(&image);
        // -h 64 -s 32: mtools derives the cylinder count from -T. -c 4: 2 KiB
        // clusters, so GRUBENV is one cluster (see crate::esp).
        self.run(
            Command::new("mformat")
                .arg("-i")
                .arg(&image)
                .args([
                    "-C",
                    "-T",
                    &sectors.to_string(),
                    "-h",
                    "64",
                    "-s",
                    "32",
                    "-c",
                    "4",
                ])
                .args(["-H", &hidden_sectors.to_string()])
                .args(["-N", &format!("{serial:08X}"), "-v", label, "::"]),
        )?;
        let mut made_dirs: Vec<String> = Vec::new();
        for (path, content) in files {
            let mut dir = String::new();
            let parts: Vec<&str> = path.split('/').collect();
            for part in &parts[..parts.len().saturating_sub(1)] {
                dir.push('/');
                dir.push_str(part);
                if !made_dirs.contains(&dir) {
                    self.run(
                        Command::new("mmd")
                            .arg("-i")
                            .arg(&image)
                            .arg(format!("::{dir}")),
                    )?;
                    made_dirs.push(dir.clone());
                }
            }
            let local = work.join(format!("fat-{}", path.replace('/', "_")));
            write(&local, content)?;
            self.run(
                Command::new("mcopy")
                    .arg("-i")
                    .arg(&image)
                    .arg(&local)
                    .arg(format!("::/{path}")),
            )?;
        }
        read(&image)
    }
}

/// A FAT file system of `sectors` sectors holding `files` (path, content), in order.
#[derive(Clone, Copy)]
struct FatSpec<'a> {
    name: &'a str,
    sectors: u64,
    /// Sectors before the file system on its disk (the partition's start).
    hidden_sectors: u64,
    serial: u32,
    label: &'a str,
    files: &'a [(&'a str, &'a [u8])],
}

/// GRUB's configuration on the disk's ESP: picks the slot from the
/// environment block, consumes a one-shot trial, falls back to the other slot.
fn disk_grub_cfg() -> String {
    let payload = disk_layout::SLOT_PAYLOAD_SECTORS;
    let header = disk_layout::SLOT_HEADER_SECTORS;
    let a = disk_layout::partition(Role::SlotA).number;
    let b = disk_layout::partition(Role::SlotB).number;
    let env_file = crate::esp::ENV_FILE;
    format!(
        r#"# keel disk: A/B slots, see image/README.md.
serial --unit=0 --speed=115200
terminal_output serial
set timeout=0
regexp --set=1:keel_disk '^([^,]+)' "$root"
set keel_env=/{env_file}
load_env -f $keel_env
set keel_boot=committed
set keel_slot="$keel_active"
if [ "$keel_trial" = a -o "$keel_trial" = b ]; then
  set keel_slot="$keel_trial"
  set keel_boot=trial
  set keel_trial=
  save_env -f $keel_env keel_trial
fi
if [ "$keel_slot" = b ]; then
  set keel_part=gpt{b}
  set keel_other=a
  set keel_other_part=gpt{a}
else
  set keel_slot=a
  set keel_part=gpt{a}
  set keel_other=b
  set keel_other_part=gpt{b}
fi
set keel_module=
if [ -f /keel/host-config.bin ]; then
  set keel_module=/keel/host-config.bin
fi
export keel_disk keel_slot keel_part keel_other keel_other_part keel_boot keel_module
set default=0
set fallback=1
menuentry "keel slot $keel_slot" {{
  multiboot2 ($keel_disk,$keel_part){header}+{payload} keel.boot=disk keel.slot=$keel_slot keel.slot_state=$keel_boot
  if [ -n "$keel_module" ]; then module2 $keel_module; fi
  boot
}}
menuentry "keel slot $keel_other (fallback)" {{
  multiboot2 ($keel_disk,$keel_other_part){header}+{payload} keel.boot=disk keel.slot=$keel_other keel.slot_state=fallback
  if [ -n "$keel_module" ]; then module2 $keel_module; fi
  boot
}}
"#
    )
}

/// The sector (within the ESP) of the environment block, as the appliance finds it.
pub fn env_sector(esp: &[u8]) -> std::result::Result<u64, crate::esp::EspError> {
    let geometry = crate::esp::Geometry::parse(esp)?;
    let start = (geometry.root_dir_sector * SECTOR_BYTES) as usize;
    let end = start + (geometry.root_dir_sectors * SECTOR_BYTES) as usize;
    let root = esp.get(start..end).ok_or(crate::esp::EspError::NotFat16)?;
    geometry.env_sector(root)
}

/// 16 bytes derived from the build id and a purpose, for GUIDs and serials.
fn derived(build_id: &str, purpose: &str) -> [u8; 16] {
    let digest = Sha256::digest(format!("keel {build_id} {purpose}").as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

fn disk_image(inputs: &Inputs, tools: &Tools, work: &Path, image: &[u8]) -> Result<Vec<u8>> {
    let sector = SECTOR_BYTES as usize;
    let mut disk = vec![0u8; (DISK_SECTORS * SECTOR_BYTES) as usize];
    let entries: Vec<gpt::Entry> = PARTITIONS
        .iter()
        .map(|p| gpt::Entry {
            partition: *p,
            unique_guid: Guid::from_hash(derived(&inputs.build_id, p.name)),
        })
        .collect();
    let disk_guid = Guid::from_hash(derived(&inputs.build_id, "disk"));
    let table = gpt::build(disk_guid, &entries, DISK_SECTORS)
        .map_err(|e| ArtifactError::Invalid(format!("partition table: {e}")))?;
    disk[..table.primary.len()].copy_from_slice(&table.primary);
    let backup_at = table.backup_lba as usize * sector;
    disk[backup_at..backup_at + table.backup.len()].copy_from_slice(&table.backup);
    let place = |disk: &mut Vec<u8>, role: Role, bytes: &[u8]| -> Result<()> {
        let p = disk_layout::partition(role);
        let room = (p.sectors * SECTOR_BYTES) as usize;
        if bytes.len() > room {
            return Err(ArtifactError::Invalid(format!(
                "{} bytes do not fit partition {} ({room} bytes)",
                bytes.len(),
                p.name
            )));
        }
        let at = p.first_lba as usize * sector;
        disk[at..at + bytes.len()].copy_from_slice(bytes);
        Ok(())
    };

    // Legacy BIOS: boot.img in the MBR, core.img in the BIOS boot partition.
    let prefix = format!(
        "(,gpt{})/boot/grub",
        disk_layout::partition(Role::Esp).number
    );
    let mut core = tools.grub_image(
        inputs,
        "i386-pc",
        &prefix,
        &[MODULES_COMMON, MODULES_DISK, &["biosdisk"]],
        None,
        &work.join("core.img"),
    )?;
    let boot_img = read(&inputs.grub_lib.join("i386-pc/boot.img"))?;
    let bios = disk_layout::partition(Role::BiosBoot);
    biosboot::install(
        &boot_img,
        &mut disk[..sector],
        &mut core,
        bios.first_lba,
        bios.sectors,
    )
    .map_err(|e| ArtifactError::Invalid(format!("BIOS boot code: {e}")))?;
    place(&mut disk, Role::BiosBoot, &core)?;

    // UEFI: the removable-media path, so no NVRAM boot entry is needed.
    let efi = tools.grub_image(
        inputs,
        "x86_64-efi",
        &prefix,
        &[MODULES_COMMON, MODULES_DISK],
        None,
        &work.join("bootx64.efi"),
    )?;
    let mut env = EnvBlock::new();
    for (name, value) in [("keel_active", "a"), ("keel_trial", "")] {
        env.set(name, value)
            .map_err(|e| ArtifactError::Invalid(format!("boot environment: {e}")))?;
    }
    let block = env
        .render()
        .map_err(|e| ArtifactError::Invalid(format!("boot environment: {e}")))?;
    let esp = disk_layout::partition(Role::Esp);
    let cfg = disk_grub_cfg();
    let serial = u32::from_le_bytes(first4(&derived(&inputs.build_id, "esp serial")));
    let fat = tools.fat_image(
        work,
        &FatSpec {
            name: "esp.img",
            sectors: esp.sectors,
            hidden_sectors: esp.first_lba,
            serial,
            label: "KEEL-ESP",
            // GRUBENV first: it lands in the first data cluster (see crate::esp).
            files: &[
                (crate::esp::ENV_FILE, &block),
                ("EFI/BOOT/BOOTX64.EFI", &efi),
                ("boot/grub/grub.cfg", cfg.as_bytes()),
            ],
        },
    )?;
    // Check what the upgrade writer will rely on: the block is findable and intact.
    let env_sector = env_sector(&fat)
        .map_err(|e| ArtifactError::Invalid(format!("ESP from mformat/mcopy: {e}")))?;
    let at = (env_sector * SECTOR_BYTES) as usize;
    if fat.get(at..at + block.len()) != Some(&block[..]) {
        return Err(ArtifactError::Invalid(
            "the ESP's GRUBENV is not where its directory entry says".into(),
        ));
    }
    place(&mut disk, Role::Esp, &fat)?;
    // Slot A holds the image; slot B stays empty until the first upgrade.
    place(&mut disk, Role::SlotA, image)?;
    Ok(disk)
}

fn iso_image(inputs: &Inputs, tools: &Tools, work: &Path, elf: &[u8]) -> Result<Vec<u8>> {
    let tree = work.join("iso");
    let marker = format!("boot/keel-{}.id", inputs.build_id);
    let cfg = "serial --unit=0 --speed=115200\nterminal_output serial\nset timeout=0\n\
               menuentry keel {\n  multiboot2 /boot/keel.elf keel.boot=iso\n  boot\n}\n";
    let bios = tools.grub_image(
        inputs,
        "i386-pc-eltorito",
        "/boot/grub",
        &[MODULES_COMMON, MODULES_ISO, &["biosdisk"]],
        None,
        &work.join("eltorito.img"),
    )?;
    // UEFI starts GRUB from the El Torito FAT image; it finds the ISO by its marker file.
    let embedded = work.join("iso-efi.cfg");
    write(
        &embedded,
        format!(
            "search --no-floppy --set=root --file /{marker}\nset prefix=($root)/boot/grub\nconfigfile $prefix/grub.cfg\n"
        )
        .as_bytes(),
    )?;
    let efi = tools.grub_image(
        inputs,
        "x86_64-efi",
        "/boot/grub",
        &[MODULES_COMMON, MODULES_ISO],
        Some(&embedded),
        &work.join("iso-bootx64.efi"),
    )?;
    let serial = u32::from_le_bytes(first4(&derived(&inputs.build_id, "iso efi serial")));
    let sectors = (efi.len() as u64 / SECTOR_BYTES + 1024).next_multiple_of(2048);
    let efi_img = tools.fat_image(
        work,
        &FatSpec {
            name: "iso-efi.img",
            sectors,
            hidden_sectors: 0,
            serial,
            label: "KEEL-EFI",
            files: &[("EFI/BOOT/BOOTX64.EFI", &efi)],
        },
    )?;
    let tree_files: [(&str, &[u8]); 5] = [
        ("boot/keel.elf", elf),
        ("boot/grub/grub.cfg", cfg.as_bytes()),
        ("boot/grub/eltorito.img", &bios),
        ("efi.img", &efi_img),
        (marker.as_str(), b"keel ISO\n"),
    ];
    for (name, bytes) in tree_files {
        let path = tree.join(name);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io_context(format!("creating {}", dir.display())))?;
        }
        write(&path, bytes)?;
    }
    set_times(&tree, inputs.source_date_epoch)?;
    let iso = work.join("keel.iso");
    let date = iso_date(inputs.source_date_epoch);
    tools.run(
        Command::new("xorriso")
            .args(["-as", "mkisofs", "-graft-points", "-quiet"])
            .arg(format!("--modification-date={date}"))
            .args(["-volid", "KEEL"])
            .args(["-b", "boot/grub/eltorito.img", "-no-emul-boot"])
            .args([
                "-boot-load-size",
                "4",
                "-boot-info-table",
                "--grub2-boot-info",
            ])
            .arg("--grub2-mbr")
            .arg(inputs.grub_lib.join("i386-pc/boot_hybrid.img"))
            .args([
                "--efi-boot",
                "efi.img",
                "-efi-boot-part",
                "--efi-boot-image",
            ])
            .args(["--protective-msdos-label", "-r", "-o"])
            .arg(&iso)
            .arg(&tree),
    )?;
    read(&iso)
}

fn pxe_tree(
    inputs: &Inputs,
    tools: &Tools,
    work: &Path,
    elf: &[u8],
) -> Result<Vec<(String, Vec<u8>)>> {
    let mut files = Vec::new();
    let bios = tools.grub_image(
        inputs,
        "i386-pc-pxe",
        "/boot/grub",
        &[MODULES_COMMON, MODULES_NET, &["pxe"]],
        None,
        &work.join("core.0"),
    )?;
    let efi = tools.grub_image(
        inputs,
        "x86_64-efi",
        "/boot/grub",
        &[MODULES_COMMON, MODULES_NET, &["efinet"]],
        None,
        &work.join("core.efi"),
    )?;
    let mut cfg = String::from(
        "# keel PXE: one image, a host config per MAC under hosts/.\n\
         serial --unit=0 --speed=115200\nterminal_output serial\nset timeout=0\nset keel_host=\n",
    );
    let mut hosts = inputs.pxe_hosts.clone();
    hosts.sort_by(|a, b| a.mac.cmp(&b.mac));
    for host in &hosts {
        let mac = normalize_mac(&host.mac).ok_or_else(|| {
            ArtifactError::Invalid(format!("{:?} is not a MAC address", host.mac))
        })?;
        let dir = mac.replace(':', "-");
        cfg.push_str(&format!(
            "if [ \"$net_default_mac\" = \"{mac}\" ]; then set keel_host={dir}; fi\n"
        ));
        files.push((format!("hosts/{dir}/host-config.bin"), host.module.clone()));
    }
    cfg.push_str(
        "export keel_host\nmenuentry keel {\n  multiboot2 /keel.elf keel.boot=pxe\n\
         \x20 if [ -n \"$keel_host\" ]; then module2 /hosts/$keel_host/host-config.bin; fi\n  boot\n}\n",
    );
    files.push(("keel.elf".into(), elf.to_vec()));
    files.push(("boot/grub/grub.cfg".into(), cfg.into_bytes()));
    files.push((PXE_BOOTFILE_BIOS.into(), bios));
    files.push((PXE_BOOTFILE_EFI.into(), efi));
    Ok(files)
}

/// `aa:bb:cc:dd:ee:ff` in lower case, from colons or dashes.
pub fn normalize_mac(text: &str) -> Option<String> {
    let parts: Vec<&str> = text.split([':', '-']).collect();
    if parts.len() != 6
        || parts
            .iter()
            .any(|p| p.len() != 2 || !p.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return None;
    }
    Some(parts.join(":").to_ascii_lowercase())
}

/// Sets the modification time of `root` and everything under it to `epoch`.
fn set_times(root: &Path, epoch: u64) -> Result<()> {
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(epoch);
    set_times_under(root, time)?;
    set_time(root, time)
}

fn set_time(path: &Path, time: SystemTime) -> Result<()> {
    let file = fs::File::options()
        .read(true)
        .open(path)
        .map_err(io_context(format!("opening {}", path.display())))?;
    file.set_modified(time).map_err(io_context(format!(
        "setting the time of {}",
        path.display()
    )))
}

fn set_times_under(root: &Path, time: SystemTime) -> Result<()> {
    let entries = fs::read_dir(root).map_err(io_context(format!("listing {}", root.display())))?;
    for entry in entries {
        let path = entry
            .map_err(io_context(format!("listing {}", root.display())))?
            .path();
        if path.is_dir() {
            set_times_under(&path, time)?;
        }
        set_time(&path, time)?;
    }
    Ok(())
}

/// `YYYYMMDDhhmmss00` (UTC) for xorriso's `--modification-date`.
fn iso_date(epoch: u64) -> String {
    let days = epoch / 86_400;
    let secs = epoch % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}{:02}{:02}{:02}00",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn first4(bytes: &[u8; 16]) -> [u8; 4] {
    [bytes[0], bytes[1], bytes[2], bytes[3]]
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses 64 hex digits (surrounding whitespace allowed) into 32 bytes.
pub fn parse_key_hex(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(io_context(format!("reading {}", path.display())))
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file =
        fs::File::create(path).map_err(io_context(format!("creating {}", path.display())))?;
    file.write_all(bytes)
        .map_err(io_context(format!("writing {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates() {
        assert_eq!(iso_date(0), "1970010100000000");
        assert_eq!(iso_date(1_700_000_000), "2023111422132000");
        assert_eq!(iso_date(951_782_400), "2000022900000000");
    }

    #[test]
    fn macs_and_keys() {
        assert_eq!(
            normalize_mac("52-54-00-AB-cd-56").as_deref(),
            Some("52:54:00:ab:cd:56")
        );
        assert_eq!(normalize_mac("52:54:00:ab:cd"), None);
        assert_eq!(normalize_mac("52:54:00:ab:cd:5g"), None);
        let key = [0xA5u8; 32];
        assert_eq!(parse_key_hex(&format!(" {}\n", hex(&key))), Some(key));
        assert_eq!(parse_key_hex("abc"), None);
        assert_eq!(parse_key_hex(&"zz".repeat(32)), None);
    }

    #[test]
    fn disk_config_names_the_layout() {
        let cfg = disk_grub_cfg();
        assert!(cfg.contains("load_env -f $keel_env"), "{cfg}");
        assert!(cfg.contains("set keel_env=/GRUBENV"), "{cfg}");
        assert!(cfg.contains("8+65528"), "{cfg}");
        assert!(cfg.contains("save_env -f $keel_env keel_trial"));
    }
}
