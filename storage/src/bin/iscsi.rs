//! `iscsi`: a host CLI for the keel iSCSI initiator.
//!
//! ```text
//! iscsi discover HOST[:PORT]
//! iscsi ls URL
//! iscsi read URL --offset BYTES --length BYTES   > data
//! iscsi write URL --offset BYTES                 < data
//! iscsi perf URL [--queue-depth N] [--seconds N] [--block-size BYTES]
//!                 [--pattern random|sequential] [--op read|write]
//! ```
//! `perf` defaults to what libiscsi's `iscsi-perf` measures: random 4 KiB
//! READ(16) at queue depth 32 for 10 s; `--op write` sends WRITE(16)s
//! (overwriting the LUN).
//! URL: `iscsi://[user%password@]host[:port]/iqn/lun`. Common options:
//! `--initiator-name IQN`, `--user U --password P` (discover),
//! `--target-user U --target-password P` (mutual CHAP),
//! `--header-digest none|crc32c|any` (default any), `--data-digest
//! none|crc32c|any` (default none: data digests are opt-in).

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use storage::BlockDevice;
use storage::iscsi::client::ClientError;
use storage::iscsi::login::ChapCredentials;
use storage::iscsi::lun::{IscsiLun, lun_info, report_luns};
use storage::iscsi::params::{DigestOffer, Offer};
use storage::iscsi::session::{Command, DataTransfer, Event};
use storage::iscsi::tcp::{self, Target};
use storage::iscsi::url::{IscsiUrl, split_host_port};
use storage::scsi;

const DEFAULT_INITIATOR: &str = "iqn.2026-11.dev.keel:initiator";
const USAGE: &str = "usage: iscsi discover HOST[:PORT] | ls URL | read URL --offset B --length B | write URL --offset B | perf URL [--queue-depth N] [--seconds N] [--block-size B] [--pattern random|sequential] [--op read|write]";

struct Args {
    positional: Vec<String>,
    opts: Vec<(String, String)>,
}

impl Args {
    fn parse(raw: Vec<String>) -> Result<Self, String> {
        let mut positional = Vec::new();
        let mut opts = Vec::new();
        let mut it = raw.into_iter();
        while let Some(a) = it.next() {
            if let Some(name) = a.strip_prefix("--") {
                let v = it
                    .next()
                    .ok_or_else(|| format!("option --{name} needs a value"))?;
                opts.push((name.to_string(), v));
            } else {
                positional.push(a);
            }
        }
        Ok(Args { positional, opts })
    }

    fn opt(&self, name: &str) -> Option<&str> {
        self.opts
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn num(&self, name: &str) -> Result<Option<u64>, String> {
        self.opt(name)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| format!("--{name} must be a number, got {v:?}"))
            })
            .transpose()
    }

    fn check_known(&self, known: &[&str]) -> Result<(), String> {
        for (k, _) in &self.opts {
            if !known.contains(&k.as_str()) {
                return Err(format!("unknown option --{k}"));
            }
        }
        Ok(())
    }
}

fn digest(v: Option<&str>, default: DigestOffer) -> Result<DigestOffer, String> {
    Ok(match v {
        None => default,
        Some("any") => DigestOffer::PreferNone,
        Some("none") => DigestOffer::None,
        Some("crc32c") => DigestOffer::Crc32c,
        Some(o) => return Err(format!("digest must be none, crc32c or any, got {o:?}")),
    })
}

fn creds(
    user: Option<&str>,
    password: Option<&str>,
    what: &str,
) -> Result<Option<ChapCredentials>, String> {
    match (user, password) {
        (Some(u), Some(p)) => Ok(Some(ChapCredentials {
            user: u.into(),
            secret: p.as_bytes().to_vec(),
        })),
        (None, None) => Ok(None),
        _ => Err(format!("{what} needs both a user and a password")),
    }
}

fn target_for(args: &Args, url: &IscsiUrl) -> Result<Target, String> {
    let offer = Offer {
        header_digest: digest(args.opt("header-digest"), DigestOffer::PreferNone)?,
        data_digest: digest(args.opt("data-digest"), DigestOffer::None)?,
        ..Offer::default()
    };
    let chap = creds(
        url.user.as_deref(),
        url.password.as_deref(),
        "CHAP in the URL",
    )?;
    let mutual = creds(
        args.opt("target-user"),
        args.opt("target-password"),
        "mutual CHAP",
    )?;
    if mutual.is_some() && chap.is_none() {
        return Err("mutual CHAP needs the initiator's user%password in the URL too".into());
    }
    Ok(Target {
        host: url.host.clone(),
        port: url.port,
        initiator_name: args
            .opt("initiator-name")
            .unwrap_or(DEFAULT_INITIATOR)
            .into(),
        target_name: Some(url.target.clone()),
        chap,
        mutual,
        offer,
    })
}

fn url_arg(args: &Args) -> Result<IscsiUrl, String> {
    let s = args.positional.get(1).ok_or(USAGE)?;
    IscsiUrl::parse(s).map_err(|e| e.to_string())
}

