//! Emulating a guest's access to device memory. TCG's SVM has no decode
//! assists, so the faulting instruction is fetched from guest memory
//! (through the guest's own page tables) and decoded with `iced-x86`. Only
//! the moves drivers use for device registers are emulated; anything else is
//! reported, never guessed.

use iced_x86::{Decoder, DecoderOptions, Mnemonic, OpKind, Register};

use super::memory::{GuestAddress, GuestMemory};

/// A general-purpose register in hardware encoding order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gpr(pub u8);

/// What a decoded instruction does to device memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Store `size` bytes of a register (its low bytes) or an immediate.
    Write { size: u8, source: Source },
    /// Load `size` bytes into a register of `dest_size` bytes.
    Read { size: u8, dest: Gpr, dest_size: u8 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Reg(Gpr),
    Imm(u64),
}

/// A decoded access and the instruction's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    pub access: Access,
    pub len: u8,
}

/// Why an access could not be emulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MmioError {
    /// The instruction pointer does not translate to guest memory.
    UnmappedRip(u64),
    /// The bytes are not a valid instruction.
    Invalid,
    /// A valid instruction this emulator does not handle (its mnemonic).
    Unsupported(Mnemonic),
    /// A paging mode the walker does not handle (e.g. 32-bit paging).
    PagingMode,
}

impl core::fmt::Display for MmioError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MmioError::UnmappedRip(rip) => {
                write!(f, "the instruction at {rip:#x} is not in guest memory")
            }
            MmioError::Invalid => write!(f, "the faulting bytes are not a valid instruction"),
            MmioError::Unsupported(m) => write!(f, "{m:?} on device memory is not emulated"),
            MmioError::PagingMode => write!(
                f,
                "the guest's paging mode is not supported for device access"
            ),
        }
    }
}

fn gpr(r: Register) -> Option<(Gpr, u8)> {
    let size = r.size() as u8;
    // AH, CH, DH, BH address bits 8..16: not used for device registers.
    if matches!(r, Register::AH | Register::CH | Register::DH | Register::BH) {
        return None;
    }
    let full = r.full_register();
    let index = (full as u32).checked_sub(Register::RAX as u32)?;
    (index < 16 && r.is_gpr()).then_some((Gpr(index as u8), size))
}

/// Decodes the first instruction in `bytes` for a CPU executing `bits`-bit
/// code (16, 32 or 64).
fn decode_one(bytes: &[u8], bits: u32, rip: u64) -> Result<iced_x86::Instruction, MmioError> {
    let bits = if matches!(bits, 16 | 32 | 64) {
        bits
    } else {
        32
    };
    let mut d = Decoder::with_ip(bits, bytes, rip, DecoderOptions::NONE);
    let i = d.decode();
    if i.is_invalid() {
        return Err(MmioError::Invalid);
    }
    Ok(i)
}

/// The mnemonic and length of the instruction in `bytes`: the next RIP of an
/// exit that does not report it (TCG has no next-RIP save).
pub fn length(bytes: &[u8], bits: u32, rip: u64) -> Result<(Mnemonic, u8), MmioError> {
    let i = decode_one(bytes, bits, rip)?;
    Ok((i.mnemonic(), i.len() as u8))
}

/// Decodes the MOV in `bytes` that touched device memory.
pub fn decode(bytes: &[u8], bits: u32, rip: u64) -> Result<Decoded, MmioError> {
    let i = decode_one(bytes, bits, rip)?;
    let unsupported = || MmioError::Unsupported(i.mnemonic());
    if i.mnemonic() != Mnemonic::Mov || i.op_count() != 2 {
        return Err(unsupported());
    }
    let size = i.memory_size().size() as u8;
    let access = match (i.op_kind(0), i.op_kind(1)) {
        (OpKind::Memory, OpKind::Register) => {
            let (reg, _) = gpr(i.op1_register()).ok_or_else(unsupported)?;
            Access::Write {
                size,
                source: Source::Reg(reg),
            }
        }
        (
            OpKind::Memory,
            OpKind::Immediate8
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate32to64,
        ) => Access::Write {
            size,
            source: Source::Imm(i.immediate(1)),
        },
        (OpKind::Register, OpKind::Memory) => {
            let (dest, dest_size) = gpr(i.op0_register()).ok_or_else(unsupported)?;
            Access::Read {
                size,
                dest,
                dest_size,
            }
        }
        _ => return Err(unsupported()),
    };
    Ok(Decoded {
        access,
        len: i.len() as u8,
    })
}

