//! The virtio-pci modern transport (virtio 1.x §4.1): vendor capabilities
//! pointing into one memory BAR that holds the common configuration, the ISR
//! byte, the device configuration, the notify area and the MSI-X table.
//!
//! A notify write only records which queue has work ([`PciFunction::has_work`]);
//! the requests run in [`PciFunction::service`], which the VM's device task
//! calls off the vCPU's exit path.

use alloc::string::String;
use alloc::vec::Vec;

use super::queue::{NO_VECTOR, Queue};
use super::{F_VERSION_1, VirtioDevice, status};
use crate::hv::memory::GuestMemory;
use crate::hv::pci::{Bar, ConfigSpace, InterruptSink, Msix, PciFunction, VENDOR_REDHAT_QUMRANET};

/// BAR 0's layout.
const BAR: usize = 0;
const BAR_SIZE: u64 = 0x8000;
const COMMON: u64 = 0x0000;
const COMMON_LEN: u64 = 0x40;
const ISR: u64 = 0x1000;
const DEVICE: u64 = 0x2000;
const DEVICE_LEN: u64 = 0x1000;
const NOTIFY: u64 = 0x3000;
const NOTIFY_LEN: u64 = 0x1000;
const NOTIFY_MULTIPLIER: u32 = 4;
const MSIX_TABLE: u64 = 0x4000;
const MSIX_PBA: u64 = 0x5000;

/// Capability types (§4.1.4).
const CAP_VENDOR: u8 = 0x09;
const CAP_COMMON: u8 = 1;
const CAP_NOTIFY: u8 = 2;
const CAP_ISR: u8 = 3;
const CAP_DEVICE: u8 = 4;
const CAP_PCI_CFG: u8 = 5;
/// `virtio_pci_cfg_cap`: a `virtio_pci_cap` whose bar, offset and length the
/// driver sets, then `pci_cfg_data`, a window onto that part of the BAR.
const PCI_CFG_LEN: usize = 20;
const PCI_CFG_BAR: u16 = 4;
const PCI_CFG_OFFSET: u16 = 8;
const PCI_CFG_LENGTH: u16 = 12;
const PCI_CFG_DATA: u16 = 16;

/// Common configuration offsets.
mod common {
    pub const DEVICE_FEATURE_SELECT: u64 = 0x00;
    pub const DEVICE_FEATURE: u64 = 0x04;
    pub const DRIVER_FEATURE_SELECT: u64 = 0x08;
    pub const DRIVER_FEATURE: u64 = 0x0c;
    pub const CONFIG_MSIX_VECTOR: u64 = 0x10;
    pub const NUM_QUEUES: u64 = 0x12;
    pub const DEVICE_STATUS: u64 = 0x14;
    pub const CONFIG_GENERATION: u64 = 0x15;
    pub const QUEUE_SELECT: u64 = 0x16;
    pub const QUEUE_SIZE: u64 = 0x18;
    pub const QUEUE_MSIX_VECTOR: u64 = 0x1a;
    pub const QUEUE_ENABLE: u64 = 0x1c;
    pub const QUEUE_NOTIFY_OFF: u64 = 0x1e;
    pub const QUEUE_DESC: u64 = 0x20;
    pub const QUEUE_DRIVER: u64 = 0x28;
    pub const QUEUE_DEVICE: u64 = 0x30;
}

const ISR_QUEUE: u8 = 1;
const ISR_CONFIG: u8 = 2;

/// A virtio device on the guest's PCI bus.
#[derive(Debug)]
pub struct VirtioPci<D: VirtioDevice> {
    config: ConfigSpace,
    msix: Msix,
    pub device: D,
    queues: Vec<Queue>,
    /// Queues whose layout was checked since they were enabled (bit per queue).
    validated: u64,
    /// Queues notified and not yet served (bit per queue).
    notified: u64,
    status: u8,
    device_feature_select: u32,
    driver_feature_select: u32,
    driver_features: u64,
    config_vector: u16,
    queue_select: u16,
    isr: u8,
    /// How the host's log names the device ("vm NAME: disk vda").
    label: String,
    /// Where the VIRTIO_PCI_CAP_PCI_CFG capability is in config space.
    pci_cfg: u16,
}