const COMMON: &[&str] = &[
    "initiator-name",
    "target-user",
    "target-password",
    "header-digest",
    "data-digest",
];

fn with_common(extra: &[&'static str]) -> Vec<&'static str> {
    COMMON.iter().chain(extra).copied().collect()
}

fn open_lun(args: &Args) -> Result<IscsiLun<tcp::TcpTransport, tcp::StdClock>, String> {
    let url = url_arg(args)?;
    let t = target_for(args, &url)?;
    let client = tcp::connect(&t).map_err(|e| e.to_string())?;
    IscsiLun::open(client, url.lun).map_err(|e| format!("LUN {}: {e}", url.lun))
}

fn cmd_discover(args: &Args) -> Result<(), String> {
    args.check_known(&with_common(&["user", "password"]))?;
    let hp = args.positional.get(1).ok_or(USAGE)?;
    let (host, port) = split_host_port(hp).map_err(|e| e.to_string())?;
    let t = Target {
        host,
        port,
        initiator_name: args
            .opt("initiator-name")
            .unwrap_or(DEFAULT_INITIATOR)
            .into(),
        target_name: None,
        chap: creds(args.opt("user"), args.opt("password"), "discovery CHAP")?,
        mutual: creds(
            args.opt("target-user"),
            args.opt("target-password"),
            "mutual CHAP",
        )?,
        offer: Offer::default(),
    };
    let targets = tcp::discover(&t).map_err(|e| e.to_string())?;
    for tg in targets {
        if tg.addresses.is_empty() {
            println!("{}", tg.name);
        }
        for a in &tg.addresses {
            println!("{a} {}", tg.name);
        }
    }
    Ok(())
}

fn cmd_ls(args: &Args) -> Result<(), String> {
    args.check_known(COMMON)?;
    let url = url_arg(args)?;
    let t = target_for(args, &url)?;
    let mut c = tcp::connect(&t).map_err(|e| e.to_string())?;
    let luns = report_luns(&mut c).map_err(|e| e.to_string())?;
    for lun in luns {
        match lun_info(&mut c, lun) {
            Ok(i) => println!(
                "lun {lun} size={} block_size={} scsi_id={} serial={} vendor={:?} product={:?} type={:#04x} max_transfer_blocks={} thin={}",
                i.capacity.map_or(0, |c| c.bytes()),
                i.capacity.map_or(0, |c| c.block_size),
                i.scsi_id.as_deref().unwrap_or("-"),
                i.serial.as_deref().unwrap_or("-"),
                i.inquiry.vendor,
                i.inquiry.product,
                i.inquiry.device_type,
                i.block_limits.map_or(0, |l| l.max_transfer_blocks),
                i.capacity.is_some_and(|c| c.thin_provisioned),
            ),
            Err(e) => println!("lun {lun} error: {e}"),
        }
    }
    c.logout().map_err(|e| e.to_string())
}

/// Reads the block-aligned range covering `[off, off+len)`.
fn read_range(dev: &mut impl BlockDevice, off: u64, len: u64) -> Result<(u64, Vec<u8>), String> {
    let bs = u64::from(dev.block_size());
    let first = off / bs;
    let last = (off + len).div_ceil(bs);
    let mut buf = vec![0u8; ((last - first) * bs) as usize];
    dev.read_blocks(first, &mut buf)
        .map_err(|e| e.to_string())?;
    Ok((first * bs, buf))
}

fn cmd_read(args: &Args) -> Result<(), String> {
    args.check_known(&with_common(&["offset", "length"]))?;
    let off = args.num("offset")?.unwrap_or(0);
    let len = args.num("length")?.ok_or("read needs --length BYTES")?;
    let mut lun = open_lun(args)?;
    let mut out = std::io::stdout().lock();
    const STEP: u64 = 4 * 1024 * 1024;
    let mut done = 0;
    while done < len {
        let n = STEP.min(len - done);
        let (start, buf) = read_range(&mut lun, off + done, n).map_err(|e| detail(&lun, e))?;
        let s = (off + done - start) as usize;
        out.write_all(&buf[s..s + n as usize])
            .map_err(|e| format!("stdout: {e}"))?;
        done += n;
    }
    out.flush().map_err(|e| format!("stdout: {e}"))?;
    lun.into_client().logout().map_err(|e| e.to_string())
}

fn detail(lun: &IscsiLun<tcp::TcpTransport, tcp::StdClock>, e: String) -> String {
    match lun.last_error() {
        Some(d) => format!("{e}: {d}"),
        None => e,
    }
}

fn cmd_write(args: &Args) -> Result<(), String> {
    args.check_known(&with_common(&["offset"]))?;
    let off = args.num("offset")?.unwrap_or(0);
    let mut data = Vec::new();
    std::io::stdin()
        .read_to_end(&mut data)
        .map_err(|e| format!("stdin: {e}"))?;
    let mut lun = open_lun(args)?;
    if !data.is_empty() {
        let bs = u64::from(lun.block_size());
        let len = data.len() as u64;
        let aligned = off.is_multiple_of(bs) && len.is_multiple_of(bs);
        let (start, mut buf) = if aligned {
            (off, Vec::new())
        } else {
            // Read-modify-write of the partial blocks at the edges.
            read_range(&mut lun, off, len).map_err(|e| detail(&lun, e))?
        };
        let payload = if aligned {
            &data
        } else {
            let s = (off - start) as usize;
            buf[s..s + data.len()].copy_from_slice(&data);
            &buf
        };
        lun.write_blocks(start / bs, payload)
            .map_err(|e| detail(&lun, e.to_string()))?;
        lun.flush().map_err(|e| detail(&lun, e.to_string()))?;
    }
    lun.into_client().logout().map_err(|e| e.to_string())
}

fn cmd_perf(args: &Args) -> Result<(), String> {
    args.check_known(&with_common(&[
        "queue-depth",
        "seconds",
        "block-size",
        "pattern",
        "op",
    ]))?;
    let sequential = match args.opt("pattern") {
        None | Some("random") => false,
        Some("sequential") => true,
        Some(o) => return Err(format!("--pattern must be random or sequential, got {o:?}")),
    };
    let write = match args.opt("op") {
        None | Some("read") => false,
        Some("write") => true,
        Some(o) => return Err(format!("--op must be read or write, got {o:?}")),
    };
    let qd = args.num("queue-depth")?.unwrap_or(32).max(1) as usize;
    let secs = args.num("seconds")?.unwrap_or(10).max(1);
    let io_size = args.num("block-size")?.unwrap_or(4096) as u32;
    let url = url_arg(args)?;
    let mut lun = open_lun(args)?;
    let bs = lun.block_size();
    let blocks_per_io = (io_size / bs).max(1);
    let io_bytes = u64::from(blocks_per_io * bs);
    let span = lun.num_blocks() / u64::from(blocks_per_io);
    if span == 0 {
        return Err("the LUN is smaller than one I/O".into());
    }
    let wire = scsi::lun_to_wire(url.lun);
    let seed = tcp::os_random(8).map_err(|e| e.to_string())?;
    let mut rng = u64::from_le_bytes(seed.try_into().unwrap_or([7; 8])) | 1;
    let payload = vec![0x6bu8; io_bytes as usize];
    let mut at = 0u64;
    let mut next_cmd = || {
        let slot = if sequential {
            at = (at + 1) % span;
            at
        } else {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % span
        };
        let lba = slot * u64::from(blocks_per_io);
        if write {
            Command {
                lun: wire,
                cdb: scsi::write_16(lba, blocks_per_io),
                transfer: DataTransfer::Write(payload.clone()),
            }
        } else {
            Command {
                lun: wire,
                cdb: scsi::read_16(lba, blocks_per_io),
                transfer: DataTransfer::Read(io_bytes as u32),
            }
        }
    };
    let client = lun.client();
    for _ in 0..qd {
        client.submit(next_cmd()).map_err(|e| e.to_string())?;
    }
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut tick = start + Duration::from_secs(1);
    let (mut total, mut window) = (0u64, 0u64);
    let mut last = start;
    while Instant::now() < end {
        if let Event::Command { result, .. } = client.next_event().map_err(|e| e.to_string())? {
            let r = result.map_err(|e| e.to_string())?;
            scsi::check(r.status, &r.sense).map_err(|e| e.to_string())?;
            total += 1;
            window += 1;
            client.submit(next_cmd()).map_err(|e| e.to_string())?;
        }
        let now = Instant::now();
        if now >= tick {
            let dt = now.duration_since(last).as_secs_f64();
            let iops = window as f64 / dt;
            println!(
                "IOPS: {:.0}  MB/s: {:.1}",
                iops,
                iops * io_bytes as f64 / 1e6
            );
            window = 0;
            last = now;
            tick += Duration::from_secs(1);
        }
    }
    let dt = start.elapsed().as_secs_f64();
    let iops = total as f64 / dt;
    println!(
        "average IOPS: {:.0}  MB/s: {:.1}  (queue depth {qd}, {} B {} {}(16), {:.1} s)",
        iops,
        iops * io_bytes as f64 / 1e6,
        io_bytes,
        if sequential { "sequential" } else { "random" },
        if write { "WRITE" } else { "READ" },
        dt
    );
    // Drain what is in flight before logging out.
    while client.session().in_flight() > 0 {
        client.next_event().map_err(|e| e.to_string())?;
    }
    lun.into_client()
        .logout()
        .map_err(|e: ClientError| e.to_string())
}

fn run() -> Result<(), String> {
    let args = Args::parse(std::env::args().skip(1).collect())?;
    match args.positional.first().map(String::as_str) {
        Some("discover") => cmd_discover(&args),
        Some("ls") => cmd_ls(&args),
        Some("read") => cmd_read(&args),
        Some("write") => cmd_write(&args),
        Some("perf") => cmd_perf(&args),
        _ => Err(USAGE.into()),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("iscsi: {e}");
            ExitCode::FAILURE
        }
    }
}
