//! What the appliance needs from the machine it runs on. The image implements
//! this over the kernel (`src/main.rs`); hosted tests implement it over `std`.

use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use serde::Serialize;

/// Facts about the machine for `/health` and, later, `host` records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemInfo {
    /// CPUs that were brought up and are running.
    pub cpus: u32,
    /// Usable RAM in bytes.
    pub memory_total: u64,
    /// RAM not yet allocated, in bytes.
    pub memory_free: u64,
}

/// How the host booted from its A/B disk and what the slots hold, for
/// `/health` (see `image/README.md`). Slots are `"a"` or `"b"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootSlots {
    /// The slot running now.
    pub slot: &'static str,
    /// `committed`, `trial` (an upgrade on its one boot) or `fallback`.
    pub slot_state: &'static str,
    /// The slot GRUB boots by default.
    pub committed_slot: &'static str,
    /// The version in each slot's signed header; `null` for an empty slot.
    pub slot_a: Option<String>,
    pub slot_b: Option<String>,
    /// An upgrade to this slot never reported healthy; the host fell back.
    pub failed_upgrade_slot: Option<&'static str>,
    /// An upgrade was written to this slot in this boot; the next boot tries it.
    pub pending_trial_slot: Option<&'static str>,
}

impl BootSlots {
    /// The outcome of the latest upgrade this host knows of: `failed` (a
    /// trial fell back; kept until the next upgrade), `pending` (written,
    /// waiting for its trial boot), `committed` (this boot is the trial and
    /// it committed), `trial` (this boot is the trial, not committed yet),
    /// or `none`.
    pub fn last_upgrade(&self) -> &'static str {
        if self.pending_trial_slot.is_some() {
            "pending"
        } else if self.slot_state == "trial" {
            if self.committed_slot == self.slot {
                "committed"
            } else {
                "trial"
            }
        } else if self.failed_upgrade_slot.is_some() {
            "failed"
        } else {
            "none"
        }
    }
}

/// Why an upgrade upload cannot start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeUnavailable {
    /// The host did not boot from a keel disk (a direct `-kernel` boot, PXE):
    /// there are no slots to write.
    NoBootDisk,
    /// Another upload is in progress.
    Busy,
}

/// Why an upgrade upload failed. The writer never marks a slot for trial
/// unless the whole image verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeFailure {
    /// The image was refused (bad signature, untrusted signer, truncated,
    /// too large); otherwise the boot disk failed.
    pub refused: bool,
    pub message: String,
}

/// An upgrade written and marked for its one trial boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeWritten {
    pub slot: &'static str,
    pub version: String,
}

/// The machine under the appliance.
pub trait Platform {
    /// Monotonic time since boot.
    fn now(&self) -> Duration;

    /// Seconds since the Unix epoch, if the platform knows the date (for
    /// XenAPI datetimes). Without it, datetimes count from the epoch at boot.
    fn unix_time(&self) -> Option<u64> {
        None
    }

    /// Current CPU and memory figures.
    fn system_info(&self) -> SystemInfo;

    /// Fills `buf` with unpredictable bytes (seeds, nonces, DHCP transaction ids).
    fn fill_random(&mut self, buf: &mut [u8]);

    /// Waits until something may have happened (an interrupt) or until
    /// `deadline` (time since boot) passes; `None` waits for the next event.
    fn idle(&mut self, deadline: Option<Duration>);

    /// The A/B slots, when the host booted from a keel disk.
    fn boot_slots(&self) -> Option<BootSlots> {
        None
    }

    /// Starts an upgrade upload into the slot not running (one at a time).
    fn upgrade_begin(&mut self) -> Result<(), UpgradeUnavailable> {
        Err(UpgradeUnavailable::NoBootDisk)
    }

    /// The next bytes of the upload. After an error the upload is over.
    fn upgrade_feed(&mut self, _bytes: &[u8]) -> Result<(), UpgradeFailure> {
        Err(no_upgrade())
    }

    /// The upload is complete: verify it and mark the slot for a trial boot.
    fn upgrade_finish(&mut self) -> Result<UpgradeWritten, UpgradeFailure> {
        Err(no_upgrade())
    }

    /// The upload will not complete; nothing is marked for trial.
    fn upgrade_abort(&mut self) {}

