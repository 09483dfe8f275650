//! The image logs in to a real tgtd with mutual CHAP, through QEMU's user
//! network (the host's loopback is 10.0.2.2 from the guest), and serves
//! xapi's `lvmoiscsi` flow to the PyPI XenAPI SDK: `SR.probe` without the
//! IQN (the IQN list), with it (the LUNs), `SR.create`, `VDI.create`; wrong
//! CHAP secrets are refused. The SR the appliance wrote is then read from
//! tgtd's backing file with the storage crate: the bytes really landed.

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use qemu_tests::{Qemu, TestDir, run_bounded, workspace_root};
use storage::sr::Sr;

use super::{BOOT_TIMEOUT, health, keel};

const HOSTNAME: &str = "keel-iscsi-test";
const PASSWORD: &str = "qemu-iscsi-password";
pub(super) const IQN: &str = "iqn.2026-12.dev.keel:sr-test";
pub(super) const LUN_BYTES: u64 = 64 * 1024 * 1024;
pub(super) const CHAP_USER: &str = "keel-initiator";
pub(super) const CHAP_SECRET: &str = "initiator-secret-0123";
pub(super) const MUTUAL_USER: &str = "keel-target";
pub(super) const MUTUAL_SECRET: &str = "target-secret-456789";
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);
const QEMU_HARD_TIMEOUT: Duration = Duration::from_secs(360);
const ADMIN_TIMEOUT: Duration = Duration::from_secs(15);

/// A tgtd on 127.0.0.1 with one target and one LUN, killed by its pid
/// (SIGKILL: it ignores SIGTERM while targets exist) on drop or, whatever
/// happens, after the hard timeout it was started with (its watchdog
/// thread): the test's QEMU hard timeout.
pub(super) struct Tgtd {
    child: Child,
    pub(super) port: u16,
    control: u16,
    pub(super) backing: PathBuf,
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
    pub(super) fn start(dir: &Path, hard_timeout: Duration) -> Tgtd {
        Tgtd::start_on(dir, None, LUN_BYTES, hard_timeout)
    }

    /// A tgtd whose portal is `address`:3260 in the namespace `netns`
    /// (the namespace's tgtd is alone there: the port is free), its LUN a
    /// sparse file of `lun_bytes`.
    pub(super) fn start_in(
        dir: &Path,
        netns: &str,
        address: &str,
        lun_bytes: u64,
        hard_timeout: Duration,
    ) -> Tgtd {
        Tgtd::start_on(dir, Some((netns, address)), lun_bytes, hard_timeout)
    }

