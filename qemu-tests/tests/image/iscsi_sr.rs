//! The image logs in to a real tgtd with mutual CHAP, through QEMU's user
//! network (the host's loopback is 10.0.2.2 from the guest), and serves
//! xapi's `lvmoiscsi` flow to the PyPI XenAPI SDK: `SR.probe` without the
//! IQN (the IQN list), with it (the LUNs), `SR.create`, `VDI.create`; wrong
//! CHAP secrets are refused. The SR the appliance wrote is then read from
//! tgtd's backing file with the storage crate: the bytes really landed.

use std::fs::{self, File};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use qemu_tests::{Qemu, host_config_bin_from_env, run_bounded, workspace_root};
use storage::sr::Sr;

use super::{BOOT_TIMEOUT, health, keel};

const HOSTNAME: &str = "keel-iscsi-test";
const PASSWORD: &str = "qemu-iscsi-password";
const IQN: &str = "iqn.2026-12.dev.keel:sr-test";
const LUN_BYTES: u64 = 64 * 1024 * 1024;
const CHAP_USER: &str = "keel-initiator";
const CHAP_SECRET: &str = "initiator-secret-0123";
const MUTUAL_USER: &str = "keel-target";
const MUTUAL_SECRET: &str = "target-secret-456789";
/// tgtd is killed after this whatever happens (the watchdog thread).
const TGTD_HARD_TIMEOUT: Duration = Duration::from_secs(400);
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);
const QEMU_HARD_TIMEOUT: Duration = Duration::from_secs(360);
const ADMIN_TIMEOUT: Duration = Duration::from_secs(15);

/// A tgtd on 127.0.0.1 with one target and one LUN, killed by its pid
/// (SIGKILL: it ignores SIGTERM while targets exist) on drop or after
/// [`TGTD_HARD_TIMEOUT`].
struct Tgtd {
    child: Child,
    port: u16,
    control: u16,
    backing: PathBuf,
    done: Arc<AtomicBool>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("an ephemeral port")
}

fn kill(pid: u32) {
    Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .ok();
}

impl Tgtd {
    fn start(dir: &Path) -> Tgtd {
        for attempt in 0..5u16 {
            let port = free_port();
            let control = 25_000 + (std::process::id() % 5_000) as u16 + attempt * 13;
            let backing = dir.join("lun1.img");
            File::create(&backing)
                .and_then(|f| f.set_len(LUN_BYTES))
                .expect("backing file");
            let log = File::create(dir.join(format!("tgtd-{attempt}.log"))).expect("tgtd log");
            let child = Command::new("tgtd")
                .args(["-f", "--iscsi", &format!("portal=127.0.0.1:{port}")])
                .args(["-C", &control.to_string()])
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("tgtd (Debian package tgt) must be installed");
            let done = Arc::new(AtomicBool::new(false));
            let (pid, flag) = (child.id(), done.clone());
            std::thread::spawn(move || {
                let end = Instant::now() + TGTD_HARD_TIMEOUT;
                while Instant::now() < end {
                    if flag.load(Ordering::SeqCst) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                kill(pid);
            });
            let mut t = Tgtd {
                child,
                port,
                control,
                backing,
                done,
            };
            if t.wait_ready() {
                t.configure();
                return t;
            }
        }
        panic!("tgtd did not start");
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            if self.try_admin(&["--op", "show", "--mode", "sys"])
                && TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn try_admin(&self, args: &[&str]) -> bool {
        let mut cmd = Command::new("tgtadm");
        cmd.args(["-C", &self.control.to_string(), "--lld", "iscsi"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let Ok(mut child) = cmd.spawn() else {
            return false;
        };
        let end = Instant::now() + ADMIN_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    kill(child.id());
                    child.wait().ok();
                    return false;
                }
            }
        }
    }

    fn admin(&self, args: &[&str]) {
        assert!(self.try_admin(args), "tgtadm {args:?} failed");
    }

    fn configure(&self) {
        let b = self.backing.to_string_lossy().into_owned();
        self.admin(&["--op", "new", "--mode", "target", "--tid", "1", "-T", IQN]);
        self.admin(&[
            "--op",
            "new",
            "--mode",
            "logicalunit",
            "--tid",
            "1",
            "--lun",
            "1",
            "-b",
            &b,
        ]);
        self.admin(&[
            "--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL",
        ]);
        for (user, secret) in [(CHAP_USER, CHAP_SECRET), (MUTUAL_USER, MUTUAL_SECRET)] {
            self.admin(&[
                "--op",
                "new",
                "--mode",
                "account",
                "--user",
                user,
                "--password",
                secret,
            ]);
        }
        self.admin(&[
            "--op", "bind", "--mode", "account", "--tid", "1", "--user", CHAP_USER,
        ]);
        self.admin(&[
            "--op",
            "bind",
            "--mode",
            "account",
            "--tid",
            "1",
            "--user",
            MUTUAL_USER,
            "--outgoing",
        ]);
    }
}

impl Drop for Tgtd {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        kill(self.child.id());
        self.child.wait().ok();
    }
}

