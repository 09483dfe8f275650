//! The devices a VM shares between its vCPUs: the legacy PC devices on the
//! port bus, the I/O APIC, and one local APIC per vCPU. All of it sits behind
//! the VM's lock; vCPUs that must notice a change (an IPI, a routed IRQ) are
//! collected in `kicks` and woken once the lock is released.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::time::Duration;

use super::VmHandle;
use crate::hv::acpi;
use crate::hv::devices::lapic::{MSR_TSC_DEADLINE, X2APIC_MSR_FIRST, X2APIC_MSR_LAST};
use crate::hv::devices::pm::{Pm, SleepRequest};
use crate::hv::devices::uart::{ConsoleSink, Uart};
use crate::hv::devices::{ioapic, lapic, pic, pit, rtc};
use crate::hv::memory::GuestMemory;
use crate::hv::pci::{MsiMessage, MsiQueue, PciBus};
use crate::hv::virtio::blk::Blk;
use crate::hv::virtio::net::Net;
use crate::hv::virtio::pci::VirtioPci;
use crate::hv::virtio::rng::Rng;
use crate::time;

const COM1: u16 = 0x3f8;
const MSR_APIC_BASE: u32 = 0x1b;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;
const APIC_BASE_BSP: u64 = 1 << 8;
const RESET_CONTROL: u16 = 0xcf9;
const KBD_COMMAND: u16 = 0x64;
const KBD_PULSE_RESET: u8 = 0xfe;
const IRQ_TIMER: u8 = 0;
const IRQ_COM1: u8 = 4;

/// Guest console: whole lines go to the host log with the VM's name; every
/// byte goes to the VM's ring buffer.
pub struct ConsoleLog {
    pub vm: Arc<VmHandle>,
    pub line: heapless::Vec<u8, 160>,
}

impl ConsoleSink for ConsoleLog {
    fn put(&mut self, byte: u8) {
        self.vm.remember_console(byte);
        if byte == b'\n' || self.line.push(byte).is_err() {
            let text = alloc::string::String::from_utf8_lossy(&self.line);
            log::info!("vm {}: {}", self.vm.name, text.trim_end());
            self.line.clear();
        }
    }
}

/// Why the guest asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopRequest {
    /// ACPI S5.
    PowerOff,
    /// Reset through port 0xcf9 or the keyboard controller (0x64).
    Reset,
}

/// What a vCPU is waiting for before it first runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Startup {
    /// An application processor after reset: waits for INIT, then a SIPI.
    WaitForInit,
    WaitForSipi,
    /// Start in real mode at this SIPI vector.
    Start(u8),
    Running,
}

pub struct Board {
    pub uart: Uart<ConsoleLog>,
    pub pic: pic::Pic,
    pub pit: pit::Pit,
    pub rtc: rtc::Rtc,
    pub pm: Pm,
    pub ioapic: ioapic::IoApic,
    pub lapics: Vec<lapic::Lapic>,
    pub startup: Vec<Startup>,
    /// The PCI bus: the host bridge and the VM's virtio devices.
    pub pci: PciBus,
    uart_line: bool,
    /// AMD's northbridge configuration MSR, which Linux reads and writes
    /// without checking for #GP; kept per VM, it configures nothing.
    pub nb_cfg: u64,
    pub unclaimed_ports: u64,
    /// Set when the guest asked to power off or reset.
    pub stop: Option<StopRequest>,
    /// vCPUs to wake after the lock is dropped (bit per vCPU).
    pub kicks: u64,
    sci_asserted: bool,
}

