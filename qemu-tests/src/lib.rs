//! Harness for tests that boot the keel image (or a peer kernel) in QEMU.
//!
//! Every QEMU a [`Qemu`] starts runs under a hard timeout enforced by a
//! watchdog thread, and is killed by its own pid and reaped when the handle
//! drops, whether the test passed or not. Its serial console goes to a file in
//! a per-test directory; when a test panics, the log is dumped to stderr.
//! Networking is QEMU user-mode (slirp) with one host forward from a free
//! loopback port to the guest's port 80: nothing leaves the machine.
#![forbid(unsafe_code)]

pub mod cpio;
pub mod http;
pub mod process;
pub mod relay;
mod testdir;

use std::fmt;
use std::fs;
use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub use http::{HttpResponse, get as http_get_once, poll_get as http_poll_get};
pub use process::{Finished, run_bounded};
pub use relay::PortRelay;
pub use testdir::{TestDir, workspace_root};

/// Environment variable naming the keel image ELF to boot.
pub const IMAGE_ENV: &str = "KEEL_IMAGE";
/// Environment variable naming the `host-config` tool binary.
pub const HOST_CONFIG_BIN_ENV: &str = "KEEL_HOST_CONFIG_BIN";
/// Environment variable naming the boot media folder (`cargo xtask image --out`).
pub const MEDIA_ENV: &str = "KEEL_MEDIA";
/// The host config `cargo xtask test` serves over PXE to [`GUEST_MAC`]
/// (`cargo xtask image --pxe-host`), so the PXE test sees it applied.
pub const PXE_TEST_HOST_CONFIG: &str = "hostname = \"keel-pxe-test\"\n";
/// OVMF, the UEFI firmware (Debian `ovmf`): code, read-only.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE.fd";
/// OVMF's variable store template; each run gets its own writable copy.
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS.fd";
/// The QEMU binary.
pub const QEMU_BIN: &str = "qemu-system-x86_64";
/// The hard timeout of a QEMU run unless the builder sets another.
pub const DEFAULT_HARD_TIMEOUT: Duration = Duration::from_secs(120);
/// Firmware plus GRUB take longer than a direct `-kernel` boot.
pub const HARD_TIMEOUT_GRUB: Duration = Duration::from_secs(180);
/// The MAC address of the guest's NIC (the image reports it on its serial log).
pub const GUEST_MAC: &str = "52:54:00:12:34:56";
/// The guest port the host forward points at.
pub const GUEST_HTTP_PORT: u16 = 80;
/// The port the image serves HTTPS on.
pub const GUEST_HTTPS_PORT: u16 = 443;
/// Exit status of QEMU when the kernel writes 0x11 to isa-debug-exit (panic, fatal exception).
pub const EXIT_STATUS_KERNEL_FAULT: i32 = (0x11 << 1) | 1;

/// Serial lines an error message carries.
const SERIAL_TAIL_LINES: usize = 60;
/// How often serial and exit status are polled.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// What went wrong while driving QEMU. Messages carry the serial tail so a
/// failing test says what the guest was doing.
pub enum HarnessError {
    /// `KEEL_IMAGE` (or another required variable) is not set.
    MissingEnv {
        var: &'static str,
        hint: &'static str,
    },
    /// A file the run needs does not exist.
    MissingFile { path: PathBuf, hint: String },
    /// Spawning QEMU or a file operation failed.
    Io { context: String, source: io::Error },
    /// A wait ran out of time.
    Timeout {
        what: String,
        after: Duration,
        serial_tail: String,
        stderr: String,
    },
    /// QEMU exited while we were waiting for something else.
    Exited {
        what: String,
        status: ExitStatus,
        serial_tail: String,
        stderr: String,
    },
    /// The watchdog killed QEMU at the hard timeout.
    HardTimeout {
        after: Duration,
        serial_tail: String,
    },
}

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HarnessError::MissingEnv { var, hint } => {
                write!(f, "environment variable {var} is not set: {hint}")
            }
            HarnessError::MissingFile { path, hint } => {
                write!(f, "{} does not exist: {hint}", path.display())
            }
            HarnessError::Io { context, source } => write!(f, "{context}: {source}"),
            HarnessError::Timeout {
                what,
                after,
                serial_tail,
                stderr,
            } => {
                write!(
                    f,
                    "timed out after {:.1} s waiting for {what}",
                    after.as_secs_f64()
                )?;
                write_tails(f, serial_tail, stderr)
            }
            HarnessError::Exited {
                what,
                status,
                serial_tail,
                stderr,
            } => {
                write!(f, "QEMU exited ({status}) while waiting for {what}")?;
                write_tails(f, serial_tail, stderr)
            }
            HarnessError::HardTimeout { after, serial_tail } => {
                write!(
                    f,
                    "QEMU hit its hard timeout of {} s and was killed",
                    after.as_secs()
                )?;
                write_tails(f, serial_tail, "")
            }
        }
    }
}

