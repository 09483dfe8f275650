//! The LACPDU of IEEE 802.1AX (formerly 802.3ad): the payload of a slow
//! protocols frame with subtype 1. Version 1 is exactly 110 bytes: Actor and
//! Partner information TLVs, a Collector TLV, a Terminator and reserved padding.
//! Later versions append TLVs after the Collector; they parse here with those
//! ignored, as 802.1AX asks of a version-1 receiver.

use core::fmt;

use super::{WireError, check_len, check_room, read_mac, read_u16, write_u16};
use crate::MacAddress;

/// Bytes of a version-1 LACPDU (without the Ethernet header).
pub const LACPDU_LEN: usize = 110;

/// The version this stack emits.
const VERSION: u8 = 1;

const TLV_ACTOR: u8 = 1;
const TLV_PARTNER: u8 = 2;
const TLV_COLLECTOR: u8 = 3;
const TLV_TERMINATOR: u8 = 0;
const INFO_TLV_LEN: u8 = 20;
const COLLECTOR_TLV_LEN: u8 = 16;

mod field {
    pub const SUBTYPE: usize = 0;
    pub const VERSION: usize = 1;
    pub const ACTOR_TLV: usize = 2;
    pub const PARTNER_TLV: usize = 22;
    pub const COLLECTOR_TLV: usize = 42;
    pub const COLLECTOR_MAX_DELAY: usize = 44;
    pub const TERMINATOR_TLV: usize = 58;

    /// Offsets inside an Actor or Partner information TLV.
    pub const INFO_SYSTEM_PRIORITY: usize = 2;
    pub const INFO_SYSTEM: usize = 4;
    pub const INFO_KEY: usize = 10;
    pub const INFO_PORT_PRIORITY: usize = 12;
    pub const INFO_PORT: usize = 14;
    pub const INFO_STATE: usize = 16;
}

/// The Actor_State / Partner_State octet.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LacpState(pub u8);

impl LacpState {
    /// Active LACP (sends PDUs unprompted); clear means passive.
    pub const ACTIVITY: u8 = 0x01;
    /// Short timeout: the sender wants PDUs every second, not every 30.
    pub const TIMEOUT: u8 = 0x02;
    /// The link may be aggregated; clear means Individual.
    pub const AGGREGATION: u8 = 0x04;
    /// The link is attached to the right aggregator.
    pub const SYNCHRONIZATION: u8 = 0x08;
    pub const COLLECTING: u8 = 0x10;
    pub const DISTRIBUTING: u8 = 0x20;
    /// The sender uses administrative defaults for its partner.
    pub const DEFAULTED: u8 = 0x40;
    /// The sender's receive machine is in EXPIRED.
    pub const EXPIRED: u8 = 0x80;

    pub fn has(self, bits: u8) -> bool {
        self.0 & bits == bits
    }

    pub fn set(&mut self, bits: u8, on: bool) {
        if on {
            self.0 |= bits;
        } else {
            self.0 &= !bits;
        }
    }
}

impl fmt::Debug for LacpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(u8, &str); 8] = [
            (LacpState::ACTIVITY, "activity"),
            (LacpState::TIMEOUT, "timeout"),
            (LacpState::AGGREGATION, "aggregation"),
            (LacpState::SYNCHRONIZATION, "synchronized"),
            (LacpState::COLLECTING, "collecting"),
            (LacpState::DISTRIBUTING, "distributing"),
            (LacpState::DEFAULTED, "defaulted"),
            (LacpState::EXPIRED, "expired"),
        ];
        let mut first = true;
        for (bit, name) in NAMES {
            if self.0 & bit != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("-")?;
        }
        Ok(())
    }
}

/// One side's view of a port: the body of an Actor or Partner TLV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PortInfo {
    pub system_priority: u16,
    pub system: MacAddress,
    pub key: u16,
    pub port_priority: u16,
    pub port: u16,
    pub state: LacpState,
}

impl PortInfo {
    fn read(buf: &[u8], tlv: usize) -> Self {
        PortInfo {
            system_priority: read_u16(buf, tlv + field::INFO_SYSTEM_PRIORITY),
            system: read_mac(buf, tlv + field::INFO_SYSTEM),
            key: read_u16(buf, tlv + field::INFO_KEY),
            port_priority: read_u16(buf, tlv + field::INFO_PORT_PRIORITY),
            port: read_u16(buf, tlv + field::INFO_PORT),
            state: LacpState(buf[tlv + field::INFO_STATE]),
        }
    }