impl<D: VirtioDevice> VirtioPci<D> {
    /// `None` only if the capabilities do not fit config space (they always do).
    pub fn new(device: D) -> Option<VirtioPci<D>> {
        let id = device.device_id();
        let mut config = ConfigSpace::new(VENDOR_REDHAT_QUMRANET, 0x1040 + id, device.class(), 1);
        config.set_subsystem(VENDOR_REDHAT_QUMRANET, 0x40 + id);
        config.set_bar(BAR, Bar::memory32(BAR_SIZE));
        for (kind, offset, len) in [
            (CAP_COMMON, COMMON, COMMON_LEN),
            (CAP_ISR, ISR, 1),
            (CAP_DEVICE, DEVICE, DEVICE_LEN),
        ] {
            // 16 bytes each; config space has room for all of them.
            let _ = config.add_capability(&vendor_cap(kind, offset, len, None), &[]);
        }
        let _ = config.add_capability(
            &vendor_cap(CAP_NOTIFY, NOTIFY, NOTIFY_LEN, Some(NOTIFY_MULTIPLIER)),
            &[],
        );
        let mut cfg_cap = vendor_cap(CAP_PCI_CFG, 0, 0, None);
        cfg_cap[2] = PCI_CFG_LEN as u8;
        cfg_cap.extend_from_slice(&[0; 4]);
        let mut writable = [0u8; PCI_CFG_LEN];
        writable[usize::from(PCI_CFG_BAR)] = 0xff;
        writable[usize::from(PCI_CFG_OFFSET)..].fill(0xff);
        let pci_cfg = u16::from(config.add_capability(&cfg_cap, &writable)?);
        let queues = device.num_queues().min(63);
        let msix = Msix::new(
            &mut config,
            queues + 1,
            BAR as u8,
            MSIX_TABLE as u32,
            MSIX_PBA as u32,
        )?;
        Some(VirtioPci {
            config,
            msix,
            queues: (0..queues).map(|_| Queue::default()).collect(),
            device,
            validated: 0,
            notified: 0,
            status: 0,
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            config_vector: NO_VECTOR,
            queue_select: 0,
            isr: 0,
            label: alloc::format!("virtio device {id}"),
            pci_cfg,
        })
    }

    /// Names the device in the host's log.
    pub fn with_label(mut self, label: String) -> Self {
        self.label = label;
        self
    }

    pub fn status(&self) -> u8 {
        self.status
    }

    fn offered(&self) -> u64 {
        self.device.features() | F_VERSION_1
    }

    fn reset(&mut self) {
        for q in &mut self.queues {
            q.reset();
        }
        self.msix.reset();
        self.validated = 0;
        self.notified = 0;
        self.status = 0;
        self.device_feature_select = 0;
        self.driver_feature_select = 0;
        self.driver_features = 0;
        self.config_vector = NO_VECTOR;
        self.queue_select = 0;
        self.isr = 0;
        self.device.reset();
    }

    fn broken(&self) -> bool {
        self.status & status::DEVICE_NEEDS_RESET != 0
    }

    /// The driver is running the device and it is not broken.
    fn live(&self) -> bool {
        self.status & status::DRIVER_OK != 0 && !self.broken()
    }

    /// The guest broke the protocol: stop serving it and tell the driver.
    fn needs_reset(&mut self, why: &dyn core::fmt::Display, irq: &mut dyn InterruptSink) {
        log::warn!("{}: needs reset: {why}", self.label);
        self.status |= status::DEVICE_NEEDS_RESET;
        self.notified = 0;
        self.isr |= ISR_CONFIG;
        self.msix.signal(&self.config, self.config_vector, irq);
    }

    /// The BAR access an access to `pci_cfg_data` stands for: when it
    /// touches the data field and the driver named a length of 1, 2 or 4.
    fn pci_cfg_window(&self, offset: u16, len: usize) -> Option<(usize, u64, usize)> {
        let data = self.pci_cfg + PCI_CFG_DATA;
        if offset + len as u16 <= data || offset >= data + 4 {
            return None;
        }
        let bar = usize::from(self.config.byte(self.pci_cfg + PCI_CFG_BAR));
        let at = u64::from(self.config.dword(self.pci_cfg + PCI_CFG_OFFSET));
        let length = self.config.dword(self.pci_cfg + PCI_CFG_LENGTH) as usize;
        matches!(length, 1 | 2 | 4).then_some((bar, at, length))
    }