fn write_tails(f: &mut fmt::Formatter<'_>, serial_tail: &str, stderr: &str) -> fmt::Result {
    write!(
        f,
        "\n--- last {SERIAL_TAIL_LINES} serial lines ---\n{serial_tail}"
    )?;
    if !stderr.trim().is_empty() {
        write!(f, "\n--- QEMU stderr ---\n{}", stderr.trim_end())?;
    }
    Ok(())
}

/// The message itself, so `expect` in a test prints the serial tail readably.
impl fmt::Debug for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for HarnessError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HarnessError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> HarnessError {
    let context = context.into();
    move |source| HarnessError::Io { context, source }
}

/// Reads the keel image path from `KEEL_IMAGE`.
pub fn image_from_env() -> Result<PathBuf, HarnessError> {
    let path = std::env::var_os(IMAGE_ENV)
        .map(PathBuf::from)
        .ok_or(HarnessError::MissingEnv {
            var: IMAGE_ENV,
            hint: "point it at the image ELF (cargo xtask test sets it to target/image/keel.elf)",
        })?;
    if !path.is_file() {
        return Err(HarnessError::MissingFile {
            path,
            hint: "build the image with `cargo xtask build`".into(),
        });
    }
    Ok(path)
}

/// Reads the boot media folder from `KEEL_MEDIA`.
pub fn media_from_env() -> Result<PathBuf, HarnessError> {
    let path = std::env::var_os(MEDIA_ENV)
        .map(PathBuf::from)
        .ok_or(HarnessError::MissingEnv {
            var: MEDIA_ENV,
            hint: "point it at a `cargo xtask image --out DIR` folder (cargo xtask test sets it)",
        })?;
    if !path.join("SHA256SUMS").is_file() {
        return Err(HarnessError::MissingFile {
            path: path.join("SHA256SUMS"),
            hint: "build the media with `cargo xtask image --out DIR`".into(),
        });
    }
    Ok(path)
}

/// Reads the `host-config` tool path from `KEEL_HOST_CONFIG_BIN`.
pub fn host_config_bin_from_env() -> Result<PathBuf, HarnessError> {
    let path = std::env::var_os(HOST_CONFIG_BIN_ENV).map(PathBuf::from).ok_or(
        HarnessError::MissingEnv {
            var: HOST_CONFIG_BIN_ENV,
            hint: "point it at the host-config binary (cargo build -p host-config --bin host-config)",
        },
    )?;
    if !path.is_file() {
        return Err(HarnessError::MissingFile {
            path,
            hint: "build it with `cargo build -p host-config --bin host-config`".into(),
        });
    }
    Ok(path)
}

/// Picks a loopback port that is free right now by binding port 0.
pub fn free_loopback_port() -> Result<u16, HarnessError> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).map_err(io_err("binding 127.0.0.1:0"))?;
    let port = listener
        .local_addr()
        .map_err(io_err("reading the bound port"))?
        .port();
    Ok(port)
}

/// The MAC of the `i`-th tap NIC (`eth{i+1}` in the image).
pub fn tap_mac(i: usize) -> String {
    format!("52:54:00:12:35:{:02x}", (i + 1) % 256)
}

