//! A running VM: its memory and nested page tables, the board its vCPUs
//! share, and one host CPU per vCPU running the exit loop (`vcpu`).

mod board;
mod vcpu;

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use core::time::Duration;

use spin::Mutex;

use self::board::{Board, Startup};
use super::acpi;
use super::longmode::{self, LongModeEntry};
use super::memory::GuestMemory;
use super::profile::ExitProfile;
use super::{elf, linux};
use crate::arch::x86_64::npt::NestedPageTable;
use crate::arch::x86_64::{apic, cpu, idt, svm};
use crate::{mem, smp, time};

const TWO_MIB: u64 = 2 << 20;
/// Bytes of console output kept per VM.
const CONSOLE_RING: usize = 4096;
const NOT_RUNNING: u32 = u32::MAX;
/// Longest a sleeping vCPU waits before looking again (a lost wake-up costs no more).
const SLEEP_CHECK: Duration = Duration::from_millis(50);

/// What a VM boots.
#[derive(Debug)]
pub enum GuestBoot {
    /// A static x86_64 ELF (a Hermit image, a test guest), entered in 64-bit mode.
    Elf(Vec<u8>),
    /// A Linux bzImage through the 64-bit boot protocol.
    Linux {
        kernel: Vec<u8>,
        initrd: Option<Vec<u8>>,
        cmdline: String,
    },
}

/// What to start.
#[derive(Debug)]
pub struct VmSpec {
    pub name: String,
    pub boot: GuestBoot,
    pub memory_mib: u64,
    pub vcpus: u32,
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
    NoMemory { mib: u64 },
    BadImage(elf::ElfError),
    BadKernel(linux::LinuxError),
    Setup(String),
    NoFreeCpu { needed: u32 },
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
            VmError::Setup(e) => write!(f, "{e}"),
            VmError::NoFreeCpu { needed } => {
                write!(
                    f,
                    "{needed} vCPUs need as many free host CPUs (vCPUs do not share a CPU yet)"
                )
            }
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
}

impl VmHandle {
    pub fn state(&self) -> VmState {
        self.state.lock().clone()
    }

    /// The last console output (up to 4 KiB).
    pub fn console(&self) -> Vec<u8> {
        self.console.lock().iter().copied().collect()
    }

