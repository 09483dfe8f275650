//! The BSP's boot sequence, and the services the image's main function uses.

use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use crate::arch::x86_64::boot::{
    PROTO_MULTIBOOT2, PROTO_PVH, boot_stack_bottom, boot_stack_guard, boot_stack_top,
};
use crate::arch::x86_64::gdt::CpuTables;
use crate::arch::x86_64::{apic, cpu, idt, ioapic, pic};
use crate::bootinfo::{self, BootInfo, PhysRead};
use crate::drivers::intx;
use crate::drivers::virtio::{self, VirtioDisk, VirtioNic};
use crate::percpu::PerCpu;
use crate::{acpi, cmdline, mem, pci, percpu, power, smp, time};

/// What the kernel hands to the image's main function.
#[derive(Debug)]
pub struct Boot {
    /// NICs in PCI order: `eth0` is the first.
    pub nics: Vec<VirtioNic>,
    /// Disks in PCI order: `blk0` is the first.
    pub disks: Vec<VirtioDisk>,
    /// Boot modules that are not archives (a bare host config), copied out of loader memory.
    pub modules: Vec<Vec<u8>>,
    /// Files of boot modules that are cpio archives: (path, contents).
    pub files: Vec<(String, Vec<u8>)>,
    /// The kernel command line.
    pub cmdline: String,
}

unsafe extern "Rust" {
    /// Defined by the image binary through [`crate::entry_point!`].
    fn keel_main(boot: Boot) -> !;
}

unsafe extern "C" {
    static __kernel_start: u8;
    static __kernel_end: u8;
}

/// Reads loader memory below 4 GiB through the boot direct map.
struct LowMemory;