/// The machine QEMU emulates: everything on its command line except the
/// serial backend and the forwarded host port. `cargo xtask run` uses it
/// directly; tests go through [`QemuBuilder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// The kernel ELF or bzImage given to `-kernel`.
    pub kernel: PathBuf,
    /// `-smp`.
    pub cpus: u32,
    /// `-m`, in MiB.
    pub memory_mib: u32,
    /// `-append`.
    pub append: Option<String>,
    /// `-initrd`.
    pub initrd: Option<PathBuf>,
    /// Raw disk images, each a virtio-blk device (`d0`, `d1`, ...) with
    /// serial `keel-d0`, `keel-d1`, ...
    pub disks: Vec<PathBuf>,
    /// Boot this ISO through the firmware (`-cdrom`, `-boot d`) instead of
    /// `-kernel`; `kernel`, `initrd` and `append` are then unused.
    pub cdrom: Option<PathBuf>,
    /// UEFI (OVMF) with this writable variable store instead of SeaBIOS.
    pub ovmf_vars: Option<PathBuf>,
    /// Boot the first disk through the firmware instead of `-kernel`.
    pub boot_disk: bool,
    /// Boot over the network (`-boot n`): the TFTP root and the DHCP boot file.
    pub pxe: Option<(PathBuf, String)>,
    /// Existing tap devices, each a further virtio-net NIC after the first
    /// (user-network) one: `eth1`, `eth2`, ... in the image.
    pub taps: Vec<String>,
    /// A second loopback port forwarded to the guest's HTTPS port 443.
    pub https_forward: Option<u16>,
}

impl Machine {
    /// One CPU and 512 MiB unless changed.
    pub fn new(kernel: impl Into<PathBuf>) -> Machine {
        Machine {
            kernel: kernel.into(),
            cpus: 1,
            memory_mib: 512,
            append: None,
            initrd: None,
            disks: Vec::new(),
            cdrom: None,
            ovmf_vars: None,
            boot_disk: false,
            pxe: None,
            taps: Vec::new(),
            https_forward: None,
        }
    }

    /// Whether QEMU loads `kernel` itself (no firmware boot path).
    fn boots_kernel(&self) -> bool {
        self.cdrom.is_none() && !self.boot_disk && self.pxe.is_none()
    }

