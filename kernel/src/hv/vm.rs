//! A running VM: its memory, nested page tables and vCPU, the devices on its
//! port bus, and the exit-handling loop that runs on a host CPU of its own.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use spin::Mutex;

use super::cpuid::{self, Leaf};
use super::devices::uart::{ConsoleSink, Uart};
use super::elf;
use super::exit::{Exception, Vcpu, VmExit};
use super::longmode;
use super::memory::GuestMemory;
use crate::arch::x86_64::npt::NestedPageTable;
use crate::arch::x86_64::{cpu, svm};
use crate::{mem, smp};

const COM1: u16 = 0x3f8;
const TWO_MIB: u64 = 2 << 20;
/// Bytes of console output kept per VM.
const CONSOLE_RING: usize = 4096;
const RFLAGS_IF: u64 = 1 << 9;

/// What to start.
#[derive(Debug)]
pub struct VmSpec {
    pub name: String,
    /// A static x86_64 ELF, entered in 64-bit mode.
    pub image: Vec<u8>,
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
        let loaded =
            elf::load(&spec.image, &mut m, longmode::LOADER_END).map_err(VmError::BadImage)?;
        longmode::prepare(&mut m, loaded.entry, bytes - 16)
            .map_err(|e| VmError::Setup(format!("{e}")))?
    };
    let npt = NestedPageTable::identity_offset(phys, bytes)
        .map_err(|e| VmError::Setup(format!("nested paging: {e:?}")))?;
    let asid = NEXT_ASID.fetch_add(1, Ordering::Relaxed);
    let vm = Arc::new(VmHandle {
        name: spec.name,
        state: Mutex::new(VmState::Running),
        exits: AtomicU64::new(0),
        console: Mutex::new(heapless::Deque::new()),
    });
    let handle = Arc::clone(&vm);
    let job = Box::new(move || {
        let _keep = (&ram, &npt);
        let outcome = match svm::enable_this_cpu() {
            Err(e) => VmState::Crashed(format!("SVM unavailable on this CPU: {e:?}")),
            Ok(()) => match svm::SvmVcpu::new(npt.root(), asid, &entry) {
                Err(e) => VmState::Crashed(format!("cannot create the vCPU: {e:?}")),
                Ok(mut vcpu) => run_vcpu(&mut vcpu, &handle),
            },
        };
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

/// Runs `vcpu` until the VM halts or crashes.
fn run_vcpu(vcpu: &mut impl Vcpu, vm: &Arc<VmHandle>) -> VmState {
    let mut uart = Uart::new(ConsoleLog {
        vm: Arc::clone(vm),
        line: heapless::Vec::new(),
    });
    let mut unclaimed_ports: u64 = 0;
    loop {
        let exit = vcpu.run();
        vm.exits.fetch_add(1, Ordering::Relaxed);
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
                let mask = if size >= 4 {
                    u64::from(u32::MAX)
                } else {
                    (1u64 << (size * 8)) - 1
                };
                let regs = vcpu.regs();
                match port {
                    COM1..=0x3ff if size == 1 => {
                        if write {
                            uart.write(port - COM1, regs.rax as u8);
                        } else {
                            regs.rax = (regs.rax & !0xff) | u64::from(uart.read(port - COM1));
                        }
                    }
                    _ => {
                        // No device: writes vanish and reads float high, as on a real bus.
                        unclaimed_ports += 1;
                        if !write {
                            regs.rax = (regs.rax & !mask) | mask;
                        }
                    }
                }
                vcpu.set_rip(next_rip);
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
                match vcpu.read_arch_msr(msr).or_else(|| platform_msr_read(msr)) {
                    Some(v) => {
                        let regs = vcpu.regs();
                        regs.rax = v & 0xffff_ffff;
                        regs.rdx = v >> 32;
                        skip(vcpu, 2);
                    }
                    None => vcpu.inject(Exception::GeneralProtection),
                }
            }
            VmExit::MsrWrite => {
                let regs = vcpu.regs();
                let (msr, value) = (regs.rcx as u32, (regs.rdx << 32) | (regs.rax & 0xffff_ffff));
                match vcpu
                    .write_arch_msr(msr, value)
                    .or_else(|| platform_msr_write(msr, value))
                {
                    Some(true) => skip(vcpu, 2),
                    _ => vcpu.inject(Exception::GeneralProtection),
                }
            }
            VmExit::Hlt => {
                // No device can raise an interrupt for this VM yet, so a halted
                // vCPU can never wake: the VM has stopped itself.
                let interrupts_on = vcpu.rflags() & RFLAGS_IF != 0;
                log::debug!(
                    "vm {}: hlt with interrupts {}",
                    vm.name,
                    if interrupts_on { "on" } else { "off" }
                );
                if unclaimed_ports > 0 {
                    log::info!(
                        "vm {}: {unclaimed_ports} accesses to ports without a device",
                        vm.name
                    );
                }
                return VmState::Halted;
            }
            VmExit::Hypercall => vcpu.inject(Exception::InvalidOpcode),
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
/// exits that use this (CPUID, RDMSR, WRMSR) come from their two-byte
/// encodings. Exits that need a real decode (MMIO) will use the decoder.
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
