//! Loading an x86_64 ELF executable into guest memory: a static executable
//! (ET_EXEC, the test guests) at its physical addresses, or a static PIE
//! (ET_DYN, how Hermit images are linked) at a chosen base with its
//! R_X86_64_RELATIVE relocations applied; bss zeroed. Also reports the TLS
//! segment and the Hermit entry-version note. Every offset and size comes
//! from the image and is checked: a hostile image gets an error, never a panic.

use super::memory::{GuestAddress, GuestMemory, OutOfBounds};
use crate::le::{u16_at, u32_at, u64_at};

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_NOTE: u32 = 4;
const PT_TLS: u32 = 7;
const EM_X86_64: u16 = 62;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_RELA: u64 = 7;
const DT_RELASZ: u64 = 8;
const DT_RELAENT: u64 = 9;
const R_X86_64_NONE: u32 = 0;
const R_X86_64_RELATIVE: u32 = 8;
/// Hermit's entry-version note: name "HERMIT", this type, one byte of version.
const NT_HERMIT_ENTRY_VERSION: u32 = 0x5a00;
/// The most relocations an image may carry (24 bytes each: 48 MiB of table).
const MAX_RELOCATIONS: u64 = 2 << 20;

/// Why an image could not be loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfError {
    NotElf,
    NotX86_64Executable,
    Truncated(&'static str),
    SegmentOutsideImage {
        index: usize,
    },
    SegmentOutsideGuest(OutOfBounds),
    SegmentBelowFloor {
        index: usize,
        addr: u64,
    },
    NoLoadableSegment,
    /// A PIE needs shared libraries (DT_NEEDED): there is no dynamic linker.
    NeedsLibraries,
    UnsupportedRelocation(u32),
    BadDynamic(&'static str),
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
            ElfError::NeedsLibraries => write!(f, "the image needs shared libraries"),
            ElfError::UnsupportedRelocation(t) => {
                write!(
                    f,
                    "relocation type {t} is not supported (only R_X86_64_RELATIVE)"
                )
            }
            ElfError::BadDynamic(what) => write!(f, "bad dynamic section: {what}"),
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

/// The thread-local storage template (PT_TLS), at its loaded address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tls {
    pub start: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub align: u64,
}

/// A loaded image with what a Hermit loader needs to know about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Image {
    pub entry: u64,
    /// Guest-physical range of the loaded segments.
    pub start: u64,
    pub end: u64,
    pub tls: Option<Tls>,
}

/// One program header's fields (64-bit layout).
#[derive(Debug, Clone, Copy)]
struct Segment {
    kind: u32,
    offset: u64,
    vaddr: u64,
    paddr: u64,
    filesz: u64,
    memsz: u64,
    align: u64,
}

/// The program headers of `image`, checked to lie inside it.
fn segments(image: &[u8]) -> Result<(u16, u64, alloc::vec::Vec<Segment>), ElfError> {
    if image.get(..4) != Some(b"\x7fELF") {
        return Err(ElfError::NotElf);
    }
    if image.get(4) != Some(&2) || image.get(5) != Some(&1) {
        return Err(ElfError::NotX86_64Executable);
    }
    let e_type = u16_at(image, 16).ok_or(ElfError::Truncated("header"))?;
    let machine = u16_at(image, 18).ok_or(ElfError::Truncated("header"))?;
    if !(e_type == ET_EXEC || e_type == ET_DYN) || machine != EM_X86_64 {
        return Err(ElfError::NotX86_64Executable);
    }
    let entry = u64_at(image, 24).ok_or(ElfError::Truncated("header"))?;
    let phoff = usize::try_from(u64_at(image, 32).ok_or(ElfError::Truncated("header"))?)
        .map_err(|_| ElfError::Truncated("program headers"))?;
    let phentsize = usize::from(u16_at(image, 54).ok_or(ElfError::Truncated("header"))?);
    let phnum = usize::from(u16_at(image, 56).ok_or(ElfError::Truncated("header"))?);
    if phentsize < 56 {
        return Err(ElfError::Truncated("program header size"));
    }
    let mut out = alloc::vec::Vec::with_capacity(phnum);
    for i in 0..phnum {
        let ph = i
            .checked_mul(phentsize)
            .and_then(|o| o.checked_add(phoff))
            .and_then(|at| image.get(at..at.checked_add(56)?))
            .ok_or(ElfError::Truncated("program headers"))?;
        let field = |at| u64_at(ph, at).unwrap_or(0);
        out.push(Segment {
            kind: u32_at(ph, 0).unwrap_or(0),
            offset: field(8),
            vaddr: field(16),
            paddr: field(24),
            filesz: field(32),
            memsz: field(40),
            align: field(48),
        });
    }
    Ok((e_type, entry, out))
}

