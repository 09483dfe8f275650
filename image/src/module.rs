//! The boot module: a compiled host configuration as the loader hands it to
//! the appliance.
//!
//! ```text
//! offset  size  field
//! 0       8     magic "KEELHCFG"
//! 8       2     format version, u16 LE (4; 1 to 3 are still read)
//! 10      4     payload length N, u32 LE
//! 14      N     HostConfig, postcard
//! 14+N    4     CRC-32 (IEEE) of bytes 0..14+N, u32 LE
//! ```
//!
//! The checksum catches a module damaged on the way (USB stick, PXE); the
//! version lets a later image refuse a module it would misread, since
//! postcard is positional and carries no field names. Format 1 had no
//! bonds, networks, management VLAN or MTU; a format-1 module still decodes
//! (to untagged management at MTU 1500, no bonds or networks). Format 3
//! appends the trusted upgrade keys to the format-2 payload, format 4 the
//! supplied TLS certificate and key (an `Option`) after those; a format-2
//! or 3 module decodes with none.

use alloc::vec::Vec;
use core::fmt;

use crate::crc32::crc32;
use crate::schema::{HostConfig, HostConfigV1, SuppliedTls};
use crate::validate::ValidationError;

/// First bytes of every module.
pub const MAGIC: [u8; 8] = *b"KEELHCFG";

/// The layout and payload schema this build writes.
pub const FORMAT_VERSION: u16 = 4;

/// The oldest format this build still reads.
pub const OLDEST_FORMAT_VERSION: u16 = 1;

const HEADER_LEN: usize = MAGIC.len() + 2 + 4;
const TRAILER_LEN: usize = 4;

/// Why a byte string is not a usable boot module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    BadMagic,
    UnsupportedVersion(u16),
    /// The module ends before its declared length.
    Truncated {
        expected: usize,
        actual: usize,
    },
    /// Bytes follow the checksum.
    TrailingBytes(usize),
    ChecksumMismatch {
        stored: u32,
        computed: u32,
    },
    /// The checksum holds but postcard cannot read a `HostConfig` from the payload.
    InvalidPayload(postcard::Error),
    /// The payload has bytes left over after the `HostConfig`.
    PayloadTrailingBytes(usize),
    /// The module is intact but a setting is not acceptable.
    Invalid(ValidationError),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const RECOMPILE: &str = "recompile it with `host-config compile` and copy it again";
        match self {
            Self::BadMagic => write!(
                f,
                "not a host-config module (it does not start with \"KEELHCFG\"); \
                 check that the right file was installed as the config module"
            ),
            Self::UnsupportedVersion(v) => write!(
                f,
                "host-config module format version {v} is not supported by this image \
                 (it reads versions {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION}); compile it \
                 with the host-config tool of the same release as the image"
            ),
            Self::Truncated { expected, actual } => write!(
                f,
                "host-config module is truncated: {actual} bytes present, {expected} needed; \
                 {RECOMPILE}"
            ),
            Self::TrailingBytes(n) => write!(
                f,
                "host-config module has {n} unexpected bytes after its checksum; {RECOMPILE}"
            ),
            Self::ChecksumMismatch { stored, computed } => write!(
                f,
                "host-config module checksum mismatch (stored {stored:#010x}, computed \
                 {computed:#010x}): the module is corrupt; {RECOMPILE}"
            ),
            Self::InvalidPayload(e) => write!(
                f,
                "host-config module payload cannot be read ({e}); it was probably written by \
                 an incompatible tool: {RECOMPILE}"
            ),
            Self::PayloadTrailingBytes(n) => write!(
                f,
                "host-config module payload has {n} unread bytes; it was probably written by \
                 an incompatible tool: {RECOMPILE}"
            ),
            Self::Invalid(e) => write!(f, "host-config module holds an invalid setting: {e}"),
        }
    }
}

