//! Operational parameter negotiation (RFC 7143 §13): what we offer, the
//! result function of each key, and answers to keys the target proposes.

use alloc::format;
use alloc::string::String;
use core::fmt;

use super::text::{IRRELEVANT, NOT_UNDERSTOOD, REJECT, TextPairs};

/// Key names, named once.
pub mod key {
    pub const INITIATOR_NAME: &str = "InitiatorName";
    pub const INITIATOR_ALIAS: &str = "InitiatorAlias";
    pub const TARGET_NAME: &str = "TargetName";
    pub const TARGET_ALIAS: &str = "TargetAlias";
    pub const TARGET_ADDRESS: &str = "TargetAddress";
    pub const TARGET_PORTAL_GROUP_TAG: &str = "TargetPortalGroupTag";
    pub const SESSION_TYPE: &str = "SessionType";
    pub const AUTH_METHOD: &str = "AuthMethod";
    pub const CHAP_A: &str = "CHAP_A";
    pub const CHAP_I: &str = "CHAP_I";
    pub const CHAP_C: &str = "CHAP_C";
    pub const CHAP_N: &str = "CHAP_N";
    pub const CHAP_R: &str = "CHAP_R";
    pub const HEADER_DIGEST: &str = "HeaderDigest";
    pub const DATA_DIGEST: &str = "DataDigest";
    pub const MAX_CONNECTIONS: &str = "MaxConnections";
    pub const SEND_TARGETS: &str = "SendTargets";
    pub const INITIAL_R2T: &str = "InitialR2T";
    pub const IMMEDIATE_DATA: &str = "ImmediateData";
    pub const MAX_RECV_DATA_SEGMENT_LENGTH: &str = "MaxRecvDataSegmentLength";
    pub const MAX_BURST_LENGTH: &str = "MaxBurstLength";
    pub const FIRST_BURST_LENGTH: &str = "FirstBurstLength";
    pub const DEFAULT_TIME2WAIT: &str = "DefaultTime2Wait";
    pub const DEFAULT_TIME2RETAIN: &str = "DefaultTime2Retain";
    pub const MAX_OUTSTANDING_R2T: &str = "MaxOutstandingR2T";
    pub const DATA_PDU_IN_ORDER: &str = "DataPDUInOrder";
    pub const DATA_SEQUENCE_IN_ORDER: &str = "DataSequenceInOrder";
    pub const ERROR_RECOVERY_LEVEL: &str = "ErrorRecoveryLevel";
    pub const IF_MARKER: &str = "IFMarker";
    pub const OF_MARKER: &str = "OFMarker";
    pub const IF_MARK_INT: &str = "IFMarkInt";
    pub const OF_MARK_INT: &str = "OFMarkInt";
}

pub const YES: &str = "Yes";
pub const NO: &str = "No";
pub const DIGEST_NONE: &str = "None";
pub const DIGEST_CRC32C: &str = "CRC32C";
/// Lower bound of the length keys (RFC 7143 §13.12-14).
pub const MIN_LENGTH: u32 = 512;
/// Upper bound of the length keys.
pub const MAX_LENGTH: u32 = (1 << 24) - 1;

/// Which digests we accept, in order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestOffer {
    /// Only None.
    None,
    /// Only CRC32C.
    Crc32c,
    /// Either, preferring None (what the target requires wins).
    PreferNone,
    /// Either, preferring CRC32C.
    PreferCrc32c,
}

impl DigestOffer {
    fn value(self) -> &'static str {
        match self {
            DigestOffer::None => "None",
            DigestOffer::Crc32c => "CRC32C",
            DigestOffer::PreferNone => "None,CRC32C",
            DigestOffer::PreferCrc32c => "CRC32C,None",
        }
    }

    fn accepts(self, v: &str) -> bool {
        match v {
            DIGEST_NONE => !matches!(self, DigestOffer::Crc32c),
            DIGEST_CRC32C => !matches!(self, DigestOffer::None),
            _ => false,
        }
    }
}

