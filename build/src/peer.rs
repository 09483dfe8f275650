//! The boot-bench peer: Debian's stock kernel booting a busybox initramfs
//! whose `/init` prints a marker and powers off. Lives in `target/peer/`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::cmd::{Context, describe, run_output, run_status, stdout_of};
use crate::setup::Apt;
use crate::{Error, Paths, Result};
use qemu_tests::cpio::Cpio;

/// What the peer's `/init` prints on the console once it runs.
pub const MARKER: &str = "KEEL-PEER-INIT-REACHED";
/// The peer's kernel command line.
pub const CMDLINE: &str = "console=ttyS0 quiet";
/// The meta package whose dependency names the current kernel.
const META_PACKAGE: &str = "linux-image-amd64";
/// busybox-static's binary.
const BUSYBOX: &str = "/bin/busybox";
/// The stock kernel's modules guests load from their initrd, in dependency
/// order (`modinfo -F depends`; ext4's and jbd2's `softdep` on crc32c too),
/// kept in `target/peer/modules/`: the virtio drivers, and ext4 for a root
/// filesystem on a virtio disk.
pub const GUEST_MODULES: &[&str] = &[
    "drivers/virtio/virtio_ring.ko",
    "drivers/virtio/virtio.ko",
    "drivers/virtio/virtio_pci_legacy_dev.ko",
    "drivers/virtio/virtio_pci_modern_dev.ko",
    "drivers/virtio/virtio_pci.ko",
    "drivers/block/virtio_blk.ko",
    "drivers/char/hw_random/virtio-rng.ko",
    "net/core/failover.ko",
    "drivers/net/net_failover.ko",
    "drivers/net/virtio_net.ko",
    "lib/crc16.ko",
    "fs/mbcache.ko",
    "crypto/crc32c_generic.ko",
    "fs/jbd2/jbd2.ko",
    "fs/ext4/ext4.ko",
];
/// Where they are kept, under the peer folder.
pub const MODULES_DIR: &str = "modules";

