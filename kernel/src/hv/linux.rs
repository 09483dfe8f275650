//! The Linux x86 boot protocol (Documentation/arch/x86/boot.rst), 64-bit
//! entry: the protected-mode kernel of a bzImage is loaded at an aligned
//! address, a `boot_params` page carries the setup header, command line,
//! initrd and E820 map, and the vCPU starts at `startup_64` with RSI pointing
//! at `boot_params`.

use super::longmode::{self, LongModeEntry};
use super::memory::{GuestAddress, GuestMemory, OutOfBounds};
use crate::le::{u16_at, u32_at, u64_at};

/// Guest-physical places the loader uses (below 1 MiB, above the page tables).
pub const BOOT_PARAMS: u64 = 0x8000;
pub const CMDLINE: u64 = 0x2_0000;
pub const CMDLINE_MAX: usize = 0x1_0000;
/// Where the kernel goes unless its header prefers another aligned address.
pub const DEFAULT_LOAD: u64 = 0x100_0000;

mod hdr {
    pub const SETUP_SECTS: usize = 0x1f1;
    pub const BOOT_FLAG: usize = 0x1fe;
    pub const HEADER: usize = 0x202;
    pub const VERSION: usize = 0x206;
    pub const TYPE_OF_LOADER: usize = 0x210;
    pub const LOADFLAGS: usize = 0x211;
    pub const RAMDISK_IMAGE: usize = 0x218;
    pub const RAMDISK_SIZE: usize = 0x21c;
    pub const CMD_LINE_PTR: usize = 0x228;
    pub const INITRD_ADDR_MAX: usize = 0x22c;
    pub const KERNEL_ALIGNMENT: usize = 0x230;
    pub const RELOCATABLE: usize = 0x234;
    pub const XLOADFLAGS: usize = 0x236;
    pub const CMDLINE_SIZE: usize = 0x238;
    pub const PREF_ADDRESS: usize = 0x258;
    pub const INIT_SIZE: usize = 0x260;
    /// The header ends at 0x202 + the byte at 0x201.
    pub const JUMP_END: usize = 0x201;
    // boot_params fields outside the setup header
    pub const E820_ENTRIES: usize = 0x1e8;
    pub const ACPI_RSDP_ADDR: usize = 0x070;
    pub const E820_TABLE: usize = 0x2d0;
}

const LOADED_HIGH: u8 = 0x01;
const CAN_USE_HEAP: u8 = 0x80;
const XLF_KERNEL_64: u16 = 0x01;
const LOADER_UNDEFINED: u8 = 0xff;
const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;
const MIN_VERSION: u16 = 0x020c;

/// Why a kernel could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinuxError {
    NotBzImage,
    TooOld(u16),
    No64BitEntry,
    Truncated,
    CmdlineTooLong(usize),
    DoesNotFit(OutOfBounds),
    InitrdDoesNotFit { size: usize },
}

impl core::fmt::Display for LinuxError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LinuxError::NotBzImage => write!(f, "not a Linux bzImage (no HdrS header)"),
            LinuxError::TooOld(v) => write!(
                f,
                "boot protocol {}.{:02} is older than 2.12",
                v >> 8,
                v & 0xff
            ),
            LinuxError::No64BitEntry => write!(f, "the kernel has no 64-bit entry point"),
            LinuxError::Truncated => write!(f, "the kernel image is truncated"),
            LinuxError::CmdlineTooLong(n) => write!(
                f,
                "the command line ({n} bytes) is longer than the kernel accepts"
            ),
            LinuxError::DoesNotFit(e) => write!(f, "the kernel does not fit the guest: {e}"),
            LinuxError::InitrdDoesNotFit { size } => {
                write!(f, "the initrd ({size} bytes) does not fit the guest")
            }
        }
    }
}

