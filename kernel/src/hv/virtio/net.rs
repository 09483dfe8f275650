//! virtio-net (virtio 1.x §5.1) as a VIF: one receive and one transmit
//! queue, the MAC and MTU the network assigns, and a [`VifBackend`] (the
//! switch port) for frames in both directions. Frames the guest sends from
//! another source MAC, or longer than the MTU allows, are dropped (MAC
//! locking); frames for the guest wait in a bounded inbox until it posts
//! receive buffers.
//!
//! The backend of a real VIF is a [`netstack::switch::VifLink`]: the
//! bounded queues to the VIF's access port on the host's switch, which the
//! host's poll loop serves on the boot CPU.
//!
//! Not built yet: checksum and
//! segmentation offloads, mergeable receive buffers, multiqueue, the control
//! queue (promiscuous mode, MAC filters), link-state changes.

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use super::queue::{Queue, QueueError};
use super::{BATCH, ID_NET, VirtioDevice};
use crate::hv::memory::GuestMemory;

/// Feature bits (§5.1.3).
pub const F_MTU: u64 = 1 << 3;
pub const F_MAC: u64 = 1 << 5;
pub const F_STATUS: u64 = 1 << 16;
const STATUS_LINK_UP: u16 = 1;
/// `virtio_net_hdr_v1`: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, num_buffers.
const HEADER: usize = 12;
const RX: u16 = 0;
const TX: u16 = 1;
const ETH_HEADER: usize = 14;
const VLAN_TAG: usize = 4;
/// Frames kept for a guest that posts no receive buffers (then the oldest are dropped).
const INBOX: usize = 256;
const CLASS_ETHERNET: u32 = 0x02_00_00;

/// The switch side of a VIF.
pub trait VifBackend: Send {
    /// A frame the guest sent (already checked against the VIF's MAC and MTU).
    fn transmit(&mut self, frame: &[u8]);
    /// The next frame for the guest, if the switch has one.
    fn receive(&mut self) -> Option<Vec<u8>>;
    /// Whether [`VifBackend::receive`] has a frame (the device task then
    /// runs the receive queue without waiting for a notify).
    fn has_frames(&self) -> bool;
}

impl VifBackend for netstack::switch::VifLink {
    fn transmit(&mut self, frame: &[u8]) {
        // A full queue to the switch drops the frame; the link counts it.
        self.guest_send(frame);
    }
    fn receive(&mut self) -> Option<Vec<u8>> {
        self.guest_receive()
    }
    fn has_frames(&self) -> bool {
        self.guest_has_frames()
    }
}

/// Frames dropped and passed, for the host's statistics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NetStats {
    pub tx_frames: u64,
    pub rx_frames: u64,
    /// Sent from a MAC that is not the VIF's.
    pub tx_spoofed: u64,
    /// Longer than the MTU, or shorter than an Ethernet header.
    pub tx_bad_length: u64,
    /// For the guest but no room: its buffers were too small, or the inbox overflowed.
    pub rx_dropped: u64,
}

pub struct Net<B: VifBackend> {
    mac: [u8; 6],
    mtu: u16,
    backend: B,
    inbox: VecDeque<Vec<u8>>,
    pub stats: NetStats,
}

impl<B: VifBackend> fmt::Debug for Net<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Net")
            .field("mac", &self.mac)
            .field("mtu", &self.mtu)
            .field("stats", &self.stats)
            .finish()
    }
}

impl<B: VifBackend> Net<B> {
    pub fn new(mac: [u8; 6], mtu: u16, backend: B) -> Net<B> {
        Net {
            mac,
            mtu,
            backend,
            inbox: VecDeque::new(),
            stats: NetStats::default(),
        }
    }

    pub fn backend(&mut self) -> &mut B {
        &mut self.backend
    }

    /// Moves what the switch has for the guest into the inbox.
    fn pull(&mut self) {
        while let Some(frame) = self.backend.receive() {
            if self.inbox.len() == INBOX {
                self.inbox.pop_front();
                self.stats.rx_dropped += 1;
            }
            self.inbox.push_back(frame);
        }
    }

