//! `cargo xtask run`: boot the image in QEMU with its serial console on stdout.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use qemu_tests::{Machine, PortRelay, QEMU_BIN, free_loopback_port, http_poll_get, is_noise};

use crate::cmd::{Context, describe};
use crate::guest::{self, GuestOptions};
use crate::{Error, Paths, Result, hostcfg, image, setup};

/// Options of `run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOptions {
    pub api_port: u16,
    pub cpus: u32,
    pub memory_mib: u32,
    pub host_config: Option<PathBuf>,
    pub root_password: Option<String>,
    /// Boot this ELF instead of building the image.
    pub image: Option<PathBuf>,
    /// A guest the image starts at boot.
    pub guest: Option<GuestOptions>,
    /// Existing tap devices given to the image as further NICs (eth1, eth2, ...).
    pub taps: Vec<String>,
    /// Files VMs boot from through the XenAPI (`PV_kernel = boot:NAME`):
    /// `library/NAME` in the boot archive.
    pub library: Vec<(String, PathBuf)>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            api_port: 8080,
            cpus: 4,
            memory_mib: 2048,
            host_config: None,
            root_password: None,
            image: None,
            guest: None,
            taps: Vec::new(),
            library: Vec::new(),
        }
    }
}

impl RunOptions {
    pub fn parse(args: &[String]) -> Result<RunOptions> {
        let mut options = RunOptions::default();
        let mut guest = GuestOptions::new(PathBuf::new());
        let mut guest_given = false;
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            // Accept both `--flag value` and `--flag=value`.
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_string())),
                _ => (arg.as_str(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| args.next().cloned())
                    .ok_or_else(|| Error::usage(format!("{flag} needs a value")))
            };
            guest_given |= flag.starts_with("--guest-");
            match flag {
                "--api-port" => options.api_port = number(flag, &value()?)?,
                "--cpus" => options.cpus = number(flag, &value()?)?,
                "--memory" => options.memory_mib = number(flag, &value()?)?,
                "--host-config" => options.host_config = Some(PathBuf::from(value()?)),
                "--root-password" => options.root_password = Some(value()?),
                "--image" => options.image = Some(PathBuf::from(value()?)),
                "--guest-kernel" => guest.kernel = PathBuf::from(value()?),
                "--guest-initrd" => guest.initrd = Some(PathBuf::from(value()?)),
                "--guest-disk" => guest.disk = Some(PathBuf::from(value()?)),
                "--guest-iso" => guest.iso = Some(PathBuf::from(value()?)),
                "--guest-nic" => guest.nic = Some(value()?),
                "--guest-cmdline" => guest.cmdline = value()?,
                "--guest-cpus" => guest.cpus = number(flag, &value()?)?,
                "--guest-memory" => guest.memory_mib = number(flag, &value()?)?,
                "--boot-file" => {
                    let spec = value()?;
                    match spec.split_once('=') {
                        Some((name, file)) if !name.is_empty() && !file.is_empty() => options
                            .library
                            .push((name.to_string(), PathBuf::from(file))),
                        _ => {
                            return Err(Error::usage(format!(
                                "--boot-file takes NAME=FILE (booted as PV_kernel boot:NAME), got {spec:?}"
                            )));
                        }
                    }
                }
                "--nic" => {
                    let spec = value()?;
                    match spec.strip_prefix("tap=").filter(|name| !name.is_empty()) {
                        Some(name) => options.taps.push(name.into()),
                        None => {
                            return Err(Error::usage(format!(
                                "--nic takes tap=NAME (an existing tap device), got {spec:?}"
                            )));
                        }
                    }
                }
                other => return Err(Error::usage(format!("unknown option {other:?} for `run`"))),
            }
        }
        if guest_given {
            if guest.kernel.as_os_str().is_empty() {
                return Err(Error::usage(
                    "the --guest-* options need --guest-kernel FILE",
                ));
            }
            guest.check()?;
            options.guest = Some(guest);
        }
        if options.cpus == 0 || options.memory_mib == 0 || options.api_port == 0 {
            return Err(Error::usage(
                "--cpus, --memory and --api-port must be positive",
            ));
        }
        Ok(options)
    }
}

fn number<T: std::str::FromStr>(flag: &str, text: &str) -> Result<T> {
    text.parse()
        .map_err(|_| Error::usage(format!("{flag} takes a number, got {text:?}")))
}

/// How often the run loop checks QEMU, the stop flag and `/health`.
const POLL: Duration = Duration::from_millis(100);