    /// Reboots the machine soon (after the answer saying so went out).
    fn reboot(&mut self) -> Result<(), String> {
        Err("this platform cannot reboot the machine it runs on".into())
    }

    /// Powers the machine off soon (after the answer saying so went out).
    fn shutdown(&mut self) -> Result<(), String> {
        Err("this platform cannot power off the machine it runs on".into())
    }

    /// Starts a guest. A platform without a hypervisor (hosted mode)
    /// answers [`VmFailure::NoHypervisor`]; it never pretends.
    fn vm_start(&mut self, _spec: VmStart) -> Result<VmId, VmFailure> {
        Err(VmFailure::NoHypervisor)
    }

    /// What guest `id` is doing now; `None` for an id this platform never gave.
    fn vm_status(&self, _id: VmId) -> Option<VmStatus> {
        None
    }

    /// Pulls the plug on a running guest; it shows `Halted` once its
    /// vCPUs have stopped. False if it was not running.
    fn vm_hard_stop(&mut self, _id: VmId) -> bool {
        false
    }

    /// Presses the guest's ACPI power button. False if it is not running.
    fn vm_power_button(&mut self, _id: VmId) -> bool {
        false
    }

    /// Pauses (`true`) or unpauses the guest's vCPUs. False if it is not running.
    fn vm_set_paused(&mut self, _id: VmId, _paused: bool) -> bool {
        false
    }

    /// Serial console output after position `from` (bytes since the guest
    /// started) still held, and the position after it.
    fn vm_console_read(&self, _id: VmId, _from: u64) -> Option<(Vec<u8>, u64)> {
        None
    }

    /// Types bytes on the guest's serial console; returns how many the
    /// guest's UART took (the rest are offered again later).
    fn vm_console_write(&mut self, _id: VmId, _bytes: &[u8]) -> usize {
        0
    }

    /// Whether the host holds boot file `name` (a kernel or initrd named
    /// `boot:<name>` in `PV_kernel`/`PV_ramdisk`; see the README).
    fn has_boot_file(&self, _name: &str) -> bool {
        false
    }
}

/// A guest the platform runs, as the platform numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct VmId(pub u64);

/// Where a guest's kernel or initrd comes from (see `xenapi::boot_source`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootSource {
    /// A file of the boot-module archive's `library/` folder.
    BootFile(String),
}

/// A guest to start by direct kernel boot.
#[derive(Debug, Clone)]
pub struct VmStart {
    /// The name the host's log and console prefix use.
    pub name: String,
    pub kernel: BootSource,
    pub ramdisk: Option<BootSource>,
    pub cmdline: String,
    pub vcpus: u32,
    pub memory_bytes: u64,
    /// Created with its vCPUs paused (`VM.start(start_paused=true)`).
    pub paused: bool,
    /// The VM's attached disk VBDs, in `userdevice` order: the guest sees
    /// one virtio-blk device per disk, served through its channel.
    pub disks: Vec<crate::xenapi::VmDisk>,
    /// The VM's VIFs, in device order: one virtio-net each.
    pub nics: Vec<VmNicSpec>,
}

/// A guest NIC: the guest side of a VIF the appliance plugs into its switch.
#[derive(Debug, Clone)]
pub struct VmNicSpec {
    pub mac: [u8; 6],
    /// What the device announces to the guest.
    pub mtu: u16,
    pub link: netstack::switch::VifLink,
}

/// What a started guest is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmStatus {
    Running {
        paused: bool,
        /// Times the guest reset itself and was started again.
        restarts: u32,
    },
    /// It powered off, or the host stopped it.
    Halted,
    /// It did something that ends a VM (a triple fault...).
    Crashed(String),
}

/// Why a guest did not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmFailure {
    /// This platform runs no guests (hosted mode).
    NoHypervisor,
    /// Not enough free host memory: bytes needed and available.
    NoMemory { needed: u64, available: u64 },
    /// A boot file is missing or cannot be loaded.
    Boot(String),
    /// Anything else, said plainly.
    Other(String),
}

fn no_upgrade() -> UpgradeFailure {
    UpgradeFailure {
        refused: false,
        message: "no upgrade upload is in progress".into(),
    }
}