impl PhysRead for LowMemory {
    fn read(&self, phys: u64, buf: &mut [u8]) -> bool {
        let Some(end) = phys.checked_add(buf.len() as u64) else {
            return false;
        };
        if end > 1 << 32 {
            return false;
        }
        // SAFETY: [phys, end) is below 4 GiB, hence mapped by the boot tables
        // in the direct map (page 0 included); boot data is plain bytes.
        unsafe {
            core::ptr::copy_nonoverlapping(
                mem::phys_to_virt(phys) as *const u8,
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        true
    }
}

static mut BSP_TABLES: CpuTables = CpuTables::new();
static mut BSP_PERCPU: PerCpu = PerCpu::new(0, 0, 0, 0);

fn fatal(what: core::fmt::Arguments<'_>) -> ! {
    panic!("boot: {what}");
}

#[unsafe(no_mangle)]
extern "C" fn kernel_boot(protocol: u32, info: u32) -> ! {
    time::mark_boot();
    crate::serial::init();
    // SAFETY: runs once on the BSP before any other CPU exists; these statics
    // are never touched again except through the references made here.
    let (tables, bsp) = unsafe {
        (
            &mut *core::ptr::addr_of_mut!(BSP_TABLES),
            &mut *core::ptr::addr_of_mut!(BSP_PERCPU),
        )
    };
    let (stack_bottom, stack_top) = (
        core::ptr::addr_of!(boot_stack_bottom) as u64,
        core::ptr::addr_of!(boot_stack_top) as u64,
    );
    bsp.stack_bottom = stack_bottom;
    bsp.stack_top = stack_top;
    percpu::install(bsp);
    tables.load();
    idt::init();
    idt::load();

    let parsed = match protocol {
        PROTO_PVH => bootinfo::parse_pvh(&LowMemory, u64::from(info)),
        PROTO_MULTIBOOT2 => bootinfo::parse_multiboot2(&LowMemory, u64::from(info)),
        _ => Err(bootinfo::BootInfoError::Malformed("unknown boot protocol")),
    };
    let bi = parsed.unwrap_or_else(|e| fatal(format_args!("unusable boot information: {e:?}")));
    crate::logger::init(cmdline::get(&bi.cmdline, "loglevel"));
    log::info!(
        "keel {} ({}) booting via {:?}",
        env!("CARGO_PKG_VERSION"),
        option_env!("KEEL_BUILD_ID").unwrap_or("dev"),
        bi.protocol
    );
    log::info!("cmdline: {}", bi.cmdline);
    let mut brand = [0u8; 48];
    log::info!(
        "cpu: {}; svm={} vmx={} x2apic={}",
        cpu::brand_string(&mut brand),
        cpu::has_svm(),
        cpu::has_vmx(),
        cpu::has_x2apic()
    );

    let modules = init_memory(&bi);
    trial_watchdog(&bi.cmdline);

    let platform =
        acpi::discover(bi.rsdp).unwrap_or_else(|e| fatal(format_args!("ACPI tables: {e:?}")));
    let hz = time::calibrate_tsc(
        platform.pm_timer.map(|t| t.0),
        platform.pm_timer.is_some_and(|t| t.1),
    )
    .unwrap_or_else(|e| fatal(format_args!("cannot calibrate the clock: {e:?}")));
    time::read_cmos_clock();
    log::info!(
        "time: TSC at {} MHz, wall clock {} s since the epoch",
        hz / 1_000_000,
        time::wall_clock()
    );

    if platform.has_8259 {
        pic::disable();
    }
    let x2 = apic::init_bsp(mem::phys_to_virt);
    // SAFETY: the BSP block was installed above and is only read from here on.
    let bsp: &'static PerCpu = unsafe { &*core::ptr::addr_of!(BSP_PERCPU) };
    // The APIC ID is only known now; the block is otherwise immutable.
    // SAFETY: no other CPU runs yet and nothing holds a reference to `apic_id`.
    unsafe { (*core::ptr::addr_of_mut!(BSP_PERCPU)).apic_id = apic::id() };
    let per_ms = time::calibrate_apic_timer();
    log::info!(
        "apic: {} mode, id {}, timer {} ticks/ms",
        if x2 { "x2APIC" } else { "xAPIC" },
        bsp.apic_id,
        per_ms
    );
    for &(phys, gsi_base) in &platform.io_apics {
        let a = ioapic::add(mem::paging::map_mmio(phys, 0x20), gsi_base);
        log::info!(
            "ioapic: at {phys:#x}, GSIs {}..{}, all masked",
            a.gsi_base,
            a.gsi_base + a.inputs
        );
    }

    smp::start_aps(bsp, &platform.cpus);
    crate::sched::init();
    let answered = smp::ipi_check();
    log::info!("smp: IPI round trip to {answered} CPUs ok");

    pci::init(platform.ecam);
    let mut root = virtio_drivers::transport::pci::bus::PciRoot::new(pci::cam());
    let last_bus = platform.ecam.map_or(0, |e| e.2);
    let functions = pci::enumerate(&root, last_bus);
    let (nics, disks) = virtio::probe(&mut root, &functions);
    intx::init(idt::vector::PCI_INTX);

    power::set_platform(platform);
    if let Some(test) = cmdline::get(&bi.cmdline, "keel.selftest") {
        selftest(test);
    }

    let (archives, modules): (Vec<_>, Vec<_>) = modules
        .into_iter()
        .partition(|m| crate::cpio::is_archive(m));
    let mut files = Vec::new();
    for a in &archives {
        match crate::cpio::files(a) {
            Ok(f) => files.extend(f.into_iter().filter_map(|(name, body)| {
                let copy = heap_copy(body);
                if copy.is_none() {
                    log::error!(
                        "boot file {name} ({} bytes) does not fit in the heap ({} bytes free): skipped",
                        body.len(),
                        mem::heap_free_bytes()
                    );
                }
                Some((name, copy?))
            })),
            Err(e) => log::error!(
                "boot module archive of {} bytes is damaged, ignored: {e:?}",
                a.len()
            ),
        }
    }
    // The files are copied out: the archives' room goes back to the heap.
    drop(archives);
    for (name, data) in &files {
        log::info!("boot file {name} ({} bytes)", data.len());
    }
    let boot = Boot {
        nics,
        disks,
        modules,
        files,
        cmdline: String::from(bi.cmdline.as_str()),
    };
    // SAFETY: `keel_main` is defined by the image through `entry_point!`, which
    // fixes its signature to `extern "Rust" fn(Boot) -> !`.
    unsafe { keel_main(boot) }
}

/// Frame allocator, direct map and heap; then copies the boot modules out of
/// loader memory (whose frames stay reserved).
fn init_memory(bi: &BootInfo) -> Vec<Vec<u8>> {
    let (k_start, k_end) = (
        core::ptr::addr_of!(__kernel_start) as u64,
        core::ptr::addr_of!(__kernel_end) as u64,
    );
    let mut reserved: heapless::Vec<(u64, u64), 16> = heapless::Vec::new();
    let _ = reserved.push((k_start, k_end - k_start));
    let _ = reserved.push(bi.info_range);
    for m in &bi.modules {
        let _ = reserved.push((m.start, m.len));
    }
    if let Err(e) = mem::init(bi, &reserved) {
        fatal(format_args!("memory: {e:?}"));
    }
    let guard = core::ptr::addr_of!(boot_stack_guard) as u64;
    if !mem::paging::unmap_4k(guard) {
        log::warn!("mem: the boot stack has no guard page");
    }
    bi.modules
        .iter()
        .filter_map(|m| {
            let Some(mut v) = usize::try_from(m.len).ok().and_then(heap_zeroed) else {
                log::error!(
                    "boot module at {:#x} ({} bytes) does not fit in the heap ({} bytes free): skipped",
                    m.start,
                    m.len,
                    mem::heap_free_bytes()
                );
                return None;
            };
            if LowMemory.read(m.start, &mut v) {
                Some(v)
            } else {
                log::warn!(
                    "boot module at {:#x} ({} bytes) is unreadable, skipped",
                    m.start,
                    m.len
                );
                None
            }
        })
        .collect()
}

/// `len` zero bytes on the heap, or `None` when they do not fit (boot data
/// is sized by whoever built the boot media: too big is an error to report,
/// not a reason to panic).
fn heap_zeroed(len: usize) -> Option<Vec<u8>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).ok()?;
    v.resize(len, 0);
    Some(v)
}

