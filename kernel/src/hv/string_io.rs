//! Emulation of the string port instructions (INS, OUTS, with or without a
//! REP prefix), which exit as port I/O without their memory operand: the
//! element is moved between guest memory (through the guest's segments and
//! page tables) and the port bus, and RSI/RDI/RCX advance as the CPU would.
//! Pure: memory, paging and the port bus come from the caller.

use iced_x86::{Decoder, DecoderOptions, Mnemonic, OpKind, Register};

use super::memory::{GuestAddress, GuestMemory};
use super::mmio::{MmioError, Paging};

/// Elements moved per exit at most; a longer REP resumes at the same
/// instruction (RIP is left on it), so one guest cannot hold a host CPU.
pub const MAX_PER_EXIT: u64 = 4096;

/// What the decoder found at RIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StringOp {
    /// OUTS (memory to port); else INS (port to memory).
    pub out: bool,
    /// Address size: 16, 32 or 64 bits (masks RSI/RDI/RCX).
    pub addr_bits: u32,
    /// The segment of the memory operand (DS or an override for OUTS; ES for INS).
    pub segment: Register,
    pub rep: bool,
    pub len: u8,
}

/// Decodes the INS/OUTS at RIP.
pub fn decode(bytes: &[u8], code_bits: u32, rip: u64) -> Result<StringOp, MmioError> {
    let bits = if matches!(code_bits, 16 | 32 | 64) {
        code_bits
    } else {
        32
    };
    let i = Decoder::with_ip(bits, bytes, rip, DecoderOptions::NONE).decode();
    if i.is_invalid() {
        return Err(MmioError::Invalid);
    }
    let out = match i.mnemonic() {
        Mnemonic::Outsb | Mnemonic::Outsw | Mnemonic::Outsd => true,
        Mnemonic::Insb | Mnemonic::Insw | Mnemonic::Insd => false,
        other => return Err(MmioError::Unsupported(other)),
    };
    let memory = if out { i.op1_kind() } else { i.op0_kind() };
    let addr_bits = match memory {
        OpKind::MemorySegSI | OpKind::MemoryESDI => 16,
        OpKind::MemorySegESI | OpKind::MemoryESEDI => 32,
        _ => 64,
    };
    Ok(StringOp {
        out,
        addr_bits,
        segment: if out {
            i.memory_segment()
        } else {
            Register::ES
        },
        rep: i.has_rep_prefix() || i.has_repe_prefix() || i.has_repne_prefix(),
        len: i.len() as u8,
    })
}

/// The registers a string instruction reads and advances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StringRegs {
    pub rsi: u64,
    pub rdi: u64,
    pub rcx: u64,
    /// RFLAGS.DF: addresses go down.
    pub down: bool,
    /// Base of the operand's segment.
    pub segment_base: u64,
}

fn mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1 << bits) - 1
    }
}

