//! Legacy BIOS boot on a GPT disk, as `grub-bios-setup` does it: GRUB's
//! 440-byte `boot.img` code goes into the protective MBR and is told the
//! LBA of `core.img`, which sits in the BIOS boot partition; the first
//! sector of `core.img` (`diskboot.img`) holds a block list that loads the
//! rest. Offsets are GRUB's `i386/pc/boot.h`.

/// `boot.img` bytes copied into the MBR: the code, up to the disk signature.
const BOOT_CODE_END: usize = 0x1B8;
/// u64: LBA of the first sector of `core.img`.
const KERNEL_SECTOR: usize = 0x5C;
/// The 2-byte jump that trusts only drive numbers >= 0x80 when booted
/// from a floppy-like drive; replaced by two NOPs for hard disks, as
/// `grub-bios-setup` does, for BIOSes that pass a wrong drive number.
const DRIVE_CHECK: usize = 0x66;
/// The block list at the end of `diskboot.img`: start u64, length u16, segment u16.
const BLOCKLIST: usize = 0x200 - 12;
/// Where `diskboot.img` loads the rest of the core (`GRUB_BOOT_MACHINE_KERNEL_SEG + 0x20`).
const BLOCKLIST_SEGMENT: u16 = 0x820;
const SECTOR: usize = 512;

/// Why the BIOS boot code cannot be installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BiosBootError {
    /// `boot.img` is not one 0x55AA-signed sector.
    BadBootImage,
    /// `core.img`'s block list is not the one `grub-mkimage -O i386-pc` writes.
    BadCoreImage,
    /// `core.img` does not fit in the BIOS boot partition.
    CoreTooLarge { sectors: u64, room: u64 },
}

impl core::fmt::Display for BiosBootError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BadBootImage => f.write_str("boot.img is not a 512-byte 0x55AA boot sector"),
            Self::BadCoreImage => f.write_str(
                "core.img lacks diskboot's block list (make it with grub-mkimage -O i386-pc)",
            ),
            Self::CoreTooLarge { sectors, room } => write!(
                f,
                "core.img needs {sectors} sectors, the BIOS boot partition has {room}"
            ),
        }
    }
}

/// Writes `boot_img`'s code into `mbr` (keeping its partition table) aimed
/// at `core_lba`, and points `core_img`'s block list at the sectors after
/// it. `core_img` is padded to whole sectors by the caller or not at all.
pub fn install(
    boot_img: &[u8],
    mbr: &mut [u8],
    core_img: &mut [u8],
    core_lba: u64,
    partition_sectors: u64,
) -> Result<(), BiosBootError> {
    if boot_img.len() != SECTOR || boot_img[510..512] != [0x55, 0xAA] || mbr.len() != SECTOR {
        return Err(BiosBootError::BadBootImage);
    }
    let sectors = core_img.len().div_ceil(SECTOR) as u64;
    if sectors > partition_sectors {
        return Err(BiosBootError::CoreTooLarge {
            sectors,
            room: partition_sectors,
        });
    }
    let list = core_img
        .get_mut(BLOCKLIST..BLOCKLIST + 12)
        .ok_or(BiosBootError::BadCoreImage)?;
    let len = u16::from_le_bytes([list[8], list[9]]);
    let segment = u16::from_le_bytes([list[10], list[11]]);
    if u64::from(len) + 1 != sectors || segment != BLOCKLIST_SEGMENT {
        return Err(BiosBootError::BadCoreImage);
    }
    list[0..8].copy_from_slice(&(core_lba + 1).to_le_bytes());

    mbr[..BOOT_CODE_END].copy_from_slice(&boot_img[..BOOT_CODE_END]);
    mbr[KERNEL_SECTOR..KERNEL_SECTOR + 8].copy_from_slice(&core_lba.to_le_bytes());
    mbr[DRIVE_CHECK..DRIVE_CHECK + 2].copy_from_slice(&[0x90, 0x90]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_core(sectors: usize) -> Vec<u8> {
        let mut core = vec![0u8; sectors * SECTOR];
        core[BLOCKLIST..BLOCKLIST + 8].copy_from_slice(&2u64.to_le_bytes());
        core[BLOCKLIST + 8..BLOCKLIST + 10].copy_from_slice(&(sectors as u16 - 1).to_le_bytes());
        core[BLOCKLIST + 10..BLOCKLIST + 12].copy_from_slice(&BLOCKLIST_SEGMENT.to_le_bytes());
        core
    }

    #[test]
    fn patches_mbr_and_core() {
        let mut boot = vec![0xAB; SECTOR];
        boot[510] = 0x55;
        boot[511] = 0xAA;
        let mut mbr = vec![0u8; SECTOR];
        mbr[0x1BE + 4] = 0xEE;
        let mut core = fake_core(4);
        install(&boot, &mut mbr, &mut core, 2048, 2048).expect("install");
        assert_eq!(mbr[0], 0xAB);
        assert_eq!(mbr[KERNEL_SECTOR..KERNEL_SECTOR + 8], 2048u64.to_le_bytes());
        assert_eq!(mbr[DRIVE_CHECK..DRIVE_CHECK + 2], [0x90, 0x90]);
        assert_eq!(mbr[0x1BE + 4], 0xEE, "partition table kept");
        assert_eq!(core[BLOCKLIST..BLOCKLIST + 8], 2049u64.to_le_bytes());
    }

    #[test]
    fn refuses_wrong_inputs() {
        let mut mbr = vec![0u8; SECTOR];
        let mut core = fake_core(4);
        assert_eq!(
            install(&[0; SECTOR], &mut mbr, &mut core, 2048, 2048),
            Err(BiosBootError::BadBootImage)
        );
        let mut boot = vec![0u8; SECTOR];
        boot[510..].copy_from_slice(&[0x55, 0xAA]);
        assert_eq!(
            install(&boot, &mut mbr, &mut core, 2048, 3),
            Err(BiosBootError::CoreTooLarge {
                sectors: 4,
                room: 3
            })
        );
        let mut short = vec![0u8; 100];
        assert_eq!(
            install(&boot, &mut mbr, &mut short, 2048, 2048),
            Err(BiosBootError::BadCoreImage)
        );
    }
}
