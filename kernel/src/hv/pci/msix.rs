//! MSI-X: the capability in config space, the vector table and the pending
//! bits in a BAR. A masked vector's interrupt waits in its pending bit and is
//! sent when the vector (or the whole function) is unmasked.

use alloc::vec;
use alloc::vec::Vec;

use super::{ConfigSpace, InterruptSink, MsiMessage};

const CAP_ID: u8 = 0x11;
const ENABLE: u16 = 1 << 15;
const FUNCTION_MASK: u16 = 1 << 14;
const ENTRY_BYTES: u64 = 16;
const VECTOR_MASKED: u32 = 1;
/// Most vectors a function here has (the pending bits fit one u64).
pub const MAX_VECTORS: u16 = 64;

#[derive(Debug, Clone)]
pub struct Msix {
    /// The capability's offset in config space.
    cap: u16,
    /// Per vector: address low, address high, data, vector control.
    table: Vec<[u32; 4]>,
    pending: u64,
}

impl Msix {
    /// Adds the capability for `vectors` vectors whose table lies in BAR
    /// `bar` at `table_offset` and pending bits at `pba_offset`. `None`: no
    /// room in config space.
    pub fn new(
        config: &mut ConfigSpace,
        vectors: u16,
        bar: u8,
        table_offset: u32,
        pba_offset: u32,
    ) -> Option<Msix> {
        let vectors = vectors.clamp(1, MAX_VECTORS);
        let control = vectors - 1;
        let mut body = [0u8; 12];
        body[0] = CAP_ID;
        body[2..4].copy_from_slice(&control.to_le_bytes());
        body[4..8].copy_from_slice(&(table_offset | u32::from(bar & 7)).to_le_bytes());
        body[8..12].copy_from_slice(&(pba_offset | u32::from(bar & 7)).to_le_bytes());
        let cap = config.add_capability(&body, &[0, 0, 0, 0xc0])?;
        Some(Msix {
            cap: u16::from(cap),
            table: vec![[0, 0, 0, VECTOR_MASKED]; usize::from(vectors)],
            pending: 0,
        })
    }

    pub fn vectors(&self) -> u16 {
        self.table.len() as u16
    }

    fn control(&self, config: &ConfigSpace) -> u16 {
        config.word(self.cap + 2)
    }

    pub fn enabled(&self, config: &ConfigSpace) -> bool {
        self.control(config) & ENABLE != 0
    }

    fn deliverable(&self, config: &ConfigSpace, vector: usize) -> bool {
        let c = self.control(config);
        c & ENABLE != 0 && c & FUNCTION_MASK == 0 && self.table[vector][3] & VECTOR_MASKED == 0
    }

    fn message(&self, vector: usize) -> MsiMessage {
        let e = self.table[vector];
        MsiMessage {
            address: u64::from(e[0]) | (u64::from(e[1]) << 32),
            data: e[2],
        }
    }

    /// The device signals `vector`: sent now, or left pending while masked.
    /// A vector beyond the table is ignored (the driver chose no vector).
    pub fn signal(&mut self, config: &ConfigSpace, vector: u16, irq: &mut dyn InterruptSink) {
        let v = usize::from(vector);
        if v >= self.table.len() {
            return;
        }
        if self.deliverable(config, v) {
            irq.msi(self.message(v));
        } else {
            self.pending |= 1 << v;
        }
    }

    /// Sends what waited in pending bits and is unmasked now; call after
    /// any write to the table or to the capability.
    pub fn flush(&mut self, config: &ConfigSpace, irq: &mut dyn InterruptSink) {
        for v in 0..self.table.len() {
            if self.pending & (1 << v) != 0 && self.deliverable(config, v) {
                self.pending &= !(1 << v);
                irq.msi(self.message(v));
            }
        }
    }