/// What the initiator proposes for a normal session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    pub header_digest: DigestOffer,
    pub data_digest: DigestOffer,
    /// Our receive limit per PDU (declarative).
    pub max_recv_data_segment_length: u32,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    pub initial_r2t: bool,
    pub immediate_data: bool,
    pub max_outstanding_r2t: u16,
    pub default_time2wait: u16,
    pub default_time2retain: u16,
}

impl Default for Offer {
    fn default() -> Self {
        Offer {
            // Header digests are cheap: accept them if the target wants
            // them. Data digests cost a CRC over every byte, so they are
            // opt-in (as in open-iscsi and libiscsi); note that tgt picks
            // its own first choice even when we list None first.
            header_digest: DigestOffer::PreferNone,
            data_digest: DigestOffer::None,
            max_recv_data_segment_length: 256 * 1024,
            max_burst_length: 16 * 1024 * 1024 - 1024,
            first_burst_length: 256 * 1024,
            initial_r2t: false,
            immediate_data: true,
            max_outstanding_r2t: 1,
            default_time2wait: 2,
            default_time2retain: 20,
        }
    }
}

/// The negotiated session and connection parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionParams {
    pub header_digest: bool,
    pub data_digest: bool,
    pub max_connections: u16,
    pub initial_r2t: bool,
    pub immediate_data: bool,
    /// What we declared: the largest data segment the target may send us.
    pub our_max_recv_data_segment_length: u32,
    /// What the target declared: the largest data segment we may send.
    pub target_max_recv_data_segment_length: u32,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    pub default_time2wait: u16,
    pub default_time2retain: u16,
    pub max_outstanding_r2t: u16,
    pub data_pdu_in_order: bool,
    pub data_sequence_in_order: bool,
    pub error_recovery_level: u8,
    pub target_alias: Option<String>,
    pub target_portal_group_tag: Option<u16>,
}

impl Default for SessionParams {
    /// The RFC 7143 defaults, before any negotiation.
    fn default() -> Self {
        SessionParams {
            header_digest: false,
            data_digest: false,
            max_connections: 1,
            initial_r2t: true,
            immediate_data: true,
            our_max_recv_data_segment_length: 8192,
            target_max_recv_data_segment_length: 8192,
            max_burst_length: 262_144,
            first_burst_length: 65_536,
            default_time2wait: 2,
            default_time2retain: 20,
            max_outstanding_r2t: 1,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            error_recovery_level: 0,
            target_alias: None,
            target_portal_group_tag: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NegotiationError {
    /// A value outside the key's range or type.
    BadValue { key: String, value: String },
    /// The target picked a value we did not offer.
    NotOffered { key: String, value: String },
    /// The target insists on something we refuse (e.g. a digest we disabled).
    Unacceptable { key: String, value: String },
}

impl fmt::Display for NegotiationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NegotiationError::BadValue { key, value } => {
                write!(f, "target sent an invalid value {key}={value}")
            }
            NegotiationError::NotOffered { key, value } => {
                write!(f, "target answered {key}={value}, which we did not offer")
            }
            NegotiationError::Unacceptable { key, value } => write!(
                f,
                "target requires {key}={value}, which this initiator is configured to refuse"
            ),
        }
    }
}

fn parse_number(key: &str, v: &str, lo: u32, hi: u32) -> Result<u32, NegotiationError> {
    let n = if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        u32::from_str_radix(h, 16).ok()
    } else {
        v.parse::<u32>().ok()
    };
    match n {
        Some(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(NegotiationError::BadValue {
            key: key.into(),
            value: v.into(),
        }),
    }
}

