//! The bucket table: flow hashes fall into [`BUCKETS`] buckets, each owned by
//! one member. Changing the member set moves as few buckets as it can, so
//! flows on members that stay up keep their member (and their order).

/// Buckets a flow hash is folded into.
pub const BUCKETS: usize = 256;

/// Marks a bucket with no owner.
const NO_OWNER: u8 = u8::MAX;

#[derive(Debug, Clone)]
pub(crate) struct Buckets {
    owner: [u8; BUCKETS],
    /// Bytes sent through each bucket since the last rebalance (SLB).
    load: [u64; BUCKETS],
}

impl Buckets {
    pub(crate) fn new() -> Self {
        Buckets {
            owner: [NO_OWNER; BUCKETS],
            load: [0; BUCKETS],
        }
    }

    pub(crate) fn bucket(hash: u32) -> usize {
        // Fold all 32 bits in, so policies hashing few bytes still spread.
        ((hash ^ (hash >> 8) ^ (hash >> 16) ^ (hash >> 24)) & 0xff) as usize
    }

    /// The member owning `bucket`, if any.
    pub(crate) fn owner(&self, bucket: usize) -> Option<usize> {
        self.owner
            .get(bucket)
            .filter(|&&o| o != NO_OWNER)
            .map(|&o| usize::from(o))
    }

    pub(crate) fn account(&mut self, bucket: usize, bytes: usize) {
        if let Some(load) = self.load.get_mut(bucket) {
            *load = load.saturating_add(bytes as u64);
        }
    }

    /// How many buckets `member` owns.
    #[cfg(test)]
    pub(crate) fn count(&self, member: usize) -> usize {
        self.owner
            .iter()
            .filter(|&&o| usize::from(o) == member)
            .count()
    }

    /// Gives every bucket an owner among `usable` members (indexes where it is
    /// true), in even shares, moving only the buckets it must.
    pub(crate) fn rebuild(&mut self, usable: &[bool]) {
        let members: heapless::Vec<usize, 8> = usable
            .iter()
            .enumerate()
            .filter(|(_, u)| **u)
            .map(|(i, _)| i)
            .take(8)
            .collect();
        if members.is_empty() {
            self.owner = [NO_OWNER; BUCKETS];
            return;
        }
        let quota = |k: usize| BUCKETS / members.len() + usize::from(k < BUCKETS % members.len());
        let mut counts = [0usize; 8];
        // Release buckets of members that left, and what members hold above quota.
        for owner in self.owner.iter_mut() {
            let kept = members
                .iter()
                .position(|&m| usize::from(*owner) == m)
                .filter(|&k| counts[k] < quota(k));
            match kept {
                Some(k) => counts[k] += 1,
                None => *owner = NO_OWNER,
            }
        }
        // Hand the free buckets to members below quota.
        let mut k = 0;
        for owner in self.owner.iter_mut().filter(|o| **o == NO_OWNER) {
            while k < members.len() && counts[k] >= quota(k) {
                k += 1;
            }
            // The quotas add up to BUCKETS, so a member below quota is always found.
            let Some(&member) = members.get(k) else { break };
            *owner = member as u8;
            counts[k] += 1;
        }
    }

    /// Source-load balancing (OVS `balance-slb`): moves the buckets that best
    /// even out the load from the busiest to the idlest member, then ages the
    /// load so that old traffic counts less. Returns how many buckets moved.
    pub(crate) fn rebalance(&mut self, usable: &[bool]) -> usize {
        let mut moved = 0;
        // Each move strictly narrows the gap, so this ends; the bound is a backstop.
        for _ in 0..BUCKETS {
            let loads = self.member_loads(usable.len().min(8));
            let live = || (0..usable.len().min(8)).filter(|&i| usable[i]);
            let (Some(busiest), Some(idlest)) = (
                live().max_by_key(|&i| loads[i]),
                live().min_by_key(|&i| loads[i]),
            ) else {
                break;
            };
            let gap = loads[busiest] - loads[idlest];
            // The bucket whose load is nearest half the gap, if moving it helps.
            let best = (0..BUCKETS)
                .filter(|&b| self.owner(b) == Some(busiest) && self.load[b] > 0)
                .filter(|&b| self.load[b] < gap)
                .min_by_key(|&b| (gap / 2).abs_diff(self.load[b]));
            let Some(bucket) = best else { break };
            self.owner[bucket] = idlest as u8;
            moved += 1;
        }
        for load in self.load.iter_mut() {
            *load /= 2;
        }
        moved
    }

    fn member_loads(&self, members: usize) -> [u64; 8] {
        let mut loads = [0u64; 8];
        for (owner, load) in self.owner.iter().zip(self.load.iter()) {
            if let Some(l) = loads
                .get_mut(usize::from(*owner))
                .filter(|_| usize::from(*owner) < members)
            {
                *l = l.saturating_add(*load);
            }
        }
        loads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebuild_shares_evenly_and_moves_only_what_it_must() {
        let mut b = Buckets::new();
        b.rebuild(&[true, true]);
        assert_eq!((b.count(0), b.count(1)), (128, 128));
        let before = b.owner;
        b.rebuild(&[true, false]);
        assert_eq!(b.count(0), 256);
        for (old, new) in before.iter().zip(b.owner.iter()) {
            if *old == 0 {
                assert_eq!(*new, 0, "flows on the surviving member stay put");
            }
        }
        b.rebuild(&[true, true]);
        assert_eq!((b.count(0), b.count(1)), (128, 128));
        b.rebuild(&[true, true, true, false]);
        assert_eq!((b.count(0), b.count(1), b.count(2)), (86, 85, 85));
        b.rebuild(&[false, false]);
        assert_eq!(b.owner(0), None);
    }

    #[test]
    fn rebalance_moves_load_to_the_idle_member() {
        let mut b = Buckets::new();
        b.rebuild(&[true, true]);
        // Two heavy sources, both on member 0.
        let on_zero: Vec<usize> = (0..BUCKETS).filter(|&i| b.owner(i) == Some(0)).collect();
        b.account(on_zero[0], 1_000_000);
        b.account(on_zero[1], 900_000);
        assert!(b.rebalance(&[true, true]) >= 1);
        assert_ne!(b.owner(on_zero[0]), b.owner(on_zero[1]));
        // Balanced load: nothing moves.
        let mut b2 = b.clone();
        assert_eq!(b2.rebalance(&[true, true]), 0);
        assert_eq!(Buckets::new().rebalance(&[false, false]), 0);
    }
}
