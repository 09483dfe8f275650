//! virtio-net and virtio-blk over modern virtio-pci, through `virtio-drivers`,
//! exposed as `netstack::Nic` and `storage::BlockDevice`.

use alloc::vec::Vec;
use core::ptr::NonNull;

use netstack::{MacAddress, Nic, NicError};
use storage::block::check_request;
use storage::{BlockDevice, BlockError};
use virtio_drivers::device::blk::VirtIOBlk;
use virtio_drivers::device::net::VirtIONet;
use virtio_drivers::transport::DeviceType;
use virtio_drivers::transport::pci::bus::{Command, PciRoot};
use virtio_drivers::transport::pci::{PciTransport, virtio_device_type};
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

use super::intx;
use crate::mem::{self, paging};
use crate::pci::{Cam, Function};

/// DMA and address translation for `virtio-drivers`.
#[derive(Debug)]
pub struct KernelHal;

// SAFETY: `dma_alloc` returns zeroed, physically contiguous frames that stay
// allocated until `dma_dealloc`; `share` returns the physical address of
// memory that is physically contiguous (the heap, stacks and kernel image are
// each one contiguous range in the direct or identity map); the kernel does
// not use an IOMMU, so device and CPU see the same physical addresses.
unsafe impl Hal for KernelHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        match mem::alloc_frames(pages as u64, 1) {
            Some(phys) => (phys, mem::direct(phys)),
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, _vaddr: NonNull<u8>, pages: usize) -> i32 {
        mem::free_frames(paddr, pages as u64);
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        let v = paging::map_mmio(paddr, size as u64);
        NonNull::new(v as *mut u8).unwrap_or(NonNull::dangling())
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        mem::virt_to_phys(buffer.as_ptr() as *mut u8 as u64)
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

/// Descriptors per virtio-net queue: QEMU's queue size, so a burst at line
/// rate is buffered while the boot CPU is busy elsewhere. (`VirtIONet::new`
/// builds its queue state on the stack: the boot stack is sized for it.)
const NET_QUEUE_SIZE: usize = 256;
/// IP MTU the NIC carries: jumbo frames, for storage networks. Which MTU a
/// network actually uses is the host config's (1500 unless set); this is
/// the ceiling.
const MTU: usize = 9000;
/// Receive buffer: the virtio-net header (12 bytes), an Ethernet header, an
/// 802.1Q tag and an MTU of payload, rounded up to whole words. Without
/// mergeable receive buffers each frame must fit one buffer.
const NET_BUF_LEN: usize = (12 + 14 + 4 + MTU).next_multiple_of(8);

/// A virtio-net NIC.
pub struct VirtioNic {
    dev: VirtIONet<KernelHal, PciTransport, NET_QUEUE_SIZE>,
    mac: MacAddress,
}

impl core::fmt::Debug for VirtioNic {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VirtioNic").field("mac", &self.mac).finish()
    }
}

impl Nic for VirtioNic {
    fn mac(&self) -> MacAddress {
        self.mac
    }

    fn mtu(&self) -> usize {
        MTU
    }

    fn link_up(&self) -> bool {
        true
    }

    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<usize>, NicError> {
        if !self.dev.can_recv() {
            return Ok(None);
        }
        let rx = match self.dev.receive() {
            Ok(rx) => rx,
            Err(virtio_drivers::Error::NotReady) => return Ok(None),
            Err(_) => return Err(NicError::Device),
        };
        let packet = rx.packet();
        let len = packet.len();
        let result = match buf.get_mut(..len) {
            Some(dst) => {
                dst.copy_from_slice(packet);
                Ok(Some(len))
            }
            None => Err(NicError::BufferTooSmall { needed: len }),
        };
        self.dev
            .recycle_rx_buffer(rx)
            .map_err(|_| NicError::Device)?;
        result
    }

    fn can_transmit(&mut self) -> bool {
        self.dev.can_send()
    }

    fn transmit(&mut self, frame: &[u8]) -> Result<(), NicError> {
        // An 802.1Q tag (4 bytes) may come on top of the MTU, as on Linux NICs.
        let max = MTU + 14 + 4;
        if frame.len() < 14 || frame.len() > max {
            return Err(NicError::BadLength {
                len: frame.len(),
                max,
            });
        }
        if !self.dev.can_send() {
            return Err(NicError::QueueFull);
        }
        let mut tx = self.dev.new_tx_buffer(frame.len());
        tx.packet_mut().copy_from_slice(frame);
        self.dev.send(tx).map_err(|_| NicError::Device)
    }
}

/// A virtio-blk disk.
pub struct VirtioDisk {
    dev: VirtIOBlk<KernelHal, PciTransport>,
    blocks: u64,
    read_only: bool,
}

