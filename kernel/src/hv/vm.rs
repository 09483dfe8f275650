//! A running VM: its memory, nested page tables and vCPU, the devices on its
//! port bus, and the exit-handling loop that runs on a host CPU of its own.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use core::time::Duration;

use spin::Mutex;

use super::acpi;
use super::cpuid::{self, Leaf};
use super::devices::pm::{Pm, SleepRequest};
use super::devices::uart::{ConsoleSink, Uart};
use super::devices::{ioapic, lapic, pic, pit, rtc};
use super::exit::{Exception, Vcpu, VmExit};
use super::longmode;
use super::memory::GuestMemory;
use super::mmio;
use super::profile::ExitProfile;
use super::{elf, linux};
use crate::arch::x86_64::npt::NestedPageTable;
use crate::arch::x86_64::{apic, cpu, svm};
use crate::{mem, smp, time};

const COM1: u16 = 0x3f8;
const RESET_CONTROL: u16 = 0xcf9;
const MSR_AMD64_NB_CFG: u32 = 0xc001_001f;
const TWO_MIB: u64 = 2 << 20;
/// Bytes of console output kept per VM.
const CONSOLE_RING: usize = 4096;
const RFLAGS_IF: u64 = 1 << 9;
/// Longest a vCPU runs before the host looks at it again.
const MAX_SLICE: Duration = Duration::from_millis(10);

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
}

/// Where a VM is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmState {
    Running,
    /// The guest stopped itself (halted with nothing left to wake it).
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
    NoFreeCpu,
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
            VmError::NoFreeCpu => write!(f, "no host CPU is free to run the vCPU"),
        }
    }
}

/// A VM as the rest of the host sees it.
#[derive(Debug)]
pub struct VmHandle {
    pub name: String,
    state: Mutex<VmState>,
    pub exits: AtomicU64,
    /// Exits by kind, filled in when the VM stops.
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
}

static VMS: Mutex<Vec<Arc<VmHandle>>> = Mutex::new(Vec::new());
static NEXT_ASID: AtomicU32 = AtomicU32::new(1);

/// All VMs started since boot.
pub fn list() -> Vec<Arc<VmHandle>> {
    VMS.lock().clone()
}

/// Guest console: whole lines go to the host log with the VM's name; every
/// byte goes to the VM's ring buffer.
struct ConsoleLog {
    vm: Arc<VmHandle>,
    line: heapless::Vec<u8, 160>,
}

impl ConsoleSink for ConsoleLog {
    fn put(&mut self, byte: u8) {
        {
            let mut ring = self.vm.console.lock();
            if ring.is_full() {
                ring.pop_front();
            }
            let _ = ring.push_back(byte);
        }
        if byte == b'\n' || self.line.push(byte).is_err() {
            let text = String::from_utf8_lossy(&self.line);
            log::info!("vm {}: {}", self.vm.name, text.trim_end());
            self.line.clear();
        }
    }
}

/// Guest RAM: contiguous host frames, freed when the VM ends.
struct Ram {
    phys: u64,
    bytes: u64,
}

impl Ram {
    fn memory(&mut self) -> GuestMemory<'_> {
        // SAFETY: `[phys, phys + bytes)` was allocated to this VM alone and is
        // mapped in the direct map; the slice lives no longer than `self`.
        let slice = unsafe {
            core::slice::from_raw_parts_mut(
                mem::phys_to_virt(self.phys) as *mut u8,
                self.bytes as usize,
            )
        };
        GuestMemory::new(slice)
    }
}

impl Drop for Ram {
    fn drop(&mut self) {
        mem::free_frames(self.phys, self.bytes / mem::frames::FRAME_SIZE);
    }
}

