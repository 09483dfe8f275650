//! The login phase (RFC 7143 §6.3) as a sans-I/O state machine:
//! Security (CHAP-MD5, one-way or mutual) → Operational → FullFeature,
//! with T/C bits and multi-PDU text in both directions.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::chap::{self, CHALLENGE_LEN};
use super::params::{NegotiationError, Negotiator, Offer, SessionParams, key};
use super::pdu::{self, Digests, Frame, LoginRequest, Repr, Stage};
use super::text::{self, TextAccumulator, TextError, TextPairs};

/// Login status classes (RFC 7143 §11.13.5).
pub mod status_class {
    pub const SUCCESS: u8 = 0;
    pub const REDIRECTION: u8 = 1;
    pub const INITIATOR_ERROR: u8 = 2;
    pub const TARGET_ERROR: u8 = 3;
}

/// Initiator-error status details.
pub mod status_detail {
    pub const AUTH_FAILURE: u8 = 0x01;
    pub const AUTHORIZATION_FAILURE: u8 = 0x02;
    pub const NOT_FOUND: u8 = 0x03;
    pub const TARGET_REMOVED: u8 = 0x04;
    pub const SESSION_DOES_NOT_EXIST: u8 = 0x0a;
    pub const SERVICE_UNAVAILABLE: u8 = 0x01;
    pub const OUT_OF_RESOURCES: u8 = 0x02;
}

pub const SESSION_TYPE_NORMAL: &str = "Normal";
pub const SESSION_TYPE_DISCOVERY: &str = "Discovery";
pub const AUTH_CHAP: &str = "CHAP";
pub const AUTH_NONE: &str = "None";
/// The only iSCSI protocol version.
pub const ISCSI_VERSION: u8 = 0;
/// Shortest CHAP secret RFC 7143 §12.1.3 considers safe (96 bits).
pub const MIN_SECRET_LEN: usize = 12;
/// The login data segment limit before MaxRecvDataSegmentLength is known.
pub const LOGIN_MAX_DATA: usize = 8192;

/// The credentials of one CHAP direction. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ChapCredentials {
    pub user: String,
    pub secret: Vec<u8>,
}

impl fmt::Debug for ChapCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChapCredentials")
            .field("user", &self.user)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// CHAP settings for a login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chap {
    /// How we prove ourselves to the target.
    pub initiator: ChapCredentials,
    /// For mutual CHAP, how the target must prove itself to us.
    pub target: Option<ChapCredentials>,
    /// Random bytes from the caller: our challenge (mutual CHAP) and,
    /// in the last byte, its identifier. At least 17 bytes.
    pub random: Vec<u8>,
}