fn parse_bool(key: &str, v: &str) -> Result<bool, NegotiationError> {
    match v {
        YES => Ok(true),
        NO => Ok(false),
        _ => Err(NegotiationError::BadValue {
            key: key.into(),
            value: v.into(),
        }),
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { YES } else { NO }
}

/// Negotiation state across the operational stage's PDUs.
#[derive(Debug, Clone)]
pub struct Negotiator {
    offer: Offer,
    discovery: bool,
    pub params: SessionParams,
}

impl Negotiator {
    pub fn new(offer: Offer, discovery: bool) -> Self {
        let params = SessionParams {
            our_max_recv_data_segment_length: offer.max_recv_data_segment_length,
            ..SessionParams::default()
        };
        Negotiator {
            offer,
            discovery,
            params,
        }
    }

    /// The keys we propose when entering the operational stage. Discovery
    /// sessions negotiate no digests (libiscsi #239) and no data keys.
    pub fn proposal(&self) -> TextPairs {
        let o = &self.offer;
        let mut t = TextPairs::new();
        if self.discovery {
            t.push(key::HEADER_DIGEST, DIGEST_NONE);
            t.push(key::DATA_DIGEST, DIGEST_NONE);
            t.push(
                key::MAX_RECV_DATA_SEGMENT_LENGTH,
                &format!("{}", o.max_recv_data_segment_length),
            );
            return t;
        }
        t.push(key::HEADER_DIGEST, o.header_digest.value());
        t.push(key::DATA_DIGEST, o.data_digest.value());
        t.push(key::MAX_CONNECTIONS, "1");
        t.push(key::INITIAL_R2T, yes_no(o.initial_r2t));
        t.push(key::IMMEDIATE_DATA, yes_no(o.immediate_data));
        t.push(
            key::MAX_RECV_DATA_SEGMENT_LENGTH,
            &format!("{}", o.max_recv_data_segment_length),
        );
        t.push(key::MAX_BURST_LENGTH, &format!("{}", o.max_burst_length));
        t.push(
            key::FIRST_BURST_LENGTH,
            &format!("{}", o.first_burst_length.min(o.max_burst_length)),
        );
        t.push(key::DEFAULT_TIME2WAIT, &format!("{}", o.default_time2wait));
        t.push(
            key::DEFAULT_TIME2RETAIN,
            &format!("{}", o.default_time2retain),
        );
        t.push(
            key::MAX_OUTSTANDING_R2T,
            &format!("{}", o.max_outstanding_r2t),
        );
        t.push(key::DATA_PDU_IN_ORDER, YES);
        t.push(key::DATA_SEQUENCE_IN_ORDER, YES);
        t.push(key::ERROR_RECOVERY_LEVEL, "0");
        t
    }

    /// Applies the target's keys. `offered` says whether we proposed each
    /// key (then the value is an answer) or not (then it is the target's
    /// proposal and we answer it). Returns the answers to send.
    pub fn apply(
        &mut self,
        target: &TextPairs,
        offered: &TextPairs,
    ) -> Result<TextPairs, NegotiationError> {
        let mut answers = TextPairs::new();
        for (k, v) in target.iter() {
            let we_offered = offered.get(k).is_some();
            if let Some(ans) = self.apply_one(k, v, we_offered)? {
                answers.push(k, &ans);
            }
        }
        let p = &mut self.params;
        p.first_burst_length = p.first_burst_length.min(p.max_burst_length);
        Ok(answers)
    }

    fn apply_one(
        &mut self,
        k: &str,
        v: &str,
        we_offered: bool,
    ) -> Result<Option<String>, NegotiationError> {
        // An answer of Reject/NotUnderstood/Irrelevant leaves the default.
        if we_offered && matches!(v, REJECT | NOT_UNDERSTOOD | IRRELEVANT) {
            return Ok(None);
        }
        let o = self.offer;
        let p = &mut self.params;
        let not_offered = || NegotiationError::NotOffered {
            key: k.into(),
            value: v.into(),
        };
        let answer = |s: String| if we_offered { None } else { Some(s) };
        Ok(match k {
            key::HEADER_DIGEST | key::DATA_DIGEST => {
                let mine = if self.discovery {
                    DigestOffer::None
                } else if k == key::HEADER_DIGEST {
                    o.header_digest
                } else {
                    o.data_digest
                };
                let chosen = if we_offered {
                    if !mine.accepts(v) {
                        return Err(not_offered());
                    }
                    v
                } else {
                    // The target proposes a list: take the first we accept.
                    v.split(',').find(|c| mine.accepts(c)).ok_or_else(|| {
                        NegotiationError::Unacceptable {
                            key: k.into(),
                            value: v.into(),
                        }
                    })?
                };
                let on = chosen == DIGEST_CRC32C;
                if k == key::HEADER_DIGEST {
                    p.header_digest = on;
                } else {
                    p.data_digest = on;
                }
                answer(chosen.into())
            }
            key::MAX_RECV_DATA_SEGMENT_LENGTH => {
                // Declarative: the target's own receive limit.
                p.target_max_recv_data_segment_length = parse_number(k, v, MIN_LENGTH, MAX_LENGTH)?;
                None
            }
            key::MAX_BURST_LENGTH | key::FIRST_BURST_LENGTH => {
                let theirs = parse_number(k, v, MIN_LENGTH, MAX_LENGTH)?;
                let (mine, slot) = if k == key::MAX_BURST_LENGTH {
                    (o.max_burst_length, &mut p.max_burst_length)
                } else {
                    (o.first_burst_length, &mut p.first_burst_length)
                };
                *slot = mine.min(theirs);
                answer(format!("{}", *slot))
            }
            key::MAX_CONNECTIONS => {
                let theirs = parse_number(k, v, 1, 65535)?;
                p.max_connections = 1u16.min(theirs as u16);
                answer(format!("{}", p.max_connections))
            }
            key::MAX_OUTSTANDING_R2T => {
                let theirs = parse_number(k, v, 1, 65535)?;
                p.max_outstanding_r2t = o.max_outstanding_r2t.min(theirs as u16).max(1);
                answer(format!("{}", p.max_outstanding_r2t))
            }
            key::ERROR_RECOVERY_LEVEL => {
                // min(ours = 0, theirs): we implement ERL 0 only.
                parse_number(k, v, 0, 2)?;
                p.error_recovery_level = 0;
                answer(format!("{}", p.error_recovery_level))
            }
            key::DEFAULT_TIME2WAIT => {
                let theirs = parse_number(k, v, 0, 3600)? as u16;
                p.default_time2wait = o.default_time2wait.max(theirs);
                answer(format!("{}", p.default_time2wait))
            }
            key::DEFAULT_TIME2RETAIN => {
                let theirs = parse_number(k, v, 0, 3600)? as u16;
                p.default_time2retain = o.default_time2retain.min(theirs);
                answer(format!("{}", p.default_time2retain))
            }
            key::INITIAL_R2T => {
                p.initial_r2t = o.initial_r2t || parse_bool(k, v)?;
                answer(yes_no(p.initial_r2t).into())
            }
            key::IMMEDIATE_DATA => {
                p.immediate_data = o.immediate_data && parse_bool(k, v)?;
                answer(yes_no(p.immediate_data).into())
            }
            key::DATA_PDU_IN_ORDER => {
                p.data_pdu_in_order = true;
                parse_bool(k, v)?;
                answer(YES.into())
            }
            key::DATA_SEQUENCE_IN_ORDER => {
                p.data_sequence_in_order = true;
                parse_bool(k, v)?;
                answer(YES.into())
            }
            key::IF_MARKER | key::OF_MARKER => answer(NO.into()),
            key::IF_MARK_INT | key::OF_MARK_INT => answer(IRRELEVANT.into()),
            key::TARGET_ALIAS => {
                p.target_alias = Some(v.into());
                None
            }
            key::TARGET_PORTAL_GROUP_TAG => {
                p.target_portal_group_tag = Some(parse_number(k, v, 0, 65535)? as u16);
                None
            }
            key::TARGET_ADDRESS | key::TARGET_NAME | key::SESSION_TYPE => None,
            _ if we_offered => None,
            _ => Some(NOT_UNDERSTOOD.into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(kv: &[(&str, &str)]) -> TextPairs {
        let mut t = TextPairs::new();
        for (k, v) in kv {
            t.push(k, v);
        }
        t
    }

    #[test]
    fn answers_and_results() {
        let mut n = Negotiator::new(Offer::default(), false);
        let offered = n.proposal();
        let resp = pairs(&[
            (key::HEADER_DIGEST, "None"),
            (key::DATA_DIGEST, "None"),
            (key::INITIAL_R2T, "Yes"),
            (key::IMMEDIATE_DATA, "Yes"),
            (key::MAX_BURST_LENGTH, "262144"),
            (key::FIRST_BURST_LENGTH, "65536"),
            (key::MAX_RECV_DATA_SEGMENT_LENGTH, "8192"),
            (key::DEFAULT_TIME2WAIT, "2"),
            (key::DEFAULT_TIME2RETAIN, "0"),
            (key::ERROR_RECOVERY_LEVEL, "0"),
            (key::TARGET_ALIAS, "tgt"),
            // Target proposals, as tgt does for non-default keys.
            (key::IF_MARKER, "No"),
            (key::OF_MARK_INT, "2048~65535"),
            ("X-vendor-key", "1"),
        ]);
        let ans = n.apply(&resp, &offered).expect("apply");
        let p = &n.params;
        assert!(p.initial_r2t, "OR result");
        assert!(p.immediate_data);
        assert_eq!(p.target_max_recv_data_segment_length, 8192);
        assert_eq!(p.our_max_recv_data_segment_length, 256 * 1024);
        assert_eq!(p.max_burst_length, 262_144);
        assert_eq!(p.first_burst_length, 65_536);
        assert_eq!(p.default_time2retain, 0);
        assert_eq!(p.target_alias.as_deref(), Some("tgt"));
        assert_eq!(ans.get(key::IF_MARKER), Some("No"));
        assert_eq!(ans.get(key::OF_MARK_INT), Some("Irrelevant"));
        assert_eq!(ans.get("X-vendor-key"), Some("NotUnderstood"));
        assert_eq!(ans.get(key::MAX_BURST_LENGTH), None);
    }

    #[test]
    fn first_burst_clamped_and_target_proposals_answered() {
        let mut n = Negotiator::new(Offer::default(), false);
        let offered = TextPairs::new();
        let resp = pairs(&[
            (key::MAX_BURST_LENGTH, "4096"),
            (key::FIRST_BURST_LENGTH, "65536"),
            (key::HEADER_DIGEST, "CRC32C,None"),
            (key::IMMEDIATE_DATA, "No"),
        ]);
        let ans = n.apply(&resp, &offered).expect("apply");
        assert_eq!(n.params.max_burst_length, 4096);
        assert_eq!(n.params.first_burst_length, 4096);
        assert_eq!(ans.get(key::MAX_BURST_LENGTH), Some("4096"));
        // PreferNone still takes the target's first acceptable choice.
        assert_eq!(ans.get(key::HEADER_DIGEST), Some("CRC32C"));
        assert!(n.params.header_digest);
        assert_eq!(ans.get(key::IMMEDIATE_DATA), Some("No"));
        assert!(!n.params.immediate_data);
    }

    #[test]
    fn refusals() {
        let offer = Offer {
            header_digest: DigestOffer::None,
            ..Offer::default()
        };
        let mut n = Negotiator::new(offer, false);
        let offered = n.proposal();
        assert!(matches!(
            n.apply(&pairs(&[(key::HEADER_DIGEST, "CRC32C")]), &offered),
            Err(NegotiationError::NotOffered { .. })
        ));
        assert!(matches!(
            n.apply(&pairs(&[(key::HEADER_DIGEST, "CRC32C")]), &TextPairs::new()),
            Err(NegotiationError::Unacceptable { .. })
        ));
        assert!(matches!(
            n.apply(
                &pairs(&[(key::MAX_RECV_DATA_SEGMENT_LENGTH, "12")]),
                &offered
            ),
            Err(NegotiationError::BadValue { .. })
        ));
        assert!(matches!(
            n.apply(&pairs(&[(key::INITIAL_R2T, "maybe")]), &offered),
            Err(NegotiationError::BadValue { .. })
        ));
        // Reject keeps the default.
        n.apply(&pairs(&[(key::MAX_BURST_LENGTH, "Reject")]), &offered)
            .expect("reject answer");
        assert_eq!(n.params.max_burst_length, 262_144);
    }
}
