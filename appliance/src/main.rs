//! The `keel` host image: the kernel brings the machine up, then hands the
//! devices it found to the appliance. This file is the thin platform module
//! between the two: it adapts the kernel's services to `appliance::Platform`.
#![no_std]
#![no_main]

extern crate alloc;

use core::fmt::Write as _;
use core::time::Duration;

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use appliance::Appliance;
use appliance::platform::{
    BootSlots, BootSource, Platform, SystemInfo, UpgradeFailure, UpgradeUnavailable,
    UpgradeWritten, VmFailure, VmId, VmStart, VmStatus,
};
use appliance::state_store::BlockStore;
use appliance::xenapi::StateStore;
use core::cell::RefCell;
use host_config::HostConfig;
use host_config::upgrade::{self, BootState, Booted, Upgrade, UpgradeError};
use kernel::Boot;
use kernel::drivers::virtio::VirtioDisk;
use kernel::drivers::watchdog;
use kernel::hv::vm::{GuestBoot, VmError, VmHandle, VmSpec, VmState};
use storage::BlockDevice;

kernel::entry_point!(main);

/// The appliance's view of the machine, backed by the kernel.
struct Machine {
    /// Set at boot, updated when a trial slot commits or an upgrade is written.
    boot_slots: Rc<RefCell<Option<BootSlots>>>,
    /// The keel disk GRUB booted from, and how: what upgrades write.
    boot_disk: Option<(Booted, SharedDisk)>,
    /// Signers whose images an upgrade accepts (host config `trusted_keys`).
    trusted_keys: Vec<[u8; 32]>,
    /// The upgrade upload in progress.
    upload: Option<Upgrade>,
    /// When a requested reboot or power-off happens (time since boot): a
    /// moment after the request, so its answer gets out first.
    power_at: Option<(Duration, PowerAction)>,
    /// Boot-archive files under `library/`, by name without the folder:
    /// what `boot:<name>` kernels and initrds refer to.
    /// Shared with the VMs started from them, never copied per start.
    library: BTreeMap<String, Arc<Vec<u8>>>,
    /// Guests started through the API, by the id handed out.
    vms: BTreeMap<u64, Arc<VmHandle>>,
    next_vm: u64,
}

/// Where boot files that VMs can boot from sit in the boot-module archive.
const LIBRARY: &str = "library/";

/// How long a reboot waits for the answer to `host.reboot` to go out.
const REBOOT_DELAY: Duration = Duration::from_secs(1);

/// What `host.reboot` and `host.shutdown` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PowerAction {
    Reboot,
    PowerOff,
}

