//! The GPT layout of a keel disk: the contract between the image builder
//! (`cargo xtask image`), GRUB's configuration and the appliance's upgrade
//! writer. See `image/README.md` for the A/B design it serves.
//!
//! All numbers are 512-byte sectors (LBAs). Partitions are 1 MiB aligned;
//! the partition numbers are GRUB's `gptN` and the kernel's GPT entry index + 1.

/// Bytes per logical sector of the image (USB sticks and virtual disks).
pub const SECTOR_BYTES: u64 = 512;

const MIB: u64 = 1024 * 1024 / SECTOR_BYTES;

/// A GUID as GPT stores it (the first three fields little-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guid {
    pub time_low: u32,
    pub time_mid: u16,
    pub time_hi: u16,
    pub rest: [u8; 8],
}

impl Guid {
    pub const fn new(time_low: u32, time_mid: u16, time_hi: u16, rest: [u8; 8]) -> Guid {
        Guid {
            time_low,
            time_mid,
            time_hi,
            rest,
        }
    }

    /// The 16 bytes in GPT (mixed-endian) order.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[0..4].copy_from_slice(&self.time_low.to_le_bytes());
        out[4..6].copy_from_slice(&self.time_mid.to_le_bytes());
        out[6..8].copy_from_slice(&self.time_hi.to_le_bytes());
        out[8..16].copy_from_slice(&self.rest);
        out
    }

    /// A version-4-shaped GUID from 16 bytes of a hash, so ids are fixed per
    /// input (reproducible builds) yet differ between builds of other commits.
    pub fn from_hash(bytes: [u8; 16]) -> Guid {
        let mut rest = [0u8; 8];
        rest.copy_from_slice(&bytes[8..16]);
        rest[0] = (rest[0] & 0x3F) | 0x80;
        Guid {
            time_low: u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            time_mid: u16::from_le_bytes([bytes[4], bytes[5]]),
            time_hi: (u16::from_le_bytes([bytes[6], bytes[7]]) & 0x0FFF) | 0x4000,
            rest,
        }
    }
}

impl core::fmt::Display for Guid {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let r = &self.rest;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            self.time_low,
            self.time_mid,
            self.time_hi,
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            r[6],
            r[7]
        )
    }
}

/// What a partition is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// GRUB's i386-pc core image, read by the MBR boot code (legacy BIOS).
    BiosBoot,
    /// FAT: `GRUBENV` (the GRUB environment block: active slot, one-shot
    /// trial flag; see [`crate::esp`]), `EFI/BOOT/BOOTX64.EFI`,
    /// `boot/grub/grub.cfg`, optionally `keel/host-config.bin`.
    Esp,
    /// Raw: a signed keel image (slot header, then the ELF).
    SlotA,
    SlotB,
    /// Host state (configuration database); never written by an upgrade.
    State,
}

/// One partition of the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    pub role: Role,
    /// GPT entry number, 1-based (`gptN` in GRUB).
    pub number: u32,
    /// GPT partition name.
    pub name: &'static str,
    pub type_guid: Guid,
    pub first_lba: u64,
    pub sectors: u64,
}

impl Partition {
    /// The last LBA, inclusive (as GPT stores it).
    pub const fn last_lba(&self) -> u64 {
        self.first_lba + self.sectors - 1
    }
}

/// "Hah!IdontNeedEFI": the BIOS boot partition type.
pub const TYPE_BIOS_BOOT: Guid = Guid::new(
    0x2168_6148,
    0x6449,
    0x6E6F,
    [0x74, 0x4E, 0x65, 0x65, 0x64, 0x45, 0x46, 0x49],
);
/// The EFI system partition type.
pub const TYPE_ESP: Guid = Guid::new(
    0xC12A_7328,
    0xF81F,
    0x11D2,
    [0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B],
);
/// keel image slot (A or B), a keel-defined type.
pub const TYPE_KEEL_SLOT: Guid = Guid::new(
    0x62F5_32B8,
    0x3936,
    0x40E2,
    [0xA8, 0xC7, 0x0E, 0x67, 0xE5, 0xBA, 0x24, 0x67],
);
/// keel host state, a keel-defined type.
pub const TYPE_KEEL_STATE: Guid = Guid::new(
    0xBC78_24FB,
    0x7BA4,
    0x4759,
    [0xBB, 0xDB, 0x81, 0xFB, 0xE8, 0x94, 0x8F, 0xE3],
);

/// Size of one image slot: four times the 8 MiB image budget.
pub const SLOT_SECTORS: u64 = 32 * MIB;
/// The slot header (signature and manifest) before the ELF in a slot.
pub const SLOT_HEADER_SECTORS: u64 = 8;
/// What GRUB loads from a slot: everything after the header (`8+32760`).
pub const SLOT_PAYLOAD_SECTORS: u64 = SLOT_SECTORS - SLOT_HEADER_SECTORS;

/// The partitions, in GPT entry order.
pub const PARTITIONS: [Partition; 5] = [
    Partition {
        role: Role::BiosBoot,
        number: 1,
        name: "BIOS boot",
        type_guid: TYPE_BIOS_BOOT,
        first_lba: MIB,
        sectors: MIB,
    },
    Partition {
        role: Role::Esp,
        number: 2,
        name: "EFI system",
        type_guid: TYPE_ESP,
        first_lba: 2 * MIB,
        sectors: 16 * MIB,
    },
    Partition {
        role: Role::SlotA,
        number: 3,
        name: "keel-a",
        type_guid: TYPE_KEEL_SLOT,
        first_lba: 18 * MIB,
        sectors: SLOT_SECTORS,
    },
    Partition {
        role: Role::SlotB,
        number: 4,
        name: "keel-b",
        type_guid: TYPE_KEEL_SLOT,
        first_lba: 50 * MIB,
        sectors: SLOT_SECTORS,
    },
    Partition {
        role: Role::State,
        number: 5,
        name: "keel-state",
        type_guid: TYPE_KEEL_STATE,
        first_lba: 82 * MIB,
        sectors: 16 * MIB,
    },
];

/// The whole image: the partitions, then 1 MiB holding the backup GPT.
pub const DISK_SECTORS: u64 = 100 * MIB;

/// The partition playing `role`.
pub fn partition(role: Role) -> Partition {
    // Every role appears exactly once in PARTITIONS (checked by a test).
    let mut found = PARTITIONS[0];
    for p in PARTITIONS {
        if p.role == role {
            found = p;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_ordered_aligned_and_fit() {
        let mut end = 34;
        for (i, p) in PARTITIONS.iter().enumerate() {
            assert_eq!(p.number as usize, i + 1);
            assert!(p.first_lba >= end, "{} overlaps", p.name);
            assert_eq!(p.first_lba % MIB, 0, "{} is 1 MiB aligned", p.name);
            end = p.first_lba + p.sectors;
            assert_eq!(partition(p.role), *p);
        }
        assert!(end <= DISK_SECTORS - 33, "room for the backup GPT");
    }

    #[test]
    fn guid_text_and_bytes() {
        assert_eq!(TYPE_ESP.to_string(), "c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
        assert_eq!(
            TYPE_ESP.to_bytes()[..4],
            [0x28, 0x73, 0x2A, 0xC1],
            "first field little-endian"
        );
        let g = Guid::from_hash([0xFF; 16]);
        assert_eq!(g.time_hi >> 12, 4);
        assert_eq!(g.rest[0] >> 6, 0b10);
    }
}
