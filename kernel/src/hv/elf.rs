//! Loading a static x86_64 ELF executable into guest memory (the way Hermit
//! images and the test guests are built): its PT_LOAD segments at their
//! physical addresses, bss zeroed, and the entry point.

use super::memory::{GuestAddress, GuestMemory, OutOfBounds};
use crate::le::{u16_at, u32_at, u64_at};

const PT_LOAD: u32 = 1;
const EM_X86_64: u16 = 62;
const ET_EXEC: u16 = 2;

/// Why an image could not be loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfError {
    NotElf,
    NotX86_64Executable,
    Truncated(&'static str),
    SegmentOutsideImage { index: usize },
    SegmentOutsideGuest(OutOfBounds),
    SegmentBelowFloor { index: usize, addr: u64 },
    NoLoadableSegment,
}

impl core::fmt::Display for ElfError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ElfError::NotElf => write!(f, "not an ELF file"),
            ElfError::NotX86_64Executable => {
                write!(f, "not a 64-bit little-endian x86_64 executable")
            }
            ElfError::Truncated(what) => write!(f, "truncated ELF: {what}"),
            ElfError::SegmentOutsideImage { index } => {
                write!(f, "segment {index} points outside the file")
            }
            ElfError::SegmentOutsideGuest(e) => write!(f, "a segment does not fit the guest: {e}"),
            ElfError::SegmentBelowFloor { index, addr } => {
                write!(
                    f,
                    "segment {index} at {addr:#x} overlaps the loader's low-memory structures"
                )
            }
            ElfError::NoLoadableSegment => write!(f, "no loadable segment"),
        }
    }
}

/// What was loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loaded {
    pub entry: u64,
    /// One past the highest loaded byte.
    pub end: u64,
}

/// Loads `image` into `mem`; segments must lie at or above `floor`
/// (the loader keeps its page tables and GDT below it).
pub fn load(image: &[u8], mem: &mut GuestMemory<'_>, floor: u64) -> Result<Loaded, ElfError> {
    if image.get(..4) != Some(b"\x7fELF") {
        return Err(ElfError::NotElf);
    }
    // 64-bit, little-endian, executable, x86_64
    if image.get(4) != Some(&2) || image.get(5) != Some(&1) {
        return Err(ElfError::NotX86_64Executable);
    }
    let e_type = u16_at(image, 16).ok_or(ElfError::Truncated("header"))?;
    let machine = u16_at(image, 18).ok_or(ElfError::Truncated("header"))?;
    if e_type != ET_EXEC || machine != EM_X86_64 {
        return Err(ElfError::NotX86_64Executable);
    }
    let entry = u64_at(image, 24).ok_or(ElfError::Truncated("header"))?;
    let phoff = u64_at(image, 32).ok_or(ElfError::Truncated("header"))? as usize;
    let phentsize = usize::from(u16_at(image, 54).ok_or(ElfError::Truncated("header"))?);
    let phnum = usize::from(u16_at(image, 56).ok_or(ElfError::Truncated("header"))?);
    if phentsize < 56 {
        return Err(ElfError::Truncated("program header size"));
    }
    let mut end = 0u64;
    let mut loaded = 0;
    for i in 0..phnum {
        let at = i
            .checked_mul(phentsize)
            .and_then(|o| o.checked_add(phoff))
            .ok_or(ElfError::Truncated("program headers"))?;
        let ph = image
            .get(at..at + 56)
            .ok_or(ElfError::Truncated("program headers"))?;
        if u32_at(ph, 0) != Some(PT_LOAD) {
            continue;
        }
        let offset = u64_at(ph, 8).unwrap_or(0);
        let paddr = u64_at(ph, 24).unwrap_or(0);
        let filesz = u64_at(ph, 32).unwrap_or(0);
        let memsz = u64_at(ph, 40).unwrap_or(0);
        if paddr < floor {
            return Err(ElfError::SegmentBelowFloor {
                index: i,
                addr: paddr,
            });
        }
        let data = usize::try_from(offset)
            .ok()
            .zip(usize::try_from(filesz).ok())
            .and_then(|(o, n)| image.get(o..o.checked_add(n)?))
            .ok_or(ElfError::SegmentOutsideImage { index: i })?;
        let memsz_usize = usize::try_from(memsz.max(filesz))
            .map_err(|_| ElfError::SegmentOutsideImage { index: i })?;
        mem.fill(GuestAddress(paddr), memsz_usize, 0)
            .map_err(ElfError::SegmentOutsideGuest)?;
        mem.write(GuestAddress(paddr), data)
            .map_err(ElfError::SegmentOutsideGuest)?;
        end = end.max(paddr + memsz.max(filesz));
        loaded += 1;
    }
    if loaded == 0 {
        return Err(ElfError::NoLoadableSegment);
    }
    Ok(Loaded { entry, end })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF: header, one PT_LOAD of `code` at `paddr` with `bss` extra bytes.
    pub fn tiny_elf(paddr: u64, code: &[u8], bss: u64) -> Vec<u8> {
        let mut e = vec![0u8; 64 + 56];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[5] = 1;
        e[6] = 1;
        e[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        e[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        e[24..32].copy_from_slice(&paddr.to_le_bytes());
        e[32..40].copy_from_slice(&64u64.to_le_bytes());
        e[54..56].copy_from_slice(&56u16.to_le_bytes());
        e[56..58].copy_from_slice(&1u16.to_le_bytes());
        let ph = 64;
        e[ph..ph + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
        e[ph + 8..ph + 16].copy_from_slice(&120u64.to_le_bytes());
        e[ph + 16..ph + 24].copy_from_slice(&paddr.to_le_bytes());
        e[ph + 24..ph + 32].copy_from_slice(&paddr.to_le_bytes());
        e[ph + 32..ph + 40].copy_from_slice(&(code.len() as u64).to_le_bytes());
        e[ph + 40..ph + 48].copy_from_slice(&(code.len() as u64 + bss).to_le_bytes());
        e.extend_from_slice(code);
        e
    }

    #[test]
    fn loads_segments_and_zeroes_bss() {
        let mut ram = vec![0xeeu8; 0x4000];
        let mut m = GuestMemory::new(&mut ram);
        let l = load(&tiny_elf(0x2000, &[0xf4, 0x90], 6), &mut m, 0x1000).unwrap();
        assert_eq!(
            l,
            Loaded {
                entry: 0x2000,
                end: 0x2008
            }
        );
        let mut b = [0u8; 9];
        m.read(GuestAddress(0x2000), &mut b).unwrap();
        assert_eq!(b, [0xf4, 0x90, 0, 0, 0, 0, 0, 0, 0xee]);
    }

    #[test]
    fn rejects_bad_images_without_panicking() {
        let mut ram = vec![0u8; 0x4000];
        let mut m = GuestMemory::new(&mut ram);
        assert_eq!(load(b"nope", &mut m, 0), Err(ElfError::NotElf));
        let good = tiny_elf(0x2000, &[0xf4], 0);
        assert!(matches!(
            load(&tiny_elf(0x3fff, &[1, 2], 0), &mut m, 0),
            Err(ElfError::SegmentOutsideGuest(_))
        ));
        assert!(matches!(
            load(&good, &mut m, 0x3000),
            Err(ElfError::SegmentBelowFloor { .. })
        ));
        for cut in 0..good.len() {
            let _ = load(&good[..cut], &mut m, 0);
        }
        for i in 0..good.len() {
            for x in [1u8, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[i] ^= x;
                let _ = load(&bad, &mut m, 0);
            }
        }
    }
}