/// Everything one login needs.
#[derive(Debug, Clone)]
pub struct LoginConfig {
    pub initiator_name: String,
    /// `None` logs in to a discovery session.
    pub target_name: Option<String>,
    pub isid: [u8; 6],
    /// 0 for a new session (or reinstatement at ERL 0).
    pub tsih: u16,
    pub cid: u16,
    pub initial_cmd_sn: u32,
    pub chap: Option<Chap>,
    pub offer: Offer,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    /// The target refused with an initiator-error status (2xx).
    Refused {
        detail: u8,
    },
    /// The target failed (3xx): retry later.
    TargetError {
        detail: u8,
    },
    /// The target moved: log in at this address instead.
    Redirected {
        detail: u8,
        address: Option<String>,
    },
    /// An unknown status class.
    Status {
        class: u8,
        detail: u8,
    },
    /// The target asked for CHAP but no credentials are configured.
    ChapRequired,
    /// The target offered authentication we cannot do.
    UnsupportedAuth(String),
    /// Mutual CHAP is configured but the target skipped authenticating itself.
    TargetNotAuthenticated,
    /// The target's mutual CHAP response is wrong: it does not know our
    /// target secret (or is an impostor).
    TargetAuthFailed,
    /// The target's challenge equals ours: a reflection attack.
    ReflectedChallenge,
    /// Configuration error: mutual CHAP must use distinct secrets per direction.
    SameSecrets,
    /// Configuration error: not enough random bytes for a challenge.
    NotEnoughRandom,
    /// Bad CHAP values from the target.
    BadChap(&'static str),
    Negotiation(NegotiationError),
    Text(TextError),
    Pdu(pdu::Error),
    /// The target broke the login protocol.
    Protocol(&'static str),
}

impl fmt::Display for LoginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoginError::Refused { detail } => {
                let why = match *detail {
                    status_detail::AUTH_FAILURE => {
                        "authentication failed: check the CHAP user name and secret"
                    }
                    status_detail::AUTHORIZATION_FAILURE => {
                        "this initiator is not allowed to access the target (check its ACL)"
                    }
                    status_detail::NOT_FOUND => "no such target: check the IQN",
                    status_detail::TARGET_REMOVED => "the target was removed",
                    _ => "the target refused the login",
                };
                write!(f, "login refused (status 0x02{detail:02x}): {why}")
            }
            LoginError::TargetError { detail } => write!(
                f,
                "login failed with a target error (status 0x03{detail:02x}); retry later"
            ),
            LoginError::Redirected { address, .. } => write!(
                f,
                "target redirected the login to {}",
                address.as_deref().unwrap_or("an unspecified address")
            ),
            LoginError::Status { class, detail } => {
                write!(f, "login failed with status 0x{class:02x}{detail:02x}")
            }
            LoginError::ChapRequired => write!(
                f,
                "the target requires CHAP authentication: give a user and password"
            ),
            LoginError::UnsupportedAuth(m) => {
                write!(
                    f,
                    "the target wants authentication method {m:?}, which we do not support"
                )
            }
            LoginError::TargetNotAuthenticated => write!(
                f,
                "mutual CHAP is configured but the target did not authenticate itself"
            ),
            LoginError::TargetAuthFailed => write!(
                f,
                "mutual CHAP failed: the target's response is wrong (check the target user and password)"
            ),
            LoginError::ReflectedChallenge => {
                write!(f, "the target reflected our CHAP challenge: refusing")
            }
            LoginError::SameSecrets => write!(
                f,
                "mutual CHAP needs different secrets for the initiator and the target"
            ),
            LoginError::NotEnoughRandom => {
                write!(f, "not enough random bytes for a CHAP challenge")
            }
            LoginError::BadChap(what) => write!(f, "bad CHAP exchange from the target: {what}"),
            LoginError::Negotiation(e) => write!(f, "{e}"),
            LoginError::Text(e) => write!(f, "bad login text from the target: {e}"),
            LoginError::Pdu(e) => write!(f, "{e}"),
            LoginError::Protocol(what) => write!(f, "login protocol error: {what}"),
        }
    }
}

impl core::error::Error for LoginError {}

impl From<TextError> for LoginError {
    fn from(e: TextError) -> Self {
        LoginError::Text(e)
    }
}
impl From<NegotiationError> for LoginError {
    fn from(e: NegotiationError) -> Self {
        LoginError::Negotiation(e)
    }
}
impl From<pdu::Error> for LoginError {
    fn from(e: pdu::Error) -> Self {
        LoginError::Pdu(e)
    }
}

/// Result of a successful login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginOutcome {
    pub tsih: u16,
    pub isid: [u8; 6],
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
    pub params: SessionParams,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Sent InitiatorName/AuthMethod.
    SecurityStart,
    /// Sent CHAP_A.
    ChapAlgorithm,
    /// Sent CHAP_N/CHAP_R.
    ChapResponse,
    /// Authenticated (or none); waiting for the target to move on.
    SecurityDone,
    /// Sent operational keys.
    Operational,
    Done,
}

/// One login exchange.
#[derive(Debug)]
pub struct Login {
    cfg: LoginConfig,
    phase: Phase,
    itt: u32,
    exp_stat_sn: Option<u32>,
    negotiator: Negotiator,
    offered: TextPairs,
    rx_text: TextAccumulator,
    /// Chunks of our current request still to send (C bit continuation).
    tx_pending: Vec<Vec<u8>>,
    tx_stage: (Stage, bool, Stage),
    mutual_challenge: Option<(u8, Vec<u8>)>,
    target_max_data: usize,
}

