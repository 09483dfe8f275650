//! CDB builders. Every CDB is returned in a 16-byte array (the iSCSI BHS
//! CDB field); shorter CDBs are zero-padded.

use super::opcode;

pub type Cdb = [u8; 16];

pub fn test_unit_ready() -> Cdb {
    let mut c = [0u8; 16];
    c[0] = opcode::TEST_UNIT_READY;
    c
}

/// INQUIRY (6 bytes): standard data, or the VPD `page` when `Some`.
pub fn inquiry(page: Option<u8>, alloc_len: u16) -> Cdb {
    let mut c = [0u8; 16];
    c[0] = opcode::INQUIRY;
    if let Some(p) = page {
        c[1] = 0x01;
        c[2] = p;
    }
    c[3..5].copy_from_slice(&alloc_len.to_be_bytes());
    c
}

pub fn report_luns(alloc_len: u32) -> Cdb {
    let mut c = [0u8; 16];
    c[0] = opcode::REPORT_LUNS;
    c[6..10].copy_from_slice(&alloc_len.to_be_bytes());
    c
}

/// Bytes READ CAPACITY(16) returns that we use.
pub const READ_CAPACITY_16_LEN: u32 = 32;

pub fn read_capacity_16() -> Cdb {
    let mut c = [0u8; 16];
    c[0] = opcode::SERVICE_ACTION_IN_16;
    c[1] = opcode::SA_READ_CAPACITY_16;
    c[10..14].copy_from_slice(&READ_CAPACITY_16_LEN.to_be_bytes());
    c
}

fn rw16(op: u8, lba: u64, blocks: u32) -> Cdb {
    let mut c = [0u8; 16];
    c[0] = op;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

pub fn read_16(lba: u64, blocks: u32) -> Cdb {
    rw16(opcode::READ_16, lba, blocks)
}

pub fn write_16(lba: u64, blocks: u32) -> Cdb {
    rw16(opcode::WRITE_16, lba, blocks)
}

/// SYNCHRONIZE CACHE(16) of the whole LU.
pub fn synchronize_cache_16() -> Cdb {
    rw16(opcode::SYNCHRONIZE_CACHE_16, 0, 0)
}

/// Block descriptors one UNMAP parameter list carries at most (keeps the
/// list within one 8 KiB PDU).
pub const UNMAP_MAX_DESCRIPTORS: usize = 256;

/// UNMAP (10) for a parameter list of `list_len` bytes.
pub fn unmap(list_len: u16) -> Cdb {
    let mut c = [0u8; 16];
    c[0] = opcode::UNMAP;
    c[7..9].copy_from_slice(&list_len.to_be_bytes());
    c
}

/// The UNMAP parameter list for `(lba, blocks)` ranges (SBC-3 §5.28.2);
/// at most [`UNMAP_MAX_DESCRIPTORS`] are used.
pub fn unmap_parameter_list(ranges: &[(u64, u32)]) -> alloc::vec::Vec<u8> {
    let ranges = &ranges[..ranges.len().min(UNMAP_MAX_DESCRIPTORS)];
    let desc_len = ranges.len() * 16;
    let mut v = alloc::vec::Vec::with_capacity(8 + desc_len);
    v.extend_from_slice(&((6 + desc_len) as u16).to_be_bytes());
    v.extend_from_slice(&(desc_len as u16).to_be_bytes());
    v.extend_from_slice(&[0; 4]);
    for (lba, blocks) in ranges {
        v.extend_from_slice(&lba.to_be_bytes());
        v.extend_from_slice(&blocks.to_be_bytes());
        v.extend_from_slice(&[0; 4]);
    }
    v
}

/// Encodes a LUN number into the 8-byte iSCSI/SAM LUN field (peripheral
/// addressing below 256, flat space addressing up to 16383).
pub fn lun_to_wire(lun: u16) -> u64 {
    if lun < 256 {
        u64::from(lun) << 48
    } else {
        (u64::from(0x4000 | (lun & 0x3fff))) << 48
    }
}

/// Decodes the first level of an 8-byte LUN (peripheral or flat addressing).
pub fn lun_from_wire(lun: u64) -> u16 {
    let b = (lun >> 48) as u16;
    match b >> 14 {
        0 | 1 => b & 0x3fff,
        _ => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdbs() {
        let c = read_16(0x0102_0304_0506_0708, 8);
        assert_eq!(c[0], 0x88);
        assert_eq!(&c[2..10], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&c[10..14], &[0, 0, 0, 8]);
        assert_eq!(inquiry(Some(0x83), 255)[..5], [0x12, 1, 0x83, 0, 255]);
        assert_eq!(read_capacity_16()[..2], [0x9e, 0x10]);
        assert_eq!(lun_to_wire(1), 0x0001_0000_0000_0000);
        assert_eq!(lun_from_wire(lun_to_wire(1)), 1);
        assert_eq!(lun_from_wire(lun_to_wire(300)), 300);
        let list = unmap_parameter_list(&[(0x10, 8)]);
        assert_eq!(list.len(), 24);
        assert_eq!(&list[..4], &[0, 22, 0, 16]);
        assert_eq!(&list[8..20], &[0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 8]);
        assert_eq!(unmap(24)[..9], [0x42, 0, 0, 0, 0, 0, 0, 0, 24]);
    }
}