    fn transmit(
        &mut self,
        queue: &mut Queue,
        mem: &mut GuestMemory<'_>,
    ) -> Result<bool, QueueError> {
        let mut used = false;
        let limit = HEADER + ETH_HEADER + VLAN_TAG + usize::from(self.mtu);
        for _ in 0..BATCH.min(queue.size) {
            let Some(chain) = queue.pop(mem)? else {
                break;
            };
            let len = chain.readable_len();
            if len < (HEADER + ETH_HEADER) as u64 || len > limit as u64 {
                self.stats.tx_bad_length += 1;
            } else {
                let mut frame = vec![0u8; len as usize - HEADER];
                chain.read(mem, HEADER as u64, &mut frame)?;
                if frame[6..12] == self.mac {
                    self.backend.transmit(&frame);
                    self.stats.tx_frames += 1;
                } else {
                    self.stats.tx_spoofed += 1;
                }
            }
            queue.push_used(mem, chain.head, 0)?;
            used = true;
        }
        Ok(used)
    }

    fn receive(
        &mut self,
        queue: &mut Queue,
        mem: &mut GuestMemory<'_>,
    ) -> Result<bool, QueueError> {
        let mut used = false;
        while !self.inbox.is_empty() {
            let Some(chain) = queue.pop(mem)? else {
                break;
            };
            let Some(frame) = self.inbox.pop_front() else {
                break;
            };
            let mut header = [0u8; HEADER];
            header[10] = 1; // num_buffers
            let fits = chain.writable_len() >= (HEADER + frame.len()) as u64;
            let written = if fits {
                chain.write(mem, 0, &header)?;
                chain.write(mem, HEADER as u64, &frame)?;
                self.stats.rx_frames += 1;
                HEADER + frame.len()
            } else {
                self.stats.rx_dropped += 1;
                0
            };
            queue.push_used(mem, chain.head, written as u32)?;
            used = true;
        }
        Ok(used)
    }
}

