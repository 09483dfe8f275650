//! Which VLANs a port carries and how: access (one VLAN, untagged) or trunk
//! (a set of tagged VLANs, optionally one native VLAN sent untagged).

use alloc::boxed::Box;
use core::fmt;

/// Largest usable VLAN ID (4095 is reserved, 0 means "priority tag only").
pub const MAX_VLAN: u16 = 4094;

/// A set of VLAN IDs 1..=4094, as a bitmap (boxed: 512 bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct VlanSet {
    bits: Box<[u64; 64]>,
}

impl VlanSet {
    pub fn empty() -> Self {
        VlanSet {
            bits: Box::new([0; 64]),
        }
    }

    /// Every usable VLAN (1..=4094).
    pub fn all() -> Self {
        let mut set = VlanSet {
            bits: Box::new([!0; 64]),
        };
        set.remove(0);
        set.remove(4095);
        set
    }

    /// The set of `vlans`; IDs outside 1..=4094 are refused.
    pub fn of(vlans: &[u16]) -> Result<Self, InvalidVlan> {
        let mut set = VlanSet::empty();
        for &vid in vlans {
            set.insert(vid)?;
        }
        Ok(set)
    }

    pub fn insert(&mut self, vid: u16) -> Result<(), InvalidVlan> {
        check_vid(vid)?;
        self.bits[usize::from(vid / 64)] |= 1 << (vid % 64);
        Ok(())
    }

    pub fn remove(&mut self, vid: u16) {
        if let Some(word) = self.bits.get_mut(usize::from(vid / 64)) {
            *word &= !(1 << (vid % 64));
        }
    }

    /// Whether no VLAN is in the set.
    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|w| *w == 0)
    }

    pub fn contains(&self, vid: u16) -> bool {
        self.bits
            .get(usize::from(vid / 64))
            .is_some_and(|w| w & (1 << (vid % 64)) != 0)
    }
}

impl fmt::Debug for VlanSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries((1..=MAX_VLAN).filter(|v| self.contains(*v)))
            .finish()
    }
}

/// A VLAN ID outside 1..=4094.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidVlan(pub u16);

impl fmt::Display for InvalidVlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VLAN {} is outside 1..=4094", self.0)
    }
}

pub fn check_vid(vid: u16) -> Result<u16, InvalidVlan> {
    if (1..=MAX_VLAN).contains(&vid) {
        Ok(vid)
    } else {
        Err(InvalidVlan(vid))
    }
}

/// How a port carries VLANs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VlanMode {
    /// One VLAN, untagged on the wire. Frames arriving with an 802.1Q tag
    /// (other than a priority-only tag, VID 0) are dropped.
    Access(u16),
    /// Tagged VLANs `allowed`; the `native` VLAN (if any) travels untagged
    /// and is carried whether or not it is in `allowed`. Untagged frames on
    /// a trunk without a native VLAN are dropped.
    Trunk {
        native: Option<u16>,
        allowed: VlanSet,
    },
}

impl VlanMode {
    /// Whether the port carries `vid` at all.
    pub fn carries(&self, vid: u16) -> bool {
        match self {
            VlanMode::Access(v) => *v == vid,
            VlanMode::Trunk { native, allowed } => *native == Some(vid) || allowed.contains(vid),
        }
    }

    /// Whether frames of `vid` leave this port untagged.
    pub fn untagged(&self, vid: u16) -> bool {
        match self {
            VlanMode::Access(_) => true,
            VlanMode::Trunk { native, .. } => *native == Some(vid),
        }
    }

    /// Every VLAN ID named is usable.
    pub fn validate(&self) -> Result<(), InvalidVlan> {
        match self {
            VlanMode::Access(v) => check_vid(*v).map(|_| ()),
            VlanMode::Trunk { native, .. } => native.map_or(Ok(()), |v| check_vid(v).map(|_| ())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_membership() {
        let set = VlanSet::of(&[1, 20, 64, 4094]).unwrap();
        for v in [1, 20, 64, 4094] {
            assert!(set.contains(v));
        }
        for v in [0, 2, 63, 65, 4093, 4095, 9999] {
            assert!(!set.contains(v));
        }
        assert_eq!(VlanSet::of(&[0]), Err(InvalidVlan(0)));
        assert_eq!(VlanSet::of(&[4095]), Err(InvalidVlan(4095)));
        let all = VlanSet::all();
        assert!(all.contains(1) && all.contains(4094));
        assert!(!all.contains(0) && !all.contains(4095));
        assert_eq!(format!("{:?}", VlanSet::of(&[5, 20]).unwrap()), "{5, 20}");
    }

    #[test]
    fn trunk_carries_native_and_allowed() {
        let trunk = VlanMode::Trunk {
            native: Some(5),
            allowed: VlanSet::of(&[20, 30]).unwrap(),
        };
        assert!(trunk.carries(5) && trunk.carries(20) && trunk.carries(30));
        assert!(!trunk.carries(6));
        assert!(trunk.untagged(5) && !trunk.untagged(20));
        let access = VlanMode::Access(7);
        assert!(access.carries(7) && !access.carries(5) && access.untagged(7));
        assert_eq!(VlanMode::Access(0).validate(), Err(InvalidVlan(0)));
        let bad_native = VlanMode::Trunk {
            native: Some(4095),
            allowed: VlanSet::empty(),
        };
        assert_eq!(bad_native.validate(), Err(InvalidVlan(4095)));
    }
}