/// A heap copy of `bytes`, or `None` when it does not fit.
fn heap_copy(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut v = Vec::new();
    v.try_reserve_exact(bytes.len()).ok()?;
    v.extend_from_slice(bytes);
    Some(v)
}

/// How long an upgrade's trial boot has, from here, to become healthy and
/// commit (`keel.trial_deadline=SECONDS` overrides it): a slow TCG boot to a
/// healthy appliance takes well under a minute even on a loaded machine.
const TRIAL_DEADLINE: Duration = Duration::from_secs(240);

/// On a trial boot (`keel.slot_state=trial`, set by GRUB), arms the hardware
/// watchdog before anything else can hang; the appliance disarms it when the
/// trial commits. Any boot reports a reset the watchdog caused.
fn trial_watchdog(cmdline: &str) {
    use crate::drivers::watchdog;
    if watchdog::last_reset_was_watchdog() == Some(true) {
        log::warn!("watchdog: the previous boot was reset by the watchdog");
    }
    if cmdline::get(cmdline, "keel.slot_state") != Some("trial") {
        return;
    }
    let deadline = match cmdline::get(cmdline, "keel.trial_deadline") {
        None => TRIAL_DEADLINE,
        Some(text) => match text.parse::<u64>() {
            Ok(seconds) => Duration::from_secs(seconds),
            Err(_) => {
                log::warn!(
                    "watchdog: keel.trial_deadline={text:?} is not a number of seconds; using {} s",
                    TRIAL_DEADLINE.as_secs()
                );
                TRIAL_DEADLINE
            }
        },
    };
    match watchdog::arm(deadline) {
        Ok(real) => log::info!(
            "watchdog: armed ({}.{} s) for the trial boot; the machine resets unless the trial commits by then",
            real.as_secs(),
            real.subsec_millis() / 100
        ),
        Err(e) => log::error!(
            "watchdog: not armed for the trial boot: {e}; a hang of this trial will not fall back by itself"
        ),
    }
}

/// Boot-time self-tests requested with `keel.selftest=` (used by the image tests).
/// Recurses until the stack runs out (the `stack-overflow` self-test).
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    let pad = [depth; 64];
    // Keeps `pad` on the stack and the call non-tail.
    core::hint::black_box(&pad);
    recurse(depth + 1).wrapping_add(core::hint::black_box(pad[0]))
}

fn selftest(which: &str) {
    log::info!("selftest: {which}");
    match which {
        "stack-overflow" => {
            let n = recurse(0);
            log::error!("selftest: the stack never ran out ({n})");
        }
        "panic" => panic!("selftest: deliberate panic requested on the kernel command line"),
        "pagefault" => {
            // SAFETY: deliberately reads an unmapped address (page 0 is never
            // mapped) to exercise the page-fault report; the handler does not return.
            unsafe {
                core::arch::asm!("mov rax, qword ptr [0x8]", out("rax") _, options(nostack, readonly))
            };
        }
        "poweroff" => power::poweroff(),
        "reboot" => power::reboot(),
        "hang" => {
            log::info!("selftest: hanging with interrupts off");
            cpu::cli();
            loop {
                core::hint::spin_loop();
            }
        }
        other => log::warn!("selftest: unknown test {other:?}"),
    }
}

/// Time since boot.
pub fn now() -> Duration {
    time::now()
}

/// CPUs running.
pub fn cpus_online() -> u32 {
    smp::online()
}

/// Memory figures.
pub fn memory() -> mem::MemoryStats {
    mem::stats()
}

/// Random bytes.
pub fn fill_random(buf: &mut [u8]) {
    crate::entropy::fill(buf)
}

/// Longest the BSP sleeps while NICs must be polled (no PCI interrupt seen
/// yet): this bounds how late a received frame is noticed.
const MAX_IDLE: Duration = Duration::from_millis(5);
/// The longest sleep once device interrupts are known to work.
const MAX_IDLE_WITH_INTERRUPTS: Duration = Duration::from_millis(500);

/// Halts the calling CPU until an interrupt or `deadline` (time since boot).
pub fn idle(deadline: Option<Duration>) {
    let now = time::now();
    // Once a PCI interrupt has proven the NICs wake us, sleep until the
    // deadline; until then, look at them every few milliseconds.
    let longest = if intx::proven() {
        MAX_IDLE_WITH_INTERRUPTS
    } else {
        MAX_IDLE
    };
    let until = deadline.unwrap_or(now + longest).min(now + longest);
    if until <= now {
        return;
    }
    intx::arm();
    time::arm_timer(until);
    cpu::sti_hlt_cli();
    apic::timer_stop();
    intx::acknowledge();
}