#[derive(Debug)]
pub enum Step {
    /// Bytes were queued; feed the next response.
    Continue,
    /// Full-feature phase reached.
    Done(LoginOutcome),
}

impl Login {
    /// Starts a login; the first request is appended to `out`.
    pub fn start(cfg: LoginConfig, itt: u32, out: &mut Vec<u8>) -> Result<Self, LoginError> {
        let discovery = cfg.target_name.is_none();
        let mut login = Login {
            negotiator: Negotiator::new(cfg.offer, discovery),
            cfg,
            phase: Phase::SecurityStart,
            itt,
            exp_stat_sn: None,
            offered: TextPairs::new(),
            rx_text: TextAccumulator::new(),
            tx_pending: Vec::new(),
            tx_stage: (Stage::Security, false, Stage::Security),
            mutual_challenge: None,
            target_max_data: LOGIN_MAX_DATA,
        };
        if let Some(chap) = &login.cfg.chap
            && chap.initiator.secret.len() < MIN_SECRET_LEN
        {
            log::warn!(
                "CHAP secret of user {:?} is shorter than {MIN_SECRET_LEN} bytes; RFC 7143 asks for at least 96 bits",
                chap.initiator.user
            );
        }
        if let Some(chap) = &login.cfg.chap
            && let Some(t) = &chap.target
        {
            if t.secret == chap.initiator.secret {
                return Err(LoginError::SameSecrets);
            }
            if chap.random.len() < CHALLENGE_LEN + 1 {
                return Err(LoginError::NotEnoughRandom);
            }
        }
        let mut t = TextPairs::new();
        t.push(key::INITIATOR_NAME, &login.cfg.initiator_name);
        match &login.cfg.target_name {
            Some(name) => {
                t.push(key::SESSION_TYPE, SESSION_TYPE_NORMAL);
                t.push(key::TARGET_NAME, name);
            }
            None => t.push(key::SESSION_TYPE, SESSION_TYPE_DISCOVERY),
        }
        let auth = match &login.cfg.chap {
            Some(c) if c.target.is_some() => AUTH_CHAP,
            Some(_) => "CHAP,None",
            None => AUTH_NONE,
        };
        t.push(key::AUTH_METHOD, auth);
        // Without CHAP we ask to move on at once.
        let transit = login.cfg.chap.is_none();
        login.send(out, &t, Stage::Security, transit, Stage::Operational)?;
        Ok(login)
    }

    fn send(
        &mut self,
        out: &mut Vec<u8>,
        text: &TextPairs,
        csg: Stage,
        transit: bool,
        nsg: Stage,
    ) -> Result<(), LoginError> {
        let data = text.encode();
        let mut chunks: Vec<Vec<u8>> = text::split(&data, self.target_max_data)
            .map(|(c, _)| c.to_vec())
            .collect();
        chunks.reverse();
        self.tx_pending = chunks;
        self.tx_stage = (csg, transit, nsg);
        self.send_next_chunk(out)
    }

    fn send_next_chunk(&mut self, out: &mut Vec<u8>) -> Result<(), LoginError> {
        let chunk = self.tx_pending.pop().unwrap_or_default();
        let more = !self.tx_pending.is_empty();
        let (csg, transit, nsg) = self.tx_stage;
        let req = LoginRequest {
            transit: transit && !more,
            cont: more,
            csg,
            nsg: if transit && !more { nsg } else { csg },
            version_max: ISCSI_VERSION,
            version_min: ISCSI_VERSION,
            isid: self.cfg.isid,
            tsih: self.cfg.tsih,
            itt: self.itt,
            cid: self.cfg.cid,
            cmd_sn: self.cfg.initial_cmd_sn,
            exp_stat_sn: self.exp_stat_sn.unwrap_or(0),
        };
        pdu::encode(out, &Repr::LoginRequest(req), &chunk, Digests::default())?;
        Ok(())
    }