impl<B: VifBackend> VirtioDevice for Net<B> {
    fn device_id(&self) -> u16 {
        ID_NET
    }
    fn class(&self) -> u32 {
        CLASS_ETHERNET
    }
    fn features(&self) -> u64 {
        F_MAC | F_MTU | F_STATUS
    }
    fn num_queues(&self) -> u16 {
        2
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let mut c = [0u8; 12];
        c[..6].copy_from_slice(&self.mac);
        c[6..8].copy_from_slice(&STATUS_LINK_UP.to_le_bytes());
        c[8..10].copy_from_slice(&1u16.to_le_bytes());
        c[10..12].copy_from_slice(&self.mtu.to_le_bytes());
        super::read_config_window(&c, offset, data);
    }
    fn process(
        &mut self,
        index: u16,
        queue: &mut Queue,
        mem: &mut GuestMemory<'_>,
    ) -> Result<bool, QueueError> {
        match index {
            TX => self.transmit(queue, mem),
            RX => {
                self.pull();
                self.receive(queue, mem)
            }
            _ => Ok(false),
        }
    }
    /// New frames from the switch. Frames already in the inbox wait for
    /// the guest's notify that it posted receive buffers (Linux kicks the
    /// queue after every refill), so a guest that posts none costs no polling.
    fn pending(&self) -> u64 {
        if self.backend.has_frames() {
            1 << RX
        } else {
            0
        }
    }
    fn reset(&mut self) {
        self.inbox.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hv::memory::GuestAddress;
    use crate::hv::pci::{MsiQueue, PciFunction};
    use crate::hv::virtio::F_VERSION_1;
    use crate::hv::virtio::pci::VirtioPci;
    use crate::hv::virtio::pci::tests::Bus;
    use crate::hv::virtio::queue::driver::TestDriver;

    /// A switch port that keeps what the guest sent and hands back what the test queues.
    #[derive(Debug, Default)]
    struct Port {
        sent: Vec<Vec<u8>>,
        to_guest: VecDeque<Vec<u8>>,
    }

    impl VifBackend for Port {
        fn transmit(&mut self, frame: &[u8]) {
            self.sent.push(frame.to_vec());
        }
        fn receive(&mut self) -> Option<Vec<u8>> {
            self.to_guest.pop_front()
        }
        fn has_frames(&self) -> bool {
            !self.to_guest.is_empty()
        }
    }

    const MAC: [u8; 6] = [0x02, 0x4b, 0x45, 0x45, 0x4c, 0x01];

    fn frame(src: [u8; 6], payload: usize) -> Vec<u8> {
        let mut f = vec![0xffu8; 6];
        f.extend_from_slice(&src);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend((0..payload).map(|i| i as u8));
        f
    }

    #[test]
    fn frames_pass_both_ways_with_mac_locking_and_mtu() {
        let mut ram = vec![0u8; 0x40000];
        let mut mem = GuestMemory::new(&mut ram);
        let mut dev = VirtioPci::new(Net::new(MAC, 1500, Port::default())).unwrap();
        let mut bus = Bus {
            dev: &mut dev,
            irq: MsiQueue::default(),
        };
        assert_eq!(bus.r(0x2000, 4), 0x4545_4b02);
        assert_eq!(bus.r(0x2000 + 6, 2), 1, "link up");
        assert_eq!(bus.r(0x2000 + 10, 2), 1500);
        let mut rx = TestDriver::new(8, 0x1000);
        let mut tx = TestDriver::new(8, 0x4000);
        bus.bring_up(&mut mem, F_VERSION_1 | F_MAC | F_MTU, &[&rx, &tx]);

        // Transmit: the guest's frame, a spoofed one, an oversized one.
        let mut at = 0x10000u64;
        for f in [
            frame(MAC, 100),
            frame([2, 0, 0, 0, 0, 9], 100),
            frame(MAC, 1600),
        ] {
            mem.write(GuestAddress(at), &[0u8; HEADER]).unwrap();
            mem.write(GuestAddress(at + HEADER as u64), &f).unwrap();
            tx.add(&mut mem, &[(at, (HEADER + f.len()) as u32, false)]);
            at += 0x1000;
        }
        bus.kick(&mut mem, 1);
        let net = &mut bus.dev.device;
        assert_eq!(net.backend().sent, vec![frame(MAC, 100)]);
        assert_eq!(
            (
                net.stats.tx_frames,
                net.stats.tx_spoofed,
                net.stats.tx_bad_length
            ),
            (1, 1, 1)
        );
        assert_eq!(TestDriver::used(&mem, &tx.queue, 2).0, 3);

        // Receive: frames wait until buffers are posted, then arrive with a header.
        net.backend()
            .to_guest
            .push_back(frame([2, 0, 0, 0, 0, 7], 50));
        net.backend()
            .to_guest
            .push_back(frame([2, 0, 0, 0, 0, 7], 1400));
        rx.add(&mut mem, &[(0x20000, 2048, true)]);
        rx.add(&mut mem, &[(0x21000, 128, true)]);
        bus.kick(&mut mem, 0);
        let (idx, _, len) = TestDriver::used(&mem, &rx.queue, 0);
        assert_eq!((idx, len as usize), (2, HEADER + 64));
        let mut got = vec![0u8; 64];
        mem.read(GuestAddress(0x20000 + HEADER as u64), &mut got)
            .unwrap();
        assert_eq!(got, frame([2, 0, 0, 0, 0, 7], 50));
        // The second frame did not fit its 128-byte buffer: dropped, buffer returned empty.
        assert_eq!(TestDriver::used(&mem, &rx.queue, 1).2, 0);
        assert_eq!(bus.dev.device.stats.rx_dropped, 1);
        // A frame arriving later is picked up without a notify once buffers exist.
        assert!(!bus.dev.has_work(), "nothing new: no work");
        bus.dev
            .device
            .backend()
            .to_guest
            .push_back(frame([2, 0, 0, 0, 0, 7], 10));
        assert!(bus.dev.has_work());
        rx.add(&mut mem, &[(0x22000, 2048, true)]);
        bus.dev.service(&mut mem, &mut bus.irq);
        assert_eq!(TestDriver::used(&mem, &rx.queue, 2).2 as usize, HEADER + 24);
        // Receive buffers posted ahead with nothing to deliver are no work:
        // the device task must not spin on them.
        rx.add(&mut mem, &[(0x23000, 2048, true)]);
        rx.add(&mut mem, &[(0x24000, 2048, true)]);
        bus.kick(&mut mem, 0);
        assert!(
            !bus.dev.has_work(),
            "idle receive buffers keep the device busy"
        );
    }
}