    fn selected(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(usize::from(self.queue_select))
    }

    /// The common configuration as the driver reads it now.
    fn common_image(&self) -> [u8; COMMON_LEN as usize] {
        let mut b = [0u8; COMMON_LEN as usize];
        let mut put = |at: u64, v: &[u8]| b[at as usize..at as usize + v.len()].copy_from_slice(v);
        put(
            common::DEVICE_FEATURE_SELECT,
            &self.device_feature_select.to_le_bytes(),
        );
        let features = match self.device_feature_select {
            0 => self.offered() as u32,
            1 => (self.offered() >> 32) as u32,
            _ => 0,
        };
        put(common::DEVICE_FEATURE, &features.to_le_bytes());
        put(
            common::DRIVER_FEATURE_SELECT,
            &self.driver_feature_select.to_le_bytes(),
        );
        let driver = match self.driver_feature_select {
            0 => self.driver_features as u32,
            1 => (self.driver_features >> 32) as u32,
            _ => 0,
        };
        put(common::DRIVER_FEATURE, &driver.to_le_bytes());
        put(
            common::CONFIG_MSIX_VECTOR,
            &self.config_vector.to_le_bytes(),
        );
        put(
            common::NUM_QUEUES,
            &(self.queues.len() as u16).to_le_bytes(),
        );
        put(common::DEVICE_STATUS, &[self.status]);
        put(common::CONFIG_GENERATION, &[0]);
        put(common::QUEUE_SELECT, &self.queue_select.to_le_bytes());
        if let Some(q) = self.queues.get(usize::from(self.queue_select)) {
            put(common::QUEUE_SIZE, &q.size.to_le_bytes());
            put(common::QUEUE_MSIX_VECTOR, &q.msix_vector.to_le_bytes());
            put(common::QUEUE_ENABLE, &u16::from(q.ready).to_le_bytes());
            put(common::QUEUE_NOTIFY_OFF, &self.queue_select.to_le_bytes());
            put(common::QUEUE_DESC, &q.desc.to_le_bytes());
            put(common::QUEUE_DRIVER, &q.driver.to_le_bytes());
            put(common::QUEUE_DEVICE, &q.device.to_le_bytes());
        }
        b
    }

