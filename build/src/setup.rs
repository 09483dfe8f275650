//! `cargo xtask setup`: host packages, the Rust target, the boot-bench peer.
//! Every step first checks whether there is anything to do, so a second run
//! takes well under two seconds.

use std::process::Command;
use std::time::Instant;

use crate::cmd::{Context, describe, run_status, stdout_of};
use crate::{Error, Paths, Result, peer};

/// The Debian packages the tests and benches use.
pub const APT_PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "ovmf",
    "ipxe-qemu",
    "grub-pc-bin",
    "grub-efi-amd64-bin",
    "xorriso",
    "mtools",
    "cpio",
    "binutils",
    "busybox-static",
    "e2fsprogs",
    "tgt",
    "libiscsi-bin",
    "openvswitch-switch",
    "iputils-ping",
    "bochs",
    "bochsbios",
    "vgabios",
];

/// Python packages the hosted XenAPI tests use: the official SDK from PyPI
/// and the test runner (module name, pip package name).
pub const PYTHON_PACKAGES: &[(&str, &str)] = &[("XenAPI", "XenAPI"), ("pytest", "pytest")];

/// Where Xen Orchestra's `xen-api` client is installed (project-local,
/// pinned by its `package-lock.json`) for the hosted XenAPI tests.
pub const NODE_TESTS_DIR: &str = "appliance/tests/node";

/// The image's Rust target.
pub const IMAGE_TARGET: &str = "x86_64-unknown-none";

/// apt, run as root (through sudo when we are not), updated at most once per run.
#[derive(Debug)]
pub struct Apt {
    sudo: bool,
    updated: bool,
}

impl Apt {
    pub fn new() -> Result<Apt> {
        let uid = stdout_of(Command::new("id").arg("-u"))?;
        Ok(Apt {
            sudo: uid.trim() != "0",
            updated: false,
        })
    }

    fn command(&self, program: &str) -> Command {
        if self.sudo {
            // sudo resets the environment; it takes VAR=value arguments.
            let mut sudo = Command::new("sudo");
            sudo.arg("DEBIAN_FRONTEND=noninteractive").arg(program);
            sudo
        } else {
            let mut command = Command::new(program);
            command.env("DEBIAN_FRONTEND", "noninteractive");
            command
        }
    }

    /// `apt-get update`, once.
    pub fn update(&mut self) -> Result<()> {
        if !self.updated {
            println!("setup: apt-get update");
            run_status(self.command("apt-get").args(["update", "-q"]))?;
            self.updated = true;
        }
        Ok(())
    }

    /// `apt-get install -y` the given packages.
    pub fn install(&mut self, packages: &[&str]) -> Result<()> {
        self.update()?;
        println!("setup: installing {}", packages.join(" "));
        run_status(
            self.command("apt-get")
                .args(["install", "-y", "-q"])
                .args(packages),
        )
    }

    /// Whether apt-get update ran in this process.
    pub fn updated(&self) -> bool {
        self.updated
    }
}

/// The packages of `packages` that dpkg does not list as installed.
pub fn missing_packages<'a>(packages: &[&'a str]) -> Result<Vec<&'a str>> {
    let mut query = Command::new("dpkg-query");
    query
        .args(["-W", "-f=${Package}\t${db:Status-Status}\n"])
        .args(packages);
    // dpkg-query exits 1 when some package is unknown; its stdout still lists the rest.
    let output = query
        .output()
        .context(|| format!("running `{}` (is this Debian?)", describe(&query)))?;
    let listing = String::from_utf8_lossy(&output.stdout);
    let installed: Vec<&str> = listing
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .filter(|(_, status)| *status == "installed")
        .map(|(name, _)| name.split(':').next().unwrap_or(name))
        .collect();
    Ok(packages
        .iter()
        .copied()
        .filter(|p| !installed.contains(p))
        .collect())
}

fn ensure_rust_target(paths: &Paths) -> Result<()> {
    let Ok(installed) = stdout_of(Command::new("rustup").current_dir(&paths.root).args([
        "target",
        "list",
        "--installed",
    ])) else {
        println!("setup: rustup not found; assuming the {IMAGE_TARGET} target is available");
        return Ok(());
    };
    if installed.lines().any(|line| line.trim() == IMAGE_TARGET) {
        return Ok(());
    }
    println!("setup: rustup target add {IMAGE_TARGET}");
    run_status(Command::new("rustup").current_dir(&paths.root).args([
        "target",
        "add",
        IMAGE_TARGET,
    ]))
}

/// Installs the Python packages whose modules do not import yet.
fn ensure_python_packages() -> Result<()> {
    let missing: Vec<&str> = PYTHON_PACKAGES
        .iter()
        .filter(|(module, _)| {
            !Command::new("python3")
                .args(["-c", &format!("import {module}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("setup: pip install {}", missing.join(" "));
    run_status(
        Command::new("python3")
            .args(["-m", "pip", "install", "-q"])
            .args(&missing),
    )
}

/// `npm ci` in [`NODE_TESTS_DIR`] unless the client is already there.
fn ensure_node_packages(paths: &Paths) -> Result<()> {
    let dir = paths.root.join(NODE_TESTS_DIR);
    if dir.join("node_modules/xen-api/package.json").is_file() {
        return Ok(());
    }
    println!("setup: npm ci in {NODE_TESTS_DIR}");
    run_status(
        Command::new("npm")
            .current_dir(&dir)
            .args(["ci", "--no-audit", "--no-fund"]),
    )
}

/// Runs every setup step.
pub fn setup(paths: &Paths) -> Result<()> {
    let start = Instant::now();
    let mut apt = Apt::new()?;
    let missing = missing_packages(APT_PACKAGES)?;
    if !missing.is_empty() {
        apt.install(&missing)?;
        let still = missing_packages(APT_PACKAGES)?;
        if !still.is_empty() {
            return Err(Error::new(format!(
                "packages still missing after apt-get install: {}",
                still.join(" ")
            )));
        }
    }
    ensure_rust_target(paths)?;
    ensure_python_packages()?;
    ensure_node_packages(paths)?;
    peer::ensure(paths, &mut apt)?;
    println!("setup: ok ({:.2} s)", start.elapsed().as_secs_f64());
    Ok(())
}