    /// QEMU's arguments with `serial` as the `-serial` backend (`stdio`,
    /// `file:PATH`) and `host_port` on 127.0.0.1 forwarded to guest port 80.
    pub fn args(&self, host_port: u16, serial: &str) -> Vec<String> {
        let mut args: Vec<String> = [
            "-machine",
            "q35",
            "-accel",
            "tcg",
            "-cpu",
            "EPYC",
            "-nodefaults",
            "-no-reboot",
            "-display",
            "none",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
            // The ICH9 TCO watchdog resets the machine at its second timeout,
            // as on a server board; QEMU 7.2's q35 models a pin strap that
            // forbids it unless told otherwise (8.0 changed the default).
            "-global",
            "ICH9-LPC.noreboot=false",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(["-smp".into(), self.cpus.to_string()]);
        args.extend(["-m".into(), self.memory_mib.to_string()]);
        args.extend(["-serial".into(), serial.to_string()]);
        if let Some(vars) = &self.ovmf_vars {
            args.extend([
                "-drive".into(),
                format!(
                    "if=pflash,format=raw,readonly=on,file={}",
                    escape(OVMF_CODE)
                ),
                "-drive".into(),
                format!("if=pflash,format=raw,file={}", escape(vars)),
            ]);
        }
        let mut tftp = String::new();
        if let Some(iso) = &self.cdrom {
            args.extend(["-cdrom".into(), iso.display().to_string()]);
            args.extend(["-boot".into(), "d".into()]);
        } else if let Some((root, bootfile)) = &self.pxe {
            args.extend(["-boot".into(), "n".into()]);
            tftp = format!(
                ",tftp={},bootfile={}",
                escape(root),
                bootfile.replace(',', ",,")
            );
        } else if self.boot_disk {
            // The first disk carries bootindex=1.
        } else {
            args.extend(["-kernel".into(), self.kernel.display().to_string()]);
            if let Some(initrd) = &self.initrd {
                args.extend(["-initrd".into(), initrd.display().to_string()]);
            }
            if let Some(append) = &self.append {
                args.extend(["-append".into(), append.clone()]);
            }
        }
        let https = self
            .https_forward
            .map(|p| format!(",hostfwd=tcp:127.0.0.1:{p}-:{GUEST_HTTPS_PORT}"))
            .unwrap_or_default();
        args.extend([
            "-netdev".into(),
            format!("user,id=n0,hostfwd=tcp:127.0.0.1:{host_port}-:{GUEST_HTTP_PORT}{https}{tftp}"),
            "-device".into(),
            format!("virtio-net-pci,netdev=n0,disable-legacy=on,mac={GUEST_MAC}"),
        ]);
        for (i, tap) in self.taps.iter().enumerate() {
            args.extend([
                "-netdev".into(),
                format!(
                    "tap,id=t{i},ifname={},script=no,downscript=no",
                    tap.replace(',', ",,")
                ),
                "-device".into(),
                format!(
                    "virtio-net-pci,netdev=t{i},disable-legacy=on,mac={}",
                    tap_mac(i)
                ),
            ]);
        }
        for (i, disk) in self.disks.iter().enumerate() {
            let file = escape(disk);
            let boot = if self.boot_disk && i == 0 {
                ",bootindex=1"
            } else {
                ""
            };
            args.extend([
                "-drive".into(),
                format!("file={file},if=none,id=d{i},format=raw"),
                "-device".into(),
                // A serial, so the image names it `/dev/disk/by-id/virtio-keel-d<i>`.
                format!("virtio-blk-pci,drive=d{i},disable-legacy=on,serial=keel-d{i}{boot}"),
            ]);
        }
        args
    }

    /// Fails when a file QEMU is given does not exist.
    pub fn check_files(&self) -> Result<(), HarnessError> {
        let kernel = self.boots_kernel().then_some(&self.kernel);
        for path in kernel
            .into_iter()
            .chain(&self.initrd)
            .chain(&self.disks)
            .chain(&self.cdrom)
            .chain(&self.ovmf_vars)
        {
            if !path.is_file() {
                return Err(HarnessError::MissingFile {
                    path: path.clone(),
                    hint: "a file given to QEMU must exist".into(),
                });
            }
        }
        Ok(())
    }
}

/// A path as a QEMU option value: options split on commas, so a comma is doubled.
fn escape(path: impl AsRef<Path>) -> String {
    path.as_ref().display().to_string().replace(',', ",,")
}

/// Configures one QEMU run. Create it with [`Qemu::keel`] or [`Qemu::kernel`].
#[derive(Debug)]
pub struct QemuBuilder {
    machine: Machine,
    hard_timeout: Duration,
    dir: TestDir,
    netns: Option<String>,
}

impl QemuBuilder {
    fn new(kernel: PathBuf) -> Result<Self, HarnessError> {
        Ok(QemuBuilder {
            machine: Machine::new(kernel),
            hard_timeout: DEFAULT_HARD_TIMEOUT,
            dir: TestDir::for_current_test()?,
            netns: None,
        })
    }

    /// Number of virtual CPUs (`-smp`).
    pub fn cpus(mut self, cpus: u32) -> Self {
        self.machine.cpus = cpus;
        self
    }

    /// Guest RAM in MiB (`-m`).
    pub fn memory_mib(mut self, mib: u32) -> Self {
        self.machine.memory_mib = mib;
        self
    }

    /// Kernel command line (`-append`).
    pub fn append(mut self, cmdline: impl Into<String>) -> Self {
        self.machine.append = Some(cmdline.into());
        self
    }

    /// Boot module (`-initrd`): the compiled host config for keel, an initramfs for Linux.
    pub fn initrd(mut self, path: impl Into<PathBuf>) -> Self {
        self.machine.initrd = Some(path.into());
        self
    }

    /// Adds a raw disk image as a virtio-blk device (the first is `d0`).
    pub fn cdrom(mut self, path: impl Into<PathBuf>) -> Self {
        self.machine.cdrom = Some(path.into());
        self
    }

    pub fn disk(mut self, path: impl Into<PathBuf>) -> Self {
        self.machine.disks.push(path.into());
        self
    }

    /// Boots from this disk image through the firmware (it becomes the first disk).
    pub fn boot_disk(mut self, path: impl Into<PathBuf>) -> Self {
        self.machine.disks.insert(0, path.into());
        self.machine.boot_disk = true;
        self
    }

    /// Boots over the network: QEMU's DHCP hands out `bootfile`, its TFTP serves `root`.
    pub fn pxe(mut self, root: impl Into<PathBuf>, bootfile: &str) -> Self {
        self.machine.pxe = Some((root.into(), bootfile.to_string()));
        self
    }

