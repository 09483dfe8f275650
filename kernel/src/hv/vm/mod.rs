//! A running VM: its memory and nested page tables, the board its vCPUs
//! share, and its vCPUs: tasks of the host scheduler (`crate::sched`), each
//! running the exit loop (`vcpu`) in time slices on its host CPU.

mod board;
mod vcpu;

use alloc::format;
use alloc::string::String;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use core::time::Duration;

use self::vcpu::Turn;

use spin::Mutex;

use self::board::{Board, Startup};
use super::acpi;
use super::longmode::{self, LongModeEntry};
use super::memory::GuestMemory;
use super::profile::ExitProfile;
use super::virtio::blk::{Backend, BlkStats};
use super::{elf, hermit, linux, pci};
use crate::arch::x86_64::npt::NestedPageTable;
use crate::arch::x86_64::svm;
use crate::sched::{self, Waker};
use crate::{mem, time};

const TWO_MIB: u64 = 2 << 20;
/// Bytes of console output kept per VM.
const CONSOLE_RING: usize = 4096;

/// What a VM boots.
#[derive(Debug)]
pub enum GuestBoot {
    /// A static x86_64 ELF (a Hermit image, a test guest), entered in 64-bit mode.
    Elf(Vec<u8>),
    /// A Linux bzImage through the 64-bit boot protocol. The files are
    /// shared, not copied: a boot file several VMs start from (and that the
    /// VM keeps for a restart) is held in memory once.
    Linux {
        kernel: Arc<Vec<u8>>,
        initrd: Option<Arc<Vec<u8>>>,
        cmdline: String,
    },
}

/// A disk the guest sees as a virtio-blk device.
#[derive(Clone)]
pub struct GuestDisk {
    /// What the guest's GET_ID answers (and the host's log calls it).
    pub name: String,
    pub backend: Backend,
    pub read_only: bool,
    /// Log a checksum of the whole disk when the VM ends: for RAM disks
    /// handed in at boot, whose contents are otherwise lost with the VM.
    pub checksum_at_end: bool,
    /// What its device did (over guest resets), logged when the VM ends.
    pub stats: Arc<BlkStats>,
}

/// Wakes the boot CPU, whose poll loop serves disk channels.
#[derive(Debug)]
struct BootCpuWaker;

impl storage::channel::Notify for BootCpuWaker {
    fn notify(&self) {
        sched::wake_boot_cpu();
    }
}

impl GuestDisk {
    /// A disk in host memory, served inline by the VM's device task.
    pub fn new(
        name: &str,
        disk: alloc::boxed::Box<dyn storage::BlockDevice + Send>,
        read_only: bool,
        checksum_at_end: bool,
    ) -> GuestDisk {
        GuestDisk {
            name: name.into(),
            backend: Backend::Inline(Arc::new(Mutex::new(disk))),
            read_only,
            checksum_at_end,
            stats: Arc::default(),
        }
    }

    /// A disk served through `channel` by the boot CPU's poll loop (an
    /// attached VDI): each request queued wakes that CPU.
    pub fn channel(
        name: &str,
        channel: Arc<storage::channel::DiskChannel>,
        read_only: bool,
    ) -> GuestDisk {
        channel.set_request_notify(Some(Arc::new(BootCpuWaker)));
        GuestDisk {
            name: name.into(),
            backend: Backend::Channel(channel),
            read_only,
            checksum_at_end: false,
            stats: Arc::default(),
        }
    }

    /// The disk's size in bytes.
    pub fn bytes(&self) -> u64 {
        match &self.backend {
            Backend::Channel(c) => {
                let g = c.geometry();
                g.num_blocks.saturating_mul(u64::from(g.block_size))
            }
            Backend::Inline(d) => {
                let d = d.lock();
                d.num_blocks().saturating_mul(u64::from(d.block_size()))
            }
        }
    }

