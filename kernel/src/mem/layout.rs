//! Choosing where early boot structures go: the first page-aligned range of
//! usable RAM that avoids every reserved range. Pure, so it tests on the host.

use crate::bootinfo::{MemKind, MemRegion};

/// The lowest page-aligned address `a` with `[a, a + size)` inside one usable
/// region, at or above `min`, below `max`, and clear of every `reserved` range.
pub fn find_free_range(
    regions: &[MemRegion],
    reserved: &[(u64, u64)],
    size: u64,
    min: u64,
    max: u64,
) -> Option<u64> {
    const PAGE: u64 = 4096;
    let mut best: Option<u64> = None;
    for r in regions.iter().filter(|r| r.kind == MemKind::Usable) {
        let r_end = r.start.saturating_add(r.len).min(max);
        let mut a = r.start.max(min).div_ceil(PAGE) * PAGE;
        while a.saturating_add(size) <= r_end {
            let end = a + size;
            match reserved
                .iter()
                .find(|&&(s, l)| l > 0 && s < end && a < s.saturating_add(l))
            {
                Some(&(s, l)) => a = s.saturating_add(l).div_ceil(PAGE) * PAGE,
                None => {
                    best = Some(best.map_or(a, |b| b.min(a)));
                    break;
                }
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usable(start: u64, len: u64) -> MemRegion {
        MemRegion {
            start,
            len,
            kind: MemKind::Usable,
        }
    }

    #[test]
    fn avoids_reserved_ranges() {
        let regions = [usable(0, 0x9f000), usable(0x10_0000, 0x1000_0000)];
        let reserved = [(0x20_0000, 0x30_0000), (0x50_0000, 0x1234)];
        // below 1 MiB is excluded by `min`
        let a = find_free_range(&regions, &reserved, 0x10_0000, 0x10_0000, u64::MAX).unwrap();
        assert_eq!(a, 0x10_0000);
        let a = find_free_range(&regions, &reserved, 0x20_0000, 0x10_0000, u64::MAX).unwrap();
        assert_eq!(a, 0x50_2000);
        assert_eq!(
            find_free_range(&regions, &reserved, 0x2000_0000, 0, u64::MAX),
            None
        );
        // respects `max`
        assert_eq!(
            find_free_range(&regions, &[], 0x1000, 0x10_0000, 0x10_0800),
            None
        );
    }
}