    fn start_on(
        dir: &Path,
        netns: Option<(&str, &str)>,
        lun_bytes: u64,
        hard_timeout: Duration,
    ) -> Tgtd {
        for attempt in 0..5u16 {
            let (port, address) = match netns {
                Some((_, address)) => (3260, address),
                None => (free_port(), "127.0.0.1"),
            };
            let control = 25_000 + (std::process::id() % 5_000) as u16 + attempt * 13;
            let backing = super::blank_disk(dir.join("lun1.img"), lun_bytes);
            let log = File::create(dir.join(format!("tgtd-{attempt}.log"))).expect("tgtd log");
            // `ip netns exec` execs tgtd: the child's pid is tgtd's.
            let mut command = match netns {
                Some((ns, _)) => {
                    let mut c = Command::new("ip");
                    c.args(["netns", "exec", ns, "tgtd"]);
                    c
                }
                None => Command::new("tgtd"),
            };
            let child = command
                .args(["-f", "--iscsi", &format!("portal={address}:{port}")])
                .args(["-C", &control.to_string()])
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("tgtd (Debian package tgt) must be installed");
            let done = Arc::new(AtomicBool::new(false));
            let (pid, flag) = (child.id(), done.clone());
            std::thread::spawn(move || {
                let end = Instant::now() + hard_timeout;
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
            if t.wait_ready(netns.map(|(ns, _)| ns)) {
                t.configure();
                return t;
            }
        }
        panic!("tgtd did not start");
    }

    fn wait_ready(&mut self, netns: Option<&str>) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            if self.try_admin(&["--op", "show", "--mode", "sys"]) && self.listening(netns) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Whether the portal accepts connections (in the namespace: whether
    /// `ss` lists it as listening there).
    fn listening(&self, netns: Option<&str>) -> bool {
        let Some(ns) = netns else {
            return TcpStream::connect(("127.0.0.1", self.port)).is_ok();
        };
        let sport = format!("sport = :{}", self.port);
        super::lacp_switch::run(&["ip", "netns", "exec", ns, "ss", "-Hltn", &sport])
            .is_ok_and(|out| !out.trim().is_empty())
    }

    /// Names the target to an SDK flow: `ISCSI_TARGET` (`target`, the
    /// portal's address as the image reaches it), `ISCSI_PORT`, `ISCSI_IQN`
    /// and the CHAP users and secrets both ways.
    pub(super) fn sdk_env(&self, flow: &mut Command, target: &str) {
        flow.env("ISCSI_TARGET", target)
            .env("ISCSI_PORT", self.port.to_string())
            .env("ISCSI_IQN", IQN)
            .env("ISCSI_CHAP_USER", CHAP_USER)
            .env("ISCSI_CHAP_SECRET", CHAP_SECRET)
            .env("ISCSI_MUTUAL_USER", MUTUAL_USER)
            .env("ISCSI_MUTUAL_SECRET", MUTUAL_SECRET);
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

    /// A second LUN (number 2) of `bytes` on the target, a sparse file
    /// beside the first one's (the `vbd_vm` test's ISO library).
    pub(super) fn add_lun(&self, bytes: u64) {
        let backing = super::blank_disk(self.backing.with_file_name("lun2.img"), bytes);
        let b = backing.to_string_lossy().into_owned();
        self.admin(&[
            "--op",
            "new",
            "--mode",
            "logicalunit",
            "--tid",
            "1",
            "--lun",
            "2",
            "-b",
            &b,
        ]);
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
    super::compile_host_config(
        dir,
        "iscsi",
        &format!("hostname = \"{HOSTNAME}\"\nroot_password = \"{PASSWORD}\"\n"),
    )
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

/// A blank state disk, so the database (SR, PBD, VDI objects) survives a reboot.
const STATE_DISK_BYTES: u64 = 16 << 20;
/// How long after boot the PBD may take to be plugged again.
const REPLUG_TIMEOUT: Duration = Duration::from_secs(60);

fn boot(module: &Path, disk: &Path) -> Qemu {
    let qemu = keel(2, 512)
        .hard_timeout(QEMU_HARD_TIMEOUT)
        .initrd(module)
        .disk(disk)
        .spawn()
        .expect("spawn QEMU");
    let (_, json) = health(&qemu);
    assert_eq!(json["hostname"], HOSTNAME, "{json}");
    qemu.wait_for_serial("DHCP lease", BOOT_TIMEOUT)
        .expect("the management address");
    qemu
}

#[test]
fn sr_probe_create_and_vdis_on_tgtd_with_mutual_chap() {
    let dir = TestDir::for_current_test().expect("test dir");
    let tgtd = Tgtd::start(dir.path(), QEMU_HARD_TIMEOUT);
    let module = host_config(dir.path());
    let disk = super::blank_disk(dir.path().join("state.img"), STATE_DISK_BYTES);
    let qemu = boot(&module, &disk);

    let script = workspace_root().join("appliance/tests/python/iscsi_flow.py");
    let mut python = Command::new("python3");
    python
        .arg(&script)
        .env("KEEL_URL", format!("http://127.0.0.1:{}", qemu.http_port()))
        .env("KEEL_PASSWORD", PASSWORD)
        .env("ISCSI_LUN_BYTES", LUN_BYTES.to_string());
    tgtd.sdk_env(&mut python, "10.0.2.2");
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
    assert!(qemu.try_exit_status().expect("poll QEMU").is_none());
    qemu.kill();
    drop(qemu);

    // After a reboot the database still has the SR, and the PBD is plugged
    // again from it: the appliance logs in and opens the SR on the LUN.
    let qemu = boot(&module, &disk);
    let sr_uuid = seen["sr_uuid"].as_str().expect("SR uuid").to_string();
    let vdi_uuid = seen["vdi_uuid"].as_str().expect("VDI uuid").to_string();
    let check = format!(
        "import XenAPI, time\n\
         s = XenAPI.Session('http://127.0.0.1:{port}')\n\
         s.xenapi.login_with_password('root', '{PASSWORD}')\n\
         x = s.xenapi\n\
         sr = x.SR.get_by_uuid('{sr_uuid}')\n\
         pbd = x.SR.get_PBDs(sr)[0]\n\
         end = time.monotonic() + {wait}\n\
         while not x.PBD.get_currently_attached(pbd) and time.monotonic() < end:\n\
         \x20   time.sleep(0.2)\n\
         assert x.PBD.get_currently_attached(pbd), x.PBD.get_record(pbd)\n\
         vdis = [x.VDI.get_uuid(v) for v in x.SR.get_VDIs(sr)]\n\
         assert vdis == ['{vdi_uuid}'], vdis\n\
         x.PBD.unplug(pbd)\n\
         assert not x.PBD.get_currently_attached(pbd)\n\
         x.PBD.plug(pbd)\n\
         assert x.PBD.get_currently_attached(pbd)\n\
         print('replugged')\n",
        port = qemu.http_port(),
        wait = REPLUG_TIMEOUT.as_secs(),
    );
    let mut python = Command::new("python3");
    python.arg("-c").arg(&check);
    let finished = run_bounded(python, SCRIPT_TIMEOUT, qemu.dir(), "iscsi-replug")
        .expect("the check finishes");
    assert!(
        finished.status.success() && finished.stdout.contains("replugged"),
        "after the reboot ({}):\n{}\nserial tail:\n{}",
        finished.status,
        finished.output(),
        qemu.serial_tail(40)
    );
    let serial = qemu.serial();
    assert!(
        serial.contains(&format!("SR {sr_uuid} with 1 VDIs")),
        "no re-plug at boot on the serial log:\n{}",
        qemu.serial_tail(40)
    );
    for line in figures(&serial, "SR Scan done") {
        println!("{line} (after reboot)");
    }

    // The SR is in tgtd's backing file: the storage crate opens it there
    // (tgtd writes through to the file; the appliance synchronised it).
    let backing = tgtd.backing.clone();
    {
        let mut dev = storage::file::FileBlockDevice::open(&backing, 512, true)
            .expect("open the backing file");
        let sr = Sr::open(&mut dev).expect("the backing file holds the SR the appliance formatted");
        let mut sector = vec![0u8; 4096];
        let f = File::open(&backing).expect("backing file");
        std::os::unix::fs::FileExt::read_exact_at(&f, &mut sector, 0).expect("read");
        assert_eq!(
            storage::sr::Superblock::decode(&sector)
                .map(|sb| storage_uuid(sb.uuid))
                .ok(),
            Some(sr_uuid.clone()),
            "the superblock at offset 0 names the SR the API created"
        );
        let vdis = sr.vdis();
        assert_eq!(vdis.len(), 1, "{vdis:?}");
        assert_eq!(vdis[0].name, "disk0");
        assert_eq!(vdis[0].virtual_size, 256 * 1024 * 1024);
        assert_eq!(storage_uuid(vdis[0].uuid), vdi_uuid);
    }

    // Forget and introduce it again (XO's "attach an existing SR"), then
    // destroy it: its VDI first, then the SR, which erases it on the LUN.
    let again = format!(
        "import XenAPI\n\
         s = XenAPI.Session('http://127.0.0.1:{port}')\n\
         s.xenapi.login_with_password('root', '{PASSWORD}')\n\
         x = s.xenapi\n\
         sr = x.SR.get_by_uuid('{sr_uuid}')\n\
         pbd = x.SR.get_PBDs(sr)[0]\n\
         host = x.PBD.get_host(pbd)\n\
         config = x.PBD.get_device_config(pbd)\n\
         # The CHAP passwords are in secrets, which go with the PBD (as in\n\
         # xapi): the client re-enters them.\n\
         for k in [k for k in config if k.endswith('password_secret')]:\n\
         \x20   config[k[:-len('_secret')]] = x.secret.get_value(x.secret.get_by_uuid(config.pop(k)))\n\
         x.PBD.unplug(pbd)\n\
         x.SR.forget(sr)\n\
         assert x.SR.get_all() == [] and x.VDI.get_all() == [] and x.PBD.get_all() == []\n\
         assert x.secret.get_all() == [], 'the PBD\\'s secrets went with it'\n\
         sr = x.SR.introduce('{sr_uuid}', 'again', '', 'lvmoiscsi', 'user', True, {{}})\n\
         pbd = x.PBD.create({{'host': host, 'SR': sr, 'device_config': config, 'other_config': {{}}}})\n\
         x.PBD.plug(pbd)\n\
         vdis = x.SR.get_VDIs(sr)\n\
         assert [x.VDI.get_uuid(v) for v in vdis] == ['{vdi_uuid}'], vdis\n\
         try:\n\
         \x20   x.SR.destroy(sr)\n\
         \x20   raise AssertionError('SR.destroy of a non-empty SR')\n\
         except XenAPI.Failure as f:\n\
         \x20   assert f.details[0] == 'SR_NOT_EMPTY', f.details\n\
         x.VDI.destroy(vdis[0])\n\
         x.SR.destroy(sr)\n\
         assert x.SR.get_all() == [] and x.PBD.get_all() == []\n\
         print('destroyed')\n",
        port = qemu.http_port(),
    );
    let mut python = Command::new("python3");
    python.arg("-c").arg(&again);
    let finished = run_bounded(python, SCRIPT_TIMEOUT, qemu.dir(), "iscsi-destroy")
        .expect("the check finishes");
    assert!(
        finished.status.success() && finished.stdout.contains("destroyed"),
        "introduce and destroy ({}):\n{}\nserial tail:\n{}",
        finished.status,
        finished.output(),
        qemu.serial_tail(40)
    );
    qemu.kill();
    drop(qemu);
    drop(tgtd);
    let mut dev =
        storage::file::FileBlockDevice::open(&backing, 512, true).expect("open the backing file");
    assert!(
        Sr::open(&mut dev).is_err(),
        "SR.destroy left an SR on the LUN"
    );
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