    /// Table read at `offset` from the table's start.
    pub fn table_read(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            let at = offset + i as u64;
            let entry = (at / ENTRY_BYTES) as usize;
            let word = ((at % ENTRY_BYTES) / 4) as usize;
            *b = self
                .table
                .get(entry)
                .map_or(0, |e| e[word].to_le_bytes()[(at % 4) as usize]);
        }
    }

    pub fn table_write(
        &mut self,
        config: &ConfigSpace,
        offset: u64,
        data: &[u8],
        irq: &mut dyn InterruptSink,
    ) {
        for (i, b) in data.iter().enumerate() {
            let at = offset + i as u64;
            let entry = (at / ENTRY_BYTES) as usize;
            let word = ((at % ENTRY_BYTES) / 4) as usize;
            let Some(e) = self.table.get_mut(entry) else {
                continue;
            };
            let mut bytes = e[word].to_le_bytes();
            bytes[(at % 4) as usize] = *b;
            let mut v = u32::from_le_bytes(bytes);
            if word == 3 {
                v &= VECTOR_MASKED; // only the mask bit is defined
            }
            e[word] = v;
        }
        self.flush(config, irq);
    }

    /// Pending-bit array read at `offset` from its start (read-only).
    pub fn pba_read(&self, offset: u64, data: &mut [u8]) {
        let bytes = self.pending.to_le_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            *b = usize::try_from(offset + i as u64)
                .ok()
                .and_then(|at| bytes.get(at).copied())
                .unwrap_or(0);
        }
    }

    /// Size of the table in bytes.
    pub fn table_bytes(&self) -> u64 {
        self.table.len() as u64 * ENTRY_BYTES
    }

    /// Back to reset state: every vector masked, nothing pending.
    pub fn reset(&mut self) {
        for e in &mut self.table {
            *e = [0, 0, 0, VECTOR_MASKED];
        }
        self.pending = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::super::MsiQueue;
    use super::*;

    #[test]
    fn masked_vectors_wait_and_are_sent_on_unmask() {
        let mut c = ConfigSpace::new(1, 2, 0, 0);
        let mut m = Msix::new(&mut c, 3, 0, 0x4000, 0x5000).unwrap();
        let cap = u16::from(c.byte(0x34));
        assert_eq!(c.byte(cap), CAP_ID);
        assert_eq!(c.word(cap + 2), 2, "table size - 1");
        assert_eq!(c.dword(cap + 4), 0x4000);
        let mut irq = MsiQueue::default();
        // Program vector 1: address 0xfee01000 (APIC 1), data 0x41.
        m.table_write(&c, 16, &0xfee0_1000u32.to_le_bytes(), &mut irq);
        m.table_write(&c, 24, &0x41u32.to_le_bytes(), &mut irq);
        let mut word = [0u8; 4];
        m.table_read(16, &mut word);
        assert_eq!(u32::from_le_bytes(word), 0xfee0_1000);
        // Disabled: the signal waits.
        m.signal(&c, 1, &mut irq);
        assert!(irq.0.is_empty());
        let mut pba = [0u8; 8];
        m.pba_read(0, &mut pba);
        assert_eq!(pba[0], 0b10);
        // Enable, still masked per vector; then unmask: it goes out once.
        c.write(cap + 2, &ENABLE.to_le_bytes());
        m.flush(&c, &mut irq);
        assert!(irq.0.is_empty());
        m.table_write(&c, 28, &0u32.to_le_bytes(), &mut irq);
        assert_eq!(irq.0.len(), 1);
        let msg = irq.0[0];
        assert_eq!(
            (msg.destination(), msg.vector(), msg.logical()),
            (1, 0x41, false)
        );
        m.signal(&c, 1, &mut irq);
        assert_eq!(irq.0.len(), 2);
        // The function mask holds everything back.
        c.write(cap + 2, &(ENABLE | FUNCTION_MASK).to_le_bytes());
        m.signal(&c, 1, &mut irq);
        assert_eq!(irq.0.len(), 2);
        c.write(cap + 2, &ENABLE.to_le_bytes());
        m.flush(&c, &mut irq);
        assert_eq!(irq.0.len(), 3);
        // Vectors beyond the table are ignored; reserved control bits stay zero.
        m.signal(&c, 7, &mut irq);
        m.table_write(&c, 12, &0xffff_fffeu32.to_le_bytes(), &mut irq);
        m.table_read(12, &mut word);
        assert_eq!(u32::from_le_bytes(word), 0);
        assert_eq!(irq.0.len(), 3);
    }
}