    /// UEFI firmware (OVMF) with a fresh copy of its variable store in the run's folder.
    pub fn uefi(mut self) -> Result<Self, HarnessError> {
        let vars = self.dir.path().join("OVMF_VARS.fd");
        fs::copy(OVMF_VARS, &vars).map_err(io_err(format!(
            "copying {OVMF_VARS} (package ovmf; `cargo xtask setup`)"
        )))?;
        self.machine.ovmf_vars = Some(vars);
        Ok(self)
    }

    /// A further virtio-net NIC on the existing tap device `name`.
    pub fn tap(mut self, name: impl Into<String>) -> Self {
        self.machine.taps.push(name.into());
        self
    }

    /// Runs QEMU inside network namespace `name` (where its taps are;
    /// `ip netns exec` execs QEMU, so the pid is still QEMU's). The
    /// forwarded HTTP port is then on that namespace's loopback.
    pub fn netns(mut self, name: impl Into<String>) -> Self {
        self.netns = Some(name.into());
        self
    }

    /// The time after which the watchdog kills QEMU, whatever the test is doing.
    pub fn hard_timeout(mut self, timeout: Duration) -> Self {
        self.hard_timeout = timeout;
        self
    }

    /// Names the run's directory (by default the running test's name).
    pub fn name(mut self, name: &str) -> Result<Self, HarnessError> {
        self.dir = TestDir::new(name)?;
        Ok(self)
    }

    /// The per-test directory (serial log, QEMU stderr, files the test makes).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The machine so far.
    pub fn machine(&self) -> &Machine {
        &self.machine
    }

    /// Starts QEMU and its watchdog.
    pub fn spawn(self) -> Result<Qemu, HarnessError> {
        self.machine.check_files()?;
        let port = free_loopback_port()?;
        let mut https_port = free_loopback_port()?;
        while https_port == port {
            https_port = free_loopback_port()?;
        }
        let serial_path = self.dir.path().join("serial.log");
        let stderr_path = self.dir.path().join("qemu-stderr.log");
        // Create the log up front so readers never race QEMU's open().
        fs::write(&serial_path, b"")
            .map_err(io_err(format!("creating {}", serial_path.display())))?;
        let stderr_file = fs::File::create(&stderr_path)
            .map_err(io_err(format!("creating {}", stderr_path.display())))?;
        let machine = Machine {
            https_forward: Some(https_port),
            ..self.machine.clone()
        };
        let args = machine.args(port, &format!("file:{}", serial_path.display()));
        fs::write(
            self.dir.path().join("qemu-command.txt"),
            format!("{QEMU_BIN} {}\n", args.join(" ")),
        )
        .map_err(io_err("writing qemu-command.txt"))?;

        let started = Instant::now();
        let mut command = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, QEMU_BIN]);
                c
            }
            None => Command::new(QEMU_BIN),
        };
        let child = command
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr_file)
            .spawn()
            .map_err(io_err(format!(
                "spawning {QEMU_BIN} (is qemu-system-x86 installed? `cargo xtask setup`)"
            )))?;
        let pid = child.id();
        let child = Arc::new(Mutex::new(child));
        let watchdog_fired = Arc::new(AtomicBool::new(false));
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let watchdog = {
            let child_for_watchdog = Arc::clone(&child);
            let fired = Arc::clone(&watchdog_fired);
            let timeout = self.hard_timeout;
            let spawned = thread::Builder::new()
                .name(format!("qemu-watchdog-{pid}"))
                .spawn(move || {
                    if let Err(RecvTimeoutError::Timeout) = stop_rx.recv_timeout(timeout) {
                        fired.store(true, Ordering::SeqCst);
                        let mut child = lock(&child_for_watchdog);
                        // Child::kill signals this child's own pid and is a no-op once reaped.
                        let _ = child.kill();
                        let _ = child.wait();
                    }
                });
            match spawned {
                Ok(handle) => handle,
                Err(e) => {
                    // No watchdog, no run: QEMU must not outlive this call.
                    let mut child = lock(&child);
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(io_err("starting the QEMU watchdog thread")(e));
                }
            }
        };
        Ok(Qemu {
            child,
            pid,
            port,
            https_port,
            started,
            hard_timeout: self.hard_timeout,
            watchdog_fired,
            stop_watchdog: Some(stop_tx),
            watchdog: Some(watchdog),
            serial_path,
            stderr_path,
            dir: self.dir,
        })
    }
}