    fn common_write(&mut self, offset: u64, data: &[u8], irq: &mut dyn InterruptSink) {
        let mut image = self.common_image();
        let Some(dst) = usize::try_from(offset)
            .ok()
            .and_then(|o| image.get_mut(o..o.checked_add(data.len())?))
        else {
            return;
        };
        dst.copy_from_slice(data);
        let end = offset + data.len() as u64;
        let touched = |at: u64, len: u64| offset < at + len && at < end;
        let u16_at = |at: u64| u16::from_le_bytes([image[at as usize], image[at as usize + 1]]);
        let u32_at = |at: u64| {
            u32::from_le_bytes(
                image[at as usize..at as usize + 4]
                    .try_into()
                    .unwrap_or_default(),
            )
        };
        let u64_at = |at: u64| {
            u64::from_le_bytes(
                image[at as usize..at as usize + 8]
                    .try_into()
                    .unwrap_or_default(),
            )
        };
        let vectors = self.msix.vectors();
        let vector = |v: u16| if v < vectors { v } else { NO_VECTOR };
        if touched(common::DEVICE_FEATURE_SELECT, 4) {
            self.device_feature_select = u32_at(common::DEVICE_FEATURE_SELECT);
        }
        if touched(common::DRIVER_FEATURE_SELECT, 4) {
            self.driver_feature_select = u32_at(common::DRIVER_FEATURE_SELECT);
        }
        if touched(common::DRIVER_FEATURE, 4) && self.status & status::FEATURES_OK == 0 {
            let v = u64::from(u32_at(common::DRIVER_FEATURE));
            match self.driver_feature_select {
                0 => self.driver_features = (self.driver_features & !0xffff_ffff) | v,
                1 => self.driver_features = (self.driver_features & 0xffff_ffff) | (v << 32),
                _ => {}
            }
        }
        if touched(common::CONFIG_MSIX_VECTOR, 2) {
            self.config_vector = vector(u16_at(common::CONFIG_MSIX_VECTOR));
        }
        if touched(common::DEVICE_STATUS, 1) {
            self.write_status(image[common::DEVICE_STATUS as usize]);
        }
        if touched(common::QUEUE_SELECT, 2) {
            self.queue_select = u16_at(common::QUEUE_SELECT);
        }
        let select = self.queue_select;
        let Some(q) = self.selected() else {
            return;
        };
        if touched(common::QUEUE_MSIX_VECTOR, 2) {
            q.msix_vector = vector(u16_at(common::QUEUE_MSIX_VECTOR));
        }
        // The layout is fixed once the queue is enabled.
        if q.ready {
            return;
        }
        if touched(common::QUEUE_SIZE, 2) {
            q.size = u16_at(common::QUEUE_SIZE);
        }
        if touched(common::QUEUE_DESC, 8) {
            q.desc = u64_at(common::QUEUE_DESC);
        }
        if touched(common::QUEUE_DRIVER, 8) {
            q.driver = u64_at(common::QUEUE_DRIVER);
        }
        if touched(common::QUEUE_DEVICE, 8) {
            q.device = u64_at(common::QUEUE_DEVICE);
        }
        if touched(common::QUEUE_ENABLE, 2) && u16_at(common::QUEUE_ENABLE) == 1 {
            q.ready = true;
            self.validated &= !(1 << select);
        }
        let _ = irq;
    }

    fn write_status(&mut self, value: u8) {
        if value == 0 {
            self.reset();
            return;
        }
        let mut new = value | (self.status & status::DEVICE_NEEDS_RESET);
        if value & status::FEATURES_OK != 0 && self.status & status::FEATURES_OK == 0 {
            let ok = self.driver_features & !self.offered() == 0
                && self.driver_features & F_VERSION_1 != 0;
            if ok {
                self.device.activate(self.driver_features);
            } else {
                new &= !status::FEATURES_OK;
            }
        }
        self.status = new;
    }

    /// Serves one queue; `Err` when the guest broke it.
    fn serve(
        &mut self,
        index: u16,
        mem: &mut GuestMemory<'_>,
        irq: &mut dyn InterruptSink,
    ) -> Result<(), super::QueueError> {
        let i = usize::from(index);
        let Some(q) = self.queues.get_mut(i) else {
            return Ok(());
        };
        if !q.ready {
            return Ok(());
        }
        if self.validated & (1 << i) == 0 {
            q.validate(mem)?;
            self.validated |= 1 << i;
        }
        let used = self.device.process(index, q, mem)?;
        if used && q.wants_interrupt(mem) {
            self.isr |= ISR_QUEUE;
            let vector = q.msix_vector;
            self.msix.signal(&self.config, vector, irq);
        }
        // A batch was served and more is available: come back for it. A
        // call that used nothing is not retried: buffers the guest posted
        // ahead (virtio-net's receive queue) are no work until data comes.
        if used && q.has_available(mem)? {
            self.notified |= 1 << i;
        }
        Ok(())
    }
}

/// A `virtio_pci_cap` (plus `notify_off_multiplier` for the notify capability).
fn vendor_cap(kind: u8, offset: u64, len: u64, multiplier: Option<u32>) -> Vec<u8> {
    let mut c = alloc::vec![CAP_VENDOR, 0, 16, kind, BAR as u8, 0, 0, 0];
    c.extend_from_slice(&(offset as u32).to_le_bytes());
    c.extend_from_slice(&(len as u32).to_le_bytes());
    if let Some(m) = multiplier {
        c[2] = 20;
        c.extend_from_slice(&m.to_le_bytes());
    }
    c
}