pub fn run(paths: &Paths, args: &[String]) -> Result<ExitCode> {
    let options = RunOptions::parse(args)?;
    setup::setup(paths)?;
    let config_bin = paths.target.join("run/host-config.bin");
    let source = hostcfg::Source {
        file: options.host_config.as_deref(),
        root_password: options.root_password.as_deref(),
    };
    if let Some(password) = hostcfg::compile(source, &config_bin)? {
        println!("root password: {password}");
    }
    // With a guest or boot files, the host config travels with them in one archive.
    let boot_modules = if options.guest.is_none() && options.library.is_empty() {
        config_bin
    } else {
        let archive = paths.target.join("run/boot-modules.cpio");
        guest::write_archive_with(
            &config_bin,
            options.guest.as_ref(),
            &options.library,
            &archive,
        )?;
        if let Some(g) = &options.guest {
            println!(
                "run: guest {} ({}) starts at boot; its console is prefixed `vm {}:`",
                g.name,
                g.kernel.display(),
                g.name
            );
        }
        for (name, file) in &options.library {
            println!("run: boot file boot:{name} is {}", file.display());
        }
        archive
    };
    let image = match &options.image {
        Some(image) if image.is_file() => image.clone(),
        Some(image) => {
            return Err(Error::new(format!(
                "--image {}: no such file",
                image.display()
            )));
        }
        None => image::build(paths)?,
    };
    // QEMU's port forward queues one connection (a client opening many at
    // once, as Xen Orchestra does, sees SYNs dropped and backs off for
    // seconds): QEMU forwards a private port, the relay serves --api-port.
    let forward = free_loopback_port().context(|| "finding a free loopback port".into())?;
    let _relay =
        PortRelay::on(options.api_port, ([127, 0, 0, 1], forward).into()).context(|| {
            format!(
                "127.0.0.1:{} is not free (choose another with --api-port)",
                options.api_port
            )
        })?;

    let machine = Machine {
        cpus: options.cpus,
        memory_mib: options.memory_mib,
        initrd: Some(boot_modules),
        taps: options.taps.clone(),
        ..Machine::new(image)
    };
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .context(|| "installing the SIGINT/SIGTERM handler".into())?;
    }
    let mut qemu = Command::new(QEMU_BIN);
    // stdin stays closed: QEMU then leaves the terminal's mode alone, so
    // killing it can never leave the terminal raw.
    qemu.args(machine.args(forward, "stdio"))
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    eprintln!("run: {}", describe(&qemu));
    let mut child = qemu.spawn().context(|| format!("starting {QEMU_BIN}"))?;
    if let Some(stderr) = child.stderr.take() {
        // Pass QEMU's stderr on, minus its per-CPU TCG feature warnings.
        thread::spawn(move || {
            for line in BufReader::new(stderr)
                .lines()
                .map_while(std::io::Result::ok)
            {
                if !is_noise(&line) {
                    eprintln!("{line}");
                }
            }
        });
    }
    let started = Instant::now();
    let port = options.api_port;
    let mut ended: Option<Ending> = None;
    // Until /health answers 200: poll it, watching QEMU and the stop flag.
    while ended.is_none() {
        let mut watch = || {
            ended = check(&mut child, &stop);
            ended.as_ref().map(|_| "stopped".to_string())
        };
        match http_poll_get(port, "/health", Duration::from_secs(3600), &mut watch) {
            Ok(response) if response.status == 200 => {
                println!(
                    "keel is up: http://127.0.0.1:{port}/  (health: http://127.0.0.1:{port}/health)"
                );
                eprintln!(
                    "run: healthy {:.2} s after QEMU started",
                    started.elapsed().as_secs_f64()
                );
                break;
            }
            _ => thread::sleep(POLL),
        }
    }
    // Then until QEMU exits or we are told to stop.
    let ending = loop {
        if let Some(ending) = ended.take().or_else(|| check(&mut child, &stop)) {
            break ending;
        }
        thread::sleep(POLL);
    };
    let status = match ending {
        Ending::Exited(status) => {
            eprintln!("run: QEMU exited ({status})");
            status
        }
        Ending::Stop => {
            eprintln!("run: stopping QEMU (pid {})", child.id());
            // Child::kill signals QEMU's own pid.
            let _ = child.kill();
            child.wait().context(|| "reaping QEMU".into())?
        }
    };
    let code = status.code().unwrap_or(130);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// Why the run ends.
enum Ending {
    Exited(ExitStatus),
    Stop,
}

fn check(child: &mut Child, stop: &AtomicBool) -> Option<Ending> {
    if stop.load(Ordering::SeqCst) {
        return Some(Ending::Stop);
    }
    match child.try_wait() {
        Ok(Some(status)) => Some(Ending::Exited(status)),
        Ok(None) => None,
        // Cannot poll it: stop it rather than leave it unwatched.
        Err(_) => Some(Ending::Stop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<RunOptions> {
        RunOptions::parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn defaults_and_flags() {
        assert_eq!(parse(&[]).expect("defaults"), RunOptions::default());
        let options = parse(&[
            "--api-port",
            "9000",
            "--cpus=2",
            "--memory",
            "512",
            "--root-password",
            "pw",
        ])
        .expect("valid flags");
        assert_eq!(
            (options.api_port, options.cpus, options.memory_mib),
            (9000, 2, 512)
        );
        assert_eq!(options.root_password.as_deref(), Some("pw"));
        assert!(parse(&["--cpus"]).is_err());
        assert!(parse(&["--cpus", "x"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
    }

    #[test]
    fn boot_files_for_the_xenapi() {
        let options = parse(&[
            "--boot-file",
            "debian/vmlinuz=target/peer/vmlinuz",
            "--boot-file=initrd=a=b",
        ])
        .expect("valid");
        assert_eq!(
            options.library,
            [
                (
                    "debian/vmlinuz".to_string(),
                    PathBuf::from("target/peer/vmlinuz")
                ),
                ("initrd".to_string(), PathBuf::from("a=b")),
            ]
        );
        for bad in ["vmlinuz", "=x", "x="] {
            let e = parse(&["--boot-file", bad]).expect_err(bad);
            assert!(e.to_string().contains("NAME=FILE"), "{e}");
        }
    }

    #[test]
    fn nics_on_taps() {
        let options = parse(&["--nic", "tap=kt0", "--nic=tap=kt1"]).expect("valid");
        assert_eq!(options.taps, ["kt0", "kt1"]);
        for bad in ["kt0", "tap=", "user"] {
            let e = parse(&["--nic", bad]).expect_err(bad);
            assert!(e.to_string().contains("tap=NAME"), "{e}");
        }
        let machine = qemu_tests::Machine {
            taps: options.taps.clone(),
            ..qemu_tests::Machine::new("keel.elf")
        };
        let args = machine.args(8080, "stdio").join(" ");
        assert!(
            args.contains("-netdev tap,id=t1,ifname=kt1,script=no,downscript=no"),
            "{args}"
        );
    }
}