impl Board {
    pub fn new(
        vm: Arc<VmHandle>,
        vcpus: usize,
        disks: &[super::GuestDisk],
        nics: &[super::GuestNic],
        io_waker: Arc<super::DeviceWaker>,
    ) -> Board {
        let mut pci = PciBus::default();
        for (i, d) in disks.iter().enumerate() {
            let blk = Blk::new(d.backend.clone(), d.read_only, &d.name)
                .with_stats(Arc::clone(&d.stats))
                .with_notify(Arc::clone(&io_waker) as Arc<dyn storage::channel::Notify>);
            let placed = VirtioPci::new(blk)
                .map(|f| f.with_label(alloc::format!("vm {}: disk {}", vm.name, d.name)))
                .ok_or(crate::hv::pci::PciError::BusFull)
                .and_then(|f| pci.add(alloc::boxed::Box::new(f)));
            match placed {
                Ok(slot) => log::info!(
                    "vm {}: disk {} ({} bytes{}) is virtio-blk at 00:{slot:02x}.0",
                    vm.name,
                    d.name,
                    d.bytes(),
                    if d.read_only { ", read-only" } else { "" }
                ),
                Err(e) => log::error!("vm {}: disk {i} ({}) not attached: {e}", vm.name, d.name),
            }
        }
        for (i, n) in nics.iter().enumerate() {
            let net = Net::new(n.mac, n.mtu, n.link.clone());
            let placed = VirtioPci::new(net)
                .map(|f| f.with_label(alloc::format!("vm {}: nic {i}", vm.name)))
                .ok_or(crate::hv::pci::PciError::BusFull)
                .and_then(|f| pci.add(alloc::boxed::Box::new(f)));
            let m = n.mac;
            match placed {
                Ok(slot) => log::info!(
                    "vm {}: nic {i} ({:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, MTU {}) is virtio-net at 00:{slot:02x}.0",
                    vm.name,
                    m[0],
                    m[1],
                    m[2],
                    m[3],
                    m[4],
                    m[5],
                    n.mtu
                ),
                Err(e) => log::error!("vm {}: nic {i} not attached: {e}", vm.name),
            }
        }
        // Every guest gets a virtio-rng fed from the host's entropy source.
        let rng = Rng::new(alloc::boxed::Box::new(crate::entropy::fill));
        let placed = VirtioPci::new(rng)
            .map(|f| f.with_label(alloc::format!("vm {}: virtio-rng", vm.name)))
            .ok_or(crate::hv::pci::PciError::BusFull)
            .and_then(|f| pci.add(alloc::boxed::Box::new(f)));
        if let Err(e) = placed {
            log::error!("vm {}: virtio-rng not attached: {e}", vm.name);
        }
        Board {
            pci,
            uart: Uart::new(ConsoleLog {
                vm,
                line: heapless::Vec::new(),
            }),
            pic: pic::Pic::default(),
            pit: pit::Pit::default(),
            rtc: rtc::Rtc::default(),
            pm: Pm::default(),
            ioapic: ioapic::IoApic::default(),
            lapics: (0..vcpus).map(|i| lapic::Lapic::new(i as u8)).collect(),
            startup: (0..vcpus)
                .map(|i| {
                    if i == 0 {
                        Startup::Running
                    } else {
                        Startup::WaitForInit
                    }
                })
                .collect(),
            uart_line: false,
            nb_cfg: 0,
            unclaimed_ports: 0,
            stop: None,
            kicks: 0,
            sci_asserted: false,
        }
    }

    fn kick(&mut self, vcpu: usize) {
        self.kicks |= 1 << vcpu;
    }