/// Loads `bzimage` (and `initrd`) into `mem` with `cmdline`; returns the
/// 64-bit entry state.
pub fn load(
    bzimage: &[u8],
    initrd: Option<&[u8]>,
    cmdline: &str,
    rsdp: Option<u64>,
    mem: &mut GuestMemory<'_>,
) -> Result<LongModeEntry, LinuxError> {
    if u32_at(bzimage, hdr::HEADER) != Some(u32::from_le_bytes(*b"HdrS"))
        || u16_at(bzimage, hdr::BOOT_FLAG) != Some(0xaa55)
    {
        return Err(LinuxError::NotBzImage);
    }
    let version = u16_at(bzimage, hdr::VERSION).ok_or(LinuxError::Truncated)?;
    if version < MIN_VERSION {
        return Err(LinuxError::TooOld(version));
    }
    let xloadflags = u16_at(bzimage, hdr::XLOADFLAGS).ok_or(LinuxError::Truncated)?;
    if xloadflags & XLF_KERNEL_64 == 0 {
        return Err(LinuxError::No64BitEntry);
    }
    let setup_sects = match bzimage
        .get(hdr::SETUP_SECTS)
        .copied()
        .ok_or(LinuxError::Truncated)?
    {
        0 => 4,
        n => usize::from(n),
    };
    let kernel = bzimage
        .get((setup_sects + 1) * 512..)
        .ok_or(LinuxError::Truncated)?;
    let header_end = 0x202 + usize::from(*bzimage.get(hdr::JUMP_END).ok_or(LinuxError::Truncated)?);
    let header = bzimage
        .get(hdr::SETUP_SECTS..header_end)
        .ok_or(LinuxError::Truncated)?;

    let align =
        u64::from(u32_at(bzimage, hdr::KERNEL_ALIGNMENT).ok_or(LinuxError::Truncated)?).max(0x1000);
    let relocatable = bzimage.get(hdr::RELOCATABLE).copied().unwrap_or(0) != 0;
    let pref = u64_at(bzimage, hdr::PREF_ADDRESS).ok_or(LinuxError::Truncated)?;
    let load_at = if relocatable || pref < DEFAULT_LOAD {
        DEFAULT_LOAD.div_ceil(align) * align
    } else {
        pref
    };
    let init_size = u64::from(u32_at(bzimage, hdr::INIT_SIZE).ok_or(LinuxError::Truncated)?);
    let cmdline_max = u32_at(bzimage, hdr::CMDLINE_SIZE).ok_or(LinuxError::Truncated)? as usize;
    if cmdline.len() >= cmdline_max.min(CMDLINE_MAX) {
        return Err(LinuxError::CmdlineTooLong(cmdline.len()));
    }

    // The kernel decompresses in place and needs init_size bytes from load_at.
    let kernel_end = load_at + init_size.max(kernel.len() as u64);
    if kernel_end > mem.size() {
        return Err(LinuxError::DoesNotFit(OutOfBounds {
            addr: GuestAddress(load_at),
            len: init_size as usize,
            size: mem.size(),
        }));
    }
    mem.write(GuestAddress(load_at), kernel)
        .map_err(LinuxError::DoesNotFit)?;

    let mut params = [0u8; 4096];
    params[hdr::SETUP_SECTS..header_end].copy_from_slice(header);
    params[hdr::TYPE_OF_LOADER] = LOADER_UNDEFINED;
    params[hdr::LOADFLAGS] |= LOADED_HIGH | CAN_USE_HEAP;
    params[hdr::CMD_LINE_PTR..hdr::CMD_LINE_PTR + 4]
        .copy_from_slice(&(CMDLINE as u32).to_le_bytes());
    if let Some(rsdp) = rsdp {
        params[hdr::ACPI_RSDP_ADDR..hdr::ACPI_RSDP_ADDR + 8].copy_from_slice(&rsdp.to_le_bytes());
    }

    if let Some(rd) = initrd {
        let max = u64::from(u32_at(bzimage, hdr::INITRD_ADDR_MAX).unwrap_or(0x37ff_ffff))
            .min(mem.size() - 1);
        let size = rd.len() as u64;
        let at = (max + 1).saturating_sub(size) & !0xfff;
        if at < kernel_end || size == 0 {
            return Err(LinuxError::InitrdDoesNotFit { size: rd.len() });
        }
        mem.write(GuestAddress(at), rd)
            .map_err(|_| LinuxError::InitrdDoesNotFit { size: rd.len() })?;
        params[hdr::RAMDISK_IMAGE..hdr::RAMDISK_IMAGE + 4]
            .copy_from_slice(&(at as u32).to_le_bytes());
        params[hdr::RAMDISK_SIZE..hdr::RAMDISK_SIZE + 4]
            .copy_from_slice(&(size as u32).to_le_bytes());
    }

    // E820: low RAM, the legacy hole (VGA, option ROMs, BIOS), RAM above
    // 1 MiB, and the PCI ECAM window (Linux trusts the MCFG only where E820
    // reserves it).
    let map: [(u64, u64, u32); 4] = [
        (0, 0x9_fc00, E820_RAM),
        (0x9_fc00, 0x10_0000 - 0x9_fc00, E820_RESERVED),
        (0x10_0000, mem.size() - 0x10_0000, E820_RAM),
        (super::pci::ECAM_BASE, super::pci::ECAM_SIZE, E820_RESERVED),
    ];
    params[hdr::E820_ENTRIES] = map.len() as u8;
    for (i, (addr, size, kind)) in map.iter().enumerate() {
        let at = hdr::E820_TABLE + i * 20;
        params[at..at + 8].copy_from_slice(&addr.to_le_bytes());
        params[at + 8..at + 16].copy_from_slice(&size.to_le_bytes());
        params[at + 16..at + 20].copy_from_slice(&kind.to_le_bytes());
    }
    mem.write(GuestAddress(BOOT_PARAMS), &params)
        .map_err(LinuxError::DoesNotFit)?;
    mem.fill(GuestAddress(CMDLINE), cmdline.len() + 1, 0)
        .map_err(LinuxError::DoesNotFit)?;
    mem.write(GuestAddress(CMDLINE), cmdline.as_bytes())
        .map_err(LinuxError::DoesNotFit)?;

    let mut entry = longmode::prepare(mem, load_at + 0x200, 0).map_err(LinuxError::DoesNotFit)?;
    entry.rsi = BOOT_PARAMS;
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic bzImage: 4 setup sectors + boot sector, then `payload`.
    fn bzimage(payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 5 * 512];
        b[hdr::SETUP_SECTS] = 4;
        b[hdr::BOOT_FLAG..hdr::BOOT_FLAG + 2].copy_from_slice(&0xaa55u16.to_le_bytes());
        b[hdr::JUMP_END] = 0x6a; // header runs to 0x26c
        b[hdr::HEADER..hdr::HEADER + 4].copy_from_slice(b"HdrS");
        b[hdr::VERSION..hdr::VERSION + 2].copy_from_slice(&0x020fu16.to_le_bytes());
        b[hdr::KERNEL_ALIGNMENT..hdr::KERNEL_ALIGNMENT + 4]
            .copy_from_slice(&0x20_0000u32.to_le_bytes());
        b[hdr::RELOCATABLE] = 1;
        b[hdr::XLOADFLAGS..hdr::XLOADFLAGS + 2].copy_from_slice(&1u16.to_le_bytes());
        b[hdr::CMDLINE_SIZE..hdr::CMDLINE_SIZE + 4].copy_from_slice(&2047u32.to_le_bytes());
        b[hdr::INITRD_ADDR_MAX..hdr::INITRD_ADDR_MAX + 4]
            .copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        b[hdr::INIT_SIZE..hdr::INIT_SIZE + 4].copy_from_slice(&0x10_0000u32.to_le_bytes());
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn loads_kernel_initrd_cmdline_and_e820() {
        let mut ram = vec![0u8; 32 << 20];
        let mut m = GuestMemory::new(&mut ram);
        let e = load(
            &bzimage(b"KERNEL"),
            Some(b"INITRD"),
            "console=ttyS0",
            Some(0xe_0000),
            &mut m,
        )
        .unwrap();
        assert_eq!(e.rip, DEFAULT_LOAD + 0x200);
        assert_eq!(e.rsi, BOOT_PARAMS);
        let mut k = [0u8; 6];
        m.read(GuestAddress(DEFAULT_LOAD), &mut k).unwrap();
        assert_eq!(&k, b"KERNEL");
        let mut p = vec![0u8; 4096];
        m.read(GuestAddress(BOOT_PARAMS), &mut p).unwrap();
        assert_eq!(p[hdr::TYPE_OF_LOADER], 0xff);
        assert_eq!(&p[hdr::HEADER..hdr::HEADER + 4], b"HdrS");
        assert_eq!(u32_at(&p, hdr::CMD_LINE_PTR), Some(CMDLINE as u32));
        let rd = u32_at(&p, hdr::RAMDISK_IMAGE).unwrap() as u64;
        assert_eq!(u32_at(&p, hdr::RAMDISK_SIZE), Some(6));
        assert_eq!(rd % 4096, 0);
        assert!(rd + 6 <= 32 << 20 && rd > DEFAULT_LOAD);
        let mut r = [0u8; 6];
        m.read(GuestAddress(rd), &mut r).unwrap();
        assert_eq!(&r, b"INITRD");
        assert_eq!(p[hdr::E820_ENTRIES], 4);
        assert_eq!(u64_at(&p, hdr::E820_TABLE + 60), Some(0xe000_0000));
        assert_eq!(u64_at(&p, hdr::ACPI_RSDP_ADDR), Some(0xe_0000));
        assert_eq!(u64_at(&p, hdr::E820_TABLE + 40), Some(0x10_0000));
        let mut c = [0u8; 14];
        m.read(GuestAddress(CMDLINE), &mut c).unwrap();
        assert_eq!(&c, b"console=ttyS0\0");
    }

    #[test]
    fn refuses_what_it_cannot_boot() {
        let mut ram = vec![0u8; 32 << 20];
        let mut m = GuestMemory::new(&mut ram);
        assert_eq!(
            load(b"MZ", None, "", None, &mut m),
            Err(LinuxError::NotBzImage)
        );
        let mut old = bzimage(b"K");
        old[hdr::VERSION..hdr::VERSION + 2].copy_from_slice(&0x0204u16.to_le_bytes());
        assert_eq!(
            load(&old, None, "", None, &mut m),
            Err(LinuxError::TooOld(0x0204))
        );
        let mut no64 = bzimage(b"K");
        no64[hdr::XLOADFLAGS] = 0;
        assert_eq!(
            load(&no64, None, "", None, &mut m),
            Err(LinuxError::No64BitEntry)
        );
        let long = "x".repeat(3000);
        assert_eq!(
            load(&bzimage(b"K"), None, &long, None, &mut m),
            Err(LinuxError::CmdlineTooLong(3000))
        );
        let big = vec![0u8; 40 << 20];
        assert!(matches!(
            load(&bzimage(b"K"), Some(&big), "", None, &mut m),
            Err(LinuxError::InitrdDoesNotFit { .. })
        ));
        let good = bzimage(b"KERNEL");
        for cut in 0..0x270 {
            let _ = load(&good[..cut], None, "", None, &mut m);
        }
    }
}
