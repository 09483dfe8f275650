//! Parsers for the data of INQUIRY, VPD pages, READ CAPACITY(16) and
//! REPORT LUNS. All bounds-checked: short data is an error, never a panic.

use alloc::string::String;
use alloc::vec::Vec;

use super::sense::ScsiError;

fn ascii(b: &[u8]) -> String {
    let s: String = b
        .iter()
        .map(|&c| {
            if (0x20..0x7f).contains(&c) {
                char::from(c)
            } else {
                ' '
            }
        })
        .collect();
    String::from(s.trim())
}

/// Standard INQUIRY data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inquiry {
    pub peripheral_qualifier: u8,
    pub device_type: u8,
    pub vendor: String,
    pub product: String,
    pub revision: String,
}

pub fn parse_inquiry(d: &[u8]) -> Result<Inquiry, ScsiError> {
    if d.len() < 36 {
        return Err(ScsiError::ShortResponse("INQUIRY"));
    }
    Ok(Inquiry {
        peripheral_qualifier: d[0] >> 5,
        device_type: d[0] & 0x1f,
        vendor: ascii(&d[8..16]),
        product: ascii(&d[16..32]),
        revision: ascii(&d[32..36]),
    })
}

/// The unit serial number (VPD 0x80).
pub fn parse_unit_serial(d: &[u8]) -> Result<String, ScsiError> {
    let len = usize::from(u16::from_be_bytes([
        *d.get(2).ok_or(ScsiError::ShortResponse("VPD 0x80"))?,
        *d.get(3).ok_or(ScsiError::ShortResponse("VPD 0x80"))?,
    ]));
    let body = d
        .get(4..4 + len)
        .ok_or(ScsiError::ShortResponse("VPD 0x80"))?;
    Ok(ascii(body))
}

/// One designation descriptor of VPD 0x83.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Designator {
    pub code_set: u8,
    pub association: u8,
    pub designator_type: u8,
    pub value: Vec<u8>,
}

/// Designator types (SPC-4 Table 459).
pub mod designator_type {
    pub const VENDOR_SPECIFIC: u8 = 0;
    pub const T10_VENDOR_ID: u8 = 1;
    pub const EUI64: u8 = 2;
    pub const NAA: u8 = 3;
    pub const SCSI_NAME: u8 = 8;
}

pub fn parse_device_identification(d: &[u8]) -> Result<Vec<Designator>, ScsiError> {
    let short = ScsiError::ShortResponse("VPD 0x83");
    if d.len() < 4 {
        return Err(short);
    }
    let len = usize::from(u16::from_be_bytes([d[2], d[3]]));
    let body = d.get(4..4 + len).ok_or(short)?;
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 4 <= body.len() {
        let h = &body[pos..pos + 4];
        let n = usize::from(h[3]);
        let value = body.get(pos + 4..pos + 4 + n).ok_or(short)?;
        out.push(Designator {
            code_set: h[0] & 0x0f,
            association: (h[1] >> 4) & 0x03,
            designator_type: h[1] & 0x0f,
            value: value.to_vec(),
        });
        pos += 4 + n;
    }
    Ok(out)
}

/// A stable identifier of the LU in the udev `scsi_id` style: the
/// designator type digit followed by the value in hex (for NAA and EUI-64)
/// or text; LU-associated designators preferred, NAA over EUI-64 over T10.
pub fn scsi_id(designators: &[Designator]) -> Option<String> {
    use designator_type::*;
    let lu = |t| {
        designators
            .iter()
            .find(|d| d.association == 0 && d.designator_type == t)
    };
    let d = lu(NAA)
        .or_else(|| lu(EUI64))
        .or_else(|| lu(T10_VENDOR_ID))
        .or_else(|| lu(SCSI_NAME))?;
    let mut s = alloc::format!("{:x}", d.designator_type);
    if d.code_set == 1 {
        for b in &d.value {
            s.push_str(&alloc::format!("{b:02x}"));
        }
    } else {
        s.push_str(&ascii(&d.value).replace(' ', "_"));
    }
    Some(s)
}

/// The Block Limits VPD page (0xB0, SBC-3 §6.5.3); 0 means "no limit
/// reported".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockLimits {
    pub max_transfer_blocks: u32,
    pub optimal_transfer_blocks: u32,
    pub max_unmap_lba_count: u32,
}