fn upgrade_failure(e: UpgradeError<storage::BlockError>) -> UpgradeFailure {
    let refused = !matches!(
        e,
        UpgradeError::Disk(_) | UpgradeError::Esp(_) | UpgradeError::Env(_)
    );
    let message = e.to_string();
    log::warn!("upgrade: failed: {message}");
    UpgradeFailure { refused, message }
}

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
        if let Some((at, action)) = self.power_at {
            if kernel::now() >= at {
                self.power_at = None;
                match action {
                    PowerAction::Reboot => kernel::power::reboot(),
                    PowerAction::PowerOff => kernel::power::poweroff(),
                }
                log::error!("power: {action:?} failed; still running");
                return;
            }
            kernel::idle(Some(deadline.map_or(at, |d| d.min(at))));
            return;
        }
        kernel::idle(deadline)
    }

    fn boot_slots(&self) -> Option<BootSlots> {
        self.boot_slots.borrow().clone()
    }

    fn unix_time(&self) -> Option<u64> {
        // Zero means the CMOS clock could not be read at boot.
        Some(kernel::time::wall_clock()).filter(|t| *t != 0)
    }

    fn upgrade_begin(&mut self) -> Result<(), UpgradeUnavailable> {
        let Some((booted, _)) = &self.boot_disk else {
            return Err(UpgradeUnavailable::NoBootDisk);
        };
        if self.upload.is_some() {
            return Err(UpgradeUnavailable::Busy);
        }
        let upload = Upgrade::new(*booted, &self.trusted_keys);
        log::info!(
            "upgrade: receiving an image for slot {}",
            upload.target().name()
        );
        self.upload = Some(upload);
        Ok(())
    }

    fn upgrade_feed(&mut self, bytes: &[u8]) -> Result<(), UpgradeFailure> {
        let (Some((_, disk)), Some(upload)) = (self.boot_disk.as_mut(), self.upload.as_mut())
        else {
            return Err(UpgradeFailure {
                refused: false,
                message: "no upgrade upload is in progress".into(),
            });
        };
        let fed = upload.feed(&mut BootDisk(disk), bytes);
        if upload.writing() {
            // The target slot's old image is gone, and any trial of it taken back.
            let target = upload.target();
            if let Some(slots) = self.boot_slots.borrow_mut().as_mut() {
                match target {
                    upgrade::Slot::A => slots.slot_a = None,
                    upgrade::Slot::B => slots.slot_b = None,
                }
                if slots.pending_trial_slot == Some(target.name()) {
                    slots.pending_trial_slot = None;
                }
                if slots.failed_upgrade_slot == Some(target.name()) {
                    slots.failed_upgrade_slot = None;
                }
            }
        }
        fed.map_err(|e| {
            self.upload = None;
            upgrade_failure(e)
        })
    }

    fn upgrade_finish(&mut self) -> Result<UpgradeWritten, UpgradeFailure> {
        let (Some((_, disk)), Some(upload)) = (self.boot_disk.as_mut(), self.upload.take()) else {
            return Err(UpgradeFailure {
                refused: false,
                message: "no upgrade upload is in progress".into(),
            });
        };
        let slot = upload.target();
        let manifest = upload
            .finish(&mut BootDisk(disk))
            .map_err(upgrade_failure)?;
        let version = manifest.version().to_string();
        log::info!(
            "upgrade: version {version} written to slot {}, marked for one trial boot",
            slot.name()
        );
        if let Some(slots) = self.boot_slots.borrow_mut().as_mut() {
            match slot {
                upgrade::Slot::A => slots.slot_a = Some(version.clone()),
                upgrade::Slot::B => slots.slot_b = Some(version.clone()),
            }
            slots.pending_trial_slot = Some(slot.name());
        }
        Ok(UpgradeWritten {
            slot: slot.name(),
            version,
        })
    }

    fn upgrade_abort(&mut self) {
        if let Some(upload) = self.upload.take() {
            log::warn!(
                "upgrade: the upload to slot {} was cut off; nothing is marked for trial",
                upload.target().name()
            );
        }
    }

    fn reboot(&mut self) -> Result<(), String> {
        log::info!("power: reboot requested");
        self.power_at = Some((kernel::now() + REBOOT_DELAY, PowerAction::Reboot));
        Ok(())
    }

    fn shutdown(&mut self) -> Result<(), String> {
        log::info!("power: power-off requested");
        self.power_at = Some((kernel::now() + REBOOT_DELAY, PowerAction::PowerOff));
        Ok(())
    }

    fn vm_start(&mut self, spec: VmStart) -> Result<VmId, VmFailure> {
        let file = |source: &BootSource| match source {
            BootSource::BootFile(name) => self
                .library
                .get(name)
                .map(Arc::clone)
                .ok_or_else(|| VmFailure::Boot(alloc::format!("no boot file {LIBRARY}{name}"))),
        };
        let kernel = file(&spec.kernel)?;
        let initrd = spec.ramdisk.as_ref().map(file).transpose()?;
        let memory_mib = spec.memory_bytes.div_ceil(1 << 20);
        let available = kernel::memory().free_frame_bytes;
        if memory_mib << 20 > available {
            return Err(VmFailure::NoMemory {
                needed: memory_mib << 20,
                available,
            });
        }
        let vm = VmSpec {
            name: spec.name.clone(),
            boot: GuestBoot::Linux {
                kernel,
                initrd,
                cmdline: spec.cmdline,
            },
            memory_mib,
            vcpus: spec.vcpus,
            disks: spec
                .disks
                .iter()
                .map(|d| {
                    kernel::hv::vm::GuestDisk::channel(
                        &alloc::format!("vbd{}", d.userdevice),
                        Arc::clone(&d.channel),
                        d.read_only,
                    )
                })
                .collect(),
            // The appliance plugs the switch side of each link after the call.
            nics: spec
                .nics
                .iter()
                .map(|n| kernel::hv::vm::GuestNic {
                    mac: n.mac,
                    mtu: n.mtu,
                    link: n.link.clone(),
                })
                .collect(),
        };
        let handle = kernel::hv::vm::start_with(vm, spec.paused).map_err(|e| match e {
            VmError::NoMemory { mib } => VmFailure::NoMemory {
                needed: mib << 20,
                available: kernel::memory().free_frame_bytes,
            },
            VmError::BadKernel(_) | VmError::BadImage(_) => VmFailure::Boot(e.to_string()),
            e => VmFailure::Other(e.to_string()),
        })?;
        let id = self.next_vm;
        self.next_vm += 1;
        // An ended guest of the same VM (the API starts a VM again only
        // after it saw it end) is forgotten.
        self.vms
            .retain(|_, h| h.state() == VmState::Running || h.name != spec.name);
        self.vms.insert(id, handle);
        Ok(VmId(id))
    }

    fn vm_status(&self, id: VmId) -> Option<VmStatus> {
        let h = self.vms.get(&id.0)?;
        Some(match h.state() {
            VmState::Running => VmStatus::Running {
                paused: h.is_paused(),
                restarts: h.restarts(),
            },
            VmState::Halted => VmStatus::Halted,
            VmState::Crashed(why) => VmStatus::Crashed(why),
        })
    }

    fn vm_hard_stop(&mut self, id: VmId) -> bool {
        self.vms.get(&id.0).is_some_and(|h| h.hard_stop())
    }

    fn vm_power_button(&mut self, id: VmId) -> bool {
        self.vms.get(&id.0).is_some_and(|h| h.press_power_button())
    }

    fn vm_set_paused(&mut self, id: VmId, paused: bool) -> bool {
        self.vms
            .get(&id.0)
            .is_some_and(|h| if paused { h.pause() } else { h.unpause() })
    }

    fn vm_console_read(&self, id: VmId, from: u64) -> Option<(Vec<u8>, u64)> {
        self.vms.get(&id.0).map(|h| h.console_since(from))
    }

    fn vm_console_write(&mut self, id: VmId, bytes: &[u8]) -> usize {
        self.vms.get(&id.0).map_or(0, |h| h.send_console(bytes))
    }

    fn has_boot_file(&self, name: &str) -> bool {
        self.library.contains_key(name)
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

/// The XenAPI database's disk: the first disk that holds a state store,
/// else the first blank disk (formatted now). Disks with anything else on
/// them are never written. Also says which disk it is (by index).
fn state_store(disks: Vec<SharedDisk>) -> Option<(String, Box<dyn StateStore>, usize)> {
    let mut rest = Vec::new();
    let mut found = None;
    for (i, disk) in disks.into_iter().enumerate() {
        if found.is_some() {
            rest.push((i, disk));
            continue;
        }
        match BlockStore::open(disk) {
            Ok(store) => found = Some((alloc::format!("blk{i} ({})", store.location()), store, i)),
            Err((disk, _)) => rest.push((i, disk)),
        }
    }
    if let Some((name, store, i)) = found {
        return Some((name, Box::new(store), i));
    }
    let mut id = [0u8; 8];
    kernel::fill_random(&mut id);
    let mut disks = rest.into_iter();
    let mut keep = Vec::new();
    let mut chosen = None;
    for (i, disk) in disks.by_ref() {
        if chosen.is_some() {
            keep.push(disk);
            continue;
        }
        match BlockStore::open_or_format(disk, u64::from_le_bytes(id)) {
            Ok((store, _)) => {
                log::info!(
                    "db: blk{i} was blank: formatted {} as the state store",
                    store.location()
                );
                chosen = Some((
                    alloc::format!("blk{i} ({})", store.location()),
                    Box::new(store) as Box<dyn StateStore>,
                    i,
                ));
            }
            Err((disk, e)) => {
                log::info!("db: blk{i} is not a state disk: {e}");
                keep.push(disk);
            }
        }
    }
    drop(keep);
    chosen
}

/// Every disk for local SRs (`/dev/vda`... in discovery order), the state
/// disk and the boot disk among them marked reserved: listed, never used.
fn host_disks(
    disks: &[SharedDisk],
    serials: &[Option<String>],
    state: Option<usize>,
    boot: Option<usize>,
) -> appliance::local_disks::LocalDisks {
    use appliance::local_disks::{HostDiskInfo, LocalDisks, by_id_name, short_name};
    let mut out = LocalDisks::new();
    for (i, disk) in disks.iter().enumerate() {
        let reserved = if boot == Some(i) {
            Some(String::from("the host's boot disk"))
        } else if state == Some(i) {
            Some(String::from("the host's state disk"))
        } else {
            None
        };
        let info = HostDiskInfo {
            device: short_name(i),
            by_id: serials
                .get(i)
                .and_then(Option::as_deref)
                .and_then(by_id_name),
            size: disk.num_blocks() * u64::from(disk.block_size()),
            reserved,
        };
        out.add(info, Box::new(disk.clone()));
    }
    out
}

/// A disk the state store and the A/B upgrade code both use: the store
/// lives in the boot disk's keel state partition, the slots and the boot
/// environment beside it. One poll loop, so never both at once.
#[derive(Clone)]
struct SharedDisk(Rc<RefCell<VirtioDisk>>);

impl BlockDevice for SharedDisk {
    fn block_size(&self) -> u32 {
        self.0.borrow().block_size()
    }
    fn num_blocks(&self) -> u64 {
        self.0.borrow().num_blocks()
    }
    fn read_only(&self) -> bool {
        self.0.borrow().read_only()
    }
    fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), storage::BlockError> {
        self.0.borrow_mut().read_blocks(lba, buf)
    }
    fn write_blocks(&mut self, lba: u64, buf: &[u8]) -> Result<(), storage::BlockError> {
        self.0.borrow_mut().write_blocks(lba, buf)
    }
    fn flush(&mut self) -> Result<(), storage::BlockError> {
        self.0.borrow_mut().flush()
    }
}

