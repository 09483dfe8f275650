//! Counting exits by kind (and I/O exits by port), to see what a guest's
//! boot costs: the hypervisor's first performance question.

use core::fmt;

use super::exit::VmExit;

const KINDS: usize = 12;
const NAMES: [&str; KINDS] = [
    "io",
    "hlt",
    "cpuid",
    "msr-read",
    "msr-write",
    "hypercall",
    "npf",
    "shutdown",
    "intr",
    "window",
    "nmi",
    "other",
];
/// Ports tracked individually (the first seen); the rest are summed.
const TOP_PORTS: usize = 32;
/// Ports shown in the summary.
const SHOWN_PORTS: usize = 6;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExitProfile {
    pub counts: [u64; KINDS],
    /// (port, count), the first ports seen.
    pub ports: heapless::Vec<(u16, u64), TOP_PORTS>,
    pub other_ports: u64,
}

impl ExitProfile {
    pub fn record(&mut self, exit: &VmExit) {
        let kind = match exit {
            VmExit::Io { port, .. } => {
                match self.ports.iter_mut().find(|(p, _)| p == port) {
                    Some((_, n)) => *n += 1,
                    None => {
                        if self.ports.push((*port, 1)).is_err() {
                            self.other_ports += 1;
                        }
                    }
                }
                0
            }
            VmExit::Hlt => 1,
            VmExit::Cpuid => 2,
            VmExit::MsrRead => 3,
            VmExit::MsrWrite => 4,
            VmExit::Hypercall => 5,
            VmExit::NestedPageFault { .. } => 6,
            VmExit::Shutdown => 7,
            VmExit::Interrupt => 8,
            VmExit::InterruptWindow => 9,
            VmExit::Nmi => 10,
            VmExit::InvalidState | VmExit::Unknown(_) => 11,
        };
        self.counts[kind] += 1;
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

impl fmt::Display for ExitProfile {
    /// `N exits: io 120 (0x3f8 100, 0x40 20), intr 30, ...`, largest first.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} exits:", self.total())?;
        let mut order: [usize; KINDS] = core::array::from_fn(|i| i);
        order.sort_by_key(|&i| core::cmp::Reverse(self.counts[i]));
        let mut first = true;
        for i in order.into_iter().filter(|&i| self.counts[i] > 0) {
            write!(
                f,
                "{} {} {}",
                if first { "" } else { "," },
                NAMES[i],
                self.counts[i]
            )?;
            first = false;
            if i == 0 {
                let mut ports = self.ports.clone();
                ports.sort_unstable_by_key(|&(_, n)| core::cmp::Reverse(n));
                write!(f, " (")?;
                for (j, (p, n)) in ports.iter().take(SHOWN_PORTS).enumerate() {
                    write!(f, "{}{p:#x} {n}", if j == 0 { "" } else { ", " })?;
                }
                let rest =
                    self.other_ports + ports.iter().skip(SHOWN_PORTS).map(|(_, n)| n).sum::<u64>();
                if rest > 0 {
                    write!(f, ", other {rest}")?;
                }
                write!(f, ")")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(port: u16) -> VmExit {
        VmExit::Io {
            port,
            size: 1,
            write: true,
            string: false,
            rep: false,
            next_rip: 0,
        }
    }

    #[test]
    fn counts_and_summarises_largest_first() {
        let mut p = ExitProfile::default();
        for _ in 0..3 {
            p.record(&io(0x3f8));
        }
        p.record(&io(0x40));
        p.record(&VmExit::Hlt);
        for port in 0..40 {
            p.record(&io(0x1000 + port));
        }
        assert_eq!(p.total(), 45);
        let s = alloc::format!("{p}");
        assert!(s.starts_with("45 exits: io 44 (0x3f8 3, "), "{s}");
        assert!(s.contains("other 36"), "{s}");
        assert!(s.ends_with(", hlt 1"), "{s}");
    }
}
