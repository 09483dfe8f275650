//! The firmware tables a guest reads: RSDP, XSDT, FADT and a DSDT that
//! declares `\_S5`, placed in the reserved BIOS area below 1 MiB; and the
//! fixed ACPI hardware behind them (`devices::pm`); and the MADT describing
//! one local APIC per vCPU and the I/O APIC; the MCFG and a PCI root
//! bridge (`\_SB.PCI0`: segment 0, bus 0, its I/O and memory windows) for
//! the guest's PCI bus (`super::pci`).

use alloc::vec;
use alloc::vec::Vec;

use super::memory::{GuestAddress, GuestMemory, OutOfBounds};

/// Where the tables go (inside the E820 reserved range 0x9fc00..0x100000).
pub const RSDP: u64 = 0xe_0000;
const XSDT: u64 = 0xe_0100;
const FADT: u64 = 0xe_0200;
const DSDT: u64 = 0xe_0400;
const MADT: u64 = 0xe_0500;
const MCFG: u64 = 0xe_0800;
/// Most vCPUs the MADT area holds (8 bytes per local APIC entry).
pub const MAX_VCPUS: u32 = 64;

/// Fixed-hardware I/O ports (the `pm` device answers them).
pub const PM1A_EVT: u16 = 0x600;
pub const PM1A_CNT: u16 = 0x604;
pub const PM_TMR: u16 = 0x608;
/// The SLP_TYP value `\_S5` declares.
pub const S5_SLP_TYP: u8 = 5;
pub const SCI_IRQ: u16 = 9;

const OEM_ID: &[u8; 6] = b"KEEL  ";
const OEM_TABLE_ID: &[u8; 8] = b"KEELHV  ";

fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
}

/// A 36-byte SDT header for a table of `length` bytes.
fn header(signature: &[u8; 4], length: u32, revision: u8) -> [u8; 36] {
    let mut h = [0u8; 36];
    h[0..4].copy_from_slice(signature);
    h[4..8].copy_from_slice(&length.to_le_bytes());
    h[8] = revision;
    h[10..16].copy_from_slice(OEM_ID);
    h[16..24].copy_from_slice(OEM_TABLE_ID);
    h[24..28].copy_from_slice(&1u32.to_le_bytes());
    h[28..32].copy_from_slice(b"KEEL");
    h[32..36].copy_from_slice(&1u32.to_le_bytes());
    h
}

fn finish(table: &mut [u8]) {
    table[9] = 0;
    table[9] = checksum(table);
}

/// A generic address structure for an I/O port register of `bits` bits.
fn gas_io(port: u16, bits: u8) -> [u8; 12] {
    let mut g = [0u8; 12];
    g[0] = 1; // system I/O
    g[1] = bits;
    g[3] = if bits >= 32 { 3 } else { 2 }; // dword or word access
    g[4..12].copy_from_slice(&u64::from(port).to_le_bytes());
    g
}

/// An AML package (scope, device, buffer): `op`, PkgLength, then `body`.
fn aml_package(op: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = op.to_vec();
    // PkgLength counts itself: one byte up to 63, else two (up to 4095).
    let one = body.len() + 1;
    if one <= 63 {
        out.push(one as u8);
    } else {
        let two = body.len() + 2;
        out.push(0x40 | (two & 0xf) as u8);
        out.push((two >> 4) as u8);
    }
    out.extend_from_slice(body);
    out
}

/// `Name (NAME, EisaId ("PNP0Axx"))`: PNP0A08 (PCI Express root) and PNP0A03 (PCI root).
fn aml_eisa_name(name: &[u8; 4], product: u8) -> [u8; 10] {
    [
        0x08, name[0], name[1], name[2], name[3], 0x0c, 0x41, 0xd0, 0x0a, product,
    ]
}

/// The root bridge's `_CRS`: bus 0, the config ports it consumes, the I/O
/// ranges on either side of them, and the BAR hole.
fn pci_root_resources() -> Vec<u8> {
    use super::pci::{CONFIG_ADDRESS, MMIO_BASE, MMIO_END};
    let word_space = |kind: u8, min: u16, max: u16| {
        let mut d = vec![
            0x88,
            0x0d,
            0x00,
            kind,
            0x0c,
            if kind == 1 { 0x03 } else { 0 },
            0,
            0,
        ];
        d.extend_from_slice(&min.to_le_bytes());
        d.extend_from_slice(&max.to_le_bytes());
        d.extend_from_slice(&0u16.to_le_bytes());
        d.extend_from_slice(&(max - min).wrapping_add(1).to_le_bytes());
        d
    };
    let mut r = word_space(2, 0, 0);
    let port = CONFIG_ADDRESS.to_le_bytes();
    r.extend_from_slice(&[0x47, 0x01, port[0], port[1], port[0], port[1], 0x01, 0x08]);
    r.extend(word_space(1, 0, CONFIG_ADDRESS - 1));
    r.extend(word_space(1, CONFIG_ADDRESS + 8, 0xffff));
    // DWordMemory: producer, fixed, non-cacheable, read/write.
    r.extend_from_slice(&[0x87, 0x17, 0x00, 0x00, 0x0c, 0x01, 0, 0, 0, 0]);
    for v in [MMIO_BASE, MMIO_END - 1, 0, MMIO_END - MMIO_BASE] {
        r.extend_from_slice(&(v as u32).to_le_bytes());
    }
    r.extend_from_slice(&[0x79, 0x00]);
    r
}

