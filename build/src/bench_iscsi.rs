//! `cargo xtask bench iscsi`: our hosted initiator (`iscsi perf`) against
//! libiscsi's `iscsi-perf` on the same tgtd LUN in the same run: 4 KiB
//! random reads at queue depth 32, and 1 MiB sequential reads, 10 s per
//! run, [`RUNS`] runs per side alternating (peer, ours, peer, ...) so drift
//! hits both, the median of each side reported; then our 1 MiB sequential
//! write throughput (libiscsi ships no write benchmark, so that line has
//! no peer).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::cmd::{Context, cargo, describe, run_status};
use crate::{Error, Paths, Result};

const IQN: &str = "iqn.2026-11.dev.keel:bench";
const INITIATOR: &str = "iqn.2026-11.dev.keel:bench-initiator";
const LUN_BYTES: u64 = 1 << 30;
const SECONDS: u64 = 10;
const QUEUE_DEPTH: u32 = 32;
/// Runs per side of each read benchmark (tgtd and both initiators share
/// the machine's two cores: one 10 s run moves by up to ±20 %).
const RUNS: usize = 5;
/// Bytes per 4 KiB random read and per 1 MiB sequential read.
const RAND_BYTES: f64 = 4096.0;
const SEQ_BYTES: f64 = 1_048_576.0;
/// A tool that has not finished this long after its run time has hung.
const GRACE: Duration = Duration::from_secs(30);

/// tgtd on a loopback portal, killed by pid when dropped.
struct Tgtd {
    child: Child,
    port: u16,
    control: u16,
}

