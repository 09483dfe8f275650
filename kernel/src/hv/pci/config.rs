//! A type-0 configuration space: the standard header, BARs that answer the
//! sizing protocol, and a capability list. Bytes the guest may change are
//! named by a write mask; everything else is read-only.

/// Header offsets and bits.
pub const VENDOR_ID: u16 = 0x00;
pub const COMMAND: u16 = 0x04;
pub const STATUS: u16 = 0x06;
pub const REVISION: u16 = 0x08;
pub const BAR0: u16 = 0x10;
pub const SUBSYSTEM_VENDOR_ID: u16 = 0x2c;
pub const CAPABILITIES: u16 = 0x34;
pub const INTERRUPT_LINE: u16 = 0x3c;
pub const COMMAND_MEMORY: u16 = 1 << 1;
const COMMAND_WRITABLE: u16 = 0b111 | (1 << 10); // I/O, memory, bus master, INTx disable
const STATUS_CAPABILITIES: u16 = 1 << 4;
/// Where the first capability goes.
const FIRST_CAPABILITY: u8 = 0x40;
/// The conventional space the guest sees (the extended 4 KiB of ECAM read as zero).
const SIZE: usize = 256;
pub const BARS: usize = 6;

/// One base address register.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bar {
    /// A power of two of at least 16 bytes; 0 for no BAR.
    pub size: u64,
}

