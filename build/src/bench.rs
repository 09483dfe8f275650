//! `cargo xtask bench`: each benchmark pairs the image with a real peer on
//! the same machine in the same run and prints
//! `BENCH <name> ours=<x> peer=<y> ratio=<ours/peer>`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use qemu_tests::Qemu;

use crate::guest::{self, GuestOptions};
use crate::peer::{self, Peer};
use crate::{Error, Paths, Result, hostcfg, image, setup};

/// Runs of each side; the median is reported.
const RUNS: usize = 5;
/// CPUs and memory of both sides (the `run` defaults).
const CPUS: u32 = 4;
const MEMORY_MIB: u32 = 2048;
/// A boot that takes longer than this has failed; the watchdog kills QEMU a little later.
const BOOT_DEADLINE: Duration = Duration::from_secs(100);
const HARD_TIMEOUT: Duration = Duration::from_secs(120);

const BENCHES: &[&str] = &[
    "boot",
    "guest-boot",
    "iscsi",
    "image",
    "lacp-failover",
    "api",
    "guest-io",
];

pub fn bench(paths: &Paths, args: &[String]) -> Result<()> {
    let selected: Vec<&str> = if args.is_empty() {
        BENCHES.to_vec()
    } else {
        args.iter().map(String::as_str).collect()
    };
    for name in &selected {
        if !BENCHES.contains(name) {
            return Err(Error::usage(format!(
                "unknown bench {name:?} (known: {})",
                BENCHES.join(", ")
            )));
        }
    }
    setup::setup(paths)?;
    for name in selected {
        match name {
            "boot" => boot(paths)?,
            "guest-boot" => guest_boot(paths)?,
            "iscsi" => crate::bench_iscsi::iscsi(paths)?,
            "image" => crate::bench_image::image_bench(paths)?,
            "lacp-failover" => crate::bench_lacp::lacp_failover(paths)?,
            "api" => crate::bench_api::api(paths)?,
            "guest-io" => crate::bench_guest_io::guest_io(paths)?,
            other => return Err(Error::usage(format!("unknown bench {other:?}"))),
        }
    }
    Ok(())
}

/// Boot to service: ours from spawning QEMU until `/health` answers 200;
/// the peer (stock Debian kernel) from spawning QEMU until its `/init` prints
/// the marker. Same QEMU machine; runs interleaved so drift hits both sides.
fn boot(paths: &Paths) -> Result<()> {
    let peer = Peer::locate(paths)?;
    println!("bench boot: peer is Debian {}", peer.version);
    // An image that does not build still lets the peer side be measured,
    // then fails the bench with the build error.
    let ours_input = image::build(paths)
        .map_err(|e| {
            Error::new(format!(
                "bench boot: ours: the image could not be built, so it cannot boot: {e}"
            ))
        })
        .and_then(|image| {
            let config = paths.target.join("bench/host-config.bin");
            hostcfg::compile(
                hostcfg::Source {
                    file: None,
                    root_password: None,
                },
                &config,
            )?;
            Ok((image, config))
        });

    let (mut ours, mut theirs) = (Vec::with_capacity(RUNS), Vec::with_capacity(RUNS));
    for run in 1..=RUNS {
        let peer_s =
            boot_peer(&peer).map_err(|e| Error::new(format!("bench boot: peer run {run}: {e}")))?;
        eprintln!("bench boot: run {run}/{RUNS}: peer {peer_s:.3} s");
        theirs.push(peer_s);
        let Ok((image, config)) = &ours_input else {
            continue;
        };
        let ours_s = boot_ours(image, config).map_err(|e| {
            Error::new(format!(
                "bench boot: ours run {run}: {} did not answer GET /health with 200: {e}",
                paths.show(image)
            ))
        })?;
        eprintln!("bench boot: run {run}/{RUNS}: ours {ours_s:.3} s");
        ours.push(ours_s);
    }
    let theirs = median(&mut theirs);
    if let Err(e) = ours_input {
        println!("bench boot: peer median {theirs:.3} s over {RUNS} runs; ours not measured");
        return Err(e);
    }
    let ours = median(&mut ours);
    println!(
        "BENCH boot ours={ours:.3} peer={theirs:.3} ratio={:.3}",
        ours / theirs
    );
    Ok(())
}

