//! `cargo xtask bench image`: the signed image against its 8 MiB budget, and
//! power-on to `/health` through each boot path, in one run. The peer of the
//! firmware paths is the direct `-kernel` boot of the same image on the same
//! QEMU machine: the ratio is what firmware and GRUB cost.

use std::fs;
use std::time::{Duration, Instant};

use host_config::artifacts::{self, DISK_IMAGE, ISO_IMAGE, PXE_BOOTFILE_BIOS, PXE_DIR};
use qemu_tests::{GUEST_MAC, PXE_TEST_HOST_CONFIG, Qemu, QemuBuilder};

use crate::cmd::Context;
use crate::{Error, Paths, Result, bench, image, media};

/// Runs per boot path; the median is reported.
const RUNS: usize = 3;
const CPUS: u32 = 2;
const MEMORY_MIB: u32 = 1024;
/// Firmware boots under TCG are slow; past this one has failed.
const BOOT_DEADLINE: Duration = Duration::from_secs(150);
const HARD_TIMEOUT: Duration = Duration::from_secs(180);

/// One way of starting the host.
#[derive(Clone, Copy)]
enum BootPath {
    Direct,
    UefiDisk,
    BiosDisk,
    UefiIso,
    Pxe,
}

impl BootPath {
    const ALL: [BootPath; 5] = [
        BootPath::Direct,
        BootPath::UefiDisk,
        BootPath::BiosDisk,
        BootPath::UefiIso,
        BootPath::Pxe,
    ];

    fn name(self) -> &'static str {
        match self {
            BootPath::Direct => "direct",
            BootPath::UefiDisk => "uefi-disk",
            BootPath::BiosDisk => "bios-disk",
            BootPath::UefiIso => "uefi-iso",
            BootPath::Pxe => "pxe",
        }
    }
}

pub fn image_bench(paths: &Paths) -> Result<()> {
    let elf = image::build(paths)?;
    let out = paths.target.join("bench/image-media");
    let host = paths.target.join("bench/pxe-host.toml");
    fs::create_dir_all(paths.target.join("bench")).context(|| "creating target/bench".into())?;
    fs::write(&host, PXE_TEST_HOST_CONFIG).context(|| format!("writing {}", host.display()))?;
    let built = media::media(
        paths,
        &elf,
        &media::Options {
            out: Some(out.clone()),
            elf: Some(elf.clone()),
            pxe_hosts: vec![(GUEST_MAC.to_string(), host)],
        },
    )?;
    let image = built
        .iter()
        .find(|a| a.name == artifacts::SIGNED_IMAGE)
        .ok_or_else(|| Error::new("the media build listed no keel.img"))?;
    let budget = artifacts::IMAGE_BUDGET_BYTES;
    println!(
        "BENCH image-size ours={} peer={budget} ratio={:.3}",
        image.bytes,
        image.bytes as f64 / budget as f64
    );
    // The disk is written by trial boots only; a private copy keeps the media pristine.
    let disk = paths.target.join("bench/keel-disk.img");
    fs::copy(out.join(DISK_IMAGE), &disk).context(|| format!("copying to {}", disk.display()))?;

    let mut times: Vec<Vec<f64>> = vec![Vec::new(); BootPath::ALL.len()];
    for run in 1..=RUNS {
        for (i, path) in BootPath::ALL.into_iter().enumerate() {
            let builder = Qemu::kernel(&elf)?
                .name(&format!("bench-image-{}", path.name()))?
                .cpus(CPUS)
                .memory_mib(MEMORY_MIB)
                .hard_timeout(HARD_TIMEOUT);
            let builder = match path {
                BootPath::Direct => builder,
                BootPath::UefiDisk => builder.uefi()?.boot_disk(&disk),
                BootPath::BiosDisk => builder.boot_disk(&disk),
                BootPath::UefiIso => builder.uefi()?.cdrom(out.join(ISO_IMAGE)),
                BootPath::Pxe => builder.pxe(out.join(PXE_DIR), PXE_BOOTFILE_BIOS),
            };
            let seconds = time_to_health(builder).map_err(|e| {
                Error::new(format!(
                    "bench image: {} run {run}: no 200 from /health: {e}",
                    path.name()
                ))
            })?;
            eprintln!(
                "bench image: run {run}/{RUNS}: {} {seconds:.3} s",
                path.name()
            );
            times[i].push(seconds);
        }
    }
    let medians: Vec<f64> = times.iter_mut().map(|t| bench::median(t)).collect();
    let direct = medians[0];
    // The direct boot is the peer of the firmware paths, so it has none itself.
    println!("BENCH image-boot-direct ours={direct:.3}");
    for (path, ours) in BootPath::ALL.into_iter().zip(&medians).skip(1) {
        println!(
            "BENCH image-boot-{} ours={ours:.3} peer={direct:.3} ratio={:.3}",
            path.name(),
            ours / direct
        );
    }
    Ok(())
}

/// Seconds from spawning QEMU until `/health` answers 200.
fn time_to_health(builder: QemuBuilder) -> Result<f64> {
    let qemu = builder.spawn()?;
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