/// Serialises `cfg` into a boot module. The caller validates first: the
/// appliance will refuse a module whose settings do not validate.
pub fn encode(cfg: &HostConfig) -> Vec<u8> {
    // Cannot fail: every schema type is one postcard supports, sequences
    // have known lengths, and the output is a growable Vec.
    #[allow(clippy::expect_used)]
    let mut payload = postcard::to_allocvec(cfg).expect("postcard encodes HostConfig into a Vec");
    // Format 3: the trusted keys follow the format-2 payload.
    #[allow(clippy::expect_used)]
    let keys = postcard::to_allocvec(&cfg.trusted_keys).expect("postcard encodes keys into a Vec");
    payload.extend_from_slice(&keys);
    // Format 4: the supplied TLS certificate and key follow.
    #[allow(clippy::expect_used)]
    let tls = postcard::to_allocvec(&cfg.tls).expect("postcard encodes the TLS files into a Vec");
    payload.extend_from_slice(&tls);
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + TRAILER_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    // A HostConfig is a few hundred bytes (plus a certificate chain of a
    // few kilobytes), far below u32::MAX.
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&payload);
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Reads and validates a boot module. Never panics, whatever `bytes` hold.
pub fn decode(bytes: &[u8]) -> Result<HostConfig, DecodeError> {
    let magic_seen = &bytes[..bytes.len().min(MAGIC.len())];
    if magic_seen != &MAGIC[..magic_seen.len()] {
        return Err(DecodeError::BadMagic);
    }
    let (Some(version), Some(declared)) = (read_u16(bytes, 8), read_u32(bytes, 10)) else {
        return Err(DecodeError::Truncated {
            expected: HEADER_LEN,
            actual: bytes.len(),
        });
    };
    if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    // Saturating: a huge declared length on a 32-bit target is "truncated",
    // not an overflow.
    let payload_end = HEADER_LEN.saturating_add(declared as usize);
    let expected = payload_end.saturating_add(TRAILER_LEN);
    if bytes.len() < expected {
        return Err(DecodeError::Truncated {
            expected,
            actual: bytes.len(),
        });
    }
    if bytes.len() > expected {
        return Err(DecodeError::TrailingBytes(bytes.len() - expected));
    }
    let (covered, _) = bytes.split_at(payload_end);
    let stored = read_u32(bytes, payload_end).ok_or(DecodeError::Truncated {
        expected,
        actual: bytes.len(),
    })?;
    let computed = crc32(covered);
    if stored != computed {
        return Err(DecodeError::ChecksumMismatch { stored, computed });
    }
    let payload = &covered[HEADER_LEN..];
    let (cfg, rest) = if version == 1 {
        postcard::take_from_bytes::<HostConfigV1>(payload)
            .map(|(v1, rest)| (HostConfig::from(v1), rest))
    } else if version == 2 {
        postcard::take_from_bytes::<HostConfig>(payload)
    } else {
        postcard::take_from_bytes::<HostConfig>(payload).and_then(|(mut cfg, rest)| {
            let (keys, rest) = postcard::take_from_bytes::<Vec<[u8; 32]>>(rest)?;
            cfg.trusted_keys = keys;
            if version == 3 {
                return Ok((cfg, rest));
            }
            let (tls, rest) = postcard::take_from_bytes::<Option<SuppliedTls>>(rest)?;
            cfg.tls = tls;
            Ok((cfg, rest))
        })
    }
    .map_err(DecodeError::InvalidPayload)?;
    if !rest.is_empty() {
        return Err(DecodeError::PayloadTrailingBytes(rest.len()));
    }
    cfg.validate().map_err(DecodeError::Invalid)?;
    Ok(cfg)
}

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    let b = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::password::hash_password;
    use crate::schema::{
        Bond, BondMode, IpMode, KeyKind, Management, Network, NetworkPurpose, StaticIpv4, Vlan,
    };
    use alloc::vec;

    fn sample() -> HostConfig {
        HostConfig {
            hostname: "xen1".into(),
            root_password_hash: Some(hash_password("secret-pw", [9; 16], 1_000)),
            management: Management {
                interface: "bond0".into(),
                ip: IpMode::Static(StaticIpv4 {
                    address: [192, 0, 2, 10],
                    prefix_len: 24,
                    gateway: Some([192, 0, 2, 1]),
                    dns: vec![[192, 0, 2, 53], [198, 51, 100, 53]],
                }),
                vlan: Some(Vlan {
                    id: 5,
                    native: true,
                }),
                mtu: 1500,
            },
            bonds: vec![Bond::new("bond0", &["eth0", "eth1"], BondMode::Lacp)],
            networks: vec![Network {
                name: "storage".into(),
                purpose: NetworkPurpose::Storage,
                interface: "bond0".into(),
                vlan: Some(Vlan {
                    id: 20,
                    native: false,
                }),
                mtu: 9000,
                ip: IpMode::Dhcp,
            }],
            trusted_keys: vec![[0x11; 32], [0x22; 32]],
            tls: Some(SuppliedTls {
                certificate_chain: vec![vec![0x30, 0x82, 1, 2], vec![0x30, 3]],
                key: vec![0x30, 0x81, 0x87],
                key_kind: KeyKind::Pkcs8,
            }),
        }
    }

    /// Rebuilds a module around `payload` with a correct checksum, so tests
    /// reach the checks behind the CRC.
    fn with_payload(version: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(payload);
        let crc = crc32(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    #[test]
    fn byte_layout_of_the_default_config() {
        let bytes = encode(&HostConfig::default());
        #[rustfmt::skip]
        let payload = [
            4, b'k', b'e', b'e', b'l', // hostname
            0,                         // root_password_hash: None
            4, b'e', b't', b'h', b'0', // interface
            0,                         // IpMode::Dhcp
            0,                         // vlan: None
            0xdc, 0x0b,                // mtu 1500 (varint)
            0,                         // no bonds
            0,                         // no networks
            0,                         // no trusted keys (format 3)
            0,                         // tls: None (format 4)
        ];
        assert_eq!(bytes, with_payload(4, &payload));
        assert_eq!(&bytes[..14], b"KEELHCFG\x04\x00\x13\x00\x00\x00");
        assert_eq!(decode(&bytes), Ok(HostConfig::default()));
        // Without the TLS option it is format 3, without the keys too
        // format 2: both still read.
        let v3 = with_payload(3, &payload[..payload.len() - 1]);
        assert_eq!(decode(&v3), Ok(HostConfig::default()));
        let v2 = with_payload(2, &payload[..payload.len() - 2]);
        assert_eq!(decode(&v2), Ok(HostConfig::default()));
    }

    #[test]
    fn trusted_keys_round_trip_and_stay_out_of_format_2() {
        let cfg = sample();
        let bytes = encode(&cfg);
        assert_eq!(decode(&bytes), Ok(cfg.clone()));
        // Format 2 has no keys: the key bytes are trailing garbage there.
        let payload = &bytes[14..bytes.len() - 4];
        let tls_len = postcard::to_allocvec(&cfg.tls).unwrap().len();
        assert!(matches!(
            decode(&with_payload(2, payload)),
            Err(DecodeError::PayloadTrailingBytes(n)) if n == 1 + 64 + tls_len
        ));
    }

    #[test]
    fn supplied_tls_round_trips_and_stays_out_of_format_3() {
        let cfg = sample();
        let bytes = encode(&cfg);
        assert_eq!(decode(&bytes).map(|c| c.tls), Ok(cfg.tls.clone()));
        let payload = &bytes[14..bytes.len() - 4];
        let tls_len = postcard::to_allocvec(&cfg.tls).unwrap().len();
        assert!(matches!(
            decode(&with_payload(3, payload)),
            Err(DecodeError::PayloadTrailingBytes(n)) if n == tls_len
        ));
        // A format-3 module (no TLS bytes) decodes to no supplied certificate.
        let v3 = with_payload(3, &payload[..payload.len() - tls_len]);
        let old = decode(&v3).expect("format 3 decodes");
        assert_eq!(old.tls, None);
        assert_eq!(old.trusted_keys, cfg.trusted_keys);
    }

    #[test]
    fn format_1_modules_still_decode() {
        #[rustfmt::skip]
        let v1 = [
            4, b'x', b'e', b'n', b'1', // hostname
            0,                         // root_password_hash: None
            4, b'e', b't', b'h', b'2', // interface
            1, 10, 0, 0, 5, 24, 0, 0,  // static 10.0.0.5/24, no gateway, no DNS
        ];
        let cfg = decode(&with_payload(1, &v1)).expect("format 1 decodes");
        assert_eq!(cfg.hostname, "xen1");
        assert_eq!(cfg.management.interface, "eth2");
        assert_eq!(cfg.management.vlan, None);
        assert_eq!(cfg.management.mtu, 1500);
        assert!(cfg.bonds.is_empty() && cfg.networks.is_empty());
        // Format 1 payloads are not read as format 2 (and vice versa).
        assert!(decode(&with_payload(2, &v1)).is_err());
    }

    #[test]
    fn round_trip() {
        for cfg in [HostConfig::default(), sample()] {
            assert_eq!(decode(&encode(&cfg)), Ok(cfg));
        }
    }

    #[test]
    fn every_truncation_is_rejected() {
        let bytes = encode(&sample());
        for len in 0..bytes.len() {
            let e = decode(&bytes[..len]).expect_err("truncated module accepted");
            assert!(
                matches!(e, DecodeError::Truncated { .. }),
                "len {len}: {e:?}"
            );
        }
    }

    #[test]
    fn every_single_byte_flip_is_rejected() {
        let bytes = encode(&sample());
        for at in 0..bytes.len() {
            for mask in [0x01, 0x80, 0xFF] {
                let mut bad = bytes.clone();
                bad[at] ^= mask;
                assert!(decode(&bad).is_err(), "flip {mask:#x} at {at} accepted");
            }
        }
    }

    #[test]
    fn random_corruptions_never_panic() {
        // xorshift: deterministic, no dependency, good enough to scatter flips.
        let mut state = 0x2545_F491_4F6C_DD1D_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let good = encode(&sample());
        for _ in 0..20_000 {
            let mut bad = good.clone();
            for _ in 0..=(next() % 4) {
                let at = (next() % bad.len() as u64) as usize;
                bad[at] = next() as u8;
            }
            let len = if next() % 4 == 0 {
                (next() % bad.len() as u64) as usize
            } else {
                bad.len()
            };
            let _ = decode(&bad[..len]);
        }
        // Random payloads behind a valid header and CRC reach postcard itself.
        for _ in 0..20_000 {
            let len = (next() % 64) as usize;
            let payload: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = decode(&with_payload(1, &payload));
            let _ = decode(&with_payload(2, &payload));
            let _ = decode(&with_payload(3, &payload));
            let _ = decode(&with_payload(4, &payload));
        }
    }

    #[test]
    fn each_corruption_has_its_error() {
        let good = encode(&sample());

        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(decode(&bad), Err(DecodeError::BadMagic));
        assert_eq!(decode(b"ELF"), Err(DecodeError::BadMagic));

        assert_eq!(
            decode(&with_payload(5, &good[14..good.len() - 4])),
            Err(DecodeError::UnsupportedVersion(5))
        );
        assert_eq!(
            decode(&with_payload(0, &good[14..good.len() - 4])),
            Err(DecodeError::UnsupportedVersion(0))
        );

        let mut bad = good.clone();
        bad.push(0);
        assert_eq!(decode(&bad), Err(DecodeError::TrailingBytes(1)));

        let mut bad = good.clone();
        bad[20] ^= 0x40;
        assert!(matches!(
            decode(&bad),
            Err(DecodeError::ChecksumMismatch { .. })
        ));

        let mut huge = good[..14].to_vec();
        huge[10..14].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(&huge), Err(DecodeError::Truncated { .. })));

        // IpMode variant 7 does not exist.
        let mut payload = postcard::to_allocvec(&HostConfig::default()).expect("encode");
        payload[11] = 7;
        assert!(matches!(
            decode(&with_payload(2, &payload)),
            Err(DecodeError::InvalidPayload(_))
        ));

        let mut payload = postcard::to_allocvec(&HostConfig::default()).expect("encode");
        payload.push(0);
        assert_eq!(
            decode(&with_payload(2, &payload)),
            Err(DecodeError::PayloadTrailingBytes(1))
        );
    }

    #[test]
    fn checksum_valid_but_invalid_settings_are_rejected() {
        let mut cfg = sample();
        cfg.hostname = "bad_name".into();
        let payload = postcard::to_allocvec(&cfg).expect("encode");
        assert_eq!(
            decode(&with_payload(2, &payload)),
            Err(DecodeError::Invalid(ValidationError::HostnameBadChar('_')))
        );
        // encode() itself does not validate; decode() always does.
        assert!(matches!(
            decode(&encode(&cfg)),
            Err(DecodeError::Invalid(_))
        ));
    }

    #[test]
    fn messages_say_what_to_do() {
        let e = DecodeError::ChecksumMismatch {
            stored: 1,
            computed: 2,
        };
        assert!(e.to_string().contains("recompile"), "{e}");
        assert!(
            DecodeError::UnsupportedVersion(9)
                .to_string()
                .contains("version 9")
        );
    }
}