/// The boot disk as the A/B upgrade code's sector device.
struct BootDisk<'a, B: BlockDevice>(&'a mut B);

impl<B: BlockDevice> upgrade::Disk for BootDisk<'_, B> {
    type Error = storage::BlockError;
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), Self::Error> {
        self.0.read_blocks(lba, buf)
    }
    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), Self::Error> {
        self.0.write_blocks(lba, buf)
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        self.0.flush()
    }
}

/// The keel disk GRUB booted from (`keel.slot=` on the command line), if any.
fn boot_disk(boot: &mut Boot) -> Option<(Booted, BootSlots, usize)> {
    let booted = Booted::from_cmdline(&boot.cmdline)?;
    for (i, disk) in boot.disks.iter_mut().enumerate() {
        if disk.block_size() != 512 {
            continue;
        }
        match upgrade::status(&mut BootDisk(disk), booted) {
            Ok(status) => {
                let version = |v: &Option<String>| v.clone().unwrap_or_else(|| "empty".into());
                log::info!(
                    "boot: slot {} ({:?}) from blk{i}; committed slot {}; slot a: {}, slot b: {}",
                    booted.slot.name(),
                    booted.state,
                    status.active.name(),
                    version(&status.slot_a),
                    version(&status.slot_b)
                );
                if let Some(slot) = status.failed_trial {
                    log::warn!(
                        "boot: the upgrade to slot {} failed: it never reported healthy, \
                         so this boot fell back to slot {}",
                        slot.name(),
                        booted.slot.name()
                    );
                }
                let slots = BootSlots {
                    slot: booted.slot.name(),
                    slot_state: match booted.state {
                        BootState::Committed => "committed",
                        BootState::Trial => "trial",
                        BootState::Fallback => "fallback",
                    },
                    committed_slot: status.active.name(),
                    slot_a: status.slot_a,
                    slot_b: status.slot_b,
                    failed_upgrade_slot: status.failed_trial.map(|s| s.name()),
                    pending_trial_slot: None,
                };
                return Some((booted, slots, i));
            }
            Err(e) => log::info!("boot: blk{i} is not the keel boot disk: {e}"),
        }
    }
    log::error!(
        "boot: booted from slot {} but no disk holds the keel layout",
        booted.slot.name()
    );
    None
}

