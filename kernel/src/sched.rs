//! The vCPU scheduler: each application processor runs the tasks placed on
//! it (vCPUs) in round robin with fixed time slices; the boot CPU serves I/O
//! and never runs a task. A task that blocks (a halted vCPU) costs no host
//! CPU: when nothing on a CPU can run, it sleeps in HLT until a wake-up IPI
//! or the earliest deadline among its blocked tasks.
//!
//! Tasks are pinned to the CPU they are placed on (their VMCB and the host
//! save area stay on one CPU); placement picks the least-loaded CPU, so a
//! VM's vCPUs spread over CPUs when there are enough and share them fairly
//! when there are not. A task's x87/SSE/AVX state is saved and restored only
//! when its CPU switches to another task.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use core::time::Duration;

use spin::Mutex;

use crate::arch::x86_64::cpu::{self, ExtendedState};
use crate::arch::x86_64::{apic, idt};
use crate::{percpu, smp, time};

/// The longest a task runs while another task on its CPU is ready.
pub const SLICE: Duration = Duration::from_millis(10);
const NO_CPU: u32 = u32::MAX;

/// What a task's turn ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Its slice is over (or another task was woken): it stays ready.
    Yield,
    /// It waits for `Waker::wake` or until the deadline, whichever is first.
    Block(Option<Duration>),
    /// It is finished and leaves the CPU for good.
    Done,
}

/// Work that runs in turns on one host CPU.
pub trait Task: Send + Sync {
    /// Runs until `slice_end` at most, on the task's own CPU (always the
    /// same one). Should return early when `should_yield()` says so.
    fn run(&self, slice_end: Duration) -> Step;
}

#[derive(Debug, Default)]
struct WakeState {
    woken: AtomicBool,
    /// Index of the CPU the task is placed on.
    cpu: AtomicU32,
}

/// Wakes one task; shared by whoever needs to (other vCPUs, devices, the VM).
#[derive(Debug, Clone)]
pub struct Waker(Arc<WakeState>);

impl Default for Waker {
    fn default() -> Self {
        Waker(Arc::new(WakeState {
            woken: AtomicBool::new(false),
            cpu: AtomicU32::new(NO_CPU),
        }))
    }
}

impl Waker {
    /// Makes the task ready (if blocked) and gets its CPU to look: an IPI
    /// forces a running guest there to exit, or ends that CPU's sleep.
    pub fn wake(&self) {
        self.0.woken.store(true, Ordering::Release);
        let cpu = self.0.cpu.load(Ordering::Acquire);
        let Some(q) = queues().get(cpu as usize) else {
            return;
        };
        q.resched.store(true, Ordering::Release);
        if cpu != percpu::index() {
            apic::send_ipi(q.apic_id, idt::vector::IPI_WAKE);
        }
    }

    /// The CPU index the task runs on, once placed.
    pub fn cpu(&self) -> Option<u32> {
        Some(self.0.cpu.load(Ordering::Acquire)).filter(|&c| c != NO_CPU)
    }
}

struct Entry {
    task: Arc<dyn Task>,
    waker: Waker,
    /// Ready to run (not blocked).
    ready: bool,
    deadline: Option<Duration>,
    extended: ExtendedState,
}

/// One CPU's tasks.
struct Queue {
    apic_id: u32,
    entries: Mutex<Vec<Entry>>,
    /// Set when a task here is woken: the running one should yield.
    resched: AtomicBool,
    /// Tasks placed here (for placement).
    load: AtomicU32,
    /// Nanoseconds spent running tasks / sleeping with tasks placed.
    busy_ns: AtomicU64,
    idle_ns: AtomicU64,
}

static QUEUES: spin::Once<Vec<Queue>> = spin::Once::new();

fn queues() -> &'static [Queue] {
    QUEUES.get().map_or(&[], |v| v.as_slice())
}

/// Creates one queue per online CPU; call once all CPUs are up.
pub fn init() {
    QUEUES.call_once(|| {
        smp::cpus()
            .iter()
            .map(|p| Queue {
                apic_id: p.apic_id,
                entries: Mutex::new(Vec::new()),
                resched: AtomicBool::new(false),
                load: AtomicU32::new(0),
                busy_ns: AtomicU64::new(0),
                idle_ns: AtomicU64::new(0),
            })
            .collect()
    });
}

/// CPUs that can run tasks (every online CPU but the boot CPU).
pub fn task_cpus() -> usize {
    queues().len().saturating_sub(1)
}

/// Places `task` on the least-loaded application processor and wakes it.
/// Returns the CPU index, or `None` when there is no application processor.
pub fn spawn(task: Arc<dyn Task>, waker: Waker) -> Option<u32> {
    let qs = queues();
    let (index, q) = qs
        .iter()
        .enumerate()
        .skip(1)
        .min_by_key(|(_, q)| q.load.load(Ordering::Acquire))?;
    q.load.fetch_add(1, Ordering::AcqRel);
    waker.0.cpu.store(index as u32, Ordering::Release);
    q.entries.lock().push(Entry {
        task,
        waker: waker.clone(),
        ready: true,
        deadline: None,
        extended: ExtendedState::default(),
    });
    waker.wake();
    Some(index as u32)
}