impl<D: VirtioDevice> PciFunction for VirtioPci<D> {
    fn config(&self) -> &ConfigSpace {
        &self.config
    }
    fn config_mut(&mut self) -> &mut ConfigSpace {
        &mut self.config
    }

    fn config_write(&mut self, offset: u16, data: &[u8], irq: &mut dyn InterruptSink) {
        self.config.write(offset, data);
        if let Some((bar, at, len)) = self.pci_cfg_window(offset, data.len()) {
            let mut value = [0u8; 4];
            self.config.read(self.pci_cfg + PCI_CFG_DATA, &mut value);
            self.bar_write(bar, at, &value[..len], irq);
        }
        self.msix.flush(&self.config, irq);
    }

    fn config_read(&mut self, offset: u16, data: &mut [u8]) {
        if let Some((bar, at, len)) = self.pci_cfg_window(offset, data.len()) {
            let mut value = [0u8; 4];
            self.bar_read(bar, at, &mut value[..len]);
            self.config.put(self.pci_cfg + PCI_CFG_DATA, &value);
        }
        self.config.read(offset, data);
    }

    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if bar != BAR {
            return;
        }
        let len = data.len() as u64;
        match offset {
            o if o + len <= COMMON + COMMON_LEN => {
                let image = self.common_image();
                data.copy_from_slice(&image[o as usize..(o + len) as usize]);
            }
            ISR => {
                // Reading the ISR acknowledges it.
                data[0] = core::mem::take(&mut self.isr);
            }
            o if (DEVICE..DEVICE + DEVICE_LEN).contains(&o) => {
                self.device.read_config(o - DEVICE, data)
            }
            o if (MSIX_TABLE..MSIX_TABLE + self.msix.table_bytes()).contains(&o) => {
                self.msix.table_read(o - MSIX_TABLE, data)
            }
            o if (MSIX_PBA..MSIX_PBA + 8).contains(&o) => self.msix.pba_read(o - MSIX_PBA, data),
            _ => {}
        }
    }

    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8], irq: &mut dyn InterruptSink) {
        if bar != BAR {
            return;
        }
        let len = data.len() as u64;
        match offset {
            o if o + len <= COMMON + COMMON_LEN => self.common_write(o, data, irq),
            o if (DEVICE..DEVICE + DEVICE_LEN).contains(&o) => {
                self.device.write_config(o - DEVICE, data)
            }
            o if (NOTIFY..NOTIFY + NOTIFY_LEN).contains(&o) => {
                let index = (o - NOTIFY) / u64::from(NOTIFY_MULTIPLIER);
                if self.live() && (index as usize) < self.queues.len() {
                    self.notified |= 1 << index;
                }
            }
            o if (MSIX_TABLE..MSIX_TABLE + self.msix.table_bytes()).contains(&o) => self
                .msix
                .table_write(&self.config, o - MSIX_TABLE, data, irq),
            _ => {}
        }
    }

    fn has_work(&self) -> bool {
        self.notified != 0 || (self.live() && self.device.pending() != 0)
    }

    fn service(&mut self, mem: &mut GuestMemory<'_>, irq: &mut dyn InterruptSink) {
        let mut notified = core::mem::take(&mut self.notified);
        if self.live() {
            notified |= self.device.pending();
        }
        for index in (0..self.queues.len() as u16).filter(|i| notified & (1 << i) != 0) {
            if self.broken() {
                return;
            }
            if let Err(e) = self.serve(index, mem, irq) {
                self.needs_reset(&e, irq);
            }
        }
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::hv::pci::MsiQueue;
    use crate::hv::virtio::queue::driver::TestDriver;

    /// Drives a transport through its BAR the way Linux's virtio_pci does.
    #[derive(Debug)]
    pub struct Bus<'a, D: VirtioDevice> {
        pub dev: &'a mut VirtioPci<D>,
        pub irq: MsiQueue,
    }

    impl<D: VirtioDevice> Bus<'_, D> {
        pub fn w(&mut self, offset: u64, size: usize, value: u64) {
            let b = value.to_le_bytes();
            self.dev.bar_write(BAR, offset, &b[..size], &mut self.irq);
        }
        pub fn r(&mut self, offset: u64, size: usize) -> u64 {
            let mut b = [0u8; 8];
            self.dev.bar_read(BAR, offset, &mut b[..size]);
            u64::from_le_bytes(b)
        }

        /// Feature negotiation, one queue per driver at `bases`, MSI-X
        /// vector i+1 for queue i (address `0xfee00000`, data `0x30 + i`), DRIVER_OK.
        pub fn bring_up(
            &mut self,
            mem: &mut GuestMemory<'_>,
            features: u64,
            drivers: &[&TestDriver],
        ) -> u8 {
            use common::*;
            self.w(DEVICE_STATUS, 1, 0);
            self.w(
                DEVICE_STATUS,
                1,
                u64::from(status::ACKNOWLEDGE | status::DRIVER),
            );
            self.w(DRIVER_FEATURE_SELECT, 4, 0);
            self.w(DRIVER_FEATURE, 4, features & 0xffff_ffff);
            self.w(DRIVER_FEATURE_SELECT, 4, 1);
            self.w(DRIVER_FEATURE, 4, features >> 32);
            self.w(
                DEVICE_STATUS,
                1,
                u64::from(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK),
            );
            let st = self.r(DEVICE_STATUS, 1) as u8;
            if st & status::FEATURES_OK == 0 {
                return st;
            }
            // MSI-X on, vectors unmasked.
            let cap = msix_cap(&self.dev.config);
            self.dev
                .config_write(cap + 2, &0x8000u16.to_le_bytes(), &mut self.irq);
            for v in 0..=drivers.len() as u64 {
                self.w(MSIX_TABLE + 16 * v, 4, 0xfee0_0000);
                self.w(MSIX_TABLE + 16 * v + 8, 4, 0x30 + v);
                self.w(MSIX_TABLE + 16 * v + 12, 4, 0);
            }
            self.w(CONFIG_MSIX_VECTOR, 2, 0);
            for (i, d) in drivers.iter().enumerate() {
                self.w(QUEUE_SELECT, 2, i as u64);
                self.w(QUEUE_SIZE, 2, u64::from(d.queue.size));
                self.w(QUEUE_MSIX_VECTOR, 2, i as u64 + 1);
                // 64-bit fields in two 32-bit halves, as Linux writes them.
                for (at, v) in [
                    (QUEUE_DESC, d.queue.desc),
                    (QUEUE_DRIVER, d.queue.driver),
                    (QUEUE_DEVICE, d.queue.device),
                ] {
                    self.w(at, 4, v & 0xffff_ffff);
                    self.w(at + 4, 4, v >> 32);
                }
                self.w(QUEUE_ENABLE, 2, 1);
            }
            self.w(
                DEVICE_STATUS,
                1,
                u64::from(
                    status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK,
                ),
            );
            let _ = mem;
            self.r(DEVICE_STATUS, 1) as u8
        }

        /// Notifies queue `index` and runs the queued work.
        pub fn kick(&mut self, mem: &mut GuestMemory<'_>, index: u16) {
            self.w(
                NOTIFY + u64::from(NOTIFY_MULTIPLIER) * u64::from(index),
                2,
                u64::from(index),
            );
            assert!(self.dev.has_work());
            self.dev.service(mem, &mut self.irq);
        }
    }

    pub fn msix_cap(c: &ConfigSpace) -> u16 {
        let mut at = u16::from(c.byte(0x34));
        while at != 0 {
            if c.byte(at) == 0x11 {
                return at;
            }
            at = u16::from(c.byte(at + 1));
        }
        panic!("no MSI-X capability")
    }

    /// A device that uses each chain with its writable length and fills it with 0xaa.
    #[derive(Debug)]
    struct Echo;
    impl VirtioDevice for Echo {
        fn device_id(&self) -> u16 {
            4
        }
        fn class(&self) -> u32 {
            0xff_00_00
        }
        fn features(&self) -> u64 {
            1 << 3
        }
        fn num_queues(&self) -> u16 {
            1
        }
        fn read_config(&self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn process(
            &mut self,
            _: u16,
            q: &mut Queue,
            mem: &mut GuestMemory<'_>,
        ) -> Result<bool, crate::hv::virtio::QueueError> {
            let mut used = false;
            while let Some(c) = q.pop(mem)? {
                let n = c.writable_len();
                c.write(mem, 0, &alloc::vec![0xaa; n as usize])?;
                q.push_used(mem, c.head, n as u32)?;
                used = true;
            }
            Ok(used)
        }
    }

    #[test]
    fn capabilities_describe_the_bar_as_linux_reads_them() {
        let dev = VirtioPci::new(Echo).unwrap();
        let c = &dev.config;
        assert_eq!(c.dword(0), 0x1044_1af4);
        assert_eq!(c.word(0x2e), 0x44);
        let mut at = u16::from(c.byte(0x34));
        let mut seen = Vec::new();
        while at != 0 {
            if c.byte(at) == CAP_VENDOR {
                seen.push((c.byte(at + 3), c.dword(at + 8), c.dword(at + 12)));
            }
            at = u16::from(c.byte(at + 1));
        }
        assert_eq!(
            seen,
            [
                (CAP_COMMON, 0, 0x40),
                (CAP_ISR, 0x1000, 1),
                (CAP_DEVICE, 0x2000, 0x1000),
                (CAP_NOTIFY, 0x3000, 0x1000),
                (CAP_PCI_CFG, 0, 0)
            ]
        );
        assert_eq!(c.bar(0).size, BAR_SIZE);
    }

    #[test]
    fn the_pci_cfg_capability_is_a_window_onto_the_bar() {
        let mut dev = VirtioPci::new(Echo).unwrap();
        let mut irq = MsiQueue::default();
        let cap = dev.pci_cfg;
        assert_eq!(dev.config.byte(cap), CAP_VENDOR);
        assert_eq!(dev.config.byte(cap + 3), CAP_PCI_CFG);
        // Write the device status through the window, read it back both ways.
        dev.config_write(cap + PCI_CFG_BAR, &[0], &mut irq);
        dev.config_write(
            cap + PCI_CFG_OFFSET,
            &(common::DEVICE_STATUS as u32).to_le_bytes(),
            &mut irq,
        );
        dev.config_write(cap + PCI_CFG_LENGTH, &1u32.to_le_bytes(), &mut irq);
        dev.config_write(cap + PCI_CFG_DATA, &[3, 0, 0, 0], &mut irq);
        assert_eq!(dev.status(), 3);
        let mut b = [0u8; 4];
        dev.config_read(cap + PCI_CFG_DATA, &mut b);
        assert_eq!(b[0], 3);
        // Device features through a 4-byte window.
        dev.config_write(
            cap + PCI_CFG_OFFSET,
            &(common::DEVICE_FEATURE as u32).to_le_bytes(),
            &mut irq,
        );
        dev.config_write(cap + PCI_CFG_LENGTH, &4u32.to_le_bytes(), &mut irq);
        dev.config_read(cap + PCI_CFG_DATA, &mut b);
        assert_eq!(u32::from_le_bytes(b), 1 << 3);
        // A length other than 1, 2 or 4 opens no window; reads of other fields do not either.
        dev.config_write(cap + PCI_CFG_LENGTH, &3u32.to_le_bytes(), &mut irq);
        dev.config_write(cap + PCI_CFG_DATA, &[0, 0, 0, 0], &mut irq);
        assert_eq!(dev.status(), 3);
        dev.config_read(cap + PCI_CFG_OFFSET, &mut b);
        assert_eq!(u32::from_le_bytes(b), common::DEVICE_FEATURE as u32);
    }

    #[test]
    fn negotiation_queues_and_msix_interrupts() {
        let mut ram = alloc::vec![0u8; 0x20000];
        let mut mem = GuestMemory::new(&mut ram);
        let mut dev = VirtioPci::new(Echo).unwrap();
        let mut bus = Bus {
            dev: &mut dev,
            irq: MsiQueue::default(),
        };
        // Device features read in two halves.
        bus.w(common::DEVICE_FEATURE_SELECT, 4, 1);
        assert_eq!(bus.r(common::DEVICE_FEATURE, 4), 1);
        bus.w(common::DEVICE_FEATURE_SELECT, 4, 0);
        assert_eq!(bus.r(common::DEVICE_FEATURE, 4), 1 << 3);
        assert_eq!(bus.r(common::NUM_QUEUES, 2), 1);
        assert_eq!(bus.r(common::QUEUE_SIZE, 2), 256);
        // Without VERSION_1, or with a feature not offered, FEATURES_OK is refused.
        assert_eq!(bus.bring_up(&mut mem, 1 << 3, &[]) & status::FEATURES_OK, 0);
        assert_eq!(
            bus.bring_up(&mut mem, F_VERSION_1 | 1 << 5, &[]) & status::FEATURES_OK,
            0
        );
        let mut d = TestDriver::new(16, 0x1000);
        let st = bus.bring_up(&mut mem, F_VERSION_1 | 1 << 3, &[&d]);
        assert_eq!(st & status::DRIVER_OK, status::DRIVER_OK);
        // A vector beyond the table reads back as NO_VECTOR.
        bus.w(common::QUEUE_MSIX_VECTOR, 2, 9);
        assert_eq!(bus.r(common::QUEUE_MSIX_VECTOR, 2), u64::from(NO_VECTOR));
        bus.w(common::QUEUE_MSIX_VECTOR, 2, 1);
        assert_eq!(bus.r(common::QUEUE_DESC, 4), 0x1000);
        let head = d.add(&mut mem, &[(0x8000, 64, true)]);
        bus.kick(&mut mem, 0);
        assert_eq!(
            TestDriver::used(&mem, &d.queue, 0),
            (1, u32::from(head), 64)
        );
        assert_eq!(bus.irq.0.len(), 1);
        assert_eq!(bus.irq.0[0].vector(), 0x31);
        assert_eq!(bus.r(ISR, 1), u64::from(ISR_QUEUE));
        assert_eq!(bus.r(ISR, 1), 0, "reading the ISR clears it");
        // Device config reads reach the device.
        assert_eq!(bus.r(DEVICE + 3, 1), 3);
        // Reset clears everything the driver set.
        bus.w(common::DEVICE_STATUS, 1, 0);
        assert_eq!(bus.r(common::DEVICE_STATUS, 1), 0);
        assert_eq!(bus.r(common::QUEUE_ENABLE, 2), 0);
        assert_eq!(bus.r(common::QUEUE_MSIX_VECTOR, 2), u64::from(NO_VECTOR));
        bus.w(NOTIFY, 2, 0);
        assert!(
            !bus.dev.has_work(),
            "a notify before DRIVER_OK queues nothing"
        );
    }

    #[test]
    fn a_hostile_queue_gets_the_device_marked_for_reset() {
        let mut ram = alloc::vec![0u8; 0x20000];
        let mut mem = GuestMemory::new(&mut ram);
        let mut dev = VirtioPci::new(Echo).unwrap();
        let mut bus = Bus {
            dev: &mut dev,
            irq: MsiQueue::default(),
        };
        // Rings outside guest RAM: checked at first use, not trusted.
        let d = TestDriver::new(16, 0x1_f000);
        bus.bring_up(&mut mem, F_VERSION_1, &[&d]);
        bus.kick(&mut mem, 0);
        let st = bus.r(common::DEVICE_STATUS, 1) as u8;
        assert_ne!(st & status::DEVICE_NEEDS_RESET, 0);
        assert_eq!(
            bus.irq.0.last().map(|m| m.vector()),
            Some(0x30),
            "config vector"
        );
        assert_eq!(bus.r(ISR, 1), u64::from(ISR_CONFIG));
        bus.w(NOTIFY, 2, 0);
        assert!(!bus.dev.has_work(), "a broken device serves nothing");
        // A reset and a sane layout make it work again.
        let mut d = TestDriver::new(16, 0x1000);
        assert_eq!(
            bus.bring_up(&mut mem, F_VERSION_1, &[&d]) & status::DEVICE_NEEDS_RESET,
            0
        );
        d.add(&mut mem, &[(0x8000, 8, true)]);
        bus.kick(&mut mem, 0);
        assert_eq!(TestDriver::used(&mem, &d.queue, 0).0, 1);
    }
}
