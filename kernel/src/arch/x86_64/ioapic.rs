//! I/O APICs: found in the MADT, every input masked until a host device
//! needs its interrupt routed (`route_level_low`, then `set_masked`).

use spin::Mutex;

const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
const REG_VERSION: u32 = 0x01;
const REG_REDIRECTION: u32 = 0x10;
const MASKED: u64 = 1 << 16;

/// One I/O APIC: its mapped registers and the GSIs it serves.
#[derive(Debug, Clone, Copy)]
pub struct IoApic {
    base: u64,
    pub gsi_base: u32,
    pub inputs: u32,
}

static IOAPICS: Mutex<heapless::Vec<IoApic, 8>> = Mutex::new(heapless::Vec::new());

impl IoApic {
    fn read(&self, reg: u32) -> u32 {
        // SAFETY: `base` maps this I/O APIC's register window (checked in `add`);
        // IOREGSEL/IOWIN are its two 32-bit registers.
        unsafe {
            core::ptr::write_volatile((self.base + IOREGSEL) as *mut u32, reg);
            core::ptr::read_volatile((self.base + IOWIN) as *const u32)
        }
    }

    fn write(&self, reg: u32, v: u32) {
        // SAFETY: as in `read`.
        unsafe {
            core::ptr::write_volatile((self.base + IOREGSEL) as *mut u32, reg);
            core::ptr::write_volatile((self.base + IOWIN) as *mut u32, v);
        }
    }

    fn write_entry(&self, input: u32, entry: u64) {
        self.write(REG_REDIRECTION + input * 2, entry as u32);
        self.write(REG_REDIRECTION + input * 2 + 1, (entry >> 32) as u32);
    }
}

const LEVEL: u64 = 1 << 15;
const ACTIVE_LOW: u64 = 1 << 13;

/// The I/O APIC serving `gsi` and its input number.
fn find(gsi: u32) -> Option<(IoApic, u32)> {
    IOAPICS
        .lock()
        .iter()
        .find(|a| (a.gsi_base..a.gsi_base + a.inputs).contains(&gsi))
        .map(|a| (*a, gsi - a.gsi_base))
}

/// Routes `gsi` as a level-triggered, active-low line (PCI INTx) to `vector`
/// on the CPU with APIC ID `dest`, masked. False if no I/O APIC serves it.
pub fn route_level_low(gsi: u32, vector: u8, dest: u32) -> bool {
    let Some((apic, input)) = find(gsi) else {
        return false;
    };
    let entry = u64::from(vector) | LEVEL | ACTIVE_LOW | MASKED | (u64::from(dest & 0xff) << 56);
    apic.write_entry(input, entry);
    true
}

/// Masks or unmasks `gsi`, keeping the rest of its routing.
pub fn set_masked(gsi: u32, masked: bool) {
    let Some((apic, input)) = find(gsi) else {
        return;
    };
    let low = apic.read(REG_REDIRECTION + input * 2);
    let low = if masked {
        low | MASKED as u32
    } else {
        low & !(MASKED as u32)
    };
    apic.write(REG_REDIRECTION + input * 2, low);
}

/// Registers an I/O APIC found in the MADT (`base` is its mapped virtual
/// address) and masks all its inputs.
pub fn add(base: u64, gsi_base: u32) -> IoApic {
    let probe = IoApic {
        base,
        gsi_base,
        inputs: 0,
    };
    let inputs = ((probe.read(REG_VERSION) >> 16) & 0xff) + 1;
    let apic = IoApic {
        base,
        gsi_base,
        inputs,
    };
    for i in 0..inputs {
        apic.write_entry(i, MASKED);
    }
    if IOAPICS.lock().push(apic).is_err() {
        log::warn!("ioapic: more than 8 I/O APICs, ignoring the one at GSI {gsi_base}");
    }
    apic
}
