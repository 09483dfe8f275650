//! A tgtd on loopback for the tests: its own portal and control port, killed
//! by pid with SIGKILL when dropped, pass or fail. Every wait has a time limit.
#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use storage::iscsi::login::ChapCredentials;
use storage::iscsi::lun::IscsiLun;
use storage::iscsi::params::Offer;
use storage::iscsi::tcp::{self, StdClock, Target, TcpTransport};

pub const IQN: &str = "iqn.2026-11.dev.keel:tgtd-test";
pub const INITIATOR: &str = "iqn.2026-11.dev.keel:test-initiator";
pub const LUN_BYTES: u64 = 16 * 1024 * 1024;
pub const TIMEOUT: Duration = Duration::from_secs(15);

pub static SEQ: AtomicU32 = AtomicU32::new(0);

/// One tgtd instance with target tid 1 / LUN 1 on a temporary file.
pub struct Tgtd {
    child: Child,
    pub port: u16,
    control: u16,
    pub dir: PathBuf,
    pub backing: PathBuf,
    portal_options: String,
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// Runs a command with a time limit (its output is drained by a thread so
/// a full pipe cannot stall it); kills it by pid on timeout.
pub fn run_with_timeout(cmd: &mut Command) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()).ok());
    match rx.recv_timeout(TIMEOUT) {
        Ok(out) => out.expect("output"),
        Err(_) => {
            Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .ok();
            panic!("{:?} timed out", cmd.get_program());
        }
    }
}

impl Tgtd {
    pub fn start() -> Tgtd {
        Self::start_with("")
    }

    /// `portal_options` are appended to tgtd's `--iscsi portal=...` value.
    pub fn start_with(portal_options: &str) -> Tgtd {
        // A port picked by binding port 0 can be taken again before tgtd
        // binds it: retry with a new one if tgtd exits or never answers.
        for _ in 0..5 {
            if let Some(t) = Self::try_start(portal_options) {
                return t.with_target();
            }
        }
        panic!("tgtd did not start (is the Debian package tgt installed, and are we root?)");
    }

    pub fn try_start(portal_options: &str) -> Option<Tgtd> {
        let port = free_port();
        // tgtd's control socket is /var/run/tgtd/socket.N: unique per test.
        let control = 20_000
            + (std::process::id() % 20_000) as u16 / 2
            + SEQ.fetch_add(1, Ordering::SeqCst) as u16 * 7;
        let dir =
            std::env::temp_dir().join(format!("keel-tgtd-{}-{}", std::process::id(), control));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let backing = dir.join("lun1.img");
        File::create(&backing)
            .and_then(|f| f.set_len(LUN_BYTES))
            .expect("backing file");
        let mut t = Tgtd {
            child: Self::spawn(port, control, &dir, portal_options),
            port,
            control,
            dir,
            backing,
            portal_options: portal_options.into(),
        };
        t.wait_ready().then_some(t)
    }

    pub fn spawn(port: u16, control: u16, dir: &Path, portal_options: &str) -> Child {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("tgtd.log"))
            .expect("log");
        Command::new("tgtd")
            .args(["-f", "--iscsi"])
            .arg(if portal_options.is_empty() {
                format!("portal=127.0.0.1:{port}")
            } else {
                format!("portal=127.0.0.1:{port},{portal_options}")
            })
            .args(["-C", &control.to_string()])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("tgtd must be installed (Debian package tgt)")
    }

    pub fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if matches!(self.child.try_wait(), Ok(Some(_))) || Instant::now() > deadline {
                return false;
            }
            let ok = self
                .try_admin(&["--op", "show", "--mode", "sys"])
                .status
                .success();
            if ok && TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills tgtd (SIGKILL, like a crash) and starts it again on the same
    /// portal with the same target and backing file.
    pub fn restart(mut self) -> Tgtd {
        self.child.kill().ok();
        self.child.wait().ok();
        for _ in 0..20 {
            self.child = Self::spawn(self.port, self.control, &self.dir, &self.portal_options);
            if self.wait_ready() {
                return self.with_target();
            }
            self.child.kill().ok();
            self.child.wait().ok();
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("tgtd did not come back on port {}", self.port);
    }

    pub fn with_target(self) -> Tgtd {
        self.admin(&["--op", "new", "--mode", "target", "--tid", "1", "-T", IQN]);
        let b = self.backing.to_string_lossy().into_owned();
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
        self
    }

    pub fn try_admin(&self, args: &[&str]) -> Output {
        run_with_timeout(
            Command::new("tgtadm")
                .args(["-C", &self.control.to_string(), "--lld", "iscsi"])
                .args(args),
        )
    }

    pub fn admin(&self, args: &[&str]) {
        let out = self.try_admin(args);
        assert!(out.status.success(), "tgtadm {args:?}: {out:?}");
    }

    pub fn account(&self, user: &str, password: &str, outgoing: bool) {
        self.admin(&[
            "--op",
            "new",
            "--mode",
            "account",
            "--user",
            user,
            "--password",
            password,
        ]);
        let mut bind = vec![
            "--op", "bind", "--mode", "account", "--tid", "1", "--user", user,
        ];
        if outgoing {
            bind.push("--outgoing");
        }
        self.admin(&bind);
    }

    pub fn target(&self) -> Target {
        Target {
            host: "127.0.0.1".into(),
            port: self.port,
            initiator_name: INITIATOR.into(),
            target_name: Some(IQN.into()),
            chap: None,
            mutual: None,
            offer: Offer::default(),
        }
    }

    pub fn open(&self, t: &Target) -> IscsiLun<TcpTransport, StdClock> {
        let c = tcp::connect(t).expect("login");
        IscsiLun::open(c, 1).expect("open LUN 1")
    }

    pub fn backing_file(&self) -> File {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.backing)
            .expect("backing file")
    }
}

impl Drop for Tgtd {
    fn drop(&mut self) {
        // tgtd ignores SIGTERM while targets exist: SIGKILL by pid.
        self.child.kill().ok();
        self.child.wait().ok();
        // A killed tgtd leaves its control socket behind.
        for suffix in ["", ".lock"] {
            std::fs::remove_file(format!("/var/run/tgtd/socket.{}{suffix}", self.control)).ok();
        }
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.join("tgtd.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!("tgtd (port {}) log tail:", self.port);
            for l in tail.iter().rev() {
                eprintln!("  {l}");
            }
        }
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

pub fn creds(user: &str, secret: &str) -> Option<ChapCredentials> {
    Some(ChapCredentials {
        user: user.into(),
        secret: secret.as_bytes().to_vec(),
    })
}

pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

pub fn read_backing(f: &File, off: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    f.read_exact_at(&mut b, off).expect("read backing file");
    b
}