/// Moves up to `MAX_PER_EXIT` elements of `size` bytes. `port` is called
/// with `Some(value)` for each OUTS element and `None` for each INS element
/// (returning the value read). Returns whether the instruction is complete
/// (then RIP moves past it).
pub fn run(
    op: StringOp,
    size: u8,
    regs: &mut StringRegs,
    mem: &mut GuestMemory<'_>,
    paging: &Paging,
    mut port: impl FnMut(Option<u64>) -> u64,
) -> Result<bool, MmioError> {
    let amask = mask(op.addr_bits);
    let size = u64::from(size.clamp(1, 4));
    let mut left = if op.rep { regs.rcx & amask } else { 1 };
    let mut budget = MAX_PER_EXIT;
    while left > 0 && budget > 0 {
        let index = if op.out { regs.rsi } else { regs.rdi } & amask;
        let linear = regs.segment_base.wrapping_add(index);
        let linear = if paging.code_bits == 64 {
            linear
        } else {
            linear & 0xffff_ffff
        };
        // Byte by byte: an element may straddle two pages.
        let mut gpas = [0u64; 4];
        for (k, gpa) in gpas.iter_mut().enumerate().take(size as usize) {
            *gpa = paging.translate(mem, linear.wrapping_add(k as u64))?;
        }
        let gpas = &gpas[..size as usize];
        let unmapped = |_| MmioError::UnmappedRip(linear);
        if op.out {
            let mut bytes = [0u8; 4];
            for (b, &gpa) in bytes.iter_mut().zip(gpas) {
                let mut one = [0u8];
                mem.read(GuestAddress(gpa), &mut one).map_err(unmapped)?;
                *b = one[0];
            }
            port(Some(u64::from(u32::from_le_bytes(bytes))));
        } else {
            let value = port(None).to_le_bytes();
            for (k, &gpa) in gpas.iter().enumerate() {
                mem.write(GuestAddress(gpa), &value[k..k + 1])
                    .map_err(unmapped)?;
            }
        }
        let step = if regs.down { size.wrapping_neg() } else { size };
        let advance = |r: u64| (r & !amask) | (r.wrapping_add(step) & amask);
        if op.out {
            regs.rsi = advance(regs.rsi);
        } else {
            regs.rdi = advance(regs.rdi);
        }
        left -= 1;
        budget -= 1;
        if op.rep {
            regs.rcx = (regs.rcx & !amask) | (left & amask);
        }
    }
    Ok(left == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat() -> Paging {
        Paging {
            cr0: 1,
            cr3: 0,
            cr4: 0,
            efer: 0,
            cs_base: 0,
            code_bits: 32,
        }
    }

    #[test]
    fn decodes_ins_and_outs() {
        let rep_outsb = decode(&[0xf3, 0x6e], 64, 0).unwrap();
        assert_eq!(
            rep_outsb,
            StringOp {
                out: true,
                addr_bits: 64,
                segment: Register::DS,
                rep: true,
                len: 2
            }
        );
        let insw16 = decode(&[0x6d], 16, 0).unwrap();
        assert_eq!(
            (insw16.out, insw16.addr_bits, insw16.segment),
            (false, 16, Register::ES)
        );
        let fs_outsd = decode(&[0x64, 0x6f], 32, 0).unwrap();
        assert_eq!((fs_outsd.segment, fs_outsd.addr_bits), (Register::FS, 32));
        let a32 = decode(&[0x67, 0xf3, 0x6e], 64, 0).unwrap();
        assert_eq!(a32.addr_bits, 32);
        assert!(decode(&[0x90], 64, 0).is_err());
        assert!(decode(&[], 64, 0).is_err());
    }

    #[test]
    fn rep_outsb_writes_a_string_and_advances() {
        let mut ram = vec![0u8; 0x2000];
        ram[0x100..0x105].copy_from_slice(b"hello");
        let mut m = GuestMemory::new(&mut ram);
        let op = decode(&[0xf3, 0x6e], 32, 0).unwrap();
        let mut regs = StringRegs {
            rsi: 0x100,
            rdi: 0,
            rcx: 5,
            down: false,
            segment_base: 0,
        };
        let mut out = Vec::new();
        let done = run(op, 1, &mut regs, &mut m, &flat(), |v| {
            out.push(v.unwrap() as u8);
            0
        })
        .unwrap();
        assert!(done);
        assert_eq!(out, b"hello");
        assert_eq!((regs.rsi, regs.rcx), (0x105, 0));
    }

    #[test]
    fn insw_fills_memory_backwards_with_df_and_long_reps_resume() {
        let mut ram = vec![0u8; 0x20000];
        let mut m = GuestMemory::new(&mut ram);
        let op = decode(&[0xf3, 0x66, 0x6d], 32, 0).unwrap();
        let mut regs = StringRegs {
            rsi: 0,
            rdi: 0x100,
            rcx: 2,
            down: true,
            segment_base: 0x1000,
        };
        let mut n = 0u64;
        assert!(
            run(op, 2, &mut regs, &mut m, &flat(), |_| {
                n += 1;
                0xab00 + n
            })
            .unwrap()
        );
        let mut b = [0u8; 4];
        m.read(GuestAddress(0x10fe), &mut b).unwrap();
        assert_eq!(b, [0x02, 0xab, 0x01, 0xab]);
        assert_eq!(regs.rdi, 0xfc);

        regs.rcx = MAX_PER_EXIT + 3;
        regs.down = false;
        regs.rdi = 0;
        assert!(!run(op, 2, &mut regs, &mut m, &flat(), |_| 0).unwrap());
        assert_eq!(regs.rcx, 3, "resumes where it stopped");
        assert!(run(op, 2, &mut regs, &mut m, &flat(), |_| 0).unwrap());
    }

    #[test]
    fn a_string_outside_guest_memory_is_an_error() {
        let mut ram = vec![0u8; 0x1000];
        let mut m = GuestMemory::new(&mut ram);
        let op = decode(&[0x6e], 64, 0).unwrap();
        let mut regs = StringRegs {
            rsi: 0xffff_0000,
            rdi: 0,
            rcx: 0,
            down: false,
            segment_base: 0,
        };
        let p = Paging {
            code_bits: 64,
            ..flat()
        };
        assert!(run(op, 1, &mut regs, &mut m, &p, |_| 0).is_err());
    }
}
