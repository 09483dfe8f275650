//! A guest VM handed to the image at boot: `cargo xtask run --guest-kernel`
//! and `bench guest-boot` pack it, with the host config, into one boot-module
//! archive (cpio newc) that the image unpacks: `host-config.bin` and
//! `guests/<name>/{kernel,initrd,cmdline,memory_mib,vcpus,disk,iso,nic}`.

use std::fs;
use std::path::{Path, PathBuf};

use crate::cmd::Context;
use crate::{Error, Result};
use qemu_tests::cpio::Cpio;

/// Linux guests get ACPI (a LAPIC per vCPU and the IOAPIC in the MADT, PM
/// timer, S5, the PCI root bridge and MCFG) and a PCI bus with virtio
/// devices. vCPUs share the host CPUs other than the boot CPU.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0";

/// What to boot as a guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestOptions {
    pub name: String,
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    pub cpus: u32,
    pub memory_mib: u32,
    /// A file the guest sees as its virtio-blk disk `vda` (a RAM disk of the file's bytes).
    pub disk: Option<PathBuf>,
    /// A file the guest sees as the read-only virtio-blk disk `vdb` (an ISO).
    pub iso: Option<PathBuf>,
    /// The host network (`management`, or a host interface name) its
    /// virtio-net NIC is a VIF on; no NIC when `None`.
    pub nic: Option<String>,
}

impl GuestOptions {
    pub fn new(kernel: PathBuf) -> GuestOptions {
        GuestOptions {
            name: "guest".into(),
            kernel,
            initrd: None,
            cmdline: DEFAULT_CMDLINE.into(),
            cpus: 1,
            memory_mib: 256,
            disk: None,
            iso: None,
            nic: None,
        }
    }

    /// Refuses what the hypervisor cannot honour yet.
    pub fn check(&self) -> Result<()> {
        if !(1..=64).contains(&self.cpus) {
            return Err(Error::usage(format!(
                "--guest-cpus {}: between 1 and 64",
                self.cpus
            )));
        }
        if let Some(n) = &self.nic
            && (n.is_empty()
                || !n
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
        {
            return Err(Error::usage(format!(
                "--guest-nic {n:?}: a host network name (`management`, or a host interface name)"
            )));
        }
        if self.memory_mib < 16 {
            return Err(Error::usage("--guest-memory must be at least 16 MiB"));
        }
        Ok(())
    }
}

/// Writes the boot-module archive to `out`: the compiled host config, and the guest if any.
pub fn write_archive(host_config: &Path, guest: Option<&GuestOptions>, out: &Path) -> Result<()> {
    write_archive_with(host_config, guest, &[], out)
}

/// As [`write_archive`], with files VMs boot from through the XenAPI:
/// `library/<name>` for each `(name, file)` (`PV_kernel = boot:<name>`).
pub fn write_archive_with(
    host_config: &Path,
    guest: Option<&GuestOptions>,
    library: &[(String, std::path::PathBuf)],
    out: &Path,
) -> Result<()> {
    let mut archive = Cpio::default();
    if !library.is_empty() {
        archive.directory("library");
    }
    for (name, file) in library {
        let mut dir = String::from("library");
        for part in name
            .split('/')
            .take(name.split('/').count().saturating_sub(1))
        {
            dir.push('/');
            dir.push_str(part);
            archive.directory(&dir);
        }
        let bytes = fs::read(file).context(|| format!("reading boot file {}", file.display()))?;
        archive.file(&format!("library/{name}"), 0o644, &bytes);
    }
    let config = fs::read(host_config).context(|| format!("reading {}", host_config.display()))?;
    archive.file("host-config.bin", 0o644, &config);
    if let Some(g) = guest {
        g.check()?;
        let read = |p: &Path| fs::read(p).context(|| format!("reading guest file {}", p.display()));
        archive.directory("guests");
        archive.directory(&format!("guests/{}", g.name));
        archive.file(
            &format!("guests/{}/kernel", g.name),
            0o644,
            &read(&g.kernel)?,
        );
        if let Some(initrd) = &g.initrd {
            archive.file(&format!("guests/{}/initrd", g.name), 0o644, &read(initrd)?);
        }
        if let Some(disk) = &g.disk {
            archive.file(&format!("guests/{}/disk", g.name), 0o644, &read(disk)?);
        }
        if let Some(iso) = &g.iso {
            archive.file(&format!("guests/{}/iso", g.name), 0o644, &read(iso)?);
        }
        if let Some(network) = &g.nic {
            archive.file(&format!("guests/{}/nic", g.name), 0o644, network.as_bytes());
        }
        archive.file(
            &format!("guests/{}/cmdline", g.name),
            0o644,
            g.cmdline.as_bytes(),
        );
        archive.file(
            &format!("guests/{}/memory_mib", g.name),
            0o644,
            g.memory_mib.to_string().as_bytes(),
        );
        archive.file(
            &format!("guests/{}/vcpus", g.name),
            0o644,
            g.cpus.to_string().as_bytes(),
        );
    }
    if let Some(dir) = out.parent() {
        fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(out, archive.finish()).context(|| format!("writing {}", out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_carries_config_and_guest_files() {
        let dir = std::env::temp_dir().join(format!("xtask-guest-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let (cfg, kernel, out) = (dir.join("hc.bin"), dir.join("vmlinuz"), dir.join("a.cpio"));
        fs::write(&cfg, b"CONFIG").unwrap();
        fs::write(&kernel, b"KERNEL").unwrap();
        let disk = dir.join("disk.img");
        fs::write(&disk, b"DISKBYTES").unwrap();
        let g = GuestOptions {
            disk: Some(disk),
            nic: Some("management".into()),
            ..GuestOptions::new(kernel)
        };
        write_archive(&cfg, Some(&g), &out).unwrap();
        let data = fs::read(&out).unwrap();
        for needle in [
            &b"guests/guest/vcpus"[..],
            b"guests/guest/disk",
            b"guests/guest/nic",
            b"management",
            b"DISKBYTES",
            &b"host-config.bin"[..],
            b"guests/guest/kernel",
            b"KERNEL",
            b"CONFIG",
            DEFAULT_CMDLINE.as_bytes(),
        ] {
            assert!(data.windows(needle.len()).any(|w| w == needle));
        }
        let bad_nic = GuestOptions {
            nic: Some("no such/network".into()),
            ..g.clone()
        };
        assert!(write_archive(&cfg, Some(&bad_nic), &out).is_err());
        let none = GuestOptions { cpus: 0, ..g };
        assert!(write_archive(&cfg, Some(&none), &out).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn archive_carries_boot_files_under_library() {
        let dir = std::env::temp_dir().join(format!("xtask-library-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let (cfg, kernel, out) = (dir.join("hc.bin"), dir.join("vmlinuz"), dir.join("a.cpio"));
        fs::write(&cfg, b"CONFIG").unwrap();
        fs::write(&kernel, b"LIBKERNEL").unwrap();
        let library = [("debian/vmlinuz".to_string(), kernel)];
        write_archive_with(&cfg, None, &library, &out).unwrap();
        let data = fs::read(&out).unwrap();
        for needle in [
            &b"library/debian/vmlinuz"[..],
            b"library/debian\0",
            b"LIBKERNEL",
        ] {
            assert!(data.windows(needle.len()).any(|w| w == needle));
        }
        let missing = [("x".to_string(), dir.join("nope"))];
        assert!(write_archive_with(&cfg, None, &missing, &out).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