/// A trial boot that came up healthy becomes the committed slot.
fn commit_trial(disk: &mut SharedDisk, booted: Booted, slots: &RefCell<Option<BootSlots>>) {
    if booted.state != BootState::Trial {
        return;
    }
    match upgrade::commit(&mut BootDisk(disk), booted) {
        Ok(_) => {
            log::info!(
                "boot: slot {} is healthy and now the committed slot",
                booted.slot.name()
            );
            if let Some(slots) = slots.borrow_mut().as_mut() {
                slots.committed_slot = booted.slot.name();
            }
            // Committed: from here a reset boots this slot anyway, so the
            // watchdog has nothing left to protect (it is not a general hang
            // watchdog: nothing in the main loop bounds its own latency).
            if watchdog::disarm() {
                log::info!(
                    "watchdog: disarmed, slot {} is committed",
                    booted.slot.name()
                );
            }
        }
        Err(e) => {
            log::error!(
                "boot: could not commit slot {}: {e}; the next boot returns to the previous slot",
                booted.slot.name()
            );
            watchdog_stays();
        }
    }
}

/// A trial that did not commit keeps the watchdog armed: the reset it makes
/// is the fall-back to the previous slot.
fn watchdog_stays() {
    if let Some(at) = watchdog::reset_by() {
        log::warn!(
            "watchdog: stays armed; the machine resets {} s after boot and GRUB boots the previous slot",
            at.as_secs()
        );
    }
}