fn boot_peer(peer: &Peer) -> Result<f64> {
    let qemu = Qemu::kernel(&peer.kernel)?
        .name("bench-boot-peer")?
        .initrd(&peer.initrd)
        .append(peer::CMDLINE)
        .cpus(CPUS)
        .memory_mib(MEMORY_MIB)
        .hard_timeout(HARD_TIMEOUT)
        .spawn()?;
    qemu.wait_for_serial(peer::MARKER, BOOT_DEADLINE)?;
    Ok(qemu.elapsed().as_secs_f64())
}

fn boot_ours(image: &Path, config: &Path) -> Result<f64> {
    let qemu = Qemu::kernel(PathBuf::from(image))?
        .name("bench-boot-ours")?
        .initrd(config)
        .cpus(CPUS)
        .memory_mib(MEMORY_MIB)
        .hard_timeout(HARD_TIMEOUT)
        .spawn()?;
    let deadline = Instant::now() + BOOT_DEADLINE;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let response = qemu.http_get("/health", remaining)?;
        if response.status == 200 {
            return Ok(qemu.elapsed().as_secs_f64());
        }
        if remaining.is_zero() {
            return Err(Error::new(format!(
                "last answer was HTTP {}",
                response.status
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The same Debian kernel and initramfs to the `/init` marker: (a) as a guest
/// of our hypervisor inside QEMU TCG, timed from QEMU start (so it includes
/// the host's own boot); (b) directly under the same QEMU. Interleaved runs.
fn guest_boot(paths: &Paths) -> Result<()> {
    let peer = Peer::locate(paths)?;
    println!(
        "bench guest-boot: guest and peer are Debian {}",
        peer.version
    );
    let image = image::build(paths)?;
    let config = paths.target.join("bench/host-config.bin");
    hostcfg::compile(
        hostcfg::Source {
            file: None,
            root_password: None,
        },
        &config,
    )?;
    let archive = paths.target.join("bench/guest-boot.cpio");
    let mut g = GuestOptions::new(peer.kernel.clone());
    g.initrd = Some(peer.initrd.clone());
    // `quiet`, as the peer boots: console output is most of a boot's exits.
    g.cmdline = format!("{} quiet", guest::DEFAULT_CMDLINE);
    guest::write_archive(&config, Some(&g), &archive)?;
    let marker = format!("vm {}: {}", g.name, peer::MARKER);

    let (mut ours, mut theirs) = (Vec::with_capacity(RUNS), Vec::with_capacity(RUNS));
    for run in 1..=RUNS {
        let peer_s = boot_peer(&peer)
            .map_err(|e| Error::new(format!("bench guest-boot: peer run {run}: {e}")))?;
        eprintln!("bench guest-boot: run {run}/{RUNS}: peer {peer_s:.3} s");
        theirs.push(peer_s);
        let qemu = Qemu::kernel(&image)?
            .name("bench-guest-boot")?
            .initrd(&archive)
            .cpus(CPUS)
            .memory_mib(MEMORY_MIB)
            .hard_timeout(HARD_TIMEOUT)
            .spawn()?;
        qemu.wait_for_serial(&marker, BOOT_DEADLINE)
            .map_err(|e| Error::new(format!("bench guest-boot: ours run {run}: {e}")))?;
        let ours_s = qemu.elapsed().as_secs_f64();
        eprintln!("bench guest-boot: run {run}/{RUNS}: ours {ours_s:.3} s");
        ours.push(ours_s);
        if run == RUNS {
            let serial = qemu.serial();
            if let Some(profile) = serial
                .lines()
                .find(|l| l.contains(&format!("vm {}: ", g.name)) && l.contains(" exits: "))
            {
                println!(
                    "bench guest-boot: last run's exit profile: {}",
                    profile.trim()
                );
            }
        }
    }
    let (ours, theirs) = (median(&mut ours), median(&mut theirs));
    println!(
        "BENCH guest-boot ours={ours:.3} peer={theirs:.3} ratio={:.3}",
        ours / theirs
    );
    Ok(())
}

/// The median (the mean of the middle two for an even count).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[mid],
        _ => (values[mid - 1] + values[mid]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&mut []).is_nan());
    }
}