    /// Writes the whole TLV (type, length, fields, zeroed reserved bytes).
    fn write(&self, buf: &mut [u8], tlv: usize, tlv_type: u8) {
        buf[tlv..tlv + usize::from(INFO_TLV_LEN)].fill(0);
        buf[tlv] = tlv_type;
        buf[tlv + 1] = INFO_TLV_LEN;
        write_u16(buf, tlv + field::INFO_SYSTEM_PRIORITY, self.system_priority);
        let sys = tlv + field::INFO_SYSTEM;
        buf[sys..sys + 6].copy_from_slice(&self.system.0);
        write_u16(buf, tlv + field::INFO_KEY, self.key);
        write_u16(buf, tlv + field::INFO_PORT_PRIORITY, self.port_priority);
        write_u16(buf, tlv + field::INFO_PORT, self.port);
        buf[tlv + field::INFO_STATE] = self.state.0;
    }

    /// Whether `other` describes the same port of the same system with the
    /// same key and aggregation capability (the comparison 802.1AX makes to
    /// decide whether a PDU changes the selection).
    pub fn same_port(&self, other: &PortInfo) -> bool {
        self.system_priority == other.system_priority
            && self.system == other.system
            && self.key == other.key
            && self.port_priority == other.port_priority
            && self.port == other.port
            && self.state.has(LacpState::AGGREGATION) == other.state.has(LacpState::AGGREGATION)
    }
}

/// A checked view of a LACPDU (the Ethernet payload, starting at the subtype).
#[derive(Debug, Clone)]
pub struct LacpduPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> LacpduPacket<T> {
    /// Wraps `buffer` once its length, subtype, version and fixed TLVs are right.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let buf = buffer.as_ref();
        check_len(buf, LACPDU_LEN)?;
        if buf[field::SUBTYPE] != super::SUBTYPE_LACP {
            return Err(WireError::UnknownSubtype(buf[field::SUBTYPE]));
        }
        let version = buf[field::VERSION];
        if version == 0 {
            return Err(WireError::BadVersion(version));
        }
        check_tlv(buf, field::ACTOR_TLV, TLV_ACTOR, INFO_TLV_LEN)?;
        check_tlv(buf, field::PARTNER_TLV, TLV_PARTNER, INFO_TLV_LEN)?;
        check_tlv(buf, field::COLLECTOR_TLV, TLV_COLLECTOR, COLLECTOR_TLV_LEN)?;
        if version == VERSION {
            check_tlv(buf, field::TERMINATOR_TLV, TLV_TERMINATOR, 0)?;
        }
        Ok(LacpduPacket { buffer })
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION]
    }

    pub fn actor(&self) -> PortInfo {
        PortInfo::read(self.buffer.as_ref(), field::ACTOR_TLV)
    }

    pub fn partner(&self) -> PortInfo {
        PortInfo::read(self.buffer.as_ref(), field::PARTNER_TLV)
    }

    /// CollectorMaxDelay, in tens of microseconds.
    pub fn collector_max_delay(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::COLLECTOR_MAX_DELAY)
    }
}

fn check_tlv(buf: &[u8], offset: usize, tlv_type: u8, length: u8) -> Result<(), WireError> {
    let (t, l) = (buf[offset], buf[offset + 1]);
    if t != tlv_type || l != length {
        return Err(WireError::BadTlv {
            offset,
            tlv_type: t,
            length: l,
        });
    }
    Ok(())
}

/// A LACPDU in high-level form. It carries no version: this stack emits
/// version 1 and reads the version-1 fields of any later version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LacpduRepr {
    pub actor: PortInfo,
    pub partner: PortInfo,
    /// CollectorMaxDelay, in tens of microseconds.
    pub collector_max_delay: u16,
}

impl LacpduRepr {
    pub fn parse<T: AsRef<[u8]>>(packet: &LacpduPacket<T>) -> Self {
        LacpduRepr {
            actor: packet.actor(),
            partner: packet.partner(),
            collector_max_delay: packet.collector_max_delay(),
        }
    }

    pub const fn buffer_len(&self) -> usize {
        LACPDU_LEN
    }