/// The bytes of `seg` in the file.
fn file_bytes<'a>(image: &'a [u8], seg: &Segment) -> Option<&'a [u8]> {
    let o = usize::try_from(seg.offset).ok()?;
    let n = usize::try_from(seg.filesz).ok()?;
    image.get(o..o.checked_add(n)?)
}

/// The Hermit entry version from the notes in `bytes` (PT_NOTE contents).
fn hermit_note(mut bytes: &[u8]) -> Option<u8> {
    while bytes.len() >= 12 {
        let namesz = u32_at(bytes, 0)? as usize;
        let descsz = u32_at(bytes, 4)? as usize;
        let kind = u32_at(bytes, 8)?;
        let name_end = 12usize.checked_add(namesz)?;
        let desc_at = name_end.checked_add(3)? & !3;
        let desc_end = desc_at.checked_add(descsz)?;
        let next = desc_end.checked_add(3)? & !3;
        let name = bytes.get(12..name_end)?;
        let desc = bytes.get(desc_at..desc_end)?;
        if kind == NT_HERMIT_ENTRY_VERSION && name == b"HERMIT\0" {
            return desc.first().copied();
        }
        bytes = bytes.get(next..).unwrap_or(&[]);
    }
    None
}

/// The version byte of `image`'s Hermit entry-version note, if it has one.
pub fn hermit_entry_version(image: &[u8]) -> Option<u8> {
    let (_, _, segs) = segments(image).ok()?;
    segs.iter()
        .filter(|s| s.kind == PT_NOTE)
        .filter_map(|s| file_bytes(image, s))
        .find_map(hermit_note)
}

/// Loads `image` into `mem`. A static executable lands at its physical
/// addresses; a PIE at `pie_base` plus its virtual addresses. Segments must
/// lie at or above `floor` (the loader keeps its page tables and GDT below).
pub fn load_image(
    image: &[u8],
    mem: &mut GuestMemory<'_>,
    floor: u64,
    pie_base: u64,
) -> Result<Image, ElfError> {
    let (e_type, entry, segs) = segments(image)?;
    let base = if e_type == ET_DYN { pie_base } else { 0 };
    let place = |seg: &Segment| {
        if e_type == ET_DYN {
            base.checked_add(seg.vaddr)
        } else {
            Some(seg.paddr)
        }
    };
    let (mut start, mut end, mut loaded) = (u64::MAX, 0u64, 0);
    for (i, seg) in segs.iter().enumerate().filter(|(_, s)| s.kind == PT_LOAD) {
        let at = place(seg).ok_or(ElfError::SegmentOutsideImage { index: i })?;
        if at < floor {
            return Err(ElfError::SegmentBelowFloor { index: i, addr: at });
        }
        let data = file_bytes(image, seg).ok_or(ElfError::SegmentOutsideImage { index: i })?;
        let size = seg.memsz.max(seg.filesz);
        let seg_end = at
            .checked_add(size)
            .ok_or(ElfError::SegmentOutsideImage { index: i })?;
        let size = usize::try_from(size).map_err(|_| ElfError::SegmentOutsideImage { index: i })?;
        mem.fill(GuestAddress(at), size, 0)
            .map_err(ElfError::SegmentOutsideGuest)?;
        mem.write(GuestAddress(at), data)
            .map_err(ElfError::SegmentOutsideGuest)?;
        start = start.min(at);
        end = end.max(seg_end);
        loaded += 1;
    }
    if loaded == 0 {
        return Err(ElfError::NoLoadableSegment);
    }
    if e_type == ET_DYN {
        relocate(image, &segs, base, mem)?;
    }
    let tls = segs.iter().find(|s| s.kind == PT_TLS).and_then(|s| {
        Some(Tls {
            start: place(s)?,
            filesz: s.filesz,
            memsz: s.memsz,
            align: s.align,
        })
    });
    Ok(Image {
        entry: entry.wrapping_add(base),
        start,
        end,
        tls,
    })
}