/// Loads the image and starts the VM on a free host CPU.
pub fn start(spec: VmSpec) -> Result<Arc<VmHandle>, VmError> {
    let bytes = (spec.memory_mib << 20).max(TWO_MIB * 2).div_ceil(TWO_MIB) * TWO_MIB;
    let phys = mem::alloc_frames(
        bytes / mem::frames::FRAME_SIZE,
        TWO_MIB / mem::frames::FRAME_SIZE,
    )
    .ok_or(VmError::NoMemory {
        mib: spec.memory_mib,
    })?;
    let mut ram = Ram { phys, bytes };
    let entry = {
        let mut m = ram.memory();
        match &spec.boot {
            GuestBoot::Elf(image) => {
                let loaded =
                    elf::load(image, &mut m, longmode::LOADER_END).map_err(VmError::BadImage)?;
                longmode::prepare(&mut m, loaded.entry, bytes - 16)
                    .map_err(|e| VmError::Setup(format!("{e}")))?
            }
            GuestBoot::Linux {
                kernel,
                initrd,
                cmdline,
            } => {
                let rsdp = acpi::write_tables(&mut m, 1)
                    .map_err(|e| VmError::Setup(format!("ACPI tables: {e}")))?;
                linux::load(kernel, initrd.as_deref(), cmdline, Some(rsdp), &mut m)
                    .map_err(VmError::BadKernel)?
            }
        }
    };
    drop(spec.boot);
    let npt = NestedPageTable::identity_offset(phys, bytes)
        .map_err(|e| VmError::Setup(format!("nested paging: {e:?}")))?;
    let asid = NEXT_ASID.fetch_add(1, Ordering::Relaxed);
    let vm = Arc::new(VmHandle {
        name: spec.name,
        state: Mutex::new(VmState::Running),
        exits: AtomicU64::new(0),
        profile: Mutex::new(ExitProfile::default()),
        console: Mutex::new(heapless::Deque::new()),
    });
    let handle = Arc::clone(&vm);
    let job = Box::new(move || {
        let _keep = (&ram, &npt);
        let started = time::now();
        let outcome = match svm::enable_this_cpu() {
            Err(e) => VmState::Crashed(format!("SVM unavailable on this CPU: {e:?}")),
            Ok(()) => match svm::SvmVcpu::new(npt.root(), asid, &entry) {
                Err(e) => VmState::Crashed(format!("cannot create the vCPU: {e:?}")),
                Ok(mut vcpu) => run_vcpu(&mut vcpu, &handle, &mut ram),
            },
        };
        let profile = handle.profile.lock().clone();
        let ms = time::now().saturating_sub(started).as_millis().max(1) as u64;
        log::info!(
            "vm {}: {profile}; {} exits/s over {ms} ms",
            handle.name,
            profile.total() * 1000 / ms
        );
        match &outcome {
            VmState::Halted => log::info!(
                "vm {}: halted after {} exits",
                handle.name,
                handle.exits.load(Ordering::Relaxed)
            ),
            VmState::Crashed(why) => log::warn!("vm {}: crashed: {why}", handle.name),
            VmState::Running => {}
        }
        *handle.state.lock() = outcome;
        drop(npt);
        drop(ram);
    });
    let cpu = smp::run_on_free_cpu(job).map_err(|_| VmError::NoFreeCpu)?;
    log::info!(
        "vm {}: started on cpu{cpu} ({} MiB, entry {:#x})",
        vm.name,
        bytes >> 20,
        entry.rip
    );
    VMS.lock().push(Arc::clone(&vm));
    Ok(vm)
}

/// The legacy PC devices a guest finds on its port bus.
struct Board {
    uart: Uart<ConsoleLog>,
    pic: pic::Pic,
    pit: pit::Pit,
    rtc: rtc::Rtc,
    pm: Pm,
    lapic: lapic::Lapic,
    ioapic: ioapic::IoApic,
    uart_line: bool,
    /// AMD's northbridge configuration MSR, which Linux reads and writes
    /// without checking for #GP; kept per VM, it configures nothing.
    nb_cfg: u64,
    unclaimed_ports: u64,
    /// Set when the guest asked to power off or reset.
    stop: Option<&'static str>,
}

const IRQ_TIMER: u8 = 0;
const IRQ_COM1: u8 = 4;