impl Tgtd {
    fn start(dir: &Path) -> Result<Tgtd> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context(|| "picking a free port".into())?
            .port();
        // tgtd's control number must fit an i16; the storage tests use 20000 and up.
        let control = 12_000 + (std::process::id() % 8_000) as u16;
        let log =
            std::fs::File::create(dir.join("tgtd.log")).context(|| "creating tgtd.log".into())?;
        let child = Command::new("tgtd")
            .args(["-f", "--iscsi", &format!("portal=127.0.0.1:{port}")])
            .args(["-C", &control.to_string()])
            .stdout(log.try_clone().context(|| "tgtd log".into())?)
            .stderr(log)
            .spawn()
            .context(|| "starting tgtd (Debian package tgt)".into())?;
        let mut t = Tgtd {
            child,
            port,
            control,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if matches!(t.child.try_wait(), Ok(Some(_))) {
                return Err(Error::new(
                    "tgtd exited at start (see target/bench/iscsi/tgtd.log)",
                ));
            }
            let ready = t.admin(&["--op", "show", "--mode", "sys"]).is_ok()
                && TcpStream::connect(("127.0.0.1", port)).is_ok();
            if ready {
                return Ok(t);
            }
            if Instant::now() > deadline {
                return Err(Error::new("tgtd did not answer within 10 s"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn admin(&mut self, args: &[&str]) -> Result<()> {
        let mut c = Command::new("tgtadm");
        c.args(["-C", &self.control.to_string(), "--lld", "iscsi"])
            .args(args);
        let out = run_with_timeout(&mut c, Duration::from_secs(15))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(Error::new(format!(
                "`{}` failed: {}",
                describe(&c),
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }

    fn export(&mut self, backing: &Path) -> Result<()> {
        let b = backing.to_string_lossy().into_owned();
        self.admin(&["--op", "new", "--mode", "target", "--tid", "1", "-T", IQN])?;
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
        ])?;
        self.admin(&[
            "--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL",
        ])
    }

    fn url(&self) -> String {
        format!("iscsi://127.0.0.1:{}/{IQN}/1", self.port)
    }
}

impl Drop for Tgtd {
    fn drop(&mut self) {
        // tgtd ignores SIGTERM while it exports targets.
        self.child.kill().ok();
        self.child.wait().ok();
        for suffix in ["", ".lock"] {
            std::fs::remove_file(format!("/var/run/tgtd/socket.{}{suffix}", self.control)).ok();
        }
    }
}

/// Runs `cmd` capturing its output; kills it by pid after `limit`.
fn run_with_timeout(cmd: &mut Command, limit: Duration) -> Result<Output> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context(|| format!("running `{}`", describe(cmd)))?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()).ok());
    match rx.recv_timeout(limit) {
        Ok(out) => out.context(|| format!("waiting for `{}`", describe(cmd))),
        Err(_) => {
            Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .ok();
            Err(Error::new(format!(
                "`{}` did not finish within {} s; killed",
                describe(cmd),
                limit.as_secs()
            )))
        }
    }
}

/// Runs a benchmark tool and returns its stdout; fails on a non-zero exit.
fn tool(cmd: &mut Command) -> Result<String> {
    let out = run_with_timeout(cmd, Duration::from_secs(SECONDS) + GRACE)?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(Error::new(format!(
            "`{}` failed ({}): {}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(text)
}

/// (IOPS, MB/s) from our `average IOPS: N  MB/s: M` line.
fn parse_ours(out: &str) -> Option<(f64, f64)> {
    let line = out.lines().rev().find(|l| l.starts_with("average IOPS:"))?;
    let mut words = line.split_whitespace();
    let iops = words.nth(2)?.parse().ok()?;
    let mbs = words.nth(1)?.parse().ok()?;
    Some((iops, mbs))
}

/// (IOPS, MB/s) from the last `iops average N (M MB/s)` of `iscsi-perf`
/// (it rewrites one line with carriage returns). Its MB/s are MiB/s: the
/// comparisons below use IOPS, and print MB/s of 10^6 bytes for both.
fn parse_peer(out: &str) -> Option<(f64, f64)> {
    let at = out.rfind("iops average ")?;
    let mut words = out[at + "iops average ".len()..].split_whitespace();
    let iops = words.next()?.parse().ok()?;
    let mbs = words.next()?.trim_start_matches('(').parse().ok()?;
    Some((iops, mbs))
}

fn ours(bin: &Path, url: &str, extra: &[&str]) -> Result<(f64, f64)> {
    let mut c = Command::new(bin);
    c.args(["perf", url, "--initiator-name", INITIATOR])
        .args(["--queue-depth", &QUEUE_DEPTH.to_string()])
        .args(["--seconds", &SECONDS.to_string()])
        .args(extra);
    let out = tool(&mut c)?;
    parse_ours(&out)
        .ok_or_else(|| Error::new(format!("no average in `{}` output:\n{out}", describe(&c))))
}

fn peer(url: &str, extra: &[&str]) -> Result<(f64, f64)> {
    let mut c = Command::new("iscsi-perf");
    c.args(["-i", INITIATOR, "-m", &QUEUE_DEPTH.to_string()])
        .args(["-t", &SECONDS.to_string()])
        .args(extra)
        .arg(url);
    let out = tool(&mut c)?;
    parse_peer(&out)
        .ok_or_else(|| Error::new(format!("no average in `{}` output:\n{out}", describe(&c))))
}

pub fn iscsi(paths: &Paths) -> Result<()> {
    run_status(cargo(paths).args(["build", "--release", "-p", "storage", "--bin", "iscsi"]))?;
    let bin: PathBuf = paths.cargo_target.join("release/iscsi");
    let dir = paths.target.join("bench/iscsi");
    std::fs::create_dir_all(&dir).context(|| format!("creating {}", paths.show(&dir)))?;
    let backing = dir.join("lun.img");
    std::fs::File::create(&backing)
        .and_then(|f| f.set_len(LUN_BYTES))
        .context(|| format!("creating {}", paths.show(&backing)))?;
    let mut tgtd = Tgtd::start(&dir)?;
    tgtd.export(&backing)?;
    let url = tgtd.url();
    println!(
        "bench iscsi: tgtd on 127.0.0.1:{}, a {} MiB LUN, queue depth {QUEUE_DEPTH}, {SECONDS} s per run",
        tgtd.port,
        LUN_BYTES >> 20
    );

    // Writes first: they also fill the LUN, so reads are not of holes.
    let mib = ["--block-size", "1048576", "--pattern", "sequential"];
    let (_, write_mbs) = ours(&bin, &url, &[&mib[..], &["--op", "write"]].concat())?;
    println!(
        "BENCH iscsi-seqwrite-1m ours={write_mbs:.1}MB/s (no libiscsi peer: iscsi-perf only reads)"
    );

    let (mut peer_runs, mut our_runs) = (Vec::new(), Vec::new());
    for run in 1..=RUNS {
        let (peer_iops, _) = peer(&url, &["-r"])?;
        let (our_iops, _) = ours(&bin, &url, &[])?;
        println!(
            "bench iscsi: randread run {run}/{RUNS}: peer {peer_iops:.0} IOPS ({:.1} MB/s), ours {our_iops:.0} IOPS ({:.1} MB/s)",
            peer_iops * RAND_BYTES / 1e6,
            our_iops * RAND_BYTES / 1e6
        );
        peer_runs.push(peer_iops);
        our_runs.push(our_iops);
    }
    let (peer_iops, our_iops) = (median(&mut peer_runs), median(&mut our_runs));
    println!(
        "BENCH iscsi-randread ours={our_iops:.0} peer={peer_iops:.0} ratio={:.2} (IOPS, 4 KiB, median of {RUNS})",
        our_iops / peer_iops.max(1.0)
    );

    let (mut peer_runs, mut our_runs) = (Vec::new(), Vec::new());
    for run in 1..=RUNS {
        let (peer_iops, _) = peer(&url, &["-b", "2048"])?;
        let (our_iops, _) = ours(&bin, &url, &mib)?;
        let (peer_seq, our_seq) = (peer_iops * SEQ_BYTES / 1e6, our_iops * SEQ_BYTES / 1e6);
        println!(
            "bench iscsi: seqread run {run}/{RUNS}: peer {peer_seq:.1} MB/s, ours {our_seq:.1} MB/s"
        );
        peer_runs.push(peer_seq);
        our_runs.push(our_seq);
    }
    let (peer_seq, our_seq) = (median(&mut peer_runs), median(&mut our_runs));
    println!(
        "BENCH iscsi-seqread-1m ours={our_seq:.1} peer={peer_seq:.1} ratio={:.2} (MB/s, median of {RUNS})",
        our_seq / peer_seq.max(0.1)
    );
    drop(tgtd);
    std::fs::remove_file(&backing).ok();
    Ok(())
}

/// The middle value (the upper one of an even count); 0 for none.
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_the_middle_run() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [5.0]), 5.0);
        assert_eq!(median(&mut []), 0.0);
    }

    #[test]
    fn parses_both_tools() {
        let ours = "IOPS: 1  MB/s: 0.0\naverage IOPS: 34085  MB/s: 139.6  (queue depth 32, 4096 B random READ(16), 3.0 s)\n";
        assert_eq!(parse_ours(ours), Some((34085.0, 139.6)));
        let peer = "00:00:01 - lba 1, iops current 22323 (87 MB/s), iops average 22012 (85 MB/s), in_flight 32\r        iops average 26180 (102 MB/s)      \n\nfinished.\n";
        assert_eq!(parse_peer(peer), Some((26180.0, 102.0)));
        assert_eq!(parse_ours("garbage"), None);
        assert_eq!(parse_peer("iops average x"), None);
    }
}
