//! Bringing up the application processors (INIT-SIPI-SIPI through the
//! trampoline), and their idle loop, which runs the vCPU scheduler (`sched`).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use core::time::Duration;

use crate::arch::x86_64::gdt::CpuTables;
use crate::arch::x86_64::trampoline::{self, TRAMPOLINE_BASE};
use crate::arch::x86_64::{apic, cpu, idt};
use crate::mem;
use crate::percpu::{self, PerCpu};
use crate::time;

const AP_STACK_FRAMES: u64 = 16; // 64 KiB

static ONLINE: AtomicU32 = AtomicU32::new(1);
static STARTED: AtomicBool = AtomicBool::new(false);
static CPUS: spin::Once<Vec<&'static PerCpu>> = spin::Once::new();

/// CPUs running (BSP included).
pub fn online() -> u32 {
    ONLINE.load(Ordering::Acquire)
}

/// Whether AP start-up has begun (from then on, other CPUs may need stopping).
pub fn started() -> bool {
    STARTED.load(Ordering::Acquire)
}

/// Per-CPU blocks of every online CPU, BSP first.
pub fn cpus() -> &'static [&'static PerCpu] {
    CPUS.get().map_or(&[], |v| v.as_slice())
}

/// Allocates zeroed descriptor tables for one AP.
fn new_cpu_tables() -> Option<&'static mut CpuTables> {
    let layout = core::alloc::Layout::new::<CpuTables>();
    // SAFETY: the layout is non-zero-sized; an all-zero `CpuTables` is valid
    // (plain integers and byte arrays), and the allocation is leaked, so the
    // 'static reference stays unique.
    unsafe {
        let p = alloc::alloc::alloc_zeroed(layout) as *mut CpuTables;
        p.as_mut()
    }
}

extern "C" fn ap_entry(me: &'static mut PerCpu) -> ! {
    let Some(tables) = new_cpu_tables() else {
        cpu::halt_forever()
    };
    tables.load();
    idt::load();
    let me: &'static PerCpu = {
        percpu::install(me);
        match percpu::current() {
            Some(p) => p,
            None => cpu::halt_forever(),
        }
    };
    apic::init_this_cpu();
    log::info!("online (apic {})", apic::id());
    me.online.store(true, Ordering::Release);
    ONLINE.fetch_add(1, Ordering::AcqRel);
    loop {
        crate::sched::run_this_cpu();
        cpu::sti_hlt_cli();
    }
}

fn write_mailbox<T: Copy>(symbol: *const u8, value: T) {
    let start = core::ptr::addr_of!(trampoline::ap_trampoline_start) as u64;
    let offset = symbol as u64 - start;
    let at = mem::phys_to_virt(TRAMPOLINE_BASE + offset) as *mut T;
    // SAFETY: the trampoline copy at TRAMPOLINE_BASE is in reserved low memory
    // that only this code writes; mailbox fields are naturally aligned.
    unsafe { at.write_volatile(value) };
}

