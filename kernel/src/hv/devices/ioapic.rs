//! A guest I/O APIC (24 inputs at 0xfec00000): edge-triggered inputs routed by
//! their redirection entries to a local APIC vector.

pub const BASE: u64 = 0xfec0_0000;
pub const SIZE: u64 = 0x1000;
pub const INPUTS: usize = 24;

const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
const MASKED: u64 = 1 << 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoApic {
    pub id: u32,
    pub select: u32,
    pub redirection: [u64; INPUTS],
}

impl Default for IoApic {
    fn default() -> Self {
        IoApic {
            id: 0,
            select: 0,
            redirection: [MASKED; INPUTS],
        }
    }
}

/// Where an input goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub vector: u8,
    pub destination: u8,
    /// Logical destination mode: `destination` is a bitmask matched against LDRs.
    pub logical: bool,
}

impl IoApic {
    pub fn read(&self, offset: u64) -> u32 {
        match offset {
            IOREGSEL => self.select,
            IOWIN => match self.select {
                0 => self.id << 24,
                1 => ((INPUTS as u32 - 1) << 16) | 0x11,
                2 => self.id << 24,
                r @ 0x10..=0x3f => {
                    let e = self.redirection[((r - 0x10) / 2) as usize];
                    if r % 2 == 0 {
                        e as u32
                    } else {
                        (e >> 32) as u32
                    }
                }
                _ => 0,
            },
            _ => 0,
        }
    }

    pub fn write(&mut self, offset: u64, v: u32) {
        match offset {
            IOREGSEL => self.select = v & 0xff,
            IOWIN => match self.select {
                0 => self.id = (v >> 24) & 0xf,
                r @ 0x10..=0x3f => {
                    let e = &mut self.redirection[((r - 0x10) / 2) as usize];
                    *e = if r % 2 == 0 {
                        (*e & !0xffff_ffff) | u64::from(v)
                    } else {
                        (*e & 0xffff_ffff) | (u64::from(v) << 32)
                    };
                }
                _ => {}
            },
            _ => {}
        }
    }

    /// An edge on input `gsi`: where it should be delivered, if unmasked.
    pub fn raise(&self, gsi: u32) -> Option<Route> {
        let e = *self.redirection.get(gsi as usize)?;
        (e & MASKED == 0).then_some(Route {
            vector: e as u8,
            destination: (e >> 56) as u8,
            logical: e & (1 << 11) != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_and_routes_inputs() {
        let mut io = IoApic::default();
        io.write(IOREGSEL, 1);
        assert_eq!(io.read(IOWIN), 0x0017_0011);
        assert_eq!(io.raise(2), None, "inputs start masked");
        io.write(IOREGSEL, 0x10 + 2 * 2);
        io.write(IOWIN, 0x30);
        io.write(IOREGSEL, 0x10 + 2 * 2 + 1);
        io.write(IOWIN, 1 << 24);
        assert_eq!(
            io.raise(2),
            Some(Route {
                vector: 0x30,
                destination: 1,
                logical: false
            })
        );
        io.write(IOREGSEL, 0x14);
        assert_eq!(io.read(IOWIN), 0x30);
        assert_eq!(io.raise(99), None);
    }
}
