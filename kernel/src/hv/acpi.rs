//! The firmware tables a guest reads: RSDP, XSDT, FADT and a DSDT that
//! declares `\_S5`, placed in the reserved BIOS area below 1 MiB; and the
//! fixed ACPI hardware behind them (`devices::pm`); and the MADT describing
//! one local APIC per vCPU and the I/O APIC.

use super::memory::{GuestAddress, GuestMemory, OutOfBounds};

/// Where the tables go (inside the E820 reserved range 0x9fc00..0x100000).
pub const RSDP: u64 = 0xe_0000;
const XSDT: u64 = 0xe_0100;
const FADT: u64 = 0xe_0200;
const DSDT: u64 = 0xe_0400;
const MADT: u64 = 0xe_0500;
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

fn dsdt() -> [u8; 36 + 14] {
    let mut t = [0u8; 50];
    t[..36].copy_from_slice(&header(b"DSDT", 50, 2));
    // Name (_S5, Package (0x04) { 0x05, 0x05, Zero, Zero })
    t[36..50].copy_from_slice(&[
        0x08, b'_', b'S', b'5', b'_', 0x12, 0x08, 0x04, 0x0a, S5_SLP_TYP, 0x0a, S5_SLP_TYP, 0x00,
        0x00,
    ]);
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
    // IAPC_BOOT_ARCH: legacy devices present, no 8042, no VGA, no MSI yet.
    t[109..111].copy_from_slice(&(0x0001u16 | 0x0004 | 0x0008).to_le_bytes());
    // Flags: WBINVD, PROC_C1, PWR_BUTTON (control method: none), SLP_BUTTON, TMR_VAL_EXT, RESET_REG_SUP.
    let flags: u32 = 1 | (1 << 2) | (1 << 4) | (1 << 5) | (1 << 8) | (1 << 10);
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

fn xsdt() -> [u8; 52] {
    let mut t = [0u8; 52];
    t[..36].copy_from_slice(&header(b"XSDT", 52, 1));
    t[36..44].copy_from_slice(&FADT.to_le_bytes());
    t[44..52].copy_from_slice(&MADT.to_le_bytes());
    finish(&mut t);
    t
}

/// MADT: local APIC address and PC-AT compatibility (an 8259 pair exists),
/// a processor entry per vCPU, the I/O APIC, ISA IRQ 0 on GSI 2, the SCI on
/// GSI 9 (level, active high), and LINT1 as NMI.
fn madt(vcpus: u32) -> alloc::vec::Vec<u8> {
    let mut t = alloc::vec![0u8; 44];
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
            (XSDT, 52, b"XSDT"),
            (FADT, FADT_LEN, b"FACP"),
            (DSDT, 50, b"DSDT"),
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
