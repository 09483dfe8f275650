//! Physical frame allocator: one bit per 4 KiB frame, next-fit search, and
//! contiguous runs (DMA buffers, the heap, guest memory). The bitmap storage
//! is supplied by the caller, so the logic tests on the host.

pub const FRAME_SIZE: u64 = 4096;

/// A bitmap of frames `0..frames`; a set bit means "in use".
#[derive(Debug)]
pub struct FrameBitmap<'a> {
    bits: &'a mut [u64],
    frames: u64,
    free: u64,
    next: u64,
}

impl<'a> FrameBitmap<'a> {
    /// Words of storage needed to track `frames` frames.
    pub const fn words_for(frames: u64) -> usize {
        frames.div_ceil(64) as usize
    }

    /// A bitmap over `frames` frames with every frame in use.
    pub fn new(bits: &'a mut [u64], frames: u64) -> FrameBitmap<'a> {
        let frames = frames.min(bits.len() as u64 * 64);
        bits.fill(u64::MAX);
        FrameBitmap {
            bits,
            frames,
            free: 0,
            next: 0,
        }
    }

    fn is_used(&self, f: u64) -> bool {
        self.bits[(f / 64) as usize] & (1 << (f % 64)) != 0
    }

    fn set(&mut self, f: u64, used: bool) {
        let word = &mut self.bits[(f / 64) as usize];
        let mask = 1u64 << (f % 64);
        let was = *word & mask != 0;
        if used && !was {
            *word |= mask;
            self.free -= 1;
        } else if !used && was {
            *word &= !mask;
            self.free += 1;
        }
    }

    /// Marks whole frames inside `[start, start + len)` free.
    pub fn release_range(&mut self, start: u64, len: u64) {
        let first = start.div_ceil(FRAME_SIZE);
        let end = (start.saturating_add(len) / FRAME_SIZE).min(self.frames);
        for f in first..end {
            self.set(f, false);
        }
    }

    /// Marks every frame touching `[start, start + len)` used.
    pub fn reserve_range(&mut self, start: u64, len: u64) {
        if len == 0 {
            return;
        }
        let first = start / FRAME_SIZE;
        let end = start
            .saturating_add(len)
            .div_ceil(FRAME_SIZE)
            .min(self.frames);
        for f in first..end {
            self.set(f, true);
        }
    }

    /// Allocates `count` contiguous frames whose first frame is a multiple of
    /// `align` frames, searching from the last allocation onward and wrapping
    /// once. Returns the physical address of the first frame.
    pub fn alloc(&mut self, count: u64, align: u64) -> Option<u64> {
        if count == 0 || count > self.free {
            return None;
        }
        let align = align.max(1);
        let start = self.next;
        self.search(start, self.frames, count, align)
            .or_else(|| {
                self.search(
                    0,
                    start.saturating_add(count).min(self.frames),
                    count,
                    align,
                )
            })
            .map(|f| {
                for i in f..f + count {
                    self.set(i, true);
                }
                self.next = f + count;
                f * FRAME_SIZE
            })
    }

    /// Allocates like [`alloc`](Self::alloc) but from the lowest possible address.
    pub fn alloc_low(&mut self, count: u64, align: u64) -> Option<u64> {
        let saved = self.next;
        self.next = 0;
        let r = self.alloc(count, align);
        self.next = saved;
        r
    }

    fn search(&self, from: u64, to: u64, count: u64, align: u64) -> Option<u64> {
        let mut f = from.div_ceil(align) * align;
        while f + count <= to {
            match (f..f + count).find(|&i| self.is_used(i)) {
                // Skip past the used frame, keeping alignment.
                Some(used) => f = (used + 1).div_ceil(align) * align,
                None => return Some(f),
            }
        }
        None
    }

    /// Frees `count` frames starting at physical address `addr`.
    pub fn free(&mut self, addr: u64, count: u64) {
        let first = addr / FRAME_SIZE;
        for f in first..(first + count).min(self.frames) {
            self.set(f, false);
        }
    }

    pub fn free_frames(&self) -> u64 {
        self.free
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_reserve_and_alloc() {
        let mut words = vec![0u64; FrameBitmap::words_for(1000)];
        let mut b = FrameBitmap::new(&mut words, 1000);
        assert_eq!(b.free_frames(), 0);
        assert_eq!(b.alloc(1, 1), None);
        // Usable 0x1000..0x200_000 minus a reserved hole.
        b.release_range(0x800, 0x200_000);
        assert_eq!(b.free_frames(), 0x1ff);
        b.reserve_range(0x10_0000, 0x1001);
        assert_eq!(b.free_frames(), 0x1ff - 2);
        let a = b.alloc(4, 1).unwrap();
        assert_eq!(a, 0x1000);
        let c = b.alloc(16, 16).unwrap();
        assert_eq!(c % (16 * FRAME_SIZE), 0);
        assert!(c >= a + 4 * FRAME_SIZE);
        b.free(a, 4);
        assert_eq!(b.alloc_low(1, 1), Some(0x1000));
        // a run that must skip the reserved hole at frames 0x100..0x102
        let free_before = b.free_frames();
        let big = b.alloc(0xf0, 1).unwrap();
        let end = big + 0xf0 * FRAME_SIZE;
        assert!(end <= 0x10_0000 || big >= 0x10_2000);
        assert_eq!(b.free_frames(), free_before - 0xf0);
    }

    #[test]
    fn exhaustion_and_wraparound() {
        let mut words = vec![0u64; 1];
        let mut b = FrameBitmap::new(&mut words, 64);
        b.release_range(0, 64 * FRAME_SIZE);
        let mut got = Vec::new();
        while let Some(a) = b.alloc(1, 1) {
            got.push(a);
        }
        assert_eq!(got.len(), 64);
        assert_eq!(b.alloc(1, 1), None);
        b.free(got[3], 1);
        assert_eq!(b.alloc(1, 1), Some(got[3]));
        assert_eq!(b.alloc(2, 1), None);
    }

    #[test]
    fn double_free_and_double_reserve_keep_counts_right() {
        let mut words = vec![0u64; 1];
        let mut b = FrameBitmap::new(&mut words, 64);
        b.release_range(0, 64 * FRAME_SIZE);
        b.free(0, 1);
        assert_eq!(b.free_frames(), 64);
        b.reserve_range(0, 1);
        b.reserve_range(0, 1);
        assert_eq!(b.free_frames(), 63);
        // requests beyond the end are clamped
        b.free(63 * FRAME_SIZE, 10);
        b.reserve_range(60 * FRAME_SIZE, 100 * FRAME_SIZE);
        assert_eq!(b.free_frames(), 60 - 1);
    }
}