pub fn parse_block_limits(d: &[u8]) -> Result<BlockLimits, ScsiError> {
    let short = ScsiError::ShortResponse("VPD 0xB0");
    let be32 = |i: usize| -> Result<u32, ScsiError> {
        let b = d.get(i..i + 4).ok_or(short)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    if d.get(1) != Some(&super::vpd::BLOCK_LIMITS) {
        return Err(short);
    }
    Ok(BlockLimits {
        max_transfer_blocks: be32(8)?,
        optimal_transfer_blocks: be32(12)?,
        // Older targets send a shorter page without the UNMAP fields.
        max_unmap_lba_count: be32(20).unwrap_or(0),
    })
}

/// READ CAPACITY(16) data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub last_lba: u64,
    pub block_size: u32,
    /// LBPME: the LU is thin-provisioned and accepts UNMAP.
    pub thin_provisioned: bool,
}

impl Capacity {
    pub fn blocks(&self) -> u64 {
        self.last_lba.saturating_add(1)
    }
    pub fn bytes(&self) -> u64 {
        self.blocks().saturating_mul(u64::from(self.block_size))
    }
}

pub fn parse_read_capacity_16(d: &[u8]) -> Result<Capacity, ScsiError> {
    if d.len() < 12 {
        return Err(ScsiError::ShortResponse("READ CAPACITY(16)"));
    }
    let mut lba = [0u8; 8];
    lba.copy_from_slice(&d[..8]);
    let block_size = u32::from_be_bytes([d[8], d[9], d[10], d[11]]);
    if block_size == 0 {
        return Err(ScsiError::ShortResponse(
            "READ CAPACITY(16) (zero block size)",
        ));
    }
    Ok(Capacity {
        last_lba: u64::from_be_bytes(lba),
        block_size,
        thin_provisioned: d.get(14).is_some_and(|b| b & 0x80 != 0),
    })
}

/// REPORT LUNS data: the 8-byte LUNs listed (those that fit in the data).
pub fn parse_report_luns(d: &[u8]) -> Result<Vec<u64>, ScsiError> {
    if d.len() < 8 {
        return Err(ScsiError::ShortResponse("REPORT LUNS"));
    }
    let len = u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize;
    let list = &d[8..];
    Ok(list[..len.min(list.len())]
        .chunks_exact(8)
        .map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            u64::from_be_bytes(b)
        })
        .collect())
}

/// Fuzz entry point for every response parser.
pub fn fuzz_scsi(data: &[u8]) {
    let _ = parse_inquiry(data);
    let _ = parse_unit_serial(data);
    if let Ok(d) = parse_device_identification(data) {
        let _ = scsi_id(&d);
    }
    let _ = parse_read_capacity_16(data);
    let _ = parse_report_luns(data);
    let _ = parse_block_limits(data);
    let _ = super::Sense::parse(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers() {
        let mut inq = [0u8; 36];
        inq[8..16].copy_from_slice(b"IET     ");
        inq[16..32].copy_from_slice(b"VIRTUAL-DISK    ");
        inq[32..36].copy_from_slice(b"0001");
        let i = parse_inquiry(&inq).expect("inquiry");
        assert_eq!(
            (i.vendor.as_str(), i.product.as_str()),
            ("IET", "VIRTUAL-DISK")
        );
        assert!(parse_inquiry(&inq[..35]).is_err());

        let vpd83 = [0, 0x83, 0, 12, 1, 3, 0, 8, 0x60, 0, 0, 0, 0, 0, 0, 1];
        let d = parse_device_identification(&vpd83).expect("vpd83");
        assert_eq!(scsi_id(&d).as_deref(), Some("36000000000000001"));
        assert!(parse_device_identification(&vpd83[..10]).is_err());

        let vpd80 = [0, 0x80, 0, 4, b'b', b'e', b'e', b'f'];
        assert_eq!(parse_unit_serial(&vpd80).as_deref(), Ok("beef"));

        let mut cap = [0u8; 32];
        cap[7] = 0xff;
        cap[10] = 2;
        let c = parse_read_capacity_16(&cap).expect("cap");
        assert_eq!((c.blocks(), c.block_size, c.bytes()), (256, 512, 131072));

        let luns = [
            0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(parse_report_luns(&luns), Ok(alloc::vec![0, 1 << 48]));
        for n in 0..40 {
            fuzz_scsi(&vpd83[..n.min(vpd83.len())]);
            fuzz_scsi(&luns[..n.min(luns.len())]);
        }
    }
}
