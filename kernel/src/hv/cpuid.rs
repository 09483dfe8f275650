//! The CPUID a guest sees: the host's leaves, minus what the guest must not
//! use (SVM, VMX, monitor/mwait, machine checks), plus what the hypervisor
//! emulates whatever the host has (x2APIC, the TSC-deadline timer), the
//! hypervisor bit and a signature leaf, with per-vCPU APIC IDs.

/// Signature returned in leaf 0x4000_0000 (EBX, ECX, EDX).
pub const SIGNATURE: &[u8; 12] = b"KeelKeelKeel";
pub const HYPERVISOR_LEAF: u32 = 0x4000_0000;

/// A CPUID result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Leaf {
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

mod bit {
    pub const L1_ECX_MONITOR: u32 = 1 << 3;
    pub const L1_ECX_VMX: u32 = 1 << 5;
    /// Emulated by the guest LAPIC model.
    pub const L1_ECX_X2APIC: u32 = 1 << 21;
    pub const L1_ECX_TSC_DEADLINE: u32 = 1 << 24;
    pub const L1_ECX_HYPERVISOR: u32 = 1 << 31;
    pub const L1_EDX_HTT: u32 = 1 << 28;
    /// Machine-check architecture: its MSR banks are not emulated.
    pub const L1_EDX_MCE: u32 = 1 << 7;
    pub const L1_EDX_MCA: u32 = 1 << 14;
    pub const X1_ECX_SVM: u32 = 1 << 2;
    pub const X1_ECX_CMP_LEGACY: u32 = 1 << 1;
    /// RDTSCP and RDPID read IA32_TSC_AUX, which is not switched per guest yet.
    pub const X1_EDX_RDTSCP: u32 = 1 << 27;
    pub const L7_ECX_RDPID: u32 = 1 << 22;
}

/// The guest's view of `leaf`/`subleaf` given the host's answer.
pub fn guest_leaf(
    leaf: u32,
    subleaf: u32,
    host: impl Fn(u32, u32) -> Leaf,
    vcpu: u32,
    vcpus: u32,
) -> Leaf {
    let _ = subleaf;
    match leaf {
        0x1 => {
            let mut l = host(leaf, subleaf);
            l.ecx &= !(bit::L1_ECX_VMX | bit::L1_ECX_MONITOR);
            l.ecx |= bit::L1_ECX_HYPERVISOR | bit::L1_ECX_X2APIC | bit::L1_ECX_TSC_DEADLINE;
            l.edx &= !(bit::L1_EDX_MCE | bit::L1_EDX_MCA);
            // EBX[31:24] initial APIC ID, [23:16] logical processors per package.
            l.ebx = (l.ebx & 0x0000_ffff) | ((vcpus.min(255)) << 16) | (vcpu.min(255) << 24);
            if vcpus > 1 {
                l.edx |= bit::L1_EDX_HTT;
            }
            l
        }
        0x7 if subleaf == 0 => {
            let mut l = host(leaf, subleaf);
            l.ecx &= !bit::L7_ECX_RDPID;
            l
        }
        // No monitor/mwait leaf; no topology or power-management leaves to lie about.
        0x5 | 0x6 => Leaf::default(),
        0xb | 0x1f => Leaf {
            eax: 0,
            ebx: 0,
            ecx: subleaf & 0xff,
            edx: vcpu,
        },
        HYPERVISOR_LEAF => {
            let w = |i: usize| {
                u32::from_le_bytes([
                    SIGNATURE[i],
                    SIGNATURE[i + 1],
                    SIGNATURE[i + 2],
                    SIGNATURE[i + 3],
                ])
            };
            Leaf {
                eax: HYPERVISOR_LEAF,
                ebx: w(0),
                ecx: w(4),
                edx: w(8),
            }
        }
        0x4000_0001..=0x4000_00ff => Leaf::default(),
        0x8000_0001 => {
            let mut l = host(leaf, subleaf);
            l.ecx &= !(bit::X1_ECX_SVM | bit::X1_ECX_CMP_LEGACY);
            l.edx &= !bit::X1_EDX_RDTSCP;
            l
        }
        // SVM feature leaf: nothing to report to a guest without SVM.
        0x8000_000a => Leaf::default(),
        _ => host(leaf, subleaf),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(leaf: u32, _sub: u32) -> Leaf {
        match leaf {
            0x1 => Leaf {
                eax: 0x800f12,
                ebx: 0x0304_0800,
                ecx: u32::MAX,
                edx: 0,
            },
            0x8000_0001 => Leaf {
                eax: 0,
                ebx: 0,
                ecx: u32::MAX,
                edx: u32::MAX,
            },
            0x8000_000a => Leaf {
                eax: 1,
                ebx: 8,
                ecx: 0,
                edx: 0xff,
            },
            _ => Leaf {
                eax: 7,
                ebx: 7,
                ecx: 7,
                edx: 7,
            },
        }
    }

    #[test]
    fn hides_virtualization_and_marks_hypervisor() {
        let l1 = guest_leaf(1, 0, host, 2, 4);
        assert_eq!(l1.ecx & bit::L1_ECX_VMX, 0);
        assert_ne!(l1.ecx & bit::L1_ECX_X2APIC, 0, "emulated");
        assert_ne!(l1.ecx & bit::L1_ECX_TSC_DEADLINE, 0, "emulated");
        assert_ne!(l1.ecx & bit::L1_ECX_HYPERVISOR, 0);
        assert_eq!(l1.edx & (bit::L1_EDX_MCE | bit::L1_EDX_MCA), 0);
        assert_eq!(l1.ebx >> 24, 2);
        assert_eq!((l1.ebx >> 16) & 0xff, 4);
        assert_eq!(
            guest_leaf(0x8000_0001, 0, host, 0, 1).ecx & bit::X1_ECX_SVM,
            0
        );
        assert_eq!(guest_leaf(0x8000_000a, 0, host, 0, 1), Leaf::default());
        let sig = guest_leaf(HYPERVISOR_LEAF, 0, host, 0, 1);
        let mut s = Vec::new();
        for r in [sig.ebx, sig.ecx, sig.edx] {
            s.extend_from_slice(&r.to_le_bytes());
        }
        assert_eq!(&s, SIGNATURE);
        assert_eq!(guest_leaf(0x7, 1, host, 0, 1).eax, 7);
        assert_eq!(
            guest_leaf(0x8000_0001, 0, host, 0, 1).edx & bit::X1_EDX_RDTSCP,
            0
        );
    }
}