    /// FNV-1a (64-bit) over every byte of a disk in host memory; `None` if
    /// a read fails or the disk is served elsewhere.
    pub fn checksum(&self) -> Option<u64> {
        let Backend::Inline(d) = &self.backend else {
            return None;
        };
        let mut d = d.lock();
        let bs = d.block_size().max(1) as usize;
        let per_read = (64 * 1024 / bs).max(1);
        let mut buf = alloc::vec![0u8; per_read * bs];
        let mut hash = 0xcbf2_9ce4_8422_2325u64;
        let blocks = d.num_blocks();
        let mut lba = 0u64;
        while lba < blocks {
            let n = (blocks - lba).min(per_read as u64) as usize;
            d.read_blocks(lba, &mut buf[..n * bs]).ok()?;
            for b in &buf[..n * bs] {
                hash = (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
            }
            lba += n as u64;
        }
        Some(hash)
    }
}

impl core::fmt::Debug for GuestDisk {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GuestDisk")
            .field("name", &self.name)
            .field("bytes", &self.bytes())
            .field("read_only", &self.read_only)
            .finish()
    }
}

/// A NIC the guest sees as a virtio-net device: a VIF whose switch side
/// the host plugs into a network ([`netstack::HostNetworks::add_vif`]).
#[derive(Debug, Clone)]
pub struct GuestNic {
    /// The MAC the device announces and the switch locks the VIF to.
    pub mac: [u8; 6],
    /// The network's MTU, announced to the guest (VIRTIO_NET_F_MTU).
    pub mtu: u16,
    /// The guest side of the wire to the switch (kept across guest resets).
    pub link: netstack::switch::VifLink,
}

/// Wakes a VM's device task when frames for its NICs arrive.
#[derive(Debug)]
struct DeviceWaker(Waker);

impl netstack::switch::Wake for DeviceWaker {
    fn wake(&self) {
        self.0.wake();
    }
}

impl storage::channel::Notify for DeviceWaker {
    fn notify(&self) {
        self.0.wake();
    }
}

/// What to start.
#[derive(Debug)]
pub struct VmSpec {
    pub name: String,
    pub boot: GuestBoot,
    pub memory_mib: u64,
    pub vcpus: u32,
    /// virtio-blk disks, in PCI slot order (kept across guest resets).
    pub disks: Vec<GuestDisk>,
    /// virtio-net NICs, placed after the disks.
    pub nics: Vec<GuestNic>,
}

/// Where a VM is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmState {
    Running,
    /// The guest stopped itself (powered off, or halted with nothing left to wake it).
    Halted,
    /// The guest did something that ends it (triple fault, access outside its memory...).
    Crashed(String),
}

/// Why a VM could not start.
#[derive(Debug)]
pub enum VmError {
    NoMemory {
        mib: u64,
    },
    BadImage(elf::ElfError),
    BadKernel(linux::LinuxError),
    BadHermit(hermit::HermitError),
    Setup(String),
    /// The host has no CPU besides the one serving I/O.
    NoFreeCpu,
    TooManyVcpus(u32),
}

impl core::fmt::Display for VmError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            VmError::NoMemory { mib } => {
                write!(f, "not enough host memory for {mib} MiB of guest RAM")
            }
            VmError::BadImage(e) => write!(f, "the guest image cannot be loaded: {e}"),
            VmError::BadKernel(e) => write!(f, "the Linux kernel cannot be loaded: {e}"),
            VmError::BadHermit(e) => write!(f, "the Hermit image cannot be started: {e}"),
            VmError::Setup(e) => write!(f, "{e}"),
            VmError::NoFreeCpu => write!(
                f,
                "this host has one CPU, which serves I/O; vCPUs need a second one"
            ),
            VmError::TooManyVcpus(n) => write!(
                f,
                "{n} vCPUs: between 1 and {} are supported",
                acpi::MAX_VCPUS
            ),
        }
    }
}

/// A VM as the rest of the host sees it.
#[derive(Debug)]
pub struct VmHandle {
    pub name: String,
    pub vcpus: u32,
    state: Mutex<VmState>,
    pub exits: AtomicU64,
    /// Exits by kind, over all vCPUs.
    pub profile: Mutex<ExitProfile>,
    console: Mutex<heapless::Deque<u8, CONSOLE_RING>>,
    /// Console bytes written since the VM was created: a reader's position.
    console_written: AtomicU64,
    /// The host paused the vCPUs (XenAPI `VM.pause`): they stay off the CPU.
    paused: AtomicBool,
    /// Times the VM restarted after a guest reset.
    restarts: AtomicU32,
    /// The running instance (replaced when the VM restarts after a reset).
    core: Mutex<Weak<VmCore>>,
}

impl VmHandle {
    pub fn state(&self) -> VmState {
        self.state.lock().clone()
    }