    /// Handles one PDU from the target, appending any request to `out`.
    pub fn handle(&mut self, frame: &Frame<'_>, out: &mut Vec<u8>) -> Result<Step, LoginError> {
        let Repr::LoginResponse(r) = frame.repr else {
            return Err(LoginError::Protocol("expected a Login Response"));
        };
        match r.status_class {
            status_class::SUCCESS => {}
            status_class::REDIRECTION => {
                let address = TextPairs::parse(frame.data)
                    .ok()
                    .and_then(|t| t.get(key::TARGET_ADDRESS).map(String::from));
                return Err(LoginError::Redirected {
                    detail: r.status_detail,
                    address,
                });
            }
            status_class::INITIATOR_ERROR
                if r.status_detail == status_detail::AUTH_FAILURE && self.cfg.chap.is_none() =>
            {
                return Err(LoginError::ChapRequired);
            }
            status_class::INITIATOR_ERROR => {
                return Err(LoginError::Refused {
                    detail: r.status_detail,
                });
            }
            status_class::TARGET_ERROR => {
                return Err(LoginError::TargetError {
                    detail: r.status_detail,
                });
            }
            class => {
                return Err(LoginError::Status {
                    class,
                    detail: r.status_detail,
                });
            }
        }
        // Only a successful response must echo our ISID and ITT: targets
        // fill in less on a refusal (tgt leaves the ISID zero).
        if r.itt != self.itt || r.isid != self.cfg.isid {
            return Err(LoginError::Protocol("Login Response for another login"));
        }
        if r.version_active != ISCSI_VERSION {
            return Err(LoginError::Protocol("unsupported iSCSI version"));
        }
        self.exp_stat_sn = Some(r.stat_sn.wrapping_add(1));
        // Our request is still going out in pieces: the target acknowledges
        // each with an empty response.
        if !self.tx_pending.is_empty() {
            self.send_next_chunk(out)?;
            return Ok(Step::Continue);
        }
        let Some(text) = self.rx_text.push(frame.data, r.cont)? else {
            // Ask for the rest of the target's text.
            self.send(out, &TextPairs::new(), r.csg, false, r.csg)?;
            return Ok(Step::Continue);
        };
        let text = TextPairs::parse_unique(&text)?;
        let to_stage = |s| r.transit && r.nsg == s;
        match self.phase {
            Phase::SecurityStart => {
                let method = text.get(key::AUTH_METHOD);
                match method {
                    Some(AUTH_CHAP) => {
                        if self.cfg.chap.is_none() {
                            return Err(LoginError::ChapRequired);
                        }
                        let mut t = TextPairs::new();
                        t.push(key::CHAP_A, chap::CHAP_ALGORITHM_MD5);
                        self.phase = Phase::ChapAlgorithm;
                        self.send(out, &t, Stage::Security, false, Stage::Security)?;
                        Ok(Step::Continue)
                    }
                    Some(AUTH_NONE) | None => {
                        if let Some(c) = &self.cfg.chap
                            && c.target.is_some()
                        {
                            return Err(LoginError::TargetNotAuthenticated);
                        }
                        if method.is_none() && !to_stage(Stage::Operational) {
                            return Err(LoginError::Protocol("target did not answer AuthMethod"));
                        }
                        self.after_security(&text, to_stage(Stage::Operational), out)
                    }
                    Some(other) => Err(LoginError::UnsupportedAuth(other.into())),
                }
            }
            Phase::ChapAlgorithm => self.chap_respond(&text, out),
            Phase::ChapResponse => {
                self.verify_target(&text)?;
                self.after_security(&text, to_stage(Stage::Operational), out)
            }
            Phase::SecurityDone => self.after_security(&text, to_stage(Stage::Operational), out),
            Phase::Operational => {
                let answers = self.negotiator.apply(&text, &self.offered)?;
                if to_stage(Stage::FullFeature) {
                    // The target has moved on: answers to its declarations are moot.
                    self.phase = Phase::Done;
                    let p = self.negotiator.params.clone();
                    return Ok(Step::Done(LoginOutcome {
                        tsih: r.tsih,
                        isid: self.cfg.isid,
                        cmd_sn: self.cfg.initial_cmd_sn,
                        exp_stat_sn: r.stat_sn.wrapping_add(1),
                        exp_cmd_sn: r.exp_cmd_sn,
                        max_cmd_sn: r.max_cmd_sn,
                        params: p,
                    }));
                }
                // Answer what the target proposed and ask again to move on.
                for (k, v) in answers.iter() {
                    self.offered.push(k, v);
                }
                self.send(out, &answers, Stage::Operational, true, Stage::FullFeature)?;
                Ok(Step::Continue)
            }
            Phase::Done => Err(LoginError::Protocol("Login Response after login completed")),
        }
    }