impl Bar {
    /// A 32-bit, non-prefetchable memory BAR of `size` bytes (a power of two ≥ 4 KiB).
    pub fn memory32(size: u64) -> Bar {
        Bar {
            size: size.max(0x1000).next_power_of_two(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ConfigSpace {
    bytes: [u8; SIZE],
    writable: [u8; SIZE],
    bars: [Bar; BARS],
    /// Where the next capability goes, and the previous one's next pointer.
    next_cap: u8,
    last_cap_link: Option<u8>,
}

impl ConfigSpace {
    /// A function's header: IDs, class (`class << 16 | subclass << 8 | prog_if`) and revision.
    pub fn new(vendor: u16, device: u16, class: u32, revision: u8) -> ConfigSpace {
        let mut c = ConfigSpace {
            bytes: [0; SIZE],
            writable: [0; SIZE],
            bars: [Bar::default(); BARS],
            next_cap: FIRST_CAPABILITY,
            last_cap_link: None,
        };
        c.put(VENDOR_ID, &vendor.to_le_bytes());
        c.put(VENDOR_ID + 2, &device.to_le_bytes());
        c.put(REVISION, &[revision]);
        c.put(REVISION + 1, &class.to_le_bytes()[..3]);
        c.writable[usize::from(COMMAND)..usize::from(COMMAND) + 2]
            .copy_from_slice(&COMMAND_WRITABLE.to_le_bytes());
        c.writable[usize::from(INTERRUPT_LINE)] = 0xff;
        c
    }

    /// Sets the subsystem IDs.
    pub fn set_subsystem(&mut self, vendor: u16, id: u16) {
        self.put(SUBSYSTEM_VENDOR_ID, &vendor.to_le_bytes());
        self.put(SUBSYSTEM_VENDOR_ID + 2, &id.to_le_bytes());
    }

    /// Declares BAR `i`.
    pub fn set_bar(&mut self, i: usize, bar: Bar) {
        if let Some(slot) = self.bars.get_mut(i) {
            *slot = bar;
        }
    }

    pub fn bar(&self, i: usize) -> Bar {
        self.bars.get(i).copied().unwrap_or_default()
    }

    /// Places BAR `i` at `address` (firmware's assignment).
    pub fn set_bar_address(&mut self, i: usize, address: u32) {
        let size = self.bar(i).size;
        if size == 0 {
            return;
        }
        let at = BAR0 + 4 * i as u16;
        self.put(at, &(address & !(size as u32 - 1)).to_le_bytes());
    }

    /// Where BAR `i` is now (`None`: no such BAR).
    pub fn bar_address(&self, i: usize) -> Option<u32> {
        if self.bar(i).size == 0 {
            return None;
        }
        Some(self.dword(BAR0 + 4 * i as u16) & !0xf)
    }

    pub fn memory_enabled(&self) -> bool {
        self.word(COMMAND) & COMMAND_MEMORY != 0
    }

    /// Appends a capability: `body` starts with its ID (the next pointer
    /// after it is filled in here); `writable` masks `body`'s bytes the guest may change.
    /// Returns its offset, or `None` if config space is full.
    pub fn add_capability(&mut self, body: &[u8], writable: &[u8]) -> Option<u8> {
        let at = self.next_cap;
        let end = usize::from(at) + body.len();
        if body.len() < 2 || end > SIZE {
            return None;
        }
        self.bytes[usize::from(at)..end].copy_from_slice(body);
        self.bytes[usize::from(at) + 1] = 0;
        for (i, m) in writable.iter().take(body.len()).enumerate() {
            self.writable[usize::from(at) + i] = *m;
        }
        match self.last_cap_link {
            None => {
                self.bytes[usize::from(CAPABILITIES)] = at;
                let status = self.word(STATUS) | STATUS_CAPABILITIES;
                self.put(STATUS, &status.to_le_bytes());
            }
            Some(link) => self.bytes[usize::from(link)] = at,
        }
        self.last_cap_link = Some(at + 1);
        self.next_cap = (end as u8).next_multiple_of(4);
        Some(at)
    }

    /// Bytes the device itself sets (read-only to the guest).
    pub fn put(&mut self, offset: u16, data: &[u8]) {
        let start = usize::from(offset);
        if let Some(dst) = self.bytes.get_mut(start..start + data.len()) {
            dst.copy_from_slice(data);
        }
    }

    /// A guest read; beyond the conventional space reads as zero.
    pub fn read(&self, offset: u16, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = self
                .bytes
                .get(usize::from(offset) + i)
                .copied()
                .unwrap_or(0);
        }
    }

    pub fn byte(&self, offset: u16) -> u8 {
        self.bytes.get(usize::from(offset)).copied().unwrap_or(0)
    }

    pub fn word(&self, offset: u16) -> u16 {
        let mut b = [0u8; 2];
        self.read(offset, &mut b);
        u16::from_le_bytes(b)
    }

    pub fn dword(&self, offset: u16) -> u32 {
        let mut b = [0u8; 4];
        self.read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    /// A guest write: writable bits change, BARs keep their size alignment
    /// (so writing all ones reads back the size mask).
    pub fn write(&mut self, offset: u16, data: &[u8]) {
        for (i, v) in data.iter().enumerate() {
            let at = usize::from(offset) + i;
            if at >= SIZE {
                return;
            }
            if (usize::from(BAR0)..usize::from(BAR0) + 4 * BARS).contains(&at) {
                self.write_bar_byte(at, *v);
                continue;
            }
            let m = self.writable[at];
            self.bytes[at] = (self.bytes[at] & !m) | (v & m);
        }
    }

    fn write_bar_byte(&mut self, at: usize, v: u8) {
        let i = (at - usize::from(BAR0)) / 4;
        let size = self.bars[i].size;
        if size == 0 {
            return;
        }
        // Address bits below the size are zero; bits 3:0 are the type
        // (32-bit memory, not prefetchable: all zero).
        let mask = (!(size as u32 - 1)).to_le_bytes()[at % 4];
        self.bytes[at] = v & mask;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_bars_and_capabilities() {
        let mut c = ConfigSpace::new(0x1af4, 0x1042, 0x01_80_00, 1);
        c.set_bar(1, Bar::memory32(0x5000));
        assert_eq!(c.bar(1).size, 0x8000);
        assert_eq!(c.dword(0), 0x1042_1af4);
        assert_eq!(c.dword(8), 0x0180_0001);
        // Read-only bytes stay; writable ones change.
        c.write(0, &[0, 0]);
        assert_eq!(c.word(0), 0x1af4);
        c.write(COMMAND, &0xffffu16.to_le_bytes());
        assert_eq!(c.word(COMMAND), COMMAND_WRITABLE);
        c.write(INTERRUPT_LINE, &[11]);
        assert_eq!(c.byte(INTERRUPT_LINE), 11);
        // BAR sizing, byte by byte as well as whole.
        c.write(BAR0 + 4, &u32::MAX.to_le_bytes());
        assert_eq!(c.dword(BAR0 + 4), 0xffff_8000);
        c.write(BAR0 + 4 + 3, &[0xc1]);
        assert_eq!(c.bar_address(1), Some(0xc1ff_8000));
        assert_eq!(c.bar_address(0), None);
        c.write(BAR0, &u32::MAX.to_le_bytes());
        assert_eq!(c.dword(BAR0), 0, "no BAR 0: reads zero after sizing");
        // Capabilities link up from 0x34.
        assert_eq!(c.word(STATUS) & STATUS_CAPABILITIES, 0);
        let a = c.add_capability(&[0x09, 0xee, 4, 1, 2, 3], &[]).unwrap();
        let b = c
            .add_capability(&[0x11, 0, 0, 0], &[0, 0, 0, 0xc0])
            .unwrap();
        assert_eq!(c.byte(CAPABILITIES), a);
        assert_eq!(c.byte(u16::from(a) + 1), b);
        assert_eq!(c.byte(u16::from(b) + 1), 0);
        assert_eq!(b % 4, 0);
        assert_ne!(c.word(STATUS) & STATUS_CAPABILITIES, 0);
        c.write(u16::from(b) + 2, &[0xff, 0xff]);
        assert_eq!(c.word(u16::from(b) + 2), 0xc000);
        // Reads beyond 256 bytes (ECAM's extended space) are zero; writes vanish.
        c.write(0x300, &[1]);
        assert_eq!(c.dword(0x300), 0);
        assert!(c.add_capability(&[0u8; 300], &[]).is_none());
    }
}