fn lock(child: &Mutex<Child>) -> MutexGuard<'_, Child> {
    // A panic while holding the lock cannot leave a Child inconsistent.
    child
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running QEMU. Dropping it kills QEMU by its pid and reaps it.
#[derive(Debug)]
pub struct Qemu {
    child: Arc<Mutex<Child>>,
    pid: u32,
    port: u16,
    https_port: u16,
    started: Instant,
    hard_timeout: Duration,
    watchdog_fired: Arc<AtomicBool>,
    stop_watchdog: Option<Sender<()>>,
    watchdog: Option<JoinHandle<()>>,
    serial_path: PathBuf,
    stderr_path: PathBuf,
    dir: TestDir,
}

impl Qemu {
    /// A run of the keel image named by `KEEL_IMAGE`.
    pub fn keel() -> Result<QemuBuilder, HarnessError> {
        QemuBuilder::new(image_from_env()?)
    }

    /// A run of any PVH- or Linux-bootable kernel (the peer, or an explicit image path).
    pub fn kernel(path: impl Into<PathBuf>) -> Result<QemuBuilder, HarnessError> {
        QemuBuilder::new(path.into())
    }

    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The loopback port forwarded to the guest's port 80.
    pub fn http_port(&self) -> u16 {
        self.port
    }

    /// The loopback port forwarded to the guest's port 443 (HTTPS).
    pub fn https_port(&self) -> u16 {
        self.https_port
    }

    /// Time since QEMU was spawned.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The per-test directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The serial log file.
    pub fn serial_path(&self) -> &Path {
        &self.serial_path
    }