    /// Presses the guest's ACPI power button: a guest that handles it shuts
    /// down cleanly (XenAPI `VM.clean_shutdown`). False if the VM is not running.
    pub fn press_power_button(&self) -> bool {
        let Some(core) = self.core.lock().upgrade() else {
            return false;
        };
        if core.stopping() {
            return false;
        }
        // The boot CPU never waits for the board: the device task may hold
        // it while it waits for the boot CPU (a disk served by the poll
        // loop). Then the device task presses the button after its batch.
        match core.board.try_lock() {
            Some(mut b) => {
                b.press_power_button();
                core.kick_from(usize::MAX, &mut b);
            }
            None => {
                core.power_button.store(true, Ordering::Release);
                core.io_waker.wake();
            }
        }
        true
    }

    /// The last console output (up to 4 KiB).
    pub fn console(&self) -> Vec<u8> {
        self.console.lock().iter().copied().collect()
    }

    /// Console output after position `from` (a count of bytes since the VM
    /// was created) that the ring still holds, and the position after it.
    /// A reader that fell more than the ring behind loses the oldest bytes.
    pub fn console_since(&self, from: u64) -> (Vec<u8>, u64) {
        let ring = self.console.lock();
        let end = self.console_written.load(Ordering::Acquire);
        let held = ring.len() as u64;
        let start = from.clamp(end.saturating_sub(held), end);
        let skip = (held - (end - start)) as usize;
        (ring.iter().skip(skip).copied().collect(), end)
    }

    fn remember_console(&self, byte: u8) {
        let mut ring = self.console.lock();
        if ring.is_full() {
            ring.pop_front();
        }
        let _ = ring.push_back(byte);
        self.console_written.fetch_add(1, Ordering::AcqRel);
    }

    /// Types `bytes` on the guest's serial console (its UART's receive
    /// side); returns how many the UART took (its FIFO may be full: the
    /// caller keeps the rest). 0 if the VM is not running.
    pub fn send_console(&self, bytes: &[u8]) -> usize {
        let Some(core) = self.core.lock().upgrade() else {
            return 0;
        };
        if core.stopping() {
            return 0;
        }
        // Not waited for (see `press_power_button`): a busy board takes
        // nothing this time and the caller keeps the bytes.
        let Some(mut b) = core.board.try_lock() else {
            return 0;
        };
        let taken = b.uart.receive(bytes);
        // vCPU 0 polls the UART's interrupt line.
        b.kicks |= 1;
        core.kick_from(usize::MAX, &mut b);
        taken
    }

    /// Ends the VM at once, as pulling the plug would (XenAPI
    /// `VM.hard_shutdown`): no restart follows. False if it was not running.
    pub fn hard_stop(&self) -> bool {
        let Some(core) = self.core.lock().upgrade() else {
            return false;
        };
        core.reset.store(false, Ordering::Release);
        let was_running = !core.stopping();
        core.stop(VmState::Halted);
        was_running
    }

    /// Takes the vCPUs off the host CPUs until [`VmHandle::unpause`]; the
    /// guest's RAM and devices stay. False if the VM is not running.
    pub fn pause(&self) -> bool {
        self.set_paused(true)
    }

    /// Lets paused vCPUs run again. False if the VM is not running.
    pub fn unpause(&self) -> bool {
        self.set_paused(false)
    }