impl Board {
    /// A port access; returns the value read (for reads).
    fn io(&mut self, port: u16, size: u8, write: bool, value: u64, now: Duration) -> u64 {
        let all_ones = if size >= 4 {
            u64::from(u32::MAX)
        } else {
            (1u64 << (size * 8)) - 1
        };
        let byte = value as u8;
        match (port, size) {
            (COM1..=0x3ff, 1) if write => self.uart.write(port - COM1, byte),
            (COM1..=0x3ff, 1) => return u64::from(self.uart.read(port - COM1)),
            (pic::MASTER_CMD | pic::MASTER_DATA | pic::SLAVE_CMD | pic::SLAVE_DATA, 1) if write => {
                self.pic.write(port, byte)
            }
            (pic::MASTER_CMD | pic::MASTER_DATA | pic::SLAVE_CMD | pic::SLAVE_DATA, 1) => {
                return u64::from(self.pic.read(port));
            }
            (pit::CHANNEL0..=pit::COMMAND | pit::PORT_B, 1) if write => {
                self.pit.write(port, byte, now)
            }
            (pit::CHANNEL0..=pit::COMMAND | pit::PORT_B, 1) => {
                return u64::from(self.pit.read(port, now));
            }
            (rtc::INDEX | rtc::DATA, 1) if write => self.rtc.write(port, byte),
            (rtc::INDEX | rtc::DATA, 1) => {
                return u64::from(self.rtc.read(port, time::wall_clock()));
            }
            (acpi::PM_TMR, 4) if !write => return u64::from(Pm::timer(now)),
            (acpi::PM1A_EVT..=0x603, 2) if write => {
                self.pm.write_event(port - acpi::PM1A_EVT, value as u16)
            }
            (acpi::PM1A_EVT..=0x603, 2) => {
                return u64::from(self.pm.read_event(port - acpi::PM1A_EVT));
            }
            (acpi::PM1A_CNT, 2) if write => match self.pm.write_control(value as u16) {
                Some(SleepRequest::Sleep(acpi::S5_SLP_TYP)) => {
                    self.stop = Some("powered off (ACPI S5)")
                }
                Some(SleepRequest::Sleep(other)) => {
                    log::debug!("guest asked for sleep type {other}, which is not supported");
                }
                None => {}
            },
            (acpi::PM1A_CNT, 2) => return u64::from(self.pm.read_control()),
            // Reset control: bit 2 resets the machine.
            (RESET_CONTROL, 1) if write && byte & 0x04 != 0 => {
                self.stop =
                    Some("reset requested (restarting a VM is not supported yet: it stays stopped)")
            }
            _ => {
                // No device: writes vanish and reads float high, as on a real bus.
                self.unclaimed_ports += 1;
                return all_ones;
            }
        }
        0
    }