    fn after_security(
        &mut self,
        text: &TextPairs,
        target_moved: bool,
        out: &mut Vec<u8>,
    ) -> Result<Step, LoginError> {
        // Declarative keys the target may already have sent (e.g. TPGT).
        self.negotiator.apply(text, &TextPairs::new()).ok();
        if !target_moved {
            self.phase = Phase::SecurityDone;
            self.send(
                out,
                &TextPairs::new(),
                Stage::Security,
                true,
                Stage::Operational,
            )?;
            return Ok(Step::Continue);
        }
        self.phase = Phase::Operational;
        self.offered = self.negotiator.proposal();
        let proposal = self.offered.clone();
        self.send(out, &proposal, Stage::Operational, true, Stage::FullFeature)?;
        Ok(Step::Continue)
    }

    fn chap_respond(&mut self, text: &TextPairs, out: &mut Vec<u8>) -> Result<Step, LoginError> {
        let Some(chap) = self.cfg.chap.clone() else {
            return Err(LoginError::ChapRequired);
        };
        if text.get(key::CHAP_A) != Some(chap::CHAP_ALGORITHM_MD5) {
            return Err(LoginError::BadChap("target did not accept CHAP_A=5 (MD5)"));
        }
        let id: u8 = text
            .get(key::CHAP_I)
            .and_then(|v| v.parse::<u8>().ok())
            .ok_or(LoginError::BadChap("missing or invalid CHAP_I"))?;
        let challenge = text
            .get(key::CHAP_C)
            .ok_or(LoginError::BadChap("missing CHAP_C"))
            .and_then(|v| {
                chap::decode_binary(v).map_err(|_| LoginError::BadChap("malformed CHAP_C"))
            })?;
        let response = chap::chap_md5_response(id, &chap.initiator.secret, &challenge);
        let mut t = TextPairs::new();
        t.push(key::CHAP_N, &chap.initiator.user);
        t.push(key::CHAP_R, &chap::encode_hex(&response));
        if chap.target.is_some() {
            let ours = &chap.random[..CHALLENGE_LEN];
            if challenge == ours {
                return Err(LoginError::ReflectedChallenge);
            }
            let our_id = chap.random[CHALLENGE_LEN];
            t.push(key::CHAP_I, &alloc::format!("{our_id}"));
            t.push(key::CHAP_C, &chap::encode_hex(ours));
            self.mutual_challenge = Some((our_id, ours.to_vec()));
        }
        self.phase = Phase::ChapResponse;
        self.send(out, &t, Stage::Security, true, Stage::Operational)?;
        Ok(Step::Continue)
    }

    fn verify_target(&mut self, text: &TextPairs) -> Result<(), LoginError> {
        let Some(target) = self.cfg.chap.as_ref().and_then(|c| c.target.as_ref()) else {
            return Ok(());
        };
        let Some((id, challenge)) = &self.mutual_challenge else {
            return Err(LoginError::TargetNotAuthenticated);
        };
        let (Some(name), Some(resp)) = (text.get(key::CHAP_N), text.get(key::CHAP_R)) else {
            return Err(LoginError::TargetNotAuthenticated);
        };
        if name != target.user {
            return Err(LoginError::TargetAuthFailed);
        }
        let resp =
            chap::decode_binary(resp).map_err(|_| LoginError::BadChap("malformed CHAP_R"))?;
        let expected = chap::chap_md5_response(*id, &target.secret, challenge);
        if !chap::responses_equal(&resp, &expected) {
            return Err(LoginError::TargetAuthFailed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