fn dsdt() -> Vec<u8> {
    let mut t = vec![0u8; 36];
    // Name (_S5, Package (0x04) { 0x05, 0x05, Zero, Zero })
    t.extend_from_slice(&[
        0x08, b'_', b'S', b'5', b'_', 0x12, 0x08, 0x04, 0x0a, S5_SLP_TYP, 0x0a, S5_SLP_TYP, 0x00,
        0x00,
    ]);
    let mut pci0 = b"PCI0".to_vec();
    pci0.extend_from_slice(&aml_eisa_name(b"_HID", 0x08));
    pci0.extend_from_slice(&aml_eisa_name(b"_CID", 0x03));
    for name in [b"_UID", b"_SEG", b"_BBN"] {
        pci0.extend_from_slice(&[0x08, name[0], name[1], name[2], name[3], 0x00]);
    }
    let crs = pci_root_resources();
    let mut buffer = vec![0x0a, crs.len() as u8];
    buffer.extend_from_slice(&crs);
    pci0.extend_from_slice(&[0x08, b'_', b'C', b'R', b'S']);
    pci0.extend(aml_package(&[0x11], &buffer));
    let mut sb = vec![0x5c, b'_', b'S', b'B', b'_'];
    sb.extend(aml_package(&[0x5b, 0x82], &pci0));
    t.extend(aml_package(&[0x10], &sb));
    let len = t.len() as u32;
    t[..36].copy_from_slice(&header(b"DSDT", len, 2));
    finish(&mut t);
    t
}

/// MCFG: ECAM for segment 0, bus 0.
fn mcfg() -> [u8; 60] {
    let mut t = [0u8; 60];
    t[..36].copy_from_slice(&header(b"MCFG", 60, 1));
    t[44..52].copy_from_slice(&super::pci::ECAM_BASE.to_le_bytes());
    // segment 0, buses 0..=0
    finish(&mut t);
    t
}

const FADT_LEN: usize = 276;

fn fadt() -> [u8; FADT_LEN] {
    let mut t = [0u8; FADT_LEN];
    t[..36].copy_from_slice(&header(b"FACP", FADT_LEN as u32, 6));
    t[40..44].copy_from_slice(&(DSDT as u32).to_le_bytes());
    t[46..48].copy_from_slice(&SCI_IRQ.to_le_bytes());
    // SMI_CMD 0: the hardware is always in ACPI mode.
    t[56..60].copy_from_slice(&u32::from(PM1A_EVT).to_le_bytes());
    t[64..68].copy_from_slice(&u32::from(PM1A_CNT).to_le_bytes());
    t[76..80].copy_from_slice(&u32::from(PM_TMR).to_le_bytes());
    t[88] = 4; // PM1_EVT_LEN
    t[89] = 2; // PM1_CNT_LEN
    t[91] = 4; // PM_TMR_LEN
    // IAPC_BOOT_ARCH: legacy devices present, no VGA, no 8042 (MSI is supported).
    t[109..111].copy_from_slice(&(0x0001u16 | 0x0004).to_le_bytes());
    // Flags: WBINVD, PROC_C1, SLP_BUTTON (no sleep button), TMR_VAL_EXT,
    // RESET_REG_SUP. PWR_BUTTON (bit 4) stays clear: the power button is the
    // fixed-feature one (PM1 PWRBTN_STS/EN), which `VM.clean_shutdown` presses.
    let flags: u32 = 1 | (1 << 2) | (1 << 5) | (1 << 8) | (1 << 10);
    t[112..116].copy_from_slice(&flags.to_le_bytes());
    t[116..128].copy_from_slice(&gas_io(0xcf9, 8));
    t[128] = 0x06; // reset value
    t[131] = 6; // FADT minor version
    t[140..148].copy_from_slice(&DSDT.to_le_bytes());
    t[148..160].copy_from_slice(&gas_io(PM1A_EVT, 32));
    t[172..184].copy_from_slice(&gas_io(PM1A_CNT, 16));
    t[208..220].copy_from_slice(&gas_io(PM_TMR, 32));
    finish(&mut t);
    t
}

