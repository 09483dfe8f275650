//! The `keel` host image: the kernel brings the machine up, then hands the
//! devices it found to the appliance. This file is the thin platform module
//! between the two: it adapts the kernel's services to `appliance::Platform`.
#![no_std]
#![no_main]

extern crate alloc;

use core::fmt::Write as _;
use core::time::Duration;

use appliance::Appliance;
use appliance::platform::{Platform, SystemInfo};
use host_config::HostConfig;
use kernel::Boot;
use storage::BlockDevice;

kernel::entry_point!(main);

/// The appliance's view of the machine, backed by the kernel.
struct Machine;

impl Platform for Machine {
    fn now(&self) -> Duration {
        kernel::now()
    }

    fn system_info(&self) -> SystemInfo {
        let m = kernel::memory();
        SystemInfo {
            cpus: kernel::cpus_online(),
            memory_total: m.total_bytes,
            memory_free: m.free_frame_bytes + m.heap_free_bytes,
        }
    }

    fn fill_random(&mut self, buf: &mut [u8]) {
        kernel::fill_random(buf)
    }

    fn idle(&mut self, deadline: Option<Duration>) {
        kernel::idle(deadline)
    }
}

/// The host config: the archive file `host-config.bin`, else the first bare
/// boot module that decodes as one; defaults otherwise.
fn host_config(boot: &Boot) -> HostConfig {
    let from_archive = boot
        .files
        .iter()
        .filter(|(name, _)| name == "host-config.bin")
        .map(|(_, data)| data);
    for module in from_archive.chain(boot.modules.iter()) {
        match host_config::decode(module) {
            Ok(cfg) => {
                log::info!(
                    "config: host config module loaded (hostname {})",
                    cfg.hostname
                );
                return cfg;
            }
            Err(e) => log::error!(
                "config: ignoring boot module of {} bytes: {e}",
                module.len()
            ),
        }
    }
    log::info!("config: no host config module, using defaults (DHCP on eth0, no root password)");
    HostConfig::default()
}

/// Reports each disk and proves it readable by reading its first block.
fn report_disks(boot: &mut Boot) {
    for (i, disk) in boot.disks.iter_mut().enumerate() {
        let mut block = alloc::vec![0u8; disk.block_size() as usize];
        match disk.read_blocks(0, &mut block) {
            Ok(()) => {
                let mut hex = heapless::String::<32>::new();
                for b in &block[..16] {
                    let _ = write!(hex, "{b:02x}");
                }
                log::info!(
                    "disk blk{i}: {} blocks of {} bytes; lba0[0..16]={hex}",
                    disk.num_blocks(),
                    disk.block_size()
                );
            }
            Err(e) => log::error!("disk blk{i}: reading block 0 failed: {e}"),
        }
    }
}

/// Guest RAM for VMs started from boot files, until per-VM settings come
/// through the host config and the API.
const BOOT_GUEST_MEMORY_MIB: u64 = 64;

/// Starts every `guests/<name>.elf` boot file as a VM.
fn start_boot_guests(boot: &mut Boot) {
    for (path, image) in boot.files.iter_mut() {
        let Some(name) = path
            .strip_prefix("guests/")
            .and_then(|p| p.strip_suffix(".elf"))
        else {
            continue;
        };
        let spec = kernel::hv::vm::VmSpec {
            name: name.into(),
            image: core::mem::take(image),
            memory_mib: BOOT_GUEST_MEMORY_MIB,
        };
        if let Err(e) = kernel::hv::vm::start(spec) {
            log::error!("vm {name}: not started: {e}");
        }
    }
}

fn main(mut boot: Boot) -> ! {
    let config = host_config(&boot);
    report_disks(&mut boot);
    start_boot_guests(&mut boot);
    let wanted = config.management.interface.clone();
    let index = wanted
        .strip_prefix("eth")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0);
    if index >= boot.nics.len() {
        log::error!(
            "net: management interface {wanted} does not exist ({} NICs found); the host is unreachable",
            boot.nics.len()
        );
        loop {
            kernel::idle(None);
        }
    }
    let nic = boot.nics.swap_remove(index);
    Appliance::new(Machine, nic, config).run()
}