/// Guest RAM for VMs started from boot files when no `memory_mib` file says
/// otherwise, until per-VM settings come through the host config and the API.
const ELF_GUEST_MEMORY_MIB: u64 = 64;
const LINUX_GUEST_MEMORY_MIB: u64 = 256;

/// The boot file `path`, taken out of `boot` (empty files count as absent).
fn take_file(boot: &mut Boot, path: &str) -> Option<Vec<u8>> {
    boot.files
        .iter_mut()
        .find(|(p, data)| p == path && !data.is_empty())
        .map(|(_, data)| core::mem::take(data))
}

/// A boot file as a guest disk: the file's buffer becomes a RAM disk of
/// 512-byte sectors (a last partial sector is zero-padded). A writable
/// one's checksum is logged when the VM ends, since its contents go with
/// it; a read-only one (an ISO) is attached with VIRTIO_BLK_F_RO. `None`
/// (logged) if the padding cannot be allocated.
fn ram_disk(
    vm: &str,
    name: &str,
    image: Vec<u8>,
    read_only: bool,
) -> Option<kernel::hv::vm::GuestDisk> {
    match kernel::hv::ramdisk::RamDisk::from_image(image) {
        Ok(disk) => Some(kernel::hv::vm::GuestDisk::new(
            name,
            Box::new(disk),
            read_only,
            !read_only,
        )),
        Err(e) => {
            log::error!("vm {vm}: disk {name} not attached: {e}");
            None
        }
    }
}

/// A guest from the boot files, and the host network its NIC goes on.
struct BootGuest {
    spec: VmSpec,
    nic: Option<String>,
}

