//! Where the GRUB environment block lives on a keel disk: the file
//! `GRUBENV` in the root of the EFI system partition (FAT12/16). GRUB reads
//! and rewrites it in place (`load_env`/`save_env -f /GRUBENV`); the
//! appliance's upgrade writer finds its two sectors here and rewrites them
//! the same way, without a FAT driver. The builder writes it first into a
//! fresh file system, so it sits in the first data cluster, contiguous.

/// The file's 8.3 name as its directory entry holds it.
pub const ENV_FILE_83: &[u8; 11] = b"GRUBENV    ";
/// The path GRUB and mtools use.
pub const ENV_FILE: &str = "GRUBENV";

/// Why the block cannot be located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EspError {
    /// Not a FAT12/16 boot sector with 512-byte sectors.
    NotFat16,
    /// No `GRUBENV` entry in the root directory.
    NoEnvFile,
    /// The entry exists but is not one contiguous 1024-byte run.
    BadEnvFile,
}

impl core::fmt::Display for EspError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotFat16 => f.write_str("the ESP is not FAT12/16 with 512-byte sectors"),
            Self::NoEnvFile => f.write_str("the ESP root has no GRUBENV file"),
            Self::BadEnvFile => {
                f.write_str("GRUBENV is not a contiguous 1024-byte file in one cluster")
            }
        }
    }
}

/// The FAT geometry, in sectors relative to the partition start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub root_dir_sector: u64,
    pub root_dir_sectors: u64,
    pub first_data_sector: u64,
    pub sectors_per_cluster: u64,
}

impl Geometry {
    /// Reads the BIOS parameter block of the partition's first sector.
    pub fn parse(boot_sector: &[u8]) -> Result<Geometry, EspError> {
        let b = boot_sector.get(..512).ok_or(EspError::NotFat16)?;
        let u16_at = |at: usize| u64::from(u16::from_le_bytes([b[at], b[at + 1]]));
        let bytes_per_sector = u16_at(11);
        let sectors_per_cluster = u64::from(b[13]);
        let reserved = u16_at(14);
        let fats = u64::from(b[16]);
        let root_entries = u16_at(17);
        let fat_sectors = u16_at(22);
        if bytes_per_sector != 512
            || sectors_per_cluster == 0
            || !sectors_per_cluster.is_power_of_two()
            || reserved == 0
            || fats == 0
            || root_entries == 0
            || fat_sectors == 0
            || b[510..512] != [0x55, 0xAA]
        {
            return Err(EspError::NotFat16);
        }
        let root_dir_sector = reserved + fats * fat_sectors;
        let root_dir_sectors = (root_entries * 32).div_ceil(512);
        Ok(Geometry {
            root_dir_sector,
            root_dir_sectors,
            first_data_sector: root_dir_sector + root_dir_sectors,
            sectors_per_cluster,
        })
    }

    /// The sector of `GRUBENV`'s 1024 bytes, from the root directory's bytes.
    pub fn env_sector(&self, root_dir: &[u8]) -> Result<u64, EspError> {
        for entry in root_dir.chunks_exact(32) {
            if entry[0] == 0 {
                break;
            }
            // Deleted entries, long-name pieces, labels and folders are skipped.
            if entry[0] == 0xE5 || entry[11] & 0x18 != 0 || entry[11] == 0x0F {
                continue;
            }
            if &entry[..11] != ENV_FILE_83 {
                continue;
            }
            let cluster = u64::from(u16::from_le_bytes([entry[26], entry[27]]));
            let size = u32::from_le_bytes([entry[28], entry[29], entry[30], entry[31]]);
            if size != 1024 || cluster < 2 || self.sectors_per_cluster * 512 < 1024 {
                return Err(EspError::BadEnvFile);
            }
            return Ok(self.first_data_sector + (cluster - 2) * self.sectors_per_cluster);
        }
        Err(EspError::NoEnvFile)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boot_sector() -> [u8; 512] {
        let mut b = [0u8; 512];
        b[11..13].copy_from_slice(&512u16.to_le_bytes());
        b[13] = 4;
        b[14..16].copy_from_slice(&1u16.to_le_bytes());
        b[16] = 2;
        b[17..19].copy_from_slice(&512u16.to_le_bytes());
        b[22..24].copy_from_slice(&32u16.to_le_bytes());
        b[510] = 0x55;
        b[511] = 0xAA;
        b
    }

    #[test]
    fn finds_the_env_block() {
        let g = Geometry::parse(&boot_sector()).expect("fat16");
        assert_eq!(g.root_dir_sector, 65);
        assert_eq!(g.first_data_sector, 65 + 32);
        let mut root = [0u8; 96];
        root[..11].copy_from_slice(b"KEEL-ESP   ");
        root[11] = 0x08;
        root[32..43].copy_from_slice(ENV_FILE_83);
        root[32 + 26..32 + 28].copy_from_slice(&3u16.to_le_bytes());
        root[32 + 28..32 + 32].copy_from_slice(&1024u32.to_le_bytes());
        assert_eq!(g.env_sector(&root), Ok(65 + 32 + 4));
        root[32 + 28..32 + 32].copy_from_slice(&1000u32.to_le_bytes());
        assert_eq!(g.env_sector(&root), Err(EspError::BadEnvFile));
        assert_eq!(g.env_sector(&[0u8; 64]), Err(EspError::NoEnvFile));
    }

    #[test]
    fn rejects_other_boot_sectors() {
        assert_eq!(Geometry::parse(&[0u8; 512]), Err(EspError::NotFat16));
        assert_eq!(Geometry::parse(&[0u8; 10]), Err(EspError::NotFat16));
        let mut fat32 = boot_sector();
        fat32[17..19].fill(0);
        assert_eq!(Geometry::parse(&fat32), Err(EspError::NotFat16));
    }
}