    fn remember_console(&self, byte: u8) {
        let mut ring = self.console.lock();
        if ring.is_full() {
            ring.pop_front();
        }
        let _ = ring.push_back(byte);
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
    ram: Ram,
    /// Serialises the host's own accesses to guest RAM (loader, MMIO decode).
    memory_lock: Mutex<()>,
    npt: NestedPageTable,
    asid: u32,
    vcpus: usize,
    entry: LongModeEntry,
    /// APIC ID of the host CPU running each vCPU.
    host_apic: Vec<AtomicU32>,
    kicked: Vec<AtomicBool>,
    stopping: AtomicBool,
    outcome: Mutex<Option<VmState>>,
    running: AtomicU32,
    started: Duration,
}

impl VmCore {
    fn with_memory<R>(&self, f: impl FnOnce(&mut GuestMemory<'_>) -> R) -> R {
        let _guard = self.memory_lock.lock();
        // SAFETY: `[phys, phys + bytes)` was allocated to this VM alone and is
        // mapped in the direct map; host-side accesses are serialised by
        // `memory_lock` and the slice does not outlive the call. The guest may
        // write the same bytes concurrently, as a device's DMA would; only
        // plain bytes are copied, so no Rust value can be made invalid.
        let slice = unsafe {
            core::slice::from_raw_parts_mut(
                mem::phys_to_virt(self.ram.phys) as *mut u8,
                self.ram.bytes as usize,
            )
        };
        f(&mut GuestMemory::new(slice))
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Wakes vCPU `t`: a host IPI makes it exit the guest or leave its sleep.
    fn kick(&self, t: usize) {
        let (Some(flag), Some(host)) = (self.kicked.get(t), self.host_apic.get(t)) else {
            return;
        };
        flag.store(true, Ordering::Release);
        let host = host.load(Ordering::Acquire);
        if host != NOT_RUNNING && host != apic::id() {
            apic::send_ipi(host, idt::vector::IPI_WAKE);
        }
    }

    /// Wakes the vCPUs the board asked for, other than `me`.
    fn kick_from(&self, me: usize, board: &mut Board) {
        let mask = core::mem::take(&mut board.kicks) & !(1 << me);
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
    }

    /// Sleeps vCPU `me` until it is kicked, the VM stops, or `deadline` passes.
    fn sleep(&self, me: usize, deadline: Option<Duration>) {
        loop {
            if self.kicked[me].swap(false, Ordering::AcqRel) || self.stopping() {
                break;
            }
            let now = time::now();
            if deadline.is_some_and(|d| now >= d) {
                break;
            }
            time::arm_timer(deadline.map_or(now + SLEEP_CHECK, |d| d.min(now + SLEEP_CHECK)));
            cpu::sti_hlt_cli();
        }
        apic::timer_stop();
    }

    /// The vCPU `me` as a job on its host CPU.
    fn run_vcpu(self: &Arc<VmCore>, me: usize) {
        self.host_apic[me].store(apic::id(), Ordering::Release);
        let end = self.vcpu_life(me);
        if let Some(state) = end {
            self.stop(state);
        }
        self.host_apic[me].store(NOT_RUNNING, Ordering::Release);
        if self.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.finish();
        }
    }

    fn vcpu_life(&self, me: usize) -> Option<VmState> {
        if let Err(e) = svm::enable_this_cpu() {
            return Some(VmState::Crashed(format!(
                "SVM unavailable on this CPU: {e:?}"
            )));
        }
        // A previous guest on this host CPU must leave nothing behind.
        cpu::reset_extended_state();
        let created = if me == 0 {
            svm::SvmVcpu::new(self.npt.root(), self.asid, &self.entry)
        } else {
            // An application processor waits for INIT and a start-up IPI.
            let vector = loop {
                if self.stopping() {
                    return None;
                }
                {
                    let mut b = self.board.lock();
                    if let Startup::Start(v) = b.startup[me] {
                        b.startup[me] = Startup::Running;
                        break v;
                    }
                }
                self.sleep(me, None);
            };
            log::debug!(
                "vm {}: vCPU {me} starts at {:#x}",
                self.handle.name,
                u64::from(vector) << 12
            );
            svm::SvmVcpu::new_startup(self.npt.root(), self.asid, vector)
        };
        match created {
            Ok(mut v) => vcpu::run(self, me, &mut v),
            Err(e) => Some(VmState::Crashed(format!("cannot create vCPU {me}: {e:?}"))),
        }
    }

    /// The last vCPU out reports how the VM ended.
    fn finish(&self) {
        let state = self.outcome.lock().clone().unwrap_or(VmState::Halted);
        let h = &self.handle;
        let profile = h.profile.lock().clone();
        let ms = time::now().saturating_sub(self.started).as_millis().max(1) as u64;
        log::info!(
            "vm {}: {profile}; {} exits/s over {ms} ms",
            h.name,
            profile.total() * 1000 / ms
        );
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

/// Loads the guest and starts each vCPU on a free host CPU.
pub fn start(spec: VmSpec) -> Result<Arc<VmHandle>, VmError> {
    if spec.vcpus == 0 || spec.vcpus > acpi::MAX_VCPUS {
        return Err(VmError::TooManyVcpus(spec.vcpus));
    }
    let bytes = (spec.memory_mib << 20).max(TWO_MIB * 2).div_ceil(TWO_MIB) * TWO_MIB;
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
    let handle = Arc::new(VmHandle {
        name: spec.name,
        vcpus: spec.vcpus,
        state: Mutex::new(VmState::Running),
        exits: AtomicU64::new(0),
        profile: Mutex::new(ExitProfile::default()),
        console: Mutex::new(heapless::Deque::new()),
    });
    let vcpus = spec.vcpus as usize;
    let mut core = VmCore {
        board: Mutex::new(Board::new(Arc::clone(&handle), vcpus)),
        handle: Arc::clone(&handle),
        ram,
        memory_lock: Mutex::new(()),
        npt,
        asid: NEXT_ASID.fetch_add(1, Ordering::Relaxed),
        vcpus,
        entry: LongModeEntry::default(),
        host_apic: (0..vcpus).map(|_| AtomicU32::new(NOT_RUNNING)).collect(),
        kicked: (0..vcpus).map(|_| AtomicBool::new(false)).collect(),
        stopping: AtomicBool::new(false),
        outcome: Mutex::new(None),
        running: AtomicU32::new(spec.vcpus),
        started: time::now(),
    };
    core.entry = core.with_memory(|m| match &spec.boot {
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
            linux::load(kernel, initrd.as_deref(), cmdline, Some(rsdp), m)
                .map_err(VmError::BadKernel)
        }
    })?;
    drop(spec.boot);
    let core = Arc::new(core);
    let mut cpus = Vec::new();
    for me in 0..vcpus {
        let c = Arc::clone(&core);
        match smp::run_on_free_cpu(Box::new(move || c.run_vcpu(me))) {
            Ok(cpu) => cpus.push(cpu),
            Err(job) => {
                // The jobs already placed see the stop and end; this one never runs.
                drop(job);
                core.running
                    .fetch_sub((vcpus - me) as u32, Ordering::AcqRel);
                core.stop(VmState::Crashed("not enough free host CPUs".into()));
                return Err(VmError::NoFreeCpu { needed: spec.vcpus });
            }
        }
    }
    log::info!(
        "vm {}: started, {} vCPU(s) on cpu{:?} ({} MiB, entry {:#x})",
        handle.name,
        vcpus,
        cpus,
        bytes >> 20,
        core.entry.rip
    );
    VMS.lock().push(Arc::clone(&handle));
    Ok(handle)
}