    /// A port access by vCPU `me`; returns the value read (for reads).
    pub fn io(&mut self, port: u16, size: u8, write: bool, value: u64, now: Duration) -> u64 {
        let all_ones = if size >= 4 {
            u64::from(u32::MAX)
        } else {
            (1u64 << (size * 8)) - 1
        };
        let byte = value as u8;
        let mut msis = MsiQueue::default();
        if let Some(read) = self
            .pci
            .io(port, size, write.then_some(value as u32), &mut msis)
        {
            self.deliver_msis(msis);
            return u64::from(read);
        }
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
                self.pm.write_event(port - acpi::PM1A_EVT, value as u16);
                self.update_sci();
            }
            (acpi::PM1A_EVT..=0x603, 2) => {
                return u64::from(self.pm.read_event(port - acpi::PM1A_EVT));
            }
            (acpi::PM1A_CNT, 2) if write => match self.pm.write_control(value as u16) {
                Some(SleepRequest::Sleep(acpi::S5_SLP_TYP)) => {
                    self.stop = Some(StopRequest::PowerOff)
                }
                Some(SleepRequest::Sleep(other)) => {
                    log::debug!("guest asked for sleep type {other}, which is not supported");
                }
                None => {}
            },
            (acpi::PM1A_CNT, 2) => return u64::from(self.pm.read_control()),
            // Reset control: bit 2 resets the machine.
            (RESET_CONTROL, 1) if write && byte & 0x04 != 0 => self.stop = Some(StopRequest::Reset),
            // The keyboard controller's pulse-reset command.
            (KBD_COMMAND, 1) if write && byte == KBD_PULSE_RESET => {
                self.stop = Some(StopRequest::Reset)
            }
            _ => {
                // No device: writes vanish and reads float high, as on a real bus.
                self.unclaimed_ports += 1;
                return all_ones;
            }
        }
        0
    }

    /// Turns device state into interrupt requests for vCPU `me`; returns its
    /// next timer deadline. vCPU 0 also polls the shared devices.
    pub fn update_interrupts(&mut self, me: usize, now: Duration) -> Option<Duration> {
        let mut next = None;
        if me == 0 {
            let (ticks, pit_next) = self.pit.poll_irq0(now);
            if ticks > 0 {
                self.raise_isa(IRQ_TIMER);
            }
            let line = self.uart.interrupt_line();
            if line && !self.uart_line {
                self.raise_isa(IRQ_COM1);
            }
            self.uart_line = line;
            next = pit_next;
        }
        let lapic_next = self.lapics.get_mut(me).and_then(|l| l.poll_timer(now));
        match (next, lapic_next) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// An edge on ISA line `irq`: to the 8259 (wired to vCPU 0) and, through
    /// the MADT's overrides (IRQ 0 is GSI 2), to the I/O APIC.
    /// The host presses the guest's ACPI power button.
    pub fn press_power_button(&mut self) {
        self.pm.press_power_button();
        self.update_sci();
    }

    /// Raises the SCI when an enabled ACPI event becomes pending.
    fn update_sci(&mut self) {
        let level = self.pm.sci();
        if level && !self.sci_asserted {
            self.raise_isa(acpi::SCI_IRQ as u8);
        }
        self.sci_asserted = level;
    }

    fn raise_isa(&mut self, irq: u8) {
        self.pic.raise(irq);
        let gsi = if irq == IRQ_TIMER { 2 } else { u32::from(irq) };
        let Some(route) = self.ioapic.raise(gsi) else {
            return;
        };
        // Fixed delivery to a logical set goes to its first member (as lowest priority would).
        let target = self
            .lapics
            .iter()
            .position(|l| l.matches(u32::from(route.destination), route.logical));
        if let Some(t) = target {
            self.lapics[t].accept(route.vector);
            self.kick(t);
        }
    }

    /// The interrupt vCPU `me` would take now: its APIC's, else (vCPU 0) the
    /// 8259's through the virtual wire.
    pub fn pending_interrupt(&mut self, me: usize) -> Option<u8> {
        let l = self.lapics.get(me)?;
        l.pending().or_else(|| {
            if me == 0 && l.accepts_pic() {
                self.pic.pending_vector()
            } else {
                None
            }
        })
    }

    pub fn acknowledge_interrupt(&mut self, me: usize) -> Option<u8> {
        let l = self.lapics.get_mut(me)?;
        if let Some(v) = l.pending() {
            l.acknowledge(v);
            return Some(v);
        }
        if me == 0 && l.accepts_pic() {
            self.pic.acknowledge()
        } else {
            None
        }
    }

    /// Whether `gpa` is device memory: the APICs and the PCI windows.
    pub fn is_device(gpa: u64) -> bool {
        (lapic::BASE..lapic::BASE + lapic::SIZE).contains(&gpa)
            || (ioapic::BASE..ioapic::BASE + ioapic::SIZE).contains(&gpa)
            || PciBus::decodes(gpa)
    }

    /// Sends MSIs to the local APICs: fixed or lowest-priority delivery to
    /// the destination APIC ID (physical) or set (logical; its first member).
    fn deliver_msis(&mut self, msis: MsiQueue) {
        for m in msis.0 {
            self.deliver_msi(m);
        }
    }

    fn deliver_msi(&mut self, m: MsiMessage) {
        if m.delivery_mode() > 1 {
            log::debug!("MSI delivery mode {} is not emulated", m.delivery_mode());
            return;
        }
        let target = self
            .lapics
            .iter()
            .position(|l| l.matches(m.destination(), m.logical()));
        if let Some(t) = target {
            self.lapics[t].accept(m.vector());
            self.kick(t);
        }
    }

    /// Runs the device work that notifies queued (virtqueue requests) and
    /// delivers the completions' interrupts.
    pub fn service_pci(&mut self, mem: &mut GuestMemory<'_>) {
        let mut msis = MsiQueue::default();
        self.pci.service(mem, &mut msis);
        self.deliver_msis(msis);
    }

    /// A read of `size` bytes of device memory by vCPU `me`; `None` if no device is there.
    pub fn mmio_read(&mut self, me: usize, gpa: u64, size: u8, now: Duration) -> Option<u64> {
        if (lapic::BASE..lapic::BASE + lapic::SIZE).contains(&gpa) && size == 4 {
            return Some(u64::from(
                self.lapics.get(me)?.read((gpa - lapic::BASE) as u16, now),
            ));
        }
        if (ioapic::BASE..ioapic::BASE + ioapic::SIZE).contains(&gpa) && size == 4 {
            return Some(u64::from(self.ioapic.read(gpa - ioapic::BASE)));
        }
        if PciBus::decodes(gpa) {
            return Some(self.pci.mmio_read(gpa, size));
        }
        None
    }

    /// A write to device memory by vCPU `me`; false if no device is there.
    pub fn mmio_write(&mut self, me: usize, gpa: u64, size: u8, value: u64, now: Duration) -> bool {
        if (lapic::BASE..lapic::BASE + lapic::SIZE).contains(&gpa) && size == 4 {
            let Some(l) = self.lapics.get_mut(me) else {
                return false;
            };
            if let Some(ipi) = l.write((gpa - lapic::BASE) as u16, value as u32, now) {
                self.deliver_ipi(me, ipi);
            }
            return true;
        }
        if (ioapic::BASE..ioapic::BASE + ioapic::SIZE).contains(&gpa) && size == 4 {
            self.ioapic.write(gpa - ioapic::BASE, value as u32);
            return true;
        }
        if PciBus::decodes(gpa) {
            let mut msis = MsiQueue::default();
            self.pci.mmio_write(gpa, size, value, &mut msis);
            self.deliver_msis(msis);
            return true;
        }
        false
    }

    /// RDMSR of an MSR the local APIC of vCPU `me` answers: IA32_APIC_BASE,
    /// the x2APIC registers, IA32_TSC_DEADLINE. `None`: not an APIC MSR;
    /// `Some(Err)`: the guest gets #GP.
    pub fn apic_msr_read(
        &mut self,
        me: usize,
        msr: u32,
        now: Duration,
    ) -> Option<Result<u64, lapic::Refused>> {
        let l = self.lapics.get(me)?;
        Some(match msr {
            MSR_APIC_BASE => Ok(apic_base(me, l.x2apic)),
            MSR_TSC_DEADLINE => Ok(l.read_tsc_deadline()),
            X2APIC_MSR_FIRST..=X2APIC_MSR_LAST => l.msr_read(msr, now),
            _ => return None,
        })
    }

    /// WRMSR counterpart of `apic_msr_read`; IPIs are routed and the target
    /// vCPUs collected in `kicks`.
    pub fn apic_msr_write(
        &mut self,
        me: usize,
        msr: u32,
        value: u64,
        clock: lapic::TscClock,
    ) -> Option<Result<(), lapic::Refused>> {
        let l = self.lapics.get_mut(me)?;
        Some(match msr {
            // The APIC cannot move or be disabled; it can go from xAPIC to
            // x2APIC mode (and not back without a reset).
            MSR_APIC_BASE if value == apic_base(me, l.x2apic) => Ok(()),
            MSR_APIC_BASE if value == apic_base(me, true) => {
                l.enter_x2apic();
                Ok(())
            }
            MSR_APIC_BASE => Err(lapic::Refused),
            MSR_TSC_DEADLINE => {
                l.write_tsc_deadline(value, clock);
                Ok(())
            }
            X2APIC_MSR_FIRST..=X2APIC_MSR_LAST => match l.msr_write(msr, value, clock.now) {
                Ok(Some(ipi)) => {
                    self.deliver_ipi(me, ipi);
                    Ok(())
                }
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            },
            _ => return None,
        })
    }

    /// Routes an IPI sent by vCPU `from`.
    fn deliver_ipi(&mut self, from: usize, ipi: lapic::Ipi) {
        // A bit per target vCPU (at most 64, the MADT's limit): no allocation per IPI.
        let targets = self.lapics.iter().enumerate().fold(0u64, |set, (i, l)| {
            let hit = match ipi.shorthand() {
                1 => i == from,
                2 => true,
                3 => i != from,
                _ => l.matches(ipi.destination, ipi.logical()),
            };
            set | (u64::from(hit) << i)
        });
        const LEVEL_ASSERT: u32 = 1 << 14;
        for t in (0..self.lapics.len()).filter(|t| targets & (1 << t) != 0) {
            match ipi.delivery_mode() {
                0 | 1 => self.lapics[t].accept(ipi.vector()),
                // INIT (the de-assert variant only synchronises arbitration IDs).
                5 if ipi.command & LEVEL_ASSERT != 0 && t != 0 => {
                    self.startup[t] = Startup::WaitForSipi
                }
                5 => {}
                6 => {
                    if self.startup[t] == Startup::WaitForSipi {
                        self.startup[t] = Startup::Start(ipi.vector());
                    }
                }
                mode => log::debug!("IPI delivery mode {mode} to vCPU {t} is not emulated"),
            }
            self.kick(t);
        }
    }
}

/// IA32_APIC_BASE of vCPU `me`: at the architectural address, enabled,
/// marked bootstrap processor on vCPU 0, with EXTD in x2APIC mode.
fn apic_base(me: usize, x2apic: bool) -> u64 {
    lapic::BASE
        | APIC_BASE_ENABLE
        | if me == 0 { APIC_BASE_BSP } else { 0 }
        | if x2apic { APIC_BASE_X2APIC } else { 0 }
}