/// Reads the guests carried in boot files: every `guests/<name>.elf` (a
/// static ELF, with an optional `guests/<name>.disk`) and every `guests/<name>/kernel` (a Linux bzImage, with
/// optional `initrd`, `cmdline`, `memory_mib`, `vcpus`, `disk`, `iso` and `nic` files beside it).
fn boot_guests(boot: &mut Boot) -> Vec<BootGuest> {
    let mut specs = Vec::new();
    let names: Vec<String> = boot.files.iter().map(|(p, _)| p.clone()).collect();
    for path in &names {
        let Some(rest) = path.strip_prefix("guests/") else {
            continue;
        };
        let text = |boot: &mut Boot, file: &str| {
            take_file(
                boot,
                &alloc::format!("guests/{}/{file}", rest.trim_end_matches("/kernel")),
            )
            .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        };
        if let Some(name) = rest.strip_suffix(".elf") {
            let Some(image) = take_file(boot, path) else {
                continue;
            };
            let spec = VmSpec {
                name: name.into(),
                boot: GuestBoot::Elf(image),
                memory_mib: ELF_GUEST_MEMORY_MIB,
                vcpus: 1,
                disks: take_file(boot, &alloc::format!("guests/{name}.disk"))
                    .and_then(|image| ram_disk(name, "vda", image, false))
                    .into_iter()
                    .collect(),
                nics: Vec::new(),
            };
            specs.push(BootGuest { spec, nic: None });
        } else if let Some(name) = rest.strip_suffix("/kernel") {
            let Some(kernel) = take_file(boot, path) else {
                continue;
            };
            let initrd = take_file(boot, &alloc::format!("guests/{name}/initrd"));
            let cmdline = text(boot, "cmdline").unwrap_or_default();
            let memory_mib = match text(boot, "memory_mib").map(|t| t.parse::<u64>()) {
                Some(Ok(mib)) => mib,
                Some(Err(_)) => {
                    log::error!(
                        "vm {name}: memory_mib is not a number of MiB; using {LINUX_GUEST_MEMORY_MIB}"
                    );
                    LINUX_GUEST_MEMORY_MIB
                }
                None => LINUX_GUEST_MEMORY_MIB,
            };
            let vcpus = match text(boot, "vcpus").map(|t| t.parse::<u32>()) {
                Some(Ok(n)) => n,
                Some(Err(_)) => {
                    log::error!("vm {name}: vcpus is not a number; using 1");
                    1
                }
                None => 1,
            };
            let mut disks = Vec::new();
            let image = take_file(boot, &alloc::format!("guests/{name}/disk"));
            disks.extend(image.and_then(|i| ram_disk(name, "vda", i, false)));
            let image = take_file(boot, &alloc::format!("guests/{name}/iso"));
            disks.extend(image.and_then(|i| ram_disk(name, "vdb", i, true)));
            let nic = text(boot, "nic").filter(|n| !n.is_empty());
            let spec = VmSpec {
                name: name.into(),
                boot: GuestBoot::Linux {
                    kernel: Arc::new(kernel),
                    initrd: initrd.map(Arc::new),
                    cmdline,
                },
                memory_mib,
                vcpus,
                disks,
                nics: Vec::new(),
            };
            specs.push(BootGuest { spec, nic });
        }
    }
    specs
}

/// Starts the boot-file guests, each NIC plugged into its host network on
/// `appliance`'s switch (without one, the guests start without NICs).
fn start_boot_guests<N: netstack::Nic>(
    guests: Vec<BootGuest>,
    mut appliance: Option<&mut Appliance<Machine, N>>,
) {
    for BootGuest { mut spec, nic } in guests {
        let name = spec.name.clone();
        let mut plugged = None;
        if let Some(network) = nic {
            let mac = appliance::app::guest_mac(&name, 0);
            let link = netstack::switch::VifLink::new();
            match appliance.as_deref_mut() {
                Some(a) => match a.plug_vif(&name, &network, mac, link.clone()) {
                    Ok(p) => {
                        spec.nics.push(kernel::hv::vm::GuestNic {
                            mac,
                            mtu: p.mtu,
                            link,
                        });
                        plugged = Some(p.port);
                    }
                    Err(e) => log::error!("vm {name}: nic not attached: {e}"),
                },
                None => log::error!("vm {name}: nic not attached: the host has no networks"),
            }
        }
        if let Err(e) = kernel::hv::vm::start(spec) {
            log::error!("vm {name}: not started: {e}");
            if let (Some(a), Some(port)) = (appliance.as_deref_mut(), plugged) {
                let _ = a.unplug_vif(port);
            }
        }
    }
}

/// The TLS provider's randomness (ECDHE keys, nonces, ECDSA signatures):
/// the kernel's, as every other secret the appliance draws.
fn tls_random(buf: &mut [u8]) -> Result<(), getrandom::Error> {
    kernel::fill_random(buf);
    Ok(())
}
getrandom::register_custom_getrandom!(tls_random);