fn xsdt() -> [u8; 60] {
    let mut t = [0u8; 60];
    t[..36].copy_from_slice(&header(b"XSDT", 60, 1));
    t[36..44].copy_from_slice(&FADT.to_le_bytes());
    t[44..52].copy_from_slice(&MADT.to_le_bytes());
    t[52..60].copy_from_slice(&MCFG.to_le_bytes());
    finish(&mut t);
    t
}

/// MADT: local APIC address and PC-AT compatibility (an 8259 pair exists),
/// a processor entry per vCPU, the I/O APIC, ISA IRQ 0 on GSI 2, the SCI on
/// GSI 9 (level, active high), and LINT1 as NMI.
fn madt(vcpus: u32) -> Vec<u8> {
    let mut t = vec![0u8; 44];
    t[36..40].copy_from_slice(&(super::devices::lapic::BASE as u32).to_le_bytes());
    t[40..44].copy_from_slice(&1u32.to_le_bytes());
    for cpu in 0..vcpus.min(MAX_VCPUS) {
        t.extend_from_slice(&[0, 8, cpu as u8, cpu as u8, 1, 0, 0, 0]);
    }
    t.extend_from_slice(&[1, 12, 0, 0]);
    t.extend_from_slice(&(super::devices::ioapic::BASE as u32).to_le_bytes());
    t.extend_from_slice(&0u32.to_le_bytes());
    t.extend_from_slice(&[2, 10, 0, 0, 2, 0, 0, 0, 0, 0]);
    t.extend_from_slice(&[2, 10, 0, 9, 9, 0, 0, 0, 0x0d, 0]);
    t.extend_from_slice(&[4, 6, 0xff, 0, 0, 1]);
    let len = t.len() as u32;
    t[..36].copy_from_slice(&header(b"APIC", len, 5));
    finish(&mut t);
    t
}

fn rsdp() -> [u8; 36] {
    let mut r = [0u8; 36];
    r[0..8].copy_from_slice(b"RSD PTR ");
    r[9..15].copy_from_slice(OEM_ID);
    r[15] = 2;
    r[20..24].copy_from_slice(&36u32.to_le_bytes());
    r[24..32].copy_from_slice(&XSDT.to_le_bytes());
    r[8] = checksum(&r[..20]);
    r[32] = checksum(&r);
    r
}

/// Writes the tables for `vcpus` vCPUs into guest memory; returns the RSDP address.
pub fn write_tables(mem: &mut GuestMemory<'_>, vcpus: u32) -> Result<u64, OutOfBounds> {
    mem.write(GuestAddress(MADT), &madt(vcpus))?;
    mem.write(GuestAddress(MCFG), &mcfg())?;
    mem.write(GuestAddress(DSDT), &dsdt())?;
    mem.write(GuestAddress(FADT), &fadt())?;
    mem.write(GuestAddress(XSDT), &xsdt())?;
    mem.write(GuestAddress(RSDP), &rsdp())?;
    Ok(RSDP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_checksum_and_link_up() {
        let mut ram = vec![0u8; 0x10_0000];
        let mut m = GuestMemory::new(&mut ram);
        assert_eq!(write_tables(&mut m, 2).unwrap(), RSDP);
        let mut r = [0u8; 36];
        m.read(GuestAddress(RSDP), &mut r).unwrap();
        assert_eq!(checksum(&r[..20]), 0);
        assert_eq!(checksum(&r), 0);
        let madt_len = 44 + 2 * 8 + 12 + 10 + 10 + 6;
        for (addr, len, sig) in [
            (XSDT, 60, b"XSDT"),
            (FADT, FADT_LEN, b"FACP"),
            (DSDT, dsdt().len(), b"DSDT"),
            (MCFG, 60, b"MCFG"),
            (MADT, madt_len, b"APIC"),
        ] {
            let mut t = vec![0u8; len];
            m.read(GuestAddress(addr), &mut t).unwrap();
            assert_eq!(&t[..4], sig);
            assert_eq!(checksum(&t), 0, "{}", String::from_utf8_lossy(sig));
            assert_eq!(
                u32::from_le_bytes(t[4..8].try_into().unwrap()) as usize,
                len
            );
        }
        // The host kernel's own _S5 scanner agrees with what we declare.
        let d = dsdt();
        assert_eq!(
            crate::acpi_s5::find_s5(&d[36..]),
            Some((S5_SLP_TYP, S5_SLP_TYP))
        );
    }
}