    /// Turns device state into interrupt requests; returns the next timer deadline.
    fn update_interrupts(&mut self, now: Duration) -> Option<Duration> {
        let (ticks, next) = self.pit.poll_irq0(now);
        if ticks > 0 {
            self.raise_isa(IRQ_TIMER);
        }
        let line = self.uart.interrupt_line();
        if line && !self.uart_line {
            self.raise_isa(IRQ_COM1);
        }
        self.uart_line = line;
        let lapic_next = self.lapic.poll_timer(now);
        match (next, lapic_next) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// An edge on ISA line `irq`: to the 8259 and, through the MADT's
    /// overrides (IRQ 0 is GSI 2), to the I/O APIC.
    fn raise_isa(&mut self, irq: u8) {
        self.pic.raise(irq);
        let gsi = if irq == IRQ_TIMER { 2 } else { u32::from(irq) };
        if let Some(route) = self.ioapic.raise(gsi)
            && self.lapic.matches(route.destination, route.logical)
        {
            self.lapic.accept(route.vector);
        }
    }

    /// The interrupt the vCPU would take now: its APIC's, else the 8259's
    /// through the virtual wire.
    fn pending_interrupt(&mut self) -> Option<u8> {
        self.lapic.pending().or_else(|| {
            if self.lapic.accepts_pic() {
                self.pic.pending_vector()
            } else {
                None
            }
        })
    }

    fn acknowledge_interrupt(&mut self) -> Option<u8> {
        if let Some(v) = self.lapic.pending() {
            self.lapic.acknowledge(v);
            return Some(v);
        }
        if self.lapic.accepts_pic() {
            self.pic.acknowledge()
        } else {
            None
        }
    }

    /// Whether a device decodes `gpa`.
    fn is_device(gpa: u64) -> bool {
        (lapic::BASE..lapic::BASE + lapic::SIZE).contains(&gpa)
            || (ioapic::BASE..ioapic::BASE + ioapic::SIZE).contains(&gpa)
    }

    /// A read of `size` bytes of device memory at `gpa`; `None` if no device is there.
    fn mmio_read(&mut self, gpa: u64, size: u8, now: Duration) -> Option<u64> {
        if (lapic::BASE..lapic::BASE + lapic::SIZE).contains(&gpa) && size == 4 {
            return Some(u64::from(self.lapic.read((gpa - lapic::BASE) as u16, now)));
        }
        if (ioapic::BASE..ioapic::BASE + ioapic::SIZE).contains(&gpa) && size == 4 {
            return Some(u64::from(self.ioapic.read(gpa - ioapic::BASE)));
        }
        None
    }

    /// A write to device memory; false if no device is there.
    fn mmio_write(&mut self, gpa: u64, size: u8, value: u64, now: Duration) -> bool {
        if (lapic::BASE..lapic::BASE + lapic::SIZE).contains(&gpa) && size == 4 {
            if let Some(ipi) = self
                .lapic
                .write((gpa - lapic::BASE) as u16, value as u32, now)
            {
                self.deliver_ipi(ipi);
            }
            return true;
        }
        if (ioapic::BASE..ioapic::BASE + ioapic::SIZE).contains(&gpa) && size == 4 {
            self.ioapic.write(gpa - ioapic::BASE, value as u32);
            return true;
        }
        false
    }

    /// One vCPU: only IPIs that target it are deliverable.
    fn deliver_ipi(&mut self, ipi: lapic::Ipi) {
        let to_me = match ipi.shorthand() {
            1 | 2 => true,
            3 => false,
            _ => self.lapic.matches(ipi.destination, ipi.logical()),
        };
        if to_me && ipi.delivery_mode() == 0 {
            self.lapic.accept(ipi.vector());
        } else if ipi.shorthand() != 1 {
            log::debug!(
                "IPI {:#x} to APIC {} has no target in this single-vCPU VM",
                ipi.command,
                ipi.destination
            );
        }
    }
}

fn gpr_get(vcpu: &mut impl Vcpu, r: mmio::Gpr) -> u64 {
    let g = vcpu.regs();
    match r.0 {
        0 => g.rax,
        1 => g.rcx,
        2 => g.rdx,
        3 => g.rbx,
        5 => g.rbp,
        6 => g.rsi,
        7 => g.rdi,
        8 => g.r8,
        9 => g.r9,
        10 => g.r10,
        11 => g.r11,
        12 => g.r12,
        13 => g.r13,
        14 => g.r14,
        15 => g.r15,
        _ => vcpu.rsp(),
    }
}

fn gpr_set(vcpu: &mut impl Vcpu, r: mmio::Gpr, v: u64) {
    let g = vcpu.regs();
    let slot = match r.0 {
        0 => &mut g.rax,
        1 => &mut g.rcx,
        2 => &mut g.rdx,
        3 => &mut g.rbx,
        5 => &mut g.rbp,
        6 => &mut g.rsi,
        7 => &mut g.rdi,
        8 => &mut g.r8,
        9 => &mut g.r9,
        10 => &mut g.r10,
        11 => &mut g.r11,
        12 => &mut g.r12,
        13 => &mut g.r13,
        14 => &mut g.r14,
        15 => &mut g.r15,
        _ => return vcpu.set_rsp(v),
    };
    *slot = v;
}

/// Emulates the instruction that touched device memory at `gpa`.
fn emulate_mmio(
    vcpu: &mut impl Vcpu,
    ram: &mut Ram,
    board: &mut Board,
    gpa: u64,
) -> Result<(), String> {
    let paging = vcpu.paging();
    let rip = vcpu.rip();
    let mut bytes = [0u8; 15];
    let decoded = {
        let mem = ram.memory();
        let n = paging
            .fetch(&mem, rip, &mut bytes)
            .map_err(|e| format!("{e}"))?;
        mmio::decode(&bytes[..n], paging.long_mode(), rip).map_err(|e| format!("{e}"))?
    };
    let now = time::now();
    let mask = |size: u8| {
        if size >= 8 {
            u64::MAX
        } else {
            (1u64 << (size * 8)) - 1
        }
    };
    match decoded.access {
        mmio::Access::Write { size, source } => {
            let value = match source {
                mmio::Source::Reg(r) => gpr_get(vcpu, r),
                mmio::Source::Imm(v) => v,
            } & mask(size);
            if !board.mmio_write(gpa, size, value, now) {
                return Err(format!(
                    "write to guest-physical {gpa:#x}, which is not the VM's memory"
                ));
            }
        }
        mmio::Access::Read {
            size,
            dest,
            dest_size,
        } => {
            let Some(value) = board.mmio_read(gpa, size, now) else {
                return Err(format!(
                    "read from guest-physical {gpa:#x}, which is not the VM's memory"
                ));
            };
            let value = value & mask(size);
            let merged = match dest_size {
                4 | 8 => value,
                n => (gpr_get(vcpu, dest) & !mask(n)) | value,
            };
            gpr_set(vcpu, dest, merged);
        }
    }
    vcpu.set_rip(rip.wrapping_add(u64::from(decoded.len)));
    Ok(())
}

/// Sleeps this host CPU until `deadline` (time since boot); interrupts for
/// the host are served meanwhile.
fn sleep_until(deadline: Duration) {
    while time::now() < deadline {
        time::arm_timer(deadline);
        cpu::sti_hlt_cli();
    }
    apic::timer_stop();
}

/// Runs `vcpu` until the VM halts or crashes.
fn run_vcpu(vcpu: &mut impl Vcpu, vm: &Arc<VmHandle>, ram: &mut Ram) -> VmState {
    let mut board = Board {
        uart: Uart::new(ConsoleLog {
            vm: Arc::clone(vm),
            line: heapless::Vec::new(),
        }),
        pic: pic::Pic::default(),
        pit: pit::Pit::default(),
        rtc: rtc::Rtc::default(),
        pm: Pm::default(),
        lapic: lapic::Lapic::new(0),
        ioapic: ioapic::IoApic::default(),
        uart_line: false,
        nb_cfg: 0,
        unclaimed_ports: 0,
        stop: None,
    };
    loop {
        let next_timer = board.update_interrupts(time::now());
        if !vcpu.event_pending() && board.pending_interrupt().is_some() {
            if vcpu.interruptible() {
                if let Some(v) = board.acknowledge_interrupt() {
                    vcpu.inject_interrupt(v);
                }
                vcpu.request_interrupt_window(false);
            } else {
                vcpu.request_interrupt_window(true);
            }
        }
        // The host CPU's timer bounds how long the guest runs without an
        // exit, so device timers are delivered on time even to a guest that
        // spins without touching a device.
        let now = time::now();
        time::arm_timer(next_timer.map_or(now + MAX_SLICE, |t| t.min(now + MAX_SLICE)));
        let exit = vcpu.run();
        vm.exits.fetch_add(1, Ordering::Relaxed);
        vm.profile.lock().record(&exit);
        match exit {
            VmExit::Io { string: true, .. } => {
                return VmState::Crashed("string port I/O (INS/OUTS) is not emulated yet".into());
            }
            VmExit::Io {
                port,
                size,
                write,
                next_rip,
                ..
            } => {
                let rax = vcpu.regs().rax;
                let read = board.io(port, size, write, rax, time::now());
                if !write {
                    let mask = if size >= 4 {
                        u64::from(u32::MAX)
                    } else {
                        (1u64 << (size * 8)) - 1
                    };
                    // A 32-bit IN zero-extends into RAX; 8/16-bit ones merge.
                    let keep = if size >= 4 { 0 } else { rax & !mask };
                    vcpu.regs().rax = keep | (read & mask);
                }
                vcpu.set_rip(next_rip);
                if let Some(why) = board.stop {
                    log::info!("vm {}: {why}", vm.name);
                    return VmState::Halted;
                }
            }
            VmExit::Cpuid => {
                let regs = vcpu.regs();
                let l = cpuid::guest_leaf(
                    regs.rax as u32,
                    regs.rcx as u32,
                    |a, b| {
                        let (eax, ebx, ecx, edx) = cpu::cpuid(a, b);
                        Leaf { eax, ebx, ecx, edx }
                    },
                    0,
                    1,
                );
                (regs.rax, regs.rbx, regs.rcx, regs.rdx) =
                    (l.eax.into(), l.ebx.into(), l.ecx.into(), l.edx.into());
                skip(vcpu, 2);
            }
            VmExit::MsrRead => {
                let msr = vcpu.regs().rcx as u32;
                let nb_cfg = (msr == MSR_AMD64_NB_CFG).then_some(board.nb_cfg);
                match vcpu
                    .read_arch_msr(msr)
                    .or(nb_cfg)
                    .or_else(|| platform_msr_read(msr))
                {
                    Some(v) => {
                        let regs = vcpu.regs();
                        regs.rax = v & 0xffff_ffff;
                        regs.rdx = v >> 32;
                        skip(vcpu, 2);
                    }
                    None => {
                        log::debug!("vm {}: #GP for read of MSR {msr:#x}", vm.name);
                        vcpu.inject(Exception::GeneralProtection)
                    }
                }
            }
            VmExit::MsrWrite => {
                let regs = vcpu.regs();
                let (msr, value) = (regs.rcx as u32, (regs.rdx << 32) | (regs.rax & 0xffff_ffff));
                match vcpu
                    .write_arch_msr(msr, value)
                    .or_else(|| {
                        (msr == MSR_AMD64_NB_CFG).then(|| {
                            board.nb_cfg = value;
                            true
                        })
                    })
                    .or_else(|| platform_msr_write(msr, value))
                {
                    Some(true) => skip(vcpu, 2),
                    _ => {
                        log::debug!(
                            "vm {}: #GP for write of {value:#x} to MSR {msr:#x}",
                            vm.name
                        );
                        vcpu.inject(Exception::GeneralProtection)
                    }
                }
            }
            VmExit::Hlt => {
                skip(vcpu, 1);
                if vcpu.rflags() & RFLAGS_IF == 0
                    || next_timer.is_none() && board.pending_interrupt().is_none()
                {
                    // Nothing can ever wake this vCPU: the guest has stopped itself.
                    if board.unclaimed_ports > 0 {
                        log::info!(
                            "vm {}: {} accesses to ports without a device",
                            vm.name,
                            board.unclaimed_ports
                        );
                    }
                    return VmState::Halted;
                }
                // A halted vCPU costs no host CPU: sleep until its next timer event.
                if board.pending_interrupt().is_none()
                    && let Some(deadline) = next_timer
                {
                    sleep_until(deadline);
                }
            }
            VmExit::Hypercall => vcpu.inject(Exception::InvalidOpcode),
            VmExit::NestedPageFault {
                gpa, fetch: false, ..
            } if Board::is_device(gpa) => {
                if let Err(why) = emulate_mmio(vcpu, ram, &mut board, gpa) {
                    return VmState::Crashed(why);
                }
            }
            VmExit::NestedPageFault { gpa, write, fetch } => {
                let what = if fetch {
                    "instruction fetch from"
                } else if write {
                    "write to"
                } else {
                    "read from"
                };
                return VmState::Crashed(format!(
                    "{what} guest-physical {gpa:#x}, which is not the VM's memory"
                ));
            }
            VmExit::Shutdown => {
                return VmState::Crashed(format!("triple fault at rip {:#x}", vcpu.rip()));
            }
            VmExit::Interrupt => cpu::service_pending_interrupts(),
            VmExit::InterruptWindow => vcpu.request_interrupt_window(false),
            VmExit::Nmi => {}
            VmExit::InvalidState => {
                return VmState::Crashed("the CPU refused the guest state".into());
            }
            VmExit::Unknown(code) => {
                return VmState::Crashed(format!(
                    "unhandled exit {code:#x} at rip {:#x}",
                    vcpu.rip()
                ));
            }
        }
    }
}

/// Steps over an instruction of known length. TCG has no next-RIP save; the
/// exits that use this (HLT, CPUID, RDMSR, WRMSR) come from their one- and
/// two-byte encodings. Exits that need a real decode (MMIO) will use a decoder.
fn skip(vcpu: &mut impl Vcpu, len: u64) {
    let rip = vcpu.rip();
    vcpu.set_rip(rip.wrapping_add(len));
}

/// MSRs the hypervisor answers itself (not kept by the backend).
fn platform_msr_read(msr: u32) -> Option<u64> {
    match msr {
        0x10 => Some(cpu::rdtsc()),                       // IA32_TSC
        0x1b => Some(0xfee0_0000 | (1 << 11) | (1 << 8)), // IA32_APIC_BASE: enabled, BSP
        0xfe => Some(0),                                  // IA32_MTRRCAP: no MTRRs
        0x2ff => Some(0),                                 // IA32_MTRR_DEF_TYPE
        0x1a0 => Some(1),                                 // IA32_MISC_ENABLE: fast strings
        _ => None,
    }
}

fn platform_msr_write(msr: u32, value: u64) -> Option<bool> {
    match msr {
        // The APIC cannot be moved or switched to x2APIC mode.
        0x1b => Some(value == 0xfee0_0000 | (1 << 11) | (1 << 8)),
        0x2ff => Some(value & !0xcff == 0),
        _ => None,
    }
}