/// Applies a PIE's relocations (the RELA table its dynamic section names),
/// now that its segments are in guest memory at `base`.
fn relocate(
    image: &[u8],
    segs: &[Segment],
    base: u64,
    mem: &mut GuestMemory<'_>,
) -> Result<(), ElfError> {
    let Some(dynamic) = segs.iter().find(|s| s.kind == PT_DYNAMIC) else {
        return Ok(());
    };
    let table = file_bytes(image, dynamic).ok_or(ElfError::BadDynamic("outside the file"))?;
    let (mut rela, mut relasz, mut relaent) = (None, 0u64, 24u64);
    for entry in table.chunks_exact(16) {
        let tag = u64_at(entry, 0).unwrap_or(DT_NULL);
        let value = u64_at(entry, 8).unwrap_or(0);
        match tag {
            DT_NULL => break,
            DT_NEEDED => return Err(ElfError::NeedsLibraries),
            DT_RELA => rela = Some(value),
            DT_RELASZ => relasz = value,
            DT_RELAENT => relaent = value,
            _ => {}
        }
    }
    let Some(rela) = rela else { return Ok(()) };
    if relaent != 24 {
        return Err(ElfError::BadDynamic("RELA entries are not 24 bytes"));
    }
    let count = relasz / 24;
    if count > MAX_RELOCATIONS {
        return Err(ElfError::BadDynamic("too many relocations"));
    }
    let table_at = base
        .checked_add(rela)
        .ok_or(ElfError::BadDynamic("RELA table address"))?;
    for k in 0..count {
        let mut r = [0u8; 24];
        mem.read(GuestAddress(table_at.saturating_add(k * 24)), &mut r)
            .map_err(|_| ElfError::BadDynamic("RELA table outside the image"))?;
        let offset = u64_at(&r, 0).unwrap_or(0);
        let kind = u32_at(&r, 8).unwrap_or(0);
        let addend = u64_at(&r, 16).unwrap_or(0);
        match kind {
            R_X86_64_NONE => {}
            R_X86_64_RELATIVE => {
                let at = base
                    .checked_add(offset)
                    .ok_or(ElfError::BadDynamic("relocation address"))?;
                mem.write_u64(GuestAddress(at), base.wrapping_add(addend))
                    .map_err(ElfError::SegmentOutsideGuest)?;
            }
            other => return Err(ElfError::UnsupportedRelocation(other)),
        }
    }
    Ok(())
}

