//! Bochs (built with VMX and EPT) boots the GPT disk image through its
//! legacy BIOS, GRUB and our multiboot2 entry: the path the Intel VMX work
//! is tested on, since QEMU's TCG has no VMX.
//!
//! Bochs (`/usr/bin/bochs` execs `bochs-bin`, so the child's pid is Bochs
//! itself) is killed by its pid by a watchdog thread at the hard timeout,
//! and when the test ends, pass or fail.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use host_config::artifacts::DISK_IMAGE;
use qemu_tests::{TestDir, media_from_env};

/// How long Bochs may take to reach the kernel banner.
const BANNER_TIMEOUT: Duration = Duration::from_secs(150);
/// Bochs is killed after this, whatever happens.
const HARD_TIMEOUT: Duration = Duration::from_secs(180);

/// A Bochs process under a watchdog; killed and reaped on drop.
struct Bochs {
    child: Arc<Mutex<Child>>,
    stop_watchdog: Option<Sender<()>>,
    watchdog: Option<JoinHandle<()>>,
}

impl Bochs {
    fn start(child: Child) -> Bochs {
        let child = Arc::new(Mutex::new(child));
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let for_watchdog = Arc::clone(&child);
        let watchdog = thread::spawn(move || {
            if let Err(RecvTimeoutError::Timeout) = stop_rx.recv_timeout(HARD_TIMEOUT) {
                kill(&for_watchdog);
            }
        });
        Bochs {
            child,
            stop_watchdog: Some(stop_tx),
            watchdog: Some(watchdog),
        }
    }

    fn exited(&self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        child.try_wait().ok().flatten()
    }
}

/// Kills the child by its own pid and reaps it (a no-op once reaped).
fn kill(child: &Mutex<Child>) {
    let mut child = child.lock().unwrap_or_else(PoisonError::into_inner);
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Bochs {
    fn drop(&mut self) {
        kill(&self.child);
        drop(self.stop_watchdog.take());
        if let Some(watchdog) = self.watchdog.take() {
            let _ = watchdog.join();
        }
    }
}

fn bochsrc(disk: &Path, serial: &Path, log: &Path) -> String {
    format!(
        "megs: 512\n\
         cpu: model=corei7_haswell_4770, count=1, ips=50000000\n\
         romimage: file=/usr/share/bochs/BIOS-bochs-latest\n\
         vgaromimage: file=/usr/share/vgabios/vgabios.bin\n\
         display_library: rfb, options=\"timeout=0\"\n\
         sound: driver=dummy\n\
         speaker: enabled=0\n\
         ata0: enabled=1, ioaddr1=0x1f0, ioaddr2=0x3f0, irq=14\n\
         ata0-master: type=disk, path={}, mode=flat\n\
         boot: disk\n\
         com1: enabled=1, mode=file, dev={}\n\
         log: {}\n\
         panic: action=fatal\n\
         clock: sync=none, time0=1\n",
        disk.display(),
        serial.display(),
        log.display()
    )
}

#[test]
fn bochs_boots_the_disk_image_to_the_banner() {
    let media = media_from_env().expect("the boot media (KEEL_MEDIA)");
    let dir = TestDir::for_current_test().expect("test dir");
    let disk = dir.path().join("keel-disk.img");
    fs::copy(media.join(DISK_IMAGE), &disk).expect("copy the disk image");
    let (serial, log) = (dir.path().join("serial.out"), dir.path().join("bochs.log"));
    let config = dir.path().join("bochsrc");
    fs::write(&config, bochsrc(&disk, &serial, &log)).expect("write bochsrc");
    // Bochs is built with its debugger: `c` lets it run.
    let commands = dir.path().join("debugger.rc");
    fs::write(&commands, "c\n").expect("write the debugger commands");
    let output = fs::File::create(dir.path().join("bochs-output.txt")).expect("output file");
    let child = Command::new("bochs")
        .args(["-q", "-f"])
        .arg(&config)
        .arg("-rc")
        .arg(&commands)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(output.try_clone().expect("dup"))
        .stderr(output)
        .spawn()
        .expect("spawn bochs (package bochs; `cargo xtask setup`)");
    let bochs = Bochs::start(child);

    let start = Instant::now();
    // The command line is logged right after the banner.
    let text = loop {
        let text = String::from_utf8_lossy(&fs::read(&serial).unwrap_or_default()).into_owned();
        if text.contains("cmdline: ") {
            break text;
        }
        if let Some(status) = bochs.exited() {
            panic!(
                "Bochs exited ({status}) before the banner; serial:\n{text}\nlog tail:\n{}",
                tail(&log)
            );
        }
        assert!(
            start.elapsed() < BANNER_TIMEOUT,
            "no banner after {BANNER_TIMEOUT:?}; serial:\n{text}\nlog tail:\n{}",
            tail(&log)
        );
        thread::sleep(Duration::from_millis(200));
    };
    assert!(
        text.lines()
            .any(|l| l.contains("keel ") && l.contains("booting via Multiboot2")),
        "the kernel banner: {text}"
    );
    assert!(
        text.contains("cmdline: keel.boot=disk keel.slot=a"),
        "GRUB chose slot A: {text}"
    );
    drop(bochs);
}

fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