    fn set_paused(&self, paused: bool) -> bool {
        let Some(core) = self.core.lock().upgrade() else {
            return false;
        };
        if core.stopping() {
            return false;
        }
        self.paused.store(paused, Ordering::Release);
        // A running vCPU exits to see it; a paused one wakes to run on.
        for t in 0..core.vcpus {
            core.kick(t);
        }
        true
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// Times the guest reset and the VM started again.
    pub fn restarts(&self) -> u32 {
        self.restarts.load(Ordering::Acquire)
    }
}

static VMS: Mutex<Vec<Arc<VmHandle>>> = Mutex::new(Vec::new());
static NEXT_ASID: AtomicU32 = AtomicU32::new(1);

/// All VMs started since boot.
pub fn list() -> Vec<Arc<VmHandle>> {
    VMS.lock().clone()
}

/// Guest RAM: contiguous host frames, freed when the VM ends.
struct Ram {
    phys: u64,
    bytes: u64,
}

impl Drop for Ram {
    fn drop(&mut self) {
        mem::free_frames(self.phys, self.bytes / mem::frames::FRAME_SIZE);
    }
}

/// What the vCPUs of one VM share.
struct VmCore {
    handle: Arc<VmHandle>,
    board: Mutex<Board>,
    /// Guest RAM; the lock serialises the host's own accesses (loader, MMIO
    /// decode). Taken out (freed) when the VM ends, before a restart.
    ram: Mutex<Option<Ram>>,
    npt: NestedPageTable,
    /// What the VM was started from, kept to restart it after a guest reset.
    spec: Mutex<Option<VmSpec>>,
    /// The guest asked for a reset: restart it when every vCPU has stopped.
    reset: AtomicBool,
    asid: u32,
    vcpus: usize,
    entry: LongModeEntry,
    /// Wakes each vCPU's task (ends its sleep, or forces an exit).
    wakers: Vec<Waker>,
    /// Wakes the device task (`DeviceTask`).
    io_waker: Waker,
    /// The power button was pressed while the board was busy: the device
    /// task presses it with its next batch.
    power_button: AtomicBool,
    stopping: AtomicBool,
    outcome: Mutex<Option<VmState>>,
    running: AtomicU32,
    started: Duration,
    /// Host CPU time each vCPU spent in its turns, in nanoseconds.
    ran_ns: Vec<AtomicU64>,
}

/// One vCPU as a scheduler task: its backend state lives here between turns.
struct VcpuTask {
    core: Arc<VmCore>,
    me: usize,
    vcpu: Mutex<Option<svm::SvmVcpu>>,
}

impl sched::Task for VcpuTask {
    fn run(&self, slice_end: Duration) -> sched::Step {
        let core = &self.core;
        let began = time::now();
        let mut slot = self.vcpu.lock();
        let turn = if core.stopping() {
            Turn::End(None)
        } else if core.handle.is_paused() {
            // `set_paused(false)` wakes this task.
            Turn::Block(None)
        } else if let Some(v) = slot.as_mut() {
            vcpu::run(core, self.me, v, slice_end)
        } else {
            match core.create_vcpu(self.me) {
                Ok(Some(v)) => {
                    *slot = Some(v);
                    Turn::Yield
                }
                Ok(None) => Turn::Block(None),
                Err(state) => Turn::End(Some(state)),
            }
        };
        if let Some(n) = core.ran_ns.get(self.me) {
            n.fetch_add(
                time::now().saturating_sub(began).as_nanos() as u64,
                Ordering::Relaxed,
            );
        }
        match turn {
            Turn::Yield => sched::Step::Yield,
            Turn::Block(deadline) => sched::Step::Block(deadline),
            Turn::End(end) => {
                if let Some(state) = end {
                    core.stop(state);
                }
                // The VMCB and its bitmaps go back to the frame allocator now.
                *slot = None;
                if core.running.fetch_sub(1, Ordering::AcqRel) == 1 {
                    core.finish();
                }
                sched::Step::Done
            }
        }
    }
}

/// Serves the VM's device work off the vCPUs: a virtqueue notify only
/// queues the work and wakes this task, which runs the requests over guest
/// RAM and raises their completion interrupts, on a host CPU the scheduler
/// picks (beside the vCPUs when there are few CPUs).
struct DeviceTask {
    core: Arc<VmCore>,
}

impl sched::Task for DeviceTask {
    fn run(&self, slice_end: Duration) -> sched::Step {
        loop {
            if self.core.stopping() {
                return sched::Step::Done;
            }
            // One batch per queue, then guest RAM and the board are free
            // again for the vCPUs before the next.
            if !self.core.service_devices() {
                return sched::Step::Block(None);
            }
            if time::now() >= slice_end || sched::should_yield() {
                return sched::Step::Yield;
            }
        }
    }
}

impl VmCore {
    /// Runs `f` on guest RAM; `None` once the RAM was freed (the VM ended).
    fn with_memory<R>(&self, f: impl FnOnce(&mut GuestMemory<'_>) -> R) -> Option<R> {
        let guard = self.ram.lock();
        let ram = guard.as_ref()?;
        // SAFETY: `[phys, phys + bytes)` was allocated to this VM alone and is
        // mapped in the direct map; it stays allocated while the lock is held
        // (only `free_memory` drops it, under the lock); host-side accesses
        // are serialised by the lock and the slice does not outlive the call.
        // The guest may write the same bytes concurrently, as a device's DMA
        // would; only plain bytes are copied, so no Rust value can be made
        // invalid.
        let slice = unsafe {
            core::slice::from_raw_parts_mut(
                mem::phys_to_virt(ram.phys) as *mut u8,
                ram.bytes as usize,
            )
        };
        Some(f(&mut GuestMemory::new(slice)))
    }

    /// Serves the work device notifies queued (virtqueue requests) over
    /// guest RAM, and wakes the vCPUs their completions interrupt.
    /// Returns whether work is left (a batch did not empty a queue).
    fn service_devices(&self) -> bool {
        self.with_memory(|m| {
            let mut b = self.board.lock();
            if self.power_button.swap(false, Ordering::AcqRel) {
                b.press_power_button();
            }
            b.service_pci(m);
            self.kick_from(usize::MAX, &mut b);
            b.pci.has_work()
        })
        .unwrap_or(false)
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Wakes vCPU `t`: an IPI makes it exit the guest or leave its sleep.
    fn kick(&self, t: usize) {
        if let Some(w) = self.wakers.get(t) {
            w.wake();
        }
    }

    /// Wakes the vCPUs the board asked for, other than `me`.
    /// `me` may be out of range (`usize::MAX`) when the host itself acted.
    fn kick_from(&self, me: usize, board: &mut Board) {
        let me_bit = u32::try_from(me)
            .ok()
            .and_then(|m| 1u64.checked_shl(m))
            .unwrap_or(0);
        let mask = core::mem::take(&mut board.kicks) & !me_bit;
        for t in (0..self.vcpus).filter(|t| mask & (1 << t) != 0) {
            self.kick(t);
        }
    }

    /// Ends the VM (the first reason wins) and wakes every vCPU to notice.
    fn stop(&self, state: VmState) {
        {
            let mut outcome = self.outcome.lock();
            if outcome.is_none() {
                *outcome = Some(state);
            }
        }
        self.stopping.store(true, Ordering::Release);
        for t in 0..self.vcpus {
            self.kick(t);
        }
        self.io_waker.wake();
    }

    /// Creates vCPU `me` on the calling host CPU: vCPU 0 at the boot entry,
    /// the others once the guest sent them INIT and a start-up IPI.
    /// `Ok(None)`: not started yet.
    fn create_vcpu(&self, me: usize) -> Result<Option<svm::SvmVcpu>, VmState> {
        svm::enable_this_cpu()
            .map_err(|e| VmState::Crashed(format!("SVM unavailable on this CPU: {e:?}")))?;
        let created = if me == 0 {
            svm::SvmVcpu::new(self.npt.root(), self.asid, &self.entry)
        } else {
            let vector = {
                let mut b = self.board.lock();
                let Startup::Start(v) = b.startup[me] else {
                    return Ok(None);
                };
                b.startup[me] = Startup::Running;
                v
            };
            log::debug!(
                "vm {}: vCPU {me} starts at {:#x}",
                self.handle.name,
                u64::from(vector) << 12
            );
            svm::SvmVcpu::new_startup(self.npt.root(), self.asid, vector)
        };
        created
            .map(Some)
            .map_err(|e| VmState::Crashed(format!("cannot create vCPU {me}: {e:?}")))
    }

    /// The last vCPU out reports how the VM ended, frees its RAM, and
    /// starts it again if the guest asked for a reset.
    fn finish(&self) {
        // No vCPU runs any more: nothing reads or writes guest RAM.
        drop(self.ram.lock().take());
        let mut state = self.outcome.lock().clone().unwrap_or(VmState::Halted);
        let h = &self.handle;
        let restarting = self.reset.load(Ordering::Acquire) && state == VmState::Halted;
        if !restarting && let Some(spec) = self.spec.lock().as_ref() {
            for nic in &spec.nics {
                let s = nic.link.stats();
                log::info!(
                    "vm {}: nic {}: {} frames to the switch ({} dropped, queue full), {} from it ({} dropped)",
                    h.name,
                    netstack::MacAddress(nic.mac),
                    s.to_host,
                    s.to_host_dropped,
                    s.to_guest,
                    s.to_guest_dropped
                );
            }
            for d in &spec.disks {
                log::info!("vm {}: disk {}: {}", h.name, d.name, d.stats);
            }
            for d in spec.disks.iter().filter(|d| d.checksum_at_end) {
                match d.checksum() {
                    Some(sum) => log::info!(
                        "vm {}: disk {}: {} bytes, fnv1a64 {sum:016x}",
                        h.name,
                        d.name,
                        d.bytes()
                    ),
                    None => log::warn!("vm {}: disk {} cannot be read back", h.name, d.name),
                }
            }
        }
        let spec = (self.reset.load(Ordering::Acquire) && state == VmState::Halted)
            .then(|| self.spec.lock().take())
            .flatten();
        if let Some(spec) = spec {
            log::info!("vm {}: restarting after the guest reset", h.name);
            h.restarts.fetch_add(1, Ordering::AcqRel);
            match boot(spec, Arc::clone(h)) {
                Ok(()) => return,
                Err(e) => state = VmState::Crashed(format!("restart failed: {e}")),
            }
        }
        let profile = h.profile.lock().clone();
        let ms = time::now().saturating_sub(self.started).as_millis().max(1) as u64;
        log::info!(
            "vm {}: {profile}; {} exits/s over {ms} ms",
            h.name,
            profile.total() * 1000 / ms
        );
        let ran: Vec<u64> = self
            .ran_ns
            .iter()
            .map(|n| n.load(Ordering::Relaxed) / 1_000_000)
            .collect();
        log::info!("vm {}: vCPU run time (ms): {ran:?} of {ms} ms", h.name);
        match &state {
            VmState::Halted => log::info!(
                "vm {}: halted after {} exits",
                h.name,
                h.exits.load(Ordering::Relaxed)
            ),
            VmState::Crashed(why) => log::warn!("vm {}: crashed: {why}", h.name),
            VmState::Running => {}
        }
        *h.state.lock() = state;
    }
}

/// Loads the guest and starts its vCPUs as tasks of the host scheduler.
pub fn start(spec: VmSpec) -> Result<Arc<VmHandle>, VmError> {
    start_with(spec, false)
}

/// As [`start`]; `paused`: the vCPUs wait for [`VmHandle::unpause`] before
/// running a single guest instruction.
pub fn start_with(spec: VmSpec, paused: bool) -> Result<Arc<VmHandle>, VmError> {
    if spec.vcpus == 0 || spec.vcpus > acpi::MAX_VCPUS {
        return Err(VmError::TooManyVcpus(spec.vcpus));
    }
    if sched::task_cpus() == 0 {
        return Err(VmError::NoFreeCpu);
    }
    let handle = Arc::new(VmHandle {
        name: spec.name.clone(),
        vcpus: spec.vcpus,
        state: Mutex::new(VmState::Running),
        exits: AtomicU64::new(0),
        profile: Mutex::new(ExitProfile::default()),
        console: Mutex::new(heapless::Deque::new()),
        console_written: AtomicU64::new(0),
        paused: AtomicBool::new(paused),
        restarts: AtomicU32::new(0),
        core: Mutex::new(Weak::new()),
    });
    boot(spec, Arc::clone(&handle))?;
    let mut vms = VMS.lock();
    // An ended VM of the same name is what this start replaces.
    vms.retain(|v| v.name != handle.name || v.state() == VmState::Running);
    vms.push(Arc::clone(&handle));
    Ok(handle)
}

/// Allocates the VM's RAM, loads the guest and places its vCPUs: at start,
/// and again after a guest reset (with the same handle).
fn boot(spec: VmSpec, handle: Arc<VmHandle>) -> Result<(), VmError> {
    // Exactly the RAM asked for (at least 4 MiB): the host block is 2 MiB
    // aligned, so nested paging uses large pages but for an odd last MiB.
    let bytes = (spec.memory_mib << 20).max(TWO_MIB * 2);
    if bytes > pci::MMIO_BASE {
        return Err(VmError::Setup(format!(
            "{} MiB of guest RAM would overlap the PCI hole at {:#x}; at most {} MiB",
            spec.memory_mib,
            pci::MMIO_BASE,
            pci::MMIO_BASE >> 20
        )));
    }
    let phys = mem::alloc_frames(
        bytes / mem::frames::FRAME_SIZE,
        TWO_MIB / mem::frames::FRAME_SIZE,
    )
    .ok_or(VmError::NoMemory {
        mib: spec.memory_mib,
    })?;
    let ram = Ram { phys, bytes };
    let npt = NestedPageTable::identity_offset(phys, bytes)
        .map_err(|e| VmError::Setup(format!("nested paging: {e:?}")))?;
    *handle.state.lock() = VmState::Running;
    let vcpus = spec.vcpus as usize;
    let io_waker = Waker::default();
    let mut core = VmCore {
        board: Mutex::new(Board::new(
            Arc::clone(&handle),
            vcpus,
            &spec.disks,
            &spec.nics,
            Arc::new(DeviceWaker(io_waker.clone())),
        )),
        handle: Arc::clone(&handle),
        ram: Mutex::new(Some(ram)),
        npt,
        spec: Mutex::new(None),
        reset: AtomicBool::new(false),
        asid: NEXT_ASID.fetch_add(1, Ordering::Relaxed),
        vcpus,
        entry: LongModeEntry::default(),
        wakers: (0..vcpus).map(|_| Waker::default()).collect(),
        io_waker,
        power_button: AtomicBool::new(false),
        stopping: AtomicBool::new(false),
        outcome: Mutex::new(None),
        running: AtomicU32::new(spec.vcpus),
        started: time::now(),
        ran_ns: (0..vcpus).map(|_| AtomicU64::new(0)).collect(),
    };
    let loaded = core.with_memory(|m| match &spec.boot {
        GuestBoot::Elf(image) if hermit::is_hermit(image) => {
            if spec.vcpus != 1 {
                // uhyve starts a Hermit guest's other CPUs itself, in 64-bit
                // mode; that start-up path is not built yet.
                return Err(VmError::Setup(format!(
                    "Hermit guests run on 1 vCPU here, not {}",
                    spec.vcpus
                )));
            }
            let platform = hermit::Platform {
                cpus: spec.vcpus,
                cpu_khz: u32::try_from(time::tsc_hz() / 1000).unwrap_or(u32::MAX),
                boot_unix_seconds: i64::try_from(time::wall_clock()).unwrap_or(0),
            };
            hermit::load(image, m, platform).map_err(VmError::BadHermit)
        }
        GuestBoot::Elf(image) => {
            let loaded = elf::load(image, m, longmode::LOADER_END).map_err(VmError::BadImage)?;
            longmode::prepare(m, loaded.entry, bytes - 16)
                .map_err(|e| VmError::Setup(format!("{e}")))
        }
        GuestBoot::Linux {
            kernel,
            initrd,
            cmdline,
        } => {
            let rsdp = acpi::write_tables(m, spec.vcpus)
                .map_err(|e| VmError::Setup(format!("ACPI tables: {e}")))?;
            linux::load(
                kernel,
                initrd.as_deref().map(Vec::as_slice),
                cmdline,
                Some(rsdp),
                m,
            )
            .map_err(VmError::BadKernel)
        }
    });
    core.entry = loaded.ok_or_else(|| VmError::Setup("guest RAM is gone".into()))??;
    for nic in &spec.nics {
        nic.link
            .set_guest_waker(Arc::new(DeviceWaker(core.io_waker.clone())));
    }
    *core.spec.lock() = Some(spec);
    let core = Arc::new(core);
    *handle.core.lock() = Arc::downgrade(&core);
    let mut cpus = Vec::new();
    for me in 0..vcpus {
        let task = Arc::new(VcpuTask {
            core: Arc::clone(&core),
            me,
            vcpu: Mutex::new(None),
        });
        // `task_cpus() > 0` was checked above and CPUs never go away.
        if let Some(cpu) = sched::spawn(task, core.wakers[me].clone()) {
            cpus.push(cpu);
        }
    }
    let devices = Arc::new(DeviceTask {
        core: Arc::clone(&core),
    });
    let io_cpu = sched::spawn(devices, core.io_waker.clone());
    log::info!(
        "vm {}: started, {} vCPU(s) on cpu{:?}, devices served on cpu{} ({} MiB, entry {:#x})",
        handle.name,
        vcpus,
        cpus,
        io_cpu.unwrap_or(0),
        bytes >> 20,
        core.entry.rip
    );
    Ok(())
}