fn host_config(dir: &Path) -> PathBuf {
    let tool = host_config_bin_from_env().expect("the host-config tool");
    let (toml, module) = (dir.join("iscsi.toml"), dir.join("iscsi.bin"));
    fs::write(
        &toml,
        format!("hostname = \"{HOSTNAME}\"\nroot_password = \"{PASSWORD}\"\n"),
    )
    .expect("write the config");
    let output = Command::new(&tool)
        .arg("compile")
        .arg(&toml)
        .arg("-o")
        .arg(&module)
        .output()
        .expect("run host-config");
    assert!(
        output.status.success(),
        "host-config compile failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    module
}

/// The serial lines with `needle`, printed as FIGURE lines.
fn figures(serial: &str, needle: &str) -> Vec<String> {
    serial
        .lines()
        .filter(|l| l.contains(needle))
        .map(|l| {
            let at = l.find("iscsi:").unwrap_or(0);
            format!("FIGURE {}", &l[at..])
        })
        .collect()
}

#[test]
fn sr_probe_create_and_vdis_on_tgtd_with_mutual_chap() {
    let builder = keel(2, 512).hard_timeout(QEMU_HARD_TIMEOUT);
    let tgtd = Tgtd::start(builder.dir());
    let module = host_config(builder.dir());
    let qemu: Qemu = builder.initrd(module).spawn().expect("spawn QEMU");
    let (_, json) = health(&qemu);
    assert_eq!(json["hostname"], HOSTNAME, "{json}");
    qemu.wait_for_serial("DHCP lease", BOOT_TIMEOUT)
        .expect("the management address");

    let script = workspace_root().join("qemu-tests/tests/image/iscsi_sr.py");
    let mut python = Command::new("python3");
    python
        .arg(&script)
        .env("KEEL_URL", format!("http://127.0.0.1:{}", qemu.http_port()))
        .env("KEEL_PASSWORD", PASSWORD)
        .env("ISCSI_TARGET", "10.0.2.2")
        .env("ISCSI_PORT", tgtd.port.to_string())
        .env("ISCSI_IQN", IQN)
        .env("ISCSI_LUN_BYTES", LUN_BYTES.to_string())
        .env("ISCSI_CHAP_USER", CHAP_USER)
        .env("ISCSI_CHAP_SECRET", CHAP_SECRET)
        .env("ISCSI_MUTUAL_USER", MUTUAL_USER)
        .env("ISCSI_MUTUAL_SECRET", MUTUAL_SECRET);
    let finished = run_bounded(python, SCRIPT_TIMEOUT, qemu.dir(), "iscsi-sr")
        .expect("the SDK script finishes");
    let serial = qemu.serial();
    assert!(
        finished.status.success(),
        "the XenAPI SDK flow failed ({}):\n{}\nserial tail:\n{}",
        finished.status,
        finished.output(),
        qemu.serial_tail(60)
    );
    let last = finished.stdout.lines().last().unwrap_or_default();
    let seen: serde_json::Value = serde_json::from_str(last).expect("the script's JSON line");
    println!("SDK saw: {seen}");

    // The appliance logged in with mutual CHAP and logged its figures.
    assert!(
        serial.contains("(mutual CHAP)"),
        "no mutual CHAP login on the serial log:\n{}",
        qemu.serial_tail(60)
    );
    for line in figures(&serial, "(mutual CHAP)")
        .into_iter()
        .take(1)
        .chain(figures(&serial, " done: "))
    {
        println!("{line}");
    }
    if let Some(s) = seen["sr_create_s"].as_f64() {
        println!("FIGURE iscsi SR.create through the SDK: {s:.2} s");
    }

    // The SR is in tgtd's backing file: the storage crate opens it there.
    drop(tgtd);
    let mut dev = storage::file::FileBlockDevice::open(&qemu.dir().join("lun1.img"), 512, true)
        .expect("open the backing file");
    let sr = Sr::open(&mut dev).expect("the backing file holds the SR the appliance formatted");
    assert_eq!(
        storage::sr::Superblock::decode(&{
            let mut sector = vec![0u8; 4096];
            let f = File::open(qemu.dir().join("lun1.img")).expect("backing file");
            std::os::unix::fs::FileExt::read_exact_at(&f, &mut sector, 0).expect("read");
            sector
        })
        .map(|sb| sb.uuid)
        .ok()
        .map(storage_uuid),
        seen["sr_uuid"].as_str().map(String::from),
        "the superblock at offset 0 names the SR the API created"
    );
    let vdis = sr.vdis();
    assert_eq!(vdis.len(), 1, "{vdis:?}");
    assert_eq!(vdis[0].name, "disk0");
    assert_eq!(vdis[0].virtual_size, 256 * 1024 * 1024);
    assert_eq!(
        Some(storage_uuid(vdis[0].uuid)),
        seen["vdi_uuid"].as_str().map(String::from)
    );
    assert!(qemu.try_exit_status().expect("poll QEMU").is_none());
}

fn storage_uuid(b: [u8; 16]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