    /// The serial output so far (lossy UTF-8).
    pub fn serial(&self) -> String {
        fs::read(&self.serial_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `n` serial lines.
    pub fn serial_tail(&self, n: usize) -> String {
        tail_lines(&self.serial(), n)
    }

    /// QEMU's stderr without its routine TCG CPU-feature warnings.
    pub fn stderr(&self) -> String {
        let text = fs::read_to_string(&self.stderr_path).unwrap_or_default();
        text.lines()
            .filter(|line| !is_noise(line))
            .map(|line| format!("{line}\n"))
            .collect()
    }

    /// QEMU's exit status if it has exited (reaping it).
    pub fn try_exit_status(&self) -> Result<Option<ExitStatus>, HarnessError> {
        lock(&self.child).try_wait().map_err(io_err("polling QEMU"))
    }

    fn exited_error(&self, what: &str, status: ExitStatus) -> HarnessError {
        if self.watchdog_fired.load(Ordering::SeqCst) {
            HarnessError::HardTimeout {
                after: self.hard_timeout,
                serial_tail: self.serial_tail(SERIAL_TAIL_LINES),
            }
        } else {
            HarnessError::Exited {
                what: what.to_string(),
                status,
                serial_tail: self.serial_tail(SERIAL_TAIL_LINES),
                stderr: self.stderr(),
            }
        }
    }

    fn timeout_error(&self, what: &str, after: Duration) -> HarnessError {
        HarnessError::Timeout {
            what: what.to_string(),
            after,
            serial_tail: self.serial_tail(SERIAL_TAIL_LINES),
            stderr: self.stderr(),
        }
    }

    /// Waits until the serial log contains `needle`; returns the whole line
    /// that contains it. Fails on timeout or when QEMU exits first.
    pub fn wait_for_serial(&self, needle: &str, timeout: Duration) -> Result<String, HarnessError> {
        let what = format!("serial output {needle:?}");
        let start = Instant::now();
        loop {
            // Check the exit first so a line written just before exit is still seen.
            let exited = self.try_exit_status()?;
            let serial = self.serial();
            if let Some(line) = line_containing(&serial, needle) {
                return Ok(line);
            }
            if let Some(status) = exited {
                return Err(self.exited_error(&what, status));
            }
            if start.elapsed() >= timeout {
                return Err(self.timeout_error(&what, timeout));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// `GET path` on the forwarded port until a complete response arrives
    /// (of any status), retrying while the guest is not listening yet (see
    /// [`http::poll_get`]). Fails on timeout or when QEMU exits first.
    pub fn http_get(&self, path: &str, timeout: Duration) -> Result<HttpResponse, HarnessError> {
        let what = format!("an HTTP answer to GET {path} on 127.0.0.1:{}", self.port);
        let mut exited = None;
        let mut stop = || match self.try_exit_status() {
            Ok(None) => None,
            Ok(Some(status)) => {
                exited = Some(status);
                Some("QEMU exited".to_string())
            }
            Err(e) => Some(e.to_string()),
        };
        let result = http::poll_get(self.port, path, timeout, &mut stop);
        match (result, exited) {
            (Ok(response), _) => Ok(response),
            (Err(_), Some(status)) => Err(self.exited_error(&what, status)),
            (Err(e), None) if e.kind() == io::ErrorKind::TimedOut => {
                Err(self.timeout_error(&format!("{what} ({e})"), timeout))
            }
            (Err(e), None) => Err(HarnessError::Io {
                context: what,
                source: e,
            }),
        }
    }

    /// Waits for QEMU to exit by itself and returns its status.
    pub fn wait_exit(&self, timeout: Duration) -> Result<ExitStatus, HarnessError> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.try_exit_status()? {
                if self.watchdog_fired.load(Ordering::SeqCst) {
                    return Err(self.exited_error("QEMU to exit", status));
                }
                return Ok(status);
            }
            if start.elapsed() >= timeout {
                return Err(self.timeout_error("QEMU to exit", timeout));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Kills QEMU by its pid and reaps it (idempotent).
    pub fn kill(&self) {
        let mut child = lock(&self.child);
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        self.kill();
        // Closing the channel wakes the watchdog, which then returns.
        drop(self.stop_watchdog.take());
        if let Some(watchdog) = self.watchdog.take() {
            let _ = watchdog.join();
        }
        if thread::panicking() {
            eprintln!(
                "==== serial log of QEMU pid {} ({}) ====\n{}\n==== end of serial log ====",
                self.pid,
                self.serial_path.display(),
                self.serial_tail(400).trim_end()
            );
            let stderr = self.stderr();
            if !stderr.trim().is_empty() {
                eprintln!("==== QEMU stderr ====\n{}", stderr.trim_end());
            }
        }
    }
}

/// QEMU stderr lines that say nothing about a run: TCG lists every CPU
/// feature of the `-cpu` model it does not emulate, once per CPU.
pub fn is_noise(stderr_line: &str) -> bool {
    stderr_line.contains("TCG doesn't support requested feature")
}

/// The last `n` lines of `text`.
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn line_containing(text: &str, needle: &str) -> Option<String> {
    text.lines()
        .find(|line| line.contains(needle))
        .map(|line| line.trim_end_matches('\r').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_and_line_lookup() {
        let text = "a\nkeel 0.1.0 (abc)\r\nb\nc\n";
        assert_eq!(tail_lines(text, 2), "b\nc");
        assert_eq!(tail_lines(text, 10), "a\nkeel 0.1.0 (abc)\nb\nc");
        assert_eq!(
            line_containing(text, "keel 0.1.0 (").as_deref(),
            Some("keel 0.1.0 (abc)")
        );
        assert_eq!(line_containing(text, "nope"), None);
    }

    #[test]
    fn drive_arguments_escape_commas() {
        let builder = Qemu::kernel("/nonexistent")
            .expect("builder")
            .disk("/tmp/a,b.img")
            .cpus(2);
        let args = builder.machine().args(1234, "file:/tmp/serial.log");
        assert!(args.contains(&"file=/tmp/a,,b.img,if=none,id=d0,format=raw".to_string()));
        assert!(args.contains(&"user,id=n0,hostfwd=tcp:127.0.0.1:1234-:80".to_string()));
        assert!(args.windows(2).any(|w| w[0] == "-smp" && w[1] == "2"));
    }

    #[test]
    fn firmware_boot_arguments() {
        let builder = Qemu::kernel("/nonexistent")
            .expect("builder")
            .disk("/tmp/data.img")
            .boot_disk("/tmp/keel-disk.img");
        let args = builder.machine().args(1234, "stdio");
        assert!(!args.contains(&"-kernel".to_string()), "{args:?}");
        assert!(args.contains(
            &"virtio-blk-pci,drive=d0,disable-legacy=on,serial=keel-d0,bootindex=1".to_string()
        ));
        assert!(args.contains(&"file=/tmp/keel-disk.img,if=none,id=d0,format=raw".to_string()));
        assert!(
            args.contains(&"virtio-blk-pci,drive=d1,disable-legacy=on,serial=keel-d1".to_string())
        );

        let builder = Qemu::kernel("/nonexistent")
            .expect("builder")
            .pxe("/srv/a,b", "boot/core.0");
        let args = builder.machine().args(1234, "stdio");
        assert!(args.windows(2).any(|w| w[0] == "-boot" && w[1] == "n"));
        assert!(
            args.contains(
                &"user,id=n0,hostfwd=tcp:127.0.0.1:1234-:80,tftp=/srv/a,,b,bootfile=boot/core.0"
                    .to_string()
            )
        );
        let uefi = Qemu::kernel("/nonexistent")
            .expect("builder")
            .uefi()
            .expect("OVMF_VARS copy (package ovmf)");
        let args = uefi.machine().args(1234, "stdio");
        assert!(
            args.iter()
                .any(|a| a.starts_with("if=pflash") && a.contains("readonly=on"))
        );
    }

    #[test]
    fn missing_image_env_is_explained() {
        if std::env::var_os(IMAGE_ENV).is_some() {
            return;
        }
        let err = Qemu::keel().expect_err("KEEL_IMAGE is unset");
        assert!(err.to_string().contains("KEEL_IMAGE"), "{err}");
    }

    /// Guards the harness itself: boots the stock Debian kernel fetched by
    /// `cargo xtask setup` with its busybox initramfs and waits for the marker.
    #[test]
    fn harness_boots_debian_peer() {
        let peer = workspace_root().join("target/peer");
        let (kernel, initrd) = (peer.join("vmlinuz"), peer.join("initrd.gz"));
        assert!(
            kernel.is_file() && initrd.is_file(),
            "the Debian peer is missing from {}: run `cargo xtask setup`",
            peer.display()
        );
        let qemu = Qemu::kernel(kernel)
            .expect("builder")
            .initrd(initrd)
            .cpus(2)
            .memory_mib(512)
            .append("console=ttyS0 quiet")
            .hard_timeout(Duration::from_secs(90))
            .spawn()
            .expect("spawn QEMU");
        let line = qemu
            .wait_for_serial("KEEL-PEER-INIT-REACHED", Duration::from_secs(80))
            .expect("marker");
        assert!(line.contains("KEEL-PEER-INIT-REACHED"));
        // /init powers off with `busybox poweroff -f`: ACPI S5 under -no-reboot exits 0.
        let status = qemu
            .wait_exit(Duration::from_secs(30))
            .expect("QEMU exits after poweroff");
        assert_eq!(status.code(), Some(0), "{status}");
    }

    #[test]
    fn timeouts_report_serial_and_watchdog_kills() {
        let peer = workspace_root().join("target/peer");
        let kernel = peer.join("vmlinuz");
        assert!(
            kernel.is_file(),
            "the Debian peer is missing: run `cargo xtask setup`"
        );
        // Without an initramfs the kernel panics for want of a root file
        // system and then hangs: only the watchdog ends it.
        let qemu = Qemu::kernel(kernel)
            .expect("builder")
            .append("console=ttyS0")
            // Room for a loaded 2-core machine: TCG took over 12 s to the
            // banner while other QEMUs and compilers ran.
            .hard_timeout(Duration::from_secs(45))
            .spawn()
            .expect("spawn QEMU");
        let line = qemu
            .wait_for_serial("Linux version", Duration::from_secs(40))
            .expect("kernel banner");
        assert!(line.starts_with("[") || line.starts_with("Linux"), "{line}");
        let err = qemu
            .wait_for_serial("NEVER-PRINTED", Duration::from_secs(1))
            .expect_err("timeout");
        let message = err.to_string();
        assert!(matches!(err, HarnessError::Timeout { .. }), "{message}");
        assert!(
            message.contains("serial lines ---\n") && message.lines().count() > 3,
            "{message}"
        );
        let err = qemu
            .wait_exit(Duration::from_secs(90))
            .expect_err("watchdog fires");
        assert!(matches!(err, HarnessError::HardTimeout { .. }), "{err}");
        assert!(qemu.elapsed() < Duration::from_secs(90));
    }
}