/// Loads a static executable into `mem`; segments must lie at or above `floor`
/// (the loader keeps its page tables and GDT below it).
pub fn load(image: &[u8], mem: &mut GuestMemory<'_>, floor: u64) -> Result<Loaded, ElfError> {
    let loaded = load_image(image, mem, floor, 0)?;
    Ok(Loaded {
        entry: loaded.entry,
        end: loaded.end,
    })
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

    /// A static PIE: one PT_LOAD of the whole file at vaddr 0, a dynamic
    /// section with one R_X86_64_RELATIVE, and a Hermit note.
    fn tiny_pie() -> Vec<u8> {
        let (phoff, phnum) = (64usize, 3usize);
        let note = phoff + 56 * phnum; // 232
        let dynamic = note + 24;
        let dynamic = dynamic.div_ceil(8) * 8;
        let rela = dynamic + 4 * 16;
        let slot = rela + 24;
        let len = slot + 8;
        let mut e = vec![0u8; len];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[5] = 1;
        e[16..18].copy_from_slice(&ET_DYN.to_le_bytes());
        e[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        e[24..32].copy_from_slice(&0x40u64.to_le_bytes());
        e[32..40].copy_from_slice(&(phoff as u64).to_le_bytes());
        e[54..56].copy_from_slice(&56u16.to_le_bytes());
        e[56..58].copy_from_slice(&(phnum as u16).to_le_bytes());
        let mut ph = |i: usize, kind: u32, off: usize, size: usize| {
            let at = phoff + 56 * i;
            e[at..at + 4].copy_from_slice(&kind.to_le_bytes());
            for (f, v) in [(8, off), (16, off), (24, off), (32, size), (40, size)] {
                e[at + f..at + f + 8].copy_from_slice(&(v as u64).to_le_bytes());
            }
        };
        ph(0, PT_LOAD, 0, len);
        ph(1, PT_DYNAMIC, dynamic, 4 * 16);
        ph(2, PT_NOTE, note, 24);
        let n = note;
        e[n..n + 4].copy_from_slice(&7u32.to_le_bytes());
        e[n + 4..n + 8].copy_from_slice(&1u32.to_le_bytes());
        e[n + 8..n + 12].copy_from_slice(&NT_HERMIT_ENTRY_VERSION.to_le_bytes());
        e[n + 12..n + 19].copy_from_slice(b"HERMIT\0");
        e[n + 20] = 4;
        for (k, (tag, value)) in [
            (DT_RELA, rela as u64),
            (DT_RELASZ, 24),
            (DT_RELAENT, 24),
            (DT_NULL, 0),
        ]
        .into_iter()
        .enumerate()
        {
            let at = dynamic + 16 * k;
            e[at..at + 8].copy_from_slice(&tag.to_le_bytes());
            e[at + 8..at + 16].copy_from_slice(&value.to_le_bytes());
        }
        e[rela..rela + 8].copy_from_slice(&(slot as u64).to_le_bytes());
        e[rela + 8..rela + 16].copy_from_slice(&u64::from(R_X86_64_RELATIVE).to_le_bytes());
        e[rela + 16..rela + 24].copy_from_slice(&0x1234u64.to_le_bytes());
        e
    }

    #[test]
    fn loads_a_pie_at_its_base_and_relocates_it() {
        let pie = tiny_pie();
        let mut ram = vec![0u8; 0x4000];
        let mut m = GuestMemory::new(&mut ram);
        let img = load_image(&pie, &mut m, 0x1000, 0x2000).unwrap();
        assert_eq!(img.entry, 0x2040);
        assert_eq!((img.start, img.end), (0x2000, 0x2000 + pie.len() as u64));
        assert_eq!(hermit_entry_version(&pie), Some(4));
        let slot = 0x2000 + pie.len() as u64 - 8;
        assert_eq!(m.read_u64(GuestAddress(slot)), Ok(0x2000 + 0x1234));
        assert_eq!(hermit_entry_version(&tiny_elf(0x2000, &[0xf4], 0)), None);
    }

    #[test]
    fn hostile_pies_get_errors_not_panics() {
        let good = tiny_pie();
        let mut ram = vec![0u8; 0x4000];
        let mut m = GuestMemory::new(&mut ram);
        for cut in 0..good.len() {
            let _ = load_image(&good[..cut], &mut m, 0, 0x2000);
            let _ = hermit_entry_version(&good[..cut]);
        }
        for i in 0..good.len() {
            for x in [1u8, 0x7f, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[i] ^= x;
                let _ = load_image(&bad, &mut m, 0, 0x2000);
                let _ = load_image(&bad, &mut m, 0, u64::MAX - 0x100);
                let _ = hermit_entry_version(&bad);
            }
        }
        let mut other = good.clone();
        let rela_type = good.len() - 8 - 24 + 8;
        other[rela_type] = 1; // R_X86_64_64 needs symbols
        assert_eq!(
            load_image(&other, &mut m, 0, 0x2000),
            Err(ElfError::UnsupportedRelocation(1))
        );
    }
}