/// The guest's paging state and code segment, as far as instruction fetch
/// and the page walker need them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
    /// CS base (ignored in 64-bit code).
    pub cs_base: u64,
    /// The code size: 16, 32 or 64 (from CS.L and CS.D).
    pub code_bits: u32,
}

const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LMA: u64 = 1 << 10;
const PRESENT: u64 = 1;
const LARGE: u64 = 1 << 7;
const ADDR: u64 = 0x000f_ffff_ffff_f000;

impl Paging {
    pub fn long_mode(&self) -> bool {
        self.efer & EFER_LMA != 0
    }

    /// Guest-physical address of `linear`, walking the guest's page tables.
    pub fn translate(&self, mem: &GuestMemory<'_>, linear: u64) -> Result<u64, MmioError> {
        if self.cr0 & CR0_PG == 0 {
            return Ok(linear);
        }
        if !self.long_mode() || self.cr4 & CR4_PAE == 0 {
            return Err(MmioError::PagingMode);
        }
        let unmapped = MmioError::UnmappedRip(linear);
        let mut table = self.cr3 & ADDR;
        for level in (0..4).rev() {
            let shift = 12 + 9 * level;
            let index = (linear >> shift) & 511;
            let entry = mem
                .read_u64(GuestAddress(table + index * 8))
                .map_err(|_| unmapped)?;
            if entry & PRESENT == 0 {
                return Err(unmapped);
            }
            if level == 0 || (level <= 2 && entry & LARGE != 0) {
                let page_mask = (1u64 << shift) - 1;
                return Ok((entry & ADDR & !page_mask) | (linear & page_mask));
            }
            table = entry & ADDR;
        }
        Err(unmapped)
    }

    /// The linear address of `rip` in the current code segment.
    pub fn code_address(&self, rip: u64) -> u64 {
        if self.code_bits == 64 {
            rip
        } else {
            self.cs_base.wrapping_add(rip) & 0xffff_ffff
        }
    }