fn main(mut boot: Boot) -> ! {
    let mut config = host_config(&boot);
    // The supplied TLS key goes to the HTTPS setup only.
    let supplied_tls = config.tls.take();
    report_disks(&mut boot);
    let boot_disk = boot_disk(&mut boot);
    let guests = boot_guests(&mut boot);
    // Boxed: a virtio NIC is kilobytes (its queues' shadow rings), and a
    // bond holding four by value would not fit on the boot stack.
    let nics: Vec<Box<_>> = core::mem::take(&mut boot.nics)
        .into_iter()
        .map(Box::new)
        .collect();
    let boot_slots = Rc::new(RefCell::new(boot_disk.as_ref().map(|(_, s, _)| s.clone())));
    let boot_index = boot_disk.as_ref().map(|(_, _, i)| *i);
    let serials: Vec<Option<String>> = boot.disks.iter_mut().map(VirtioDisk::serial).collect();
    let disks: Vec<SharedDisk> = core::mem::take(&mut boot.disks)
        .into_iter()
        .map(|disk| SharedDisk(Rc::new(RefCell::new(disk))))
        .collect();
    let boot_disk = boot_disk.and_then(|(booted, _, i)| Some((booted, disks.get(i)?.clone())));
    let library: BTreeMap<String, Arc<Vec<u8>>> = core::mem::take(&mut boot.files)
        .into_iter()
        .filter_map(|(path, data)| Some((path.strip_prefix(LIBRARY)?.to_string(), data)))
        .filter(|(name, data)| !name.is_empty() && !data.is_empty())
        .map(|(name, data)| (name, Arc::new(data)))
        .collect();
    for (name, data) in &library {
        log::info!("vm: boot file boot:{name} ({} bytes)", data.len());
    }
    let machine = Machine {
        boot_slots: Rc::clone(&boot_slots),
        boot_disk: boot_disk.clone(),
        trusted_keys: config.trusted_keys.clone(),
        upload: None,
        power_at: None,
        library,
        vms: BTreeMap::new(),
        next_vm: 1,
    };
    match Appliance::new(machine, nics, config) {
        Ok(mut appliance) => {
            appliance.set_vif_waker(alloc::sync::Arc::new(kernel::smp::BootCpuWaker));
            start_boot_guests(guests, Some(&mut appliance));
            // Healthy: the management network and the API are up and the
            // database opened (or there is no state disk to open).
            let mut store = state_store(disks.clone());
            let state_index = store.as_ref().map(|(_, _, i)| *i);
            appliance.attach_host_disks(host_disks(&disks, &serials, state_index, boot_index));
            drop(disks);
            // The host's TLS identity lives beside the database in the store.
            let https = appliance.enable_https(
                supplied_tls.as_ref(),
                store.as_mut().map(|(_, s, _)| &mut **s as _),
            );
            if let Err(e) = &https {
                log::error!("tls: no https: {e}");
            }
            let healthy = match store {
                Some((name, store, _)) => match appliance
                    .attach_store(Box::new(appliance::tls::store::HideIdentity(store)))
                {
                    Ok(a) => {
                        log::info!(
                            "db: database on {name}: {} objects loaded, {} unreadable records skipped",
                            a.loaded,
                            a.skipped
                        );
                        true
                    }
                    Err(e) => {
                        log::error!(
                            "db: the database on {name} cannot be used: {e}; changes are kept in memory only"
                        );
                        false
                    }
                },
                None => {
                    log::warn!("db: no state disk; the database is kept in memory only");
                    true
                }
            };
            match boot_disk {
                Some((booted, mut disk)) if healthy => commit_trial(&mut disk, booted, &boot_slots),
                Some((booted, _)) if booted.state == BootState::Trial => {
                    log::error!(
                        "boot: slot {} is unhealthy and stays on trial; the next boot returns to the previous slot",
                        booted.slot.name()
                    );
                    watchdog_stays();
                }
                _ => {}
            }
            appliance.run()
        }
        Err(e) => {
            log::error!(
                "net: cannot bring up the management network: {e}; the host is unreachable"
            );
            start_boot_guests::<Box<kernel::drivers::virtio::VirtioNic>>(guests, None);
            watchdog_stays();
            loop {
                kernel::idle(None);
            }
        }
    }
}