impl core::fmt::Debug for VirtioDisk {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VirtioDisk")
            .field("blocks", &self.blocks)
            .finish()
    }
}

const SECTOR: u32 = 512;

impl VirtioDisk {
    /// The disk's serial number (virtio-blk GET_ID: QEMU's `serial=`), if
    /// it has one; what names it stably (`/dev/disk/by-id/virtio-<serial>`).
    pub fn serial(&mut self) -> Option<alloc::string::String> {
        let mut id = [0u8; 20];
        let len = self.dev.device_id(&mut id).ok()?;
        let text = core::str::from_utf8(id.get(..len)?).ok()?.trim();
        (!text.is_empty()).then(|| alloc::string::String::from(text))
    }
}

impl BlockDevice for VirtioDisk {
    fn block_size(&self) -> u32 {
        SECTOR
    }

    fn num_blocks(&self) -> u64 {
        self.blocks
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        check_request(self, lba, buf.len())?;
        self.dev
            .read_blocks(lba as usize, buf)
            .map_err(|_| BlockError::Io)
    }

    fn write_blocks(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        check_request(self, lba, buf.len())?;
        if self.read_only {
            return Err(BlockError::ReadOnly);
        }
        self.dev
            .write_blocks(lba as usize, buf)
            .map_err(|_| BlockError::Io)
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        self.dev.flush().map_err(|_| BlockError::Io)
    }
}

/// Starts a driver for every virtio NIC and disk among `functions`.
/// virtio-pci vendor capability: the ISR status structure.
const CAP_VENDOR: u8 = 0x09;
const CFG_TYPE_ISR: u16 = 3;

/// The mapped ISR status byte of a virtio-pci function, from its ISR
/// capability (vendor capability of type 3: BAR index at +4, offset at +8).
fn isr_status(root: &mut PciRoot<Cam>, f: &Function) -> Option<u64> {
    let cam = crate::pci::cam();
    let cap = root
        .capabilities(f.address)
        .find(|c| c.id == CAP_VENDOR && c.private_header >> 8 == CFG_TYPE_ISR)?;
    let (bus, dev, func) = (f.address.bus, f.address.device, f.address.function);
    let bar = cam.read_config(bus, dev, func, u16::from(cap.offset) + 4) as u8;
    let offset = cam.read_config(bus, dev, func, u16::from(cap.offset) + 8);
    match root.bar_info(f.address, bar).ok()?? {
        virtio_drivers::transport::pci::bus::BarInfo::Memory { address, size, .. }
            if u64::from(offset) < size && address != 0 =>
        {
            Some(paging::map_mmio(address + u64::from(offset), 1))
        }
        _ => None,
    }
}

pub fn probe(root: &mut PciRoot<Cam>, functions: &[Function]) -> (Vec<VirtioNic>, Vec<VirtioDisk>) {
    let mut nics = Vec::new();
    let mut disks = Vec::new();
    for f in functions {
        let Some(kind) = virtio_device_type(&f.info) else {
            continue;
        };
        if !matches!(kind, DeviceType::Network | DeviceType::Block) {
            continue;
        }
        root.set_command(
            f.address,
            Command::MEMORY_SPACE | Command::IO_SPACE | Command::BUS_MASTER,
        );
        if let Some(isr) = isr_status(root, f) {
            intx::register_isr(isr);
        }
        let transport = match PciTransport::new::<KernelHal, _>(root, f.address) {
            Ok(t) => t,
            Err(e) => {
                log::warn!("virtio {:?}: cannot attach: {e:?}", f.address);
                continue;
            }
        };
        match kind {
            DeviceType::Network => match VirtIONet::new(transport, NET_BUF_LEN) {
                Ok(dev) => {
                    let mac = MacAddress(dev.mac_address());
                    log::info!("eth{}: virtio-net {mac}", nics.len());
                    nics.push(VirtioNic { dev, mac });
                }
                Err(e) => log::warn!("virtio-net {:?}: init failed: {e:?}", f.address),
            },
            DeviceType::Block => match VirtIOBlk::new(transport) {
                Ok(dev) => {
                    let blocks = dev.capacity();
                    let read_only = dev.readonly();
                    log::info!(
                        "blk{}: virtio-blk {} MiB{}",
                        disks.len(),
                        blocks / 2048,
                        if read_only { " (read-only)" } else { "" }
                    );
                    disks.push(VirtioDisk {
                        dev,
                        blocks,
                        read_only,
                    });
                }
                Err(e) => log::warn!("virtio-blk {:?}: init failed: {e:?}", f.address),
            },
            _ => {}
        }
    }
    (nics, disks)
}
