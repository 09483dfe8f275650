//! Guest-physical memory through a checked API: every access names a
//! [`GuestAddress`] range that is checked against the guest's RAM before any
//! byte moves. A guest address is never turned into a pointer outside this module.

use alloc::vec::Vec;
use core::fmt;

/// A guest-physical address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GuestAddress(pub u64);

impl fmt::Debug for GuestAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gpa {:#x}", self.0)
    }
}

/// An access outside guest RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfBounds {
    pub addr: GuestAddress,
    pub len: usize,
    pub size: u64,
}

impl fmt::Display for OutOfBounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes at {:?} are outside guest RAM ({:#x} bytes)",
            self.len, self.addr, self.size
        )
    }
}

/// Guest RAM: one contiguous range starting at guest-physical 0, backed by
/// host memory the caller owns (a slice, so this module has no `unsafe`).
#[derive(Debug)]
pub struct GuestMemory<'a> {
    ram: &'a mut [u8],
}

impl<'a> GuestMemory<'a> {
    pub fn new(ram: &'a mut [u8]) -> GuestMemory<'a> {
        GuestMemory { ram }
    }

    pub fn size(&self) -> u64 {
        self.ram.len() as u64
    }

    fn range(
        &self,
        addr: GuestAddress,
        len: usize,
    ) -> Result<core::ops::Range<usize>, OutOfBounds> {
        let err = OutOfBounds {
            addr,
            len,
            size: self.size(),
        };
        let start = usize::try_from(addr.0).map_err(|_| err)?;
        let end = start.checked_add(len).ok_or(err)?;
        if end > self.ram.len() {
            return Err(err);
        }
        Ok(start..end)
    }

    pub fn read(&self, addr: GuestAddress, buf: &mut [u8]) -> Result<(), OutOfBounds> {
        let r = self.range(addr, buf.len())?;
        buf.copy_from_slice(&self.ram[r]);
        Ok(())
    }

    /// Appends `len` bytes at `addr` to `out` (no zeroed buffer to copy into first).
    pub fn append_to(
        &self,
        addr: GuestAddress,
        len: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), OutOfBounds> {
        let r = self.range(addr, len)?;
        out.extend_from_slice(&self.ram[r]);
        Ok(())
    }

    pub fn write(&mut self, addr: GuestAddress, data: &[u8]) -> Result<(), OutOfBounds> {
        let r = self.range(addr, data.len())?;
        self.ram[r].copy_from_slice(data);
        Ok(())
    }

    pub fn fill(&mut self, addr: GuestAddress, len: usize, byte: u8) -> Result<(), OutOfBounds> {
        let r = self.range(addr, len)?;
        self.ram[r].fill(byte);
        Ok(())
    }

    pub fn read_u64(&self, addr: GuestAddress) -> Result<u64, OutOfBounds> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    pub fn write_u64(&mut self, addr: GuestAddress, v: u64) -> Result<(), OutOfBounds> {
        self.write(addr, &v.to_le_bytes())
    }

    /// Writes the in-memory representation of `value`, a `#[repr(C)]`
    /// structure of an ABI the guest reads (Hermit's boot information).
    pub fn write_repr<T: Copy>(&mut self, addr: GuestAddress, value: T) -> Result<(), OutOfBounds> {
        let r = self.range(addr, core::mem::size_of::<T>())?;
        self.ram[r.clone()].fill(0);
        // SAFETY: `r` lies inside guest RAM (checked above) and is exactly
        // `size_of::<T>()` bytes; the write is unaligned, so any address
        // works; `T: Copy` has no destructor. Guest RAM is bytes the guest
        // owns: the host only ever reads it back as plain bytes, and the
        // zeroed padding of `T` stays whatever the write leaves there.
        unsafe { self.ram[r].as_mut_ptr().cast::<T>().write_unaligned(value) };
        Ok(())
    }
}

/// One page of a nested mapping of guest RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub gpa: u64,
    pub hpa: u64,
    /// 2 MiB (else 4 KiB).
    pub large: bool,
}

const FOUR_KIB: u64 = 4 << 10;
const TWO_MIB: u64 = 2 << 20;

/// The pages that map guest-physical `[0, size)` to host-physical
/// `[host_base, host_base + size)`: 2 MiB pages wherever both addresses are
/// 2 MiB aligned and a whole large page fits, 4 KiB pages elsewhere.
/// `host_base` and `size` must be 4 KiB aligned (else nothing is planned).
pub fn page_plan(host_base: u64, size: u64) -> impl Iterator<Item = Page> {
    let ok = host_base.is_multiple_of(FOUR_KIB) && size.is_multiple_of(FOUR_KIB);
    let end = if ok { size } else { 0 };
    let mut gpa = 0u64;
    core::iter::from_fn(move || {
        if gpa >= end {
            return None;
        }
        let hpa = host_base.checked_add(gpa)?;
        let large =
            gpa.is_multiple_of(TWO_MIB) && hpa.is_multiple_of(TWO_MIB) && end - gpa >= TWO_MIB;
        let page = Page { gpa, hpa, large };
        gpa += if large { TWO_MIB } else { FOUR_KIB };
        Some(page)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked_before_any_access() {
        let mut backing = vec![0u8; 4096];
        let mut m = GuestMemory::new(&mut backing);
        m.write_u64(GuestAddress(4088), 0x1122_3344_5566_7788)
            .unwrap();
        assert_eq!(
            m.read_u64(GuestAddress(4088)).unwrap(),
            0x1122_3344_5566_7788
        );
        assert!(m.write_u64(GuestAddress(4089), 1).is_err());
        assert!(m.read(GuestAddress(u64::MAX), &mut [0u8; 2]).is_err());
        assert!(m.fill(GuestAddress(4000), 97, 0xff).is_err());
        // a failed write changed nothing
        assert_eq!(
            m.read_u64(GuestAddress(4088)).unwrap(),
            0x1122_3344_5566_7788
        );
        m.fill(GuestAddress(0), 4096, 0xaa).unwrap();
        let mut b = [0u8; 3];
        m.read(GuestAddress(10), &mut b).unwrap();
        assert_eq!(b, [0xaa; 3]);
    }

    #[test]
    fn large_pages_where_aligned_small_pages_elsewhere() {
        let mib = 1u64 << 20;
        // 5 MiB at a 2 MiB-aligned base: two large pages, then 256 small ones.
        let plan: Vec<Page> = page_plan(64 * mib, 5 * mib).collect();
        assert_eq!(plan.iter().filter(|p| p.large).count(), 2);
        assert_eq!(plan.iter().filter(|p| !p.large).count(), 256);
        assert_eq!(
            plan[2],
            Page {
                gpa: 4 * mib,
                hpa: 68 * mib,
                large: false
            }
        );
        // A base that is only 4 KiB aligned never gets large pages.
        assert!(page_plan(64 * mib + 4096, 4 * mib).all(|p| !p.large));
        // Every byte mapped once, in order, host = guest + base.
        let mut next = 0;
        for p in page_plan(2 * mib, 3 * mib + 8192) {
            assert_eq!((p.gpa, p.hpa), (next, next + 2 * mib));
            next += if p.large { 2 * mib } else { 4096 };
        }
        assert_eq!(next, 3 * mib + 8192);
        assert_eq!(page_plan(0, 4095).count(), 0, "unaligned sizes are refused");
    }
}