/// Whether the running task should end its turn early (a task on this CPU
/// was woken). Clears the request.
pub fn should_yield() -> bool {
    queues()
        .get(percpu::index() as usize)
        .is_some_and(|q| q.resched.swap(false, Ordering::AcqRel))
}

/// Time this CPU spent running tasks and sleeping while it had tasks.
pub fn cpu_times(cpu: u32) -> Option<(Duration, Duration)> {
    queues().get(cpu as usize).map(|q| {
        (
            Duration::from_nanos(q.busy_ns.load(Ordering::Relaxed)),
            Duration::from_nanos(q.idle_ns.load(Ordering::Relaxed)),
        )
    })
}

/// Runs this CPU's tasks until none is left; called from the idle loop of
/// every application processor. Only this CPU removes its entries, so
/// indices into its queue stay valid between locks (others only push).
pub fn run_this_cpu() {
    let me = percpu::index() as usize;
    let Some(q) = queues().get(me) else { return };
    let mut next = 0usize;
    // Index of the entry whose extended state is live in the registers.
    let mut live: Option<usize> = None;
    loop {
        let now = time::now();
        let picked = {
            let mut entries = q.entries.lock();
            if entries.is_empty() {
                return;
            }
            let n = entries.len();
            // This pick accounts for every wake-up so far: a request to
            // yield left over from one that is already ready must not cut
            // the next task's turn short (it would never make progress
            // while another task keeps being woken). Cleared before the
            // scan, so a wake-up the scan misses sets it again.
            q.resched.store(false, Ordering::SeqCst);
            for e in entries.iter_mut() {
                if e.waker.0.woken.load(Ordering::Acquire) || e.deadline.is_some_and(|d| now >= d) {
                    e.ready = true;
                }
            }
            let pick = (0..n).map(|k| (next + k) % n).find(|&i| entries[i].ready);
            match pick {
                Some(i) => {
                    let e = &mut entries[i];
                    e.waker.0.woken.store(false, Ordering::Release);
                    if live != Some(i) {
                        if let Some(old) = live.and_then(|l| entries.get_mut(l)) {
                            old.extended.save();
                        }
                        entries[i].extended.restore();
                        live = Some(i);
                    }
                    Some((i, Arc::clone(&entries[i].task)))
                }
                None => {
                    let wake_at = entries.iter().filter_map(|e| e.deadline).min();
                    drop(entries);
                    q.resched.store(false, Ordering::Release);
                    let before = time::now();
                    // A wake-up that raced with the scan above left its IPI
                    // pending, so this HLT returns at once.
                    time::arm_timer(wake_at.unwrap_or(before + Duration::from_secs(1)));
                    cpu::sti_hlt_cli();
                    apic::timer_stop();
                    q.idle_ns.fetch_add(
                        time::now().saturating_sub(before).as_nanos() as u64,
                        Ordering::Relaxed,
                    );
                    None
                }
            }
        };
        let Some((i, task)) = picked else {
            continue;
        };
        let start = time::now();
        let slice_end = start + SLICE;
        let step = task.run(slice_end);
        q.busy_ns.fetch_add(
            time::now().saturating_sub(start).as_nanos() as u64,
            Ordering::Relaxed,
        );
        let mut entries = q.entries.lock();
        match step {
            Step::Yield => next = i + 1,
            Step::Block(deadline) => {
                let e = &mut entries[i];
                e.ready = false;
                e.deadline = deadline;
                next = i + 1;
            }
            Step::Done => {
                entries.remove(i);
                q.load.fetch_sub(1, Ordering::AcqRel);
                live = match live {
                    Some(l) if l == i => None,
                    Some(l) if l > i => Some(l - 1),
                    other => other,
                };
                next = i;
            }
        }
    }
}

/// Halts the calling CPU inside a task's turn until an interrupt (a wake-up
/// IPI, a device) or `deadline` (time since boot), whichever is first: for
/// a task on an application processor that waits for the boot CPU's work
/// (a disk request served by the poll loop) without spinning. The next
/// guest entry on this CPU arms its own timer.
pub fn halt_until(deadline: Duration) {
    if time::now() >= deadline {
        return;
    }
    time::arm_timer(deadline);
    cpu::sti_hlt_cli();
    apic::timer_stop();
}

/// Wakes the boot CPU if it sleeps in [`crate::idle`], so its poll loop
/// runs now (work was queued for it). Nothing to do on the boot CPU itself.
pub fn wake_boot_cpu() {
    if let Some(bsp) = smp::cpus().first()
        && bsp.index != percpu::index()
    {
        apic::send_ipi(bsp.apic_id, idt::vector::IPI_WAKE);
    }
}