/// A module's file name in `MODULES_DIR`.
pub fn module_file(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The peer's `/init`: mounts nothing, says it ran, powers off at once.
pub const INIT_SCRIPT: &str = "#!/bin/busybox sh
/bin/busybox echo KEEL-PEER-INIT-REACHED > /dev/console
/bin/busybox poweroff -f
";

/// The peer's files.
#[derive(Debug, Clone)]
pub struct Peer {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub version: String,
}

impl Peer {
    pub fn locate(paths: &Paths) -> Result<Peer> {
        let dir = paths.peer();
        let (kernel, initrd, version_file) = (
            dir.join("vmlinuz"),
            dir.join("initrd.gz"),
            dir.join("VERSION"),
        );
        if !kernel.is_file() || !initrd.is_file() || !version_file.is_file() {
            return Err(Error::new(format!(
                "the boot-bench peer is missing from {}: run `cargo xtask setup`",
                paths.show(&dir)
            )));
        }
        let version = fs::read_to_string(&version_file)
            .context(|| format!("reading {}", version_file.display()))?
            .trim()
            .to_string();
        Ok(Peer {
            kernel,
            initrd,
            version,
        })
    }
}

/// Fetches the kernel and builds the initramfs when they are missing.
pub fn ensure(paths: &Paths, apt: &mut Apt) -> Result<()> {
    let dir = paths.peer();
    fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
    let modules_present = GUEST_MODULES
        .iter()
        .all(|m| dir.join(MODULES_DIR).join(module_file(m)).is_file());
    if !dir.join("vmlinuz").is_file() || !dir.join("VERSION").is_file() || !modules_present {
        fetch_kernel(&dir, apt)?;
    }
    let init_copy = dir.join("init");
    let init_current = fs::read_to_string(&init_copy).is_ok_and(|text| text == INIT_SCRIPT);
    if !dir.join("initrd.gz").is_file() || !init_current {
        build_initramfs(&dir)?;
        fs::write(&init_copy, INIT_SCRIPT)
            .context(|| format!("writing {}", init_copy.display()))?;
    }
    Ok(())
}

/// `linux-image-<version>-amd64`, from `apt-cache depends linux-image-amd64`.
fn kernel_package(apt: &mut Apt) -> Result<String> {
    loop {
        let listing = stdout_of(Command::new("apt-cache").args(["depends", META_PACKAGE]))
            .unwrap_or_default();
        let found = listing.lines().find_map(|line| {
            let name = line
                .trim()
                .strip_prefix("Depends:")?
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>');
            (name.starts_with("linux-image-") && name.ends_with("-amd64")).then(|| name.to_string())
        });
        match found {
            Some(name) => return Ok(name),
            // Without package lists apt-cache knows nothing: update once and ask again.
            None if !apt.updated() => apt.update()?,
            None => {
                return Err(Error::new(format!(
                    "`apt-cache depends {META_PACKAGE}` names no linux-image-<version>-amd64:\n{listing}"
                )));
            }
        }
    }
}

fn fetch_kernel(dir: &Path, apt: &mut Apt) -> Result<()> {
    let package = kernel_package(apt)?;
    let deb = match find_deb(dir, &package)? {
        Some(deb) => deb,
        None => {
            println!("setup: apt-get download {package}");
            let mut download = Command::new("apt-get");
            download.current_dir(dir).args(["download", "-q", &package]);
            if run_output(&mut download).is_err() {
                apt.update()?;
                run_status(&mut download)?;
            }
            find_deb(dir, &package)?.ok_or_else(|| {
                Error::new(format!(
                    "apt-get download left no {package}_*.deb in {}",
                    dir.display()
                ))
            })?
        }
    };
    let version = stdout_of(Command::new("dpkg-deb").arg("-f").arg(&deb).arg("Version"))?;
    let extract = dir.join("extract");
    if extract.exists() {
        fs::remove_dir_all(&extract).context(|| format!("removing {}", extract.display()))?;
    }
    println!("setup: dpkg-deb -x {}", deb.display());
    run_status(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&extract))?;
    let boot = extract.join("boot");
    let vmlinuz = fs::read_dir(&boot)
        .context(|| format!("listing {}", boot.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|path| {
            path.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .ok_or_else(|| Error::new(format!("{} holds no boot/vmlinuz-*", deb.display())))?;
    fs::copy(&vmlinuz, dir.join("vmlinuz")).context(|| format!("copying {}", vmlinuz.display()))?;
    // The modules are hundreds of MB; guests need only these few.
    let release = vmlinuz
        .file_name()
        .map(|n| {
            n.to_string_lossy()
                .trim_start_matches("vmlinuz-")
                .to_string()
        })
        .unwrap_or_default();
    let modules = dir.join(MODULES_DIR);
    fs::create_dir_all(&modules).context(|| format!("creating {}", modules.display()))?;
    for m in GUEST_MODULES {
        let from = extract
            .join("lib/modules")
            .join(&release)
            .join("kernel")
            .join(m);
        fs::copy(&from, modules.join(module_file(m)))
            .context(|| format!("copying {}", from.display()))?;
    }
    fs::remove_dir_all(&extract).context(|| format!("removing {}", extract.display()))?;
    let version = format!("{package} {}\n", version.trim());
    fs::write(dir.join("VERSION"), &version).context(|| "writing VERSION".into())?;
    println!("setup: peer kernel {}", version.trim());
    Ok(())
}

fn find_deb(dir: &Path, package: &str) -> Result<Option<PathBuf>> {
    let prefix = format!("{package}_");
    let mut debs: Vec<(std::time::SystemTime, PathBuf)> = fs::read_dir(dir)
        .context(|| format!("listing {}", dir.display()))?
        .filter_map(|entry| entry.ok())
        .filter(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.starts_with(&prefix) && name.ends_with(".deb")
        })
        .filter_map(|entry| Some((entry.metadata().ok()?.modified().ok()?, entry.path())))
        .collect();
    debs.sort();
    Ok(debs.pop().map(|(_, path)| path))
}

/// Writes `initrd.gz`: a newc cpio archive made here (so `/dev/console` can
/// be a device node without root), gzipped by `gzip`.
fn build_initramfs(dir: &Path) -> Result<()> {
    let busybox =
        fs::read(BUSYBOX).context(|| format!("reading {BUSYBOX} (install busybox-static)"))?;
    let mut archive = Cpio::default();
    archive.directory("bin");
    archive.file("bin/busybox", 0o755, &busybox);
    archive.directory("dev");
    archive.char_device("dev/console", 0o600, 5, 1);
    archive.file("init", 0o755, INIT_SCRIPT.as_bytes());
    let cpio = archive.finish();

    let out_path = dir.join("initrd.gz");
    let tmp_path = dir.join("initrd.gz.tmp");
    let out = fs::File::create(&tmp_path).context(|| format!("creating {}", tmp_path.display()))?;
    let mut gzip = Command::new("gzip");
    gzip.args(["-9", "-n", "-c"])
        .stdin(Stdio::piped())
        .stdout(out);
    let mut child = gzip
        .spawn()
        .context(|| format!("running `{}`", describe(&gzip)))?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| Error::new("gzip has no stdin"))?;
    stdin.write_all(&cpio).context(|| "feeding gzip".into())?;
    drop(stdin);
    let status = child.wait().context(|| "waiting for gzip".into())?;
    if !status.success() {
        return Err(Error::new(format!("gzip failed ({status})")));
    }
    fs::rename(&tmp_path, &out_path).context(|| format!("writing {}", out_path.display()))?;
    println!(
        "setup: peer initramfs {} ({} bytes of cpio)",
        out_path.display(),
        cpio.len()
    );
    Ok(())
}