    /// Fetches up to 15 instruction bytes at `rip` (an offset in the code
    /// segment), page by page.
    pub fn fetch(
        &self,
        mem: &GuestMemory<'_>,
        rip: u64,
        out: &mut [u8; 15],
    ) -> Result<usize, MmioError> {
        let start = self.code_address(rip);
        let mut n = 0;
        while n < out.len() {
            let linear = start.wrapping_add(n as u64);
            let Ok(gpa) = self.translate(mem, linear) else {
                break;
            };
            let in_page = (0x1000 - (linear & 0xfff)) as usize;
            let take = in_page.min(out.len() - n);
            if mem.read(GuestAddress(gpa), &mut out[n..n + take]).is_err() {
                break;
            }
            n += take;
        }
        if n == 0 {
            Err(MmioError::UnmappedRip(rip))
        } else {
            Ok(n)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_moves_drivers_use() {
        // mov dword ptr [rax+0xb0], 0  (Linux's APIC EOI write via native_apic_mem_write? uses mov [rax],edx)
        let d = decode(
            &[0xc7, 0x80, 0xb0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
            64,
            0,
        )
        .unwrap();
        assert_eq!(
            d,
            Decoded {
                access: Access::Write {
                    size: 4,
                    source: Source::Imm(0)
                },
                len: 10
            }
        );
        // mov [rdi], esi
        let d = decode(&[0x89, 0x37], 64, 0).unwrap();
        assert_eq!(
            d,
            Decoded {
                access: Access::Write {
                    size: 4,
                    source: Source::Reg(Gpr(6))
                },
                len: 2
            }
        );
        // mov eax, [rdi+0x30]
        let d = decode(&[0x8b, 0x47, 0x30], 64, 0).unwrap();
        assert_eq!(
            d,
            Decoded {
                access: Access::Read {
                    size: 4,
                    dest: Gpr(0),
                    dest_size: 4
                },
                len: 3
            }
        );
        // mov r9d, [rax]
        let d = decode(&[0x44, 0x8b, 0x08], 64, 0).unwrap();
        assert_eq!(
            d.access,
            Access::Read {
                size: 4,
                dest: Gpr(9),
                dest_size: 4
            }
        );
        // mov byte ptr [rdx], al
        let d = decode(&[0x88, 0x02], 64, 0).unwrap();
        assert_eq!(
            d.access,
            Access::Write {
                size: 1,
                source: Source::Reg(Gpr(0))
            }
        );
    }

    #[test]
    fn refuses_what_it_does_not_emulate() {
        // add [rax], eax
        assert_eq!(
            decode(&[0x01, 0x00], 64, 0),
            Err(MmioError::Unsupported(Mnemonic::Add))
        );
        // mov ah, [rax]
        assert!(matches!(
            decode(&[0x8a, 0x20], 64, 0),
            Err(MmioError::Unsupported(_))
        ));
        assert_eq!(decode(&[0x0f, 0xff], 64, 0), Err(MmioError::Invalid));
        assert_eq!(decode(&[], 64, 0), Err(MmioError::Invalid));
        for b in 0..=255u8 {
            let _ = decode(&[b, 0x00, 0x00, 0x00], 64, 0);
        }
    }

    #[test]
    fn walks_four_level_tables_with_large_pages() {
        let mut ram = vec![0u8; 0x40_0000];
        let mut m = GuestMemory::new(&mut ram);
        // PML4 at 0x1000 -> PDPT 0x2000 -> PD 0x3000; PD[1] = 2 MiB page at 0x20_0000; PD[0] -> PT 0x4000
        m.write_u64(GuestAddress(0x1000), 0x2000 | 3).unwrap();
        m.write_u64(GuestAddress(0x2000), 0x3000 | 3).unwrap();
        m.write_u64(GuestAddress(0x3008), 0x20_0000 | 0x83).unwrap();
        m.write_u64(GuestAddress(0x3000), 0x4000 | 3).unwrap();
        m.write_u64(GuestAddress(0x4000 + 5 * 8), 0x9000 | 3)
            .unwrap();
        let p = Paging {
            cr0: CR0_PG | 1,
            cr3: 0x1000,
            cr4: CR4_PAE,
            efer: EFER_LMA | (1 << 8),
            cs_base: 0,
            code_bits: 64,
        };
        assert_eq!(p.translate(&m, 0x20_1234), Ok(0x20_1234));
        assert_eq!(p.translate(&m, 0x5abc), Ok(0x9abc));
        assert_eq!(p.translate(&m, 0x6000), Err(MmioError::UnmappedRip(0x6000)));
        assert_eq!(
            p.translate(&m, 0x8000_0000_0000),
            Err(MmioError::UnmappedRip(0x8000_0000_0000))
        );
        let unpaged = Paging { cr0: 1, ..p };
        assert_eq!(unpaged.translate(&m, 0x1234), Ok(0x1234));
        // instruction bytes straddling a page boundary: 0x5ffe.. maps 0x9ffe, then 0x6000 is unmapped
        let mut bytes = [0u8; 15];
        assert_eq!(p.fetch(&m, 0x5ffe, &mut bytes), Ok(2));
    }

    #[test]
    fn lengths_for_exits_without_next_rip() {
        assert_eq!(length(&[0x0f, 0xa2], 64, 0), Ok((Mnemonic::Cpuid, 2)));
        assert_eq!(length(&[0xf4], 16, 0), Ok((Mnemonic::Hlt, 1)));
        // a redundant prefix makes WRMSR three bytes long
        assert_eq!(length(&[0x3e, 0x0f, 0x30], 64, 0), Ok((Mnemonic::Wrmsr, 3)));
        assert_eq!(length(&[0x0f, 0x32], 32, 0), Ok((Mnemonic::Rdmsr, 2)));
        assert_eq!(length(&[0x0f], 64, 0), Err(MmioError::Invalid));
    }

    #[test]
    fn real_mode_code_is_fetched_through_cs() {
        let mut ram = vec![0u8; 0x20000];
        ram[0x1_0010] = 0xf4;
        let m = GuestMemory::new(&mut ram);
        let real = Paging {
            cr0: 0,
            cr3: 0,
            cr4: 0,
            efer: 0,
            cs_base: 0x1_0000,
            code_bits: 16,
        };
        assert_eq!(real.code_address(0x10), 0x1_0010);
        let mut bytes = [0u8; 15];
        assert!(real.fetch(&m, 0x10, &mut bytes).is_ok());
        assert_eq!(bytes[0], 0xf4);
    }
}