/// Starts every AP in `apic_ids` (the BSP's own ID is skipped) one at a time.
pub fn start_aps(bsp: &'static PerCpu, apic_ids: &[u32]) {
    let mut all: Vec<&'static PerCpu> = Vec::with_capacity(apic_ids.len().max(1));
    all.push(bsp);
    let start = core::ptr::addr_of!(trampoline::ap_trampoline_start) as u64;
    let end = core::ptr::addr_of!(trampoline::ap_trampoline_end) as u64;
    // SAFETY: low memory below 1 MiB is reserved from the frame allocator; the
    // trampoline is smaller than a page and the destination page is mapped.
    unsafe {
        core::ptr::copy_nonoverlapping(
            start as *const u8,
            mem::phys_to_virt(TRAMPOLINE_BASE) as *mut u8,
            (end - start) as usize,
        )
    };
    // SAFETY: IA32_EFER exists on every x86_64 CPU.
    let efer = unsafe { cpu::rdmsr(cpu::msr::IA32_EFER) } as u32;
    write_mailbox(
        core::ptr::addr_of!(trampoline::ap_mailbox_cr3),
        mem::paging::root() as u32,
    );
    write_mailbox(core::ptr::addr_of!(trampoline::ap_mailbox_efer), efer);
    write_mailbox(
        core::ptr::addr_of!(trampoline::ap_mailbox_entry),
        ap_entry as *const () as u64,
    );
    STARTED.store(true, Ordering::Release);

    let page = (TRAMPOLINE_BASE >> 12) as u8;
    let mut index = 1;
    for &id in apic_ids.iter().filter(|&&id| id != bsp.apic_id) {
        let Some(stack) = mem::alloc_frames(AP_STACK_FRAMES, 1) else {
            log::error!("smp: out of memory for the stack of apic {id}");
            break;
        };
        let bottom = mem::phys_to_virt(stack);
        let top = bottom + AP_STACK_FRAMES * mem::frames::FRAME_SIZE;
        let me: &'static mut PerCpu = Box::leak(Box::new(PerCpu::new(index, id, bottom, top)));
        let me_ptr = me as *mut PerCpu;
        write_mailbox(core::ptr::addr_of!(trampoline::ap_mailbox_stack), top);
        write_mailbox(
            core::ptr::addr_of!(trampoline::ap_mailbox_arg),
            me_ptr as u64,
        );

        apic::send_init(id);
        time::spin_for(Duration::from_millis(10));
        apic::send_startup(id, page);
        // SAFETY: `me_ptr` is the leaked PerCpu; only its atomic `online` is read.
        let up = || unsafe { (*me_ptr).online.load(Ordering::Acquire) };
        let deadline = time::now() + Duration::from_millis(200);
        let mut resent = false;
        while !up() && time::now() < deadline {
            if !resent && time::now() + Duration::from_millis(199) > deadline {
                apic::send_startup(id, page);
                resent = true;
            }
            cpu::pause();
        }
        if up() {
            // SAFETY: the AP finished with the mailbox and only touches atomics now.
            all.push(unsafe { &*me_ptr });
            index += 1;
        } else {
            log::error!("smp: cpu with apic {id} did not come up");
        }
    }
    let online = ONLINE.load(Ordering::Acquire);
    log::info!("smp: {online} of {} CPUs online", apic_ids.len().max(1));
    CPUS.call_once(|| all);
}

/// Sends each AP a wake-up IPI and waits for it to be counted: proves IPI
/// delivery end to end. Returns how many answered.
pub fn ipi_check() -> usize {
    let mut answered = 0;
    for p in cpus().iter().skip(1) {
        let before = p.ipis.load(Ordering::Acquire);
        apic::send_ipi(p.apic_id, idt::vector::IPI_WAKE);
        let deadline = time::now() + Duration::from_millis(100);
        while p.ipis.load(Ordering::Acquire) == before && time::now() < deadline {
            cpu::pause();
        }
        if p.ipis.load(Ordering::Acquire) != before {
            answered += 1;
        } else {
            log::error!("smp: cpu{} did not answer an IPI", p.index);
        }
    }
    answered
}

/// Ends the boot CPU's idle (an IPI) when called from another CPU: the
/// host's poll loop runs there, and a guest's device task on an AP wakes it
/// when the guest sends a frame. On the boot CPU itself, nothing to do.
pub fn wake_boot_cpu() {
    if let Some(bsp) = cpus().first()
        && percpu::index() != bsp.index
    {
        apic::send_ipi(bsp.apic_id, idt::vector::IPI_WAKE);
    }
}

/// [`wake_boot_cpu`] as the waker of the switch side of guest VIFs.
#[derive(Debug, Default, Clone, Copy)]
pub struct BootCpuWaker;

impl netstack::switch::Wake for BootCpuWaker {
    fn wake(&self) {
        wake_boot_cpu();
    }
}