    /// Writes a version-1 LACPDU into `buf[..110]`, reserved bytes zeroed.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        check_room(buf.len(), LACPDU_LEN)?;
        let buf = &mut buf[..LACPDU_LEN];
        buf.fill(0);
        buf[field::SUBTYPE] = super::SUBTYPE_LACP;
        buf[field::VERSION] = VERSION;
        self.actor.write(buf, field::ACTOR_TLV, TLV_ACTOR);
        self.partner.write(buf, field::PARTNER_TLV, TLV_PARTNER);
        buf[field::COLLECTOR_TLV] = TLV_COLLECTOR;
        buf[field::COLLECTOR_TLV + 1] = COLLECTOR_TLV_LEN;
        write_u16(buf, field::COLLECTOR_MAX_DELAY, self.collector_max_delay);
        // The terminator TLV (type 0, length 0) and the padding are the zeros
        // written above.
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A LACPDU written out by hand from 802.1AX-2008 figure 5-6 (not by
    /// [`LacpduRepr::emit`]): system 00:1b:21:aa:bb:01 priority 65535, key
    /// 0x0011, port priority 255, port 2, active/short/aggregatable/in sync/
    /// collecting/distributing; its partner system 02:00:00:00:00:0b priority
    /// 32768, key 7, port 1 priority 32768, active/short/aggregatable/in sync;
    /// CollectorMaxDelay 0.
    #[rustfmt::skip]
    pub(crate) const HAND_MADE: [u8; LACPDU_LEN] = [
        0x01, 0x01,                         // subtype LACP, version 1
        0x01, 0x14,                         // Actor Information, length 20
        0xff, 0xff,                         // actor system priority
        0x00, 0x1b, 0x21, 0xaa, 0xbb, 0x01, // actor system
        0x00, 0x11,                         // actor key
        0x00, 0xff,                         // actor port priority
        0x00, 0x02,                         // actor port
        0x3f,                               // actor state
        0x00, 0x00, 0x00,                   // reserved
        0x02, 0x14,                         // Partner Information, length 20
        0x80, 0x00,
        0x02, 0x00, 0x00, 0x00, 0x00, 0x0b,
        0x00, 0x07,
        0x80, 0x00,
        0x00, 0x01,
        0x0f,
        0x00, 0x00, 0x00,
        0x03, 0x10,                         // Collector Information, length 16
        0x00, 0x00,                         // CollectorMaxDelay
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // reserved
        0x00, 0x00,                         // Terminator
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    fn hand_made_repr() -> LacpduRepr {
        LacpduRepr {
            actor: PortInfo {
                system_priority: 0xffff,
                system: MacAddress([0x00, 0x1b, 0x21, 0xaa, 0xbb, 0x01]),
                key: 0x11,
                port_priority: 0xff,
                port: 2,
                state: LacpState(0x3f),
            },
            partner: PortInfo {
                system_priority: 0x8000,
                system: MacAddress([2, 0, 0, 0, 0, 0x0b]),
                key: 7,
                port_priority: 0x8000,
                port: 1,
                state: LacpState(0x0f),
            },
            collector_max_delay: 0,
        }
    }

    #[test]
    fn hand_made_lacpdu_parses_and_emits_byte_for_byte() {
        let packet = LacpduPacket::new_checked(&HAND_MADE[..]).unwrap();
        assert_eq!(packet.version(), 1);
        let repr = LacpduRepr::parse(&packet);
        assert_eq!(repr, hand_made_repr());
        let state = repr.actor.state;
        assert!(state.has(LacpState::ACTIVITY | LacpState::DISTRIBUTING));
        assert!(!state.has(LacpState::EXPIRED));
        assert_eq!(
            format!("{state:?}"),
            "activity|timeout|aggregation|synchronized|collecting|distributing"
        );
        let mut out = [0xaau8; LACPDU_LEN];
        repr.emit(&mut out).unwrap();
        assert_eq!(out, HAND_MADE);
    }

    /// A LACPDU Open vSwitch 3.1 (userspace datapath, `lacp=active`,
    /// `lacp-time=fast`) sent to this stack once negotiated, as captured by
    /// the `ovs_lacp` interop test (Ethernet header removed).
    #[rustfmt::skip]
    const FROM_OVS: [u8; LACPDU_LEN] = [
        0x01, 0x01, 0x01, 0x14, 0xff, 0xfe, 0x82, 0x47, 0x91, 0xa5, 0xba, 0x4f, 0x00, 0x01, 0xff, 0xff,
        0x00, 0x01, 0x3f, 0x00, 0x00, 0x00, 0x02, 0x14, 0x80, 0x00, 0x02, 0x6b, 0x65, 0x65, 0x6c, 0x01,
        0x00, 0x01, 0x80, 0x00, 0x00, 0x01, 0x3f, 0x00, 0x00, 0x00, 0x03, 0x10, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];

    #[test]
    fn open_vswitch_lacpdu_parses_and_emits_byte_for_byte() {
        let repr = LacpduRepr::parse(&LacpduPacket::new_checked(&FROM_OVS[..]).unwrap());
        assert_eq!(repr.actor.system_priority, 65534);
        assert_eq!(
            repr.actor.system,
            MacAddress([0x82, 0x47, 0x91, 0xa5, 0xba, 0x4f])
        );
        assert_eq!(
            (repr.actor.key, repr.actor.port_priority, repr.actor.port),
            (1, 65535, 1)
        );
        assert_eq!(
            repr.partner.system,
            MacAddress([0x02, 0x6b, 0x65, 0x65, 0x6c, 0x01])
        );
        assert_eq!(
            (repr.partner.system_priority, repr.partner.port),
            (32768, 1)
        );
        assert_eq!(repr.actor.state, LacpState(0x3f));
        assert_eq!(repr.partner.state, LacpState(0x3f));
        let mut out = [0u8; LACPDU_LEN];
        repr.emit(&mut out).unwrap();
        assert_eq!(out, FROM_OVS);
    }

    #[test]
    fn version_2_is_read_and_reserved_bytes_are_ignored_then_zeroed() {
        let mut v2 = HAND_MADE.to_vec();
        v2[1] = 2;
        // A version-2 PDU puts further TLVs where version 1 has its terminator.
        v2[58] = 4;
        v2[59] = 6;
        v2[19] = 0x55; // a reserved byte a sloppy peer filled in
        v2.extend_from_slice(&[0; 20]);
        let packet = LacpduPacket::new_checked(&v2[..]).unwrap();
        assert_eq!(packet.version(), 2);
        let repr = LacpduRepr::parse(&packet);
        assert_eq!(repr, hand_made_repr());
        let mut out = [0u8; LACPDU_LEN];
        repr.emit(&mut out).unwrap();
        assert_eq!(out, HAND_MADE);
    }

    #[test]
    fn malformed_lacpdus_are_refused_with_the_reason() {
        let check = |bytes: &[u8]| LacpduPacket::new_checked(bytes).map(|_| ());
        assert_eq!(
            check(&HAND_MADE[..109]),
            Err(WireError::Truncated {
                needed: 110,
                got: 109
            })
        );
        let mut bad = HAND_MADE;
        bad[0] = 2;
        assert_eq!(check(&bad), Err(WireError::UnknownSubtype(2)));
        let mut bad = HAND_MADE;
        bad[1] = 0;
        assert_eq!(check(&bad), Err(WireError::BadVersion(0)));
        let mut bad = HAND_MADE;
        bad[23] = 19;
        assert_eq!(
            check(&bad),
            Err(WireError::BadTlv {
                offset: 22,
                tlv_type: 2,
                length: 19
            })
        );
        let mut bad = HAND_MADE;
        bad[42] = 1;
        assert!(matches!(
            check(&bad),
            Err(WireError::BadTlv { offset: 42, .. })
        ));
        let mut bad = HAND_MADE;
        bad[59] = 2;
        assert!(matches!(
            check(&bad),
            Err(WireError::BadTlv { offset: 58, .. })
        ));
        assert!(
            hand_made_repr().emit(&mut [0u8; 109]).is_err(),
            "emit checks its buffer"
        );
    }

    #[test]
    fn state_bits_set_and_clear() {
        let mut s = LacpState::default();
        assert_eq!(format!("{s:?}"), "-");
        s.set(LacpState::SYNCHRONIZATION | LacpState::EXPIRED, true);
        assert!(s.has(LacpState::EXPIRED));
        s.set(LacpState::EXPIRED, false);
        assert_eq!(s, LacpState(0x08));
    }
}
