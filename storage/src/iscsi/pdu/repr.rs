//! Typed headers of every PDU the initiator sends or receives.

use super::{BHS_LEN, Error, Opcode, Packet, RESERVED_TAG, field};

/// Login stages (CSG/NSG, RFC 7143 §11.12.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Security = 0,
    Operational = 1,
    FullFeature = 3,
}

impl Stage {
    fn from_bits(v: u8) -> Result<Self, Error> {
        match v & 3 {
            0 => Ok(Stage::Security),
            1 => Ok(Stage::Operational),
            3 => Ok(Stage::FullFeature),
            _ => Err(Error::Malformed("reserved login stage 2")),
        }
    }
}

const LOGIN_TRANSIT: u8 = 0x80;
const LOGIN_CONTINUE: u8 = 0x40;
const TEXT_CONTINUE: u8 = 0x40;
const CMD_READ: u8 = 0x40;
const CMD_WRITE: u8 = 0x20;
const CMD_ATTR_MASK: u8 = 0x07;
const RESP_BIDI_OVERFLOW: u8 = 0x10;
const RESP_BIDI_UNDERFLOW: u8 = 0x08;
const RESP_OVERFLOW: u8 = 0x04;
const RESP_UNDERFLOW: u8 = 0x02;
const DATA_IN_ACK: u8 = 0x40;
const DATA_IN_STATUS: u8 = 0x01;
const FUNCTION_MASK: u8 = 0x7f;

/// SCSI task attributes (RFC 7143 §11.3.1).
pub mod task_attr {
    pub const UNTAGGED: u8 = 0;
    pub const SIMPLE: u8 = 1;
    pub const ORDERED: u8 = 2;
    pub const HEAD_OF_QUEUE: u8 = 3;
    pub const ACA: u8 = 4;
}

/// Task management functions (RFC 7143 §11.5.1).
pub mod tmf_function {
    pub const ABORT_TASK: u8 = 1;
    pub const ABORT_TASK_SET: u8 = 2;
    pub const CLEAR_ACA: u8 = 3;
    pub const CLEAR_TASK_SET: u8 = 4;
    pub const LOGICAL_UNIT_RESET: u8 = 5;
    pub const TARGET_WARM_RESET: u8 = 6;
    pub const TARGET_COLD_RESET: u8 = 7;
}

/// Task management responses (RFC 7143 §11.6.1).
pub mod tmf_response {
    pub const COMPLETE: u8 = 0;
    pub const TASK_DOES_NOT_EXIST: u8 = 1;
    pub const LUN_DOES_NOT_EXIST: u8 = 2;
    pub const TASK_STILL_ALLEGIANT: u8 = 3;
    pub const REASSIGNMENT_UNSUPPORTED: u8 = 4;
    pub const NOT_SUPPORTED: u8 = 5;
    pub const AUTHORIZATION_FAILED: u8 = 6;
    pub const REJECTED: u8 = 255;
}

/// Logout reasons (RFC 7143 §11.14.1).
pub mod logout_reason {
    pub const CLOSE_SESSION: u8 = 0;
    pub const CLOSE_CONNECTION: u8 = 1;
    pub const REMOVE_FOR_RECOVERY: u8 = 2;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginRequest {
    pub transit: bool,
    pub cont: bool,
    pub csg: Stage,
    pub nsg: Stage,
    pub version_max: u8,
    pub version_min: u8,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub itt: u32,
    pub cid: u16,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginResponse {
    pub transit: bool,
    pub cont: bool,
    pub csg: Stage,
    pub nsg: Stage,
    pub version_max: u8,
    pub version_active: u8,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub itt: u32,
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
    pub status_class: u8,
    pub status_detail: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextRequest {
    pub immediate: bool,
    pub final_: bool,
    pub cont: bool,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextResponse {
    pub final_: bool,
    pub cont: bool,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScsiCommand {
    pub immediate: bool,
    pub final_: bool,
    pub read: bool,
    pub write: bool,
    pub attr: u8,
    pub lun: u64,
    pub itt: u32,
    pub expected_len: u32,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    pub cdb: [u8; 16],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScsiResponse {
    pub bidi_overflow: bool,
    pub bidi_underflow: bool,
    pub overflow: bool,
    pub underflow: bool,
    /// iSCSI service response: 0 = command completed at target.
    pub response: u8,
    /// SCSI status (valid when `response` is 0).
    pub status: u8,
    pub itt: u32,
    pub snack_tag: u32,
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
    pub exp_data_sn: u32,
    pub bidi_residual: u32,
    pub residual: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataIn {
    pub final_: bool,
    pub ack: bool,
    pub overflow: bool,
    pub underflow: bool,
    /// Set when this PDU carries the command's status (phase collapse).
    pub has_status: bool,
    pub status: u8,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
    pub data_sn: u32,
    pub offset: u32,
    pub residual: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataOut {
    pub final_: bool,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub exp_stat_sn: u32,
    pub data_sn: u32,
    pub offset: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct R2t {
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
    pub r2t_sn: u32,
    pub offset: u32,
    pub desired_len: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NopOut {
    pub immediate: bool,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NopIn {
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskMgmtRequest {
    pub immediate: bool,
    pub function: u8,
    pub lun: u64,
    pub itt: u32,
    pub ref_itt: u32,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    pub ref_cmd_sn: u32,
    pub exp_data_sn: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskMgmtResponse {
    pub response: u8,
    pub itt: u32,
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogoutRequest {
    pub immediate: bool,
    pub reason: u8,
    pub itt: u32,
    pub cid: u16,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogoutResponse {
    pub response: u8,
    pub itt: u32,
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
    pub time2wait: u16,
    pub time2retain: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    pub reason: u8,
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
    pub data_sn: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsyncMessage {
    pub lun: u64,
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
    pub event: u8,
    pub vcode: u8,
    pub param1: u16,
    pub param2: u16,
    pub param3: u16,
}

/// Async events (RFC 7143 §11.9.1).
pub mod async_event {
    pub const SCSI_EVENT: u8 = 0;
    pub const LOGOUT_REQUESTED: u8 = 1;
    pub const DROPPING_CONNECTION: u8 = 2;
    pub const DROPPING_ALL_CONNECTIONS: u8 = 3;
    pub const RENEGOTIATE: u8 = 4;
    pub const VENDOR: u8 = 255;
}

/// The typed BHS of one PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repr {
    LoginRequest(LoginRequest),
    LoginResponse(LoginResponse),
    TextRequest(TextRequest),
    TextResponse(TextResponse),
    ScsiCommand(ScsiCommand),
    ScsiResponse(ScsiResponse),
    DataIn(DataIn),
    DataOut(DataOut),
    R2t(R2t),
    NopOut(NopOut),
    NopIn(NopIn),
    TaskMgmtRequest(TaskMgmtRequest),
    TaskMgmtResponse(TaskMgmtResponse),
    LogoutRequest(LogoutRequest),
    LogoutResponse(LogoutResponse),
    Reject(Reject),
    AsyncMessage(AsyncMessage),
}

fn bit(flags: u8, mask: u8) -> bool {
    flags & mask != 0
}

fn flag(on: bool, mask: u8) -> u8 {
    if on { mask } else { 0 }
}

impl Repr {
    /// Parses the BHS of a checked packet.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Self, Error> {
        if p.bhs().len() < BHS_LEN {
            return Err(Error::Truncated);
        }
        let f = p.flags();
        let b2 = p.bhs()[field::BYTE2];
        let b3 = p.bhs()[field::BYTE3];
        let fin = p.is_final();
        let op = p.opcode()?;
        Ok(match op {
            Opcode::LoginRequest | Opcode::LoginResponse => {
                let transit = bit(f, LOGIN_TRANSIT);
                let cont = bit(f, LOGIN_CONTINUE);
                if transit && cont {
                    return Err(Error::Malformed("login PDU with both T and C set"));
                }
                let csg = Stage::from_bits(f >> 2)?;
                // NSG is reserved without T.
                let nsg = if transit { Stage::from_bits(f)? } else { csg };
                let isid = p.bytes_at::<6>(field::LUN);
                let tsih = p.u16_at(field::LUN + 6);
                if op == Opcode::LoginRequest {
                    Repr::LoginRequest(LoginRequest {
                        transit,
                        cont,
                        csg,
                        nsg,
                        version_max: b2,
                        version_min: b3,
                        isid,
                        tsih,
                        itt: p.itt(),
                        cid: p.u16_at(field::W20),
                        cmd_sn: p.u32_at(field::W24),
                        exp_stat_sn: p.u32_at(field::W28),
                    })
                } else {
                    Repr::LoginResponse(LoginResponse {
                        transit,
                        cont,
                        csg,
                        nsg,
                        version_max: b2,
                        version_active: b3,
                        isid,
                        tsih,
                        itt: p.itt(),
                        stat_sn: p.u32_at(field::W24),
                        exp_cmd_sn: p.u32_at(field::W28),
                        max_cmd_sn: p.u32_at(field::W32),
                        status_class: p.bhs()[field::W36],
                        status_detail: p.bhs()[field::W36 + 1],
                    })
                }
            }
            Opcode::TextRequest => Repr::TextRequest(TextRequest {
                immediate: p.immediate(),
                final_: fin,
                cont: bit(f, TEXT_CONTINUE),
                lun: p.lun(),
                itt: p.itt(),
                ttt: p.u32_at(field::W20),
                cmd_sn: p.u32_at(field::W24),
                exp_stat_sn: p.u32_at(field::W28),
            }),
            Opcode::TextResponse => {
                let cont = bit(f, TEXT_CONTINUE);
                if fin && cont {
                    return Err(Error::Malformed("text response with both F and C set"));
                }
                Repr::TextResponse(TextResponse {
                    final_: fin,
                    cont,
                    lun: p.lun(),
                    itt: p.itt(),
                    ttt: p.u32_at(field::W20),
                    stat_sn: p.u32_at(field::W24),
                    exp_cmd_sn: p.u32_at(field::W28),
                    max_cmd_sn: p.u32_at(field::W32),
                })
            }
            Opcode::ScsiCommand => Repr::ScsiCommand(ScsiCommand {
                immediate: p.immediate(),
                final_: fin,
                read: bit(f, CMD_READ),
                write: bit(f, CMD_WRITE),
                attr: f & CMD_ATTR_MASK,
                lun: p.lun(),
                itt: p.itt(),
                expected_len: p.u32_at(field::W20),
                cmd_sn: p.u32_at(field::W24),
                exp_stat_sn: p.u32_at(field::W28),
                cdb: p.bytes_at::<16>(field::CDB),
            }),
            Opcode::ScsiResponse => Repr::ScsiResponse(ScsiResponse {
                bidi_overflow: bit(f, RESP_BIDI_OVERFLOW),
                bidi_underflow: bit(f, RESP_BIDI_UNDERFLOW),
                overflow: bit(f, RESP_OVERFLOW),
                underflow: bit(f, RESP_UNDERFLOW),
                response: b2,
                status: b3,
                itt: p.itt(),
                snack_tag: p.u32_at(field::W20),
                stat_sn: p.u32_at(field::W24),
                exp_cmd_sn: p.u32_at(field::W28),
                max_cmd_sn: p.u32_at(field::W32),
                exp_data_sn: p.u32_at(field::W36),
                bidi_residual: p.u32_at(field::W40),
                residual: p.u32_at(field::W44),
            }),
            Opcode::DataIn => {
                let has_status = bit(f, DATA_IN_STATUS);
                if has_status && !fin {
                    return Err(Error::Malformed("Data-In with S but without F"));
                }
                Repr::DataIn(DataIn {
                    final_: fin,
                    ack: bit(f, DATA_IN_ACK),
                    overflow: bit(f, RESP_OVERFLOW),
                    underflow: bit(f, RESP_UNDERFLOW),
                    has_status,
                    status: b3,
                    lun: p.lun(),
                    itt: p.itt(),
                    ttt: p.u32_at(field::W20),
                    stat_sn: p.u32_at(field::W24),
                    exp_cmd_sn: p.u32_at(field::W28),
                    max_cmd_sn: p.u32_at(field::W32),
                    data_sn: p.u32_at(field::W36),
                    offset: p.u32_at(field::W40),
                    residual: p.u32_at(field::W44),
                })
            }
            Opcode::DataOut => Repr::DataOut(DataOut {
                final_: fin,
                lun: p.lun(),
                itt: p.itt(),
                ttt: p.u32_at(field::W20),
                exp_stat_sn: p.u32_at(field::W28),
                data_sn: p.u32_at(field::W36),
                offset: p.u32_at(field::W40),
            }),
            Opcode::R2t => Repr::R2t(R2t {
                lun: p.lun(),
                itt: p.itt(),
                ttt: p.u32_at(field::W20),
                stat_sn: p.u32_at(field::W24),
                exp_cmd_sn: p.u32_at(field::W28),
                max_cmd_sn: p.u32_at(field::W32),
                r2t_sn: p.u32_at(field::W36),
                offset: p.u32_at(field::W40),
                desired_len: p.u32_at(field::W44),
            }),
            Opcode::NopOut => Repr::NopOut(NopOut {
                immediate: p.immediate(),
                lun: p.lun(),
                itt: p.itt(),
                ttt: p.u32_at(field::W20),
                cmd_sn: p.u32_at(field::W24),
                exp_stat_sn: p.u32_at(field::W28),
            }),
            Opcode::NopIn => Repr::NopIn(NopIn {
                lun: p.lun(),
                itt: p.itt(),
                ttt: p.u32_at(field::W20),
                stat_sn: p.u32_at(field::W24),
                exp_cmd_sn: p.u32_at(field::W28),
                max_cmd_sn: p.u32_at(field::W32),
            }),
            Opcode::TaskMgmtRequest => Repr::TaskMgmtRequest(TaskMgmtRequest {
                immediate: p.immediate(),
                function: f & FUNCTION_MASK,
                lun: p.lun(),
                itt: p.itt(),
                ref_itt: p.u32_at(field::W20),
                cmd_sn: p.u32_at(field::W24),
                exp_stat_sn: p.u32_at(field::W28),
                ref_cmd_sn: p.u32_at(field::W32),
                exp_data_sn: p.u32_at(field::W36),
            }),
            Opcode::TaskMgmtResponse => Repr::TaskMgmtResponse(TaskMgmtResponse {
                response: b2,
                itt: p.itt(),
                stat_sn: p.u32_at(field::W24),
                exp_cmd_sn: p.u32_at(field::W28),
                max_cmd_sn: p.u32_at(field::W32),
            }),
            Opcode::LogoutRequest => Repr::LogoutRequest(LogoutRequest {
                immediate: p.immediate(),
                reason: f & FUNCTION_MASK,
                itt: p.itt(),
                cid: p.u16_at(field::W20),
                cmd_sn: p.u32_at(field::W24),
                exp_stat_sn: p.u32_at(field::W28),
            }),
            Opcode::LogoutResponse => Repr::LogoutResponse(LogoutResponse {
                response: b2,
                itt: p.itt(),
                stat_sn: p.u32_at(field::W24),
                exp_cmd_sn: p.u32_at(field::W28),
                max_cmd_sn: p.u32_at(field::W32),
                time2wait: p.u16_at(field::W40),
                time2retain: p.u16_at(field::W40 + 2),
            }),
            Opcode::Reject => Repr::Reject(Reject {
                reason: b2,
                stat_sn: p.u32_at(field::W24),
                exp_cmd_sn: p.u32_at(field::W28),
                max_cmd_sn: p.u32_at(field::W32),
                data_sn: p.u32_at(field::W36),
            }),
            Opcode::AsyncMessage => Repr::AsyncMessage(AsyncMessage {
                lun: p.lun(),
                stat_sn: p.u32_at(field::W24),
                exp_cmd_sn: p.u32_at(field::W28),
                max_cmd_sn: p.u32_at(field::W32),
                event: p.bhs()[field::W36],
                vcode: p.bhs()[field::W36 + 1],
                param1: p.u16_at(field::W36 + 2),
                param2: p.u16_at(field::W40),
                param3: p.u16_at(field::W40 + 2),
            }),
            Opcode::Snack => return Err(Error::UnsupportedOpcode(op)),
        })
    }

    pub fn opcode(&self) -> Opcode {
        match self {
            Repr::LoginRequest(_) => Opcode::LoginRequest,
            Repr::LoginResponse(_) => Opcode::LoginResponse,
            Repr::TextRequest(_) => Opcode::TextRequest,
            Repr::TextResponse(_) => Opcode::TextResponse,
            Repr::ScsiCommand(_) => Opcode::ScsiCommand,
            Repr::ScsiResponse(_) => Opcode::ScsiResponse,
            Repr::DataIn(_) => Opcode::DataIn,
            Repr::DataOut(_) => Opcode::DataOut,
            Repr::R2t(_) => Opcode::R2t,
            Repr::NopOut(_) => Opcode::NopOut,
            Repr::NopIn(_) => Opcode::NopIn,
            Repr::TaskMgmtRequest(_) => Opcode::TaskMgmtRequest,
            Repr::TaskMgmtResponse(_) => Opcode::TaskMgmtResponse,
            Repr::LogoutRequest(_) => Opcode::LogoutRequest,
            Repr::LogoutResponse(_) => Opcode::LogoutResponse,
            Repr::Reject(_) => Opcode::Reject,
            Repr::AsyncMessage(_) => Opcode::AsyncMessage,
        }
    }

    /// Writes the BHS (all 48 bytes; AHS and data lengths are set by the framing).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.clear_bhs();
        let fin = field::FINAL_BIT;
        match *self {
            Repr::LoginRequest(r) => {
                p.set_opcode(Opcode::LoginRequest, true);
                p.set_flags(login_flags(r.transit, r.cont, r.csg, r.nsg));
                p.set_byte2(r.version_max);
                p.set_byte3(r.version_min);
                p.set_bytes_at(field::LUN, &r.isid);
                p.set_u16_at(field::LUN + 6, r.tsih);
                p.set_itt(r.itt);
                p.set_u16_at(field::W20, r.cid);
                p.set_u32_at(field::W24, r.cmd_sn);
                p.set_u32_at(field::W28, r.exp_stat_sn);
            }
            Repr::LoginResponse(r) => {
                p.set_opcode(Opcode::LoginResponse, false);
                p.set_flags(login_flags(r.transit, r.cont, r.csg, r.nsg));
                p.set_byte2(r.version_max);
                p.set_byte3(r.version_active);
                p.set_bytes_at(field::LUN, &r.isid);
                p.set_u16_at(field::LUN + 6, r.tsih);
                p.set_itt(r.itt);
                p.set_u32_at(field::W24, r.stat_sn);
                p.set_u32_at(field::W28, r.exp_cmd_sn);
                p.set_u32_at(field::W32, r.max_cmd_sn);
                p.set_bytes_at(field::W36, &[r.status_class, r.status_detail]);
            }
            Repr::TextRequest(r) => {
                p.set_opcode(Opcode::TextRequest, r.immediate);
                p.set_flags(flag(r.final_, fin) | flag(r.cont, TEXT_CONTINUE));
                p.set_lun(r.lun);
                p.set_itt(r.itt);
                p.set_u32_at(field::W20, r.ttt);
                p.set_u32_at(field::W24, r.cmd_sn);
                p.set_u32_at(field::W28, r.exp_stat_sn);
            }
            Repr::TextResponse(r) => {
                p.set_opcode(Opcode::TextResponse, false);
                p.set_flags(flag(r.final_, fin) | flag(r.cont, TEXT_CONTINUE));
                p.set_lun(r.lun);
                p.set_itt(r.itt);
                p.set_u32_at(field::W20, r.ttt);
                p.set_u32_at(field::W24, r.stat_sn);
                p.set_u32_at(field::W28, r.exp_cmd_sn);
                p.set_u32_at(field::W32, r.max_cmd_sn);
            }
            Repr::ScsiCommand(r) => {
                p.set_opcode(Opcode::ScsiCommand, r.immediate);
                p.set_flags(
                    flag(r.final_, fin)
                        | flag(r.read, CMD_READ)
                        | flag(r.write, CMD_WRITE)
                        | (r.attr & CMD_ATTR_MASK),
                );
                p.set_lun(r.lun);
                p.set_itt(r.itt);
                p.set_u32_at(field::W20, r.expected_len);
                p.set_u32_at(field::W24, r.cmd_sn);
                p.set_u32_at(field::W28, r.exp_stat_sn);
                p.set_bytes_at(field::CDB, &r.cdb);
            }
            Repr::ScsiResponse(r) => {
                p.set_opcode(Opcode::ScsiResponse, false);
                p.set_flags(
                    fin | flag(r.bidi_overflow, RESP_BIDI_OVERFLOW)
                        | flag(r.bidi_underflow, RESP_BIDI_UNDERFLOW)
                        | flag(r.overflow, RESP_OVERFLOW)
                        | flag(r.underflow, RESP_UNDERFLOW),
                );
                p.set_byte2(r.response);
                p.set_byte3(r.status);
                p.set_itt(r.itt);
                p.set_u32_at(field::W20, r.snack_tag);
                p.set_u32_at(field::W24, r.stat_sn);
                p.set_u32_at(field::W28, r.exp_cmd_sn);
                p.set_u32_at(field::W32, r.max_cmd_sn);
                p.set_u32_at(field::W36, r.exp_data_sn);
                p.set_u32_at(field::W40, r.bidi_residual);
                p.set_u32_at(field::W44, r.residual);
            }
            Repr::DataIn(r) => {
                p.set_opcode(Opcode::DataIn, false);
                p.set_flags(
                    flag(r.final_, fin)
                        | flag(r.ack, DATA_IN_ACK)
                        | flag(r.overflow, RESP_OVERFLOW)
                        | flag(r.underflow, RESP_UNDERFLOW)
                        | flag(r.has_status, DATA_IN_STATUS),
                );
                p.set_byte3(r.status);
                p.set_lun(r.lun);
                p.set_itt(r.itt);
                p.set_u32_at(field::W20, r.ttt);
                p.set_u32_at(field::W24, r.stat_sn);
                p.set_u32_at(field::W28, r.exp_cmd_sn);
                p.set_u32_at(field::W32, r.max_cmd_sn);
                p.set_u32_at(field::W36, r.data_sn);
                p.set_u32_at(field::W40, r.offset);
                p.set_u32_at(field::W44, r.residual);
            }
            Repr::DataOut(r) => {
                p.set_opcode(Opcode::DataOut, false);
                p.set_flags(flag(r.final_, fin));
                p.set_lun(r.lun);
                p.set_itt(r.itt);
                p.set_u32_at(field::W20, r.ttt);
                p.set_u32_at(field::W28, r.exp_stat_sn);
                p.set_u32_at(field::W36, r.data_sn);
                p.set_u32_at(field::W40, r.offset);
            }
            Repr::R2t(r) => {
                p.set_opcode(Opcode::R2t, false);
                p.set_flags(fin);
                p.set_lun(r.lun);
                p.set_itt(r.itt);
                p.set_u32_at(field::W20, r.ttt);
                p.set_u32_at(field::W24, r.stat_sn);
                p.set_u32_at(field::W28, r.exp_cmd_sn);
                p.set_u32_at(field::W32, r.max_cmd_sn);
                p.set_u32_at(field::W36, r.r2t_sn);
                p.set_u32_at(field::W40, r.offset);
                p.set_u32_at(field::W44, r.desired_len);
            }
            Repr::NopOut(r) => {
                p.set_opcode(Opcode::NopOut, r.immediate);
                p.set_flags(fin);
                p.set_lun(r.lun);
                p.set_itt(r.itt);
                p.set_u32_at(field::W20, r.ttt);
                p.set_u32_at(field::W24, r.cmd_sn);
                p.set_u32_at(field::W28, r.exp_stat_sn);
            }
            Repr::NopIn(r) => {
                p.set_opcode(Opcode::NopIn, false);
                p.set_flags(fin);
                p.set_lun(r.lun);
                p.set_itt(r.itt);
                p.set_u32_at(field::W20, r.ttt);
                p.set_u32_at(field::W24, r.stat_sn);
                p.set_u32_at(field::W28, r.exp_cmd_sn);
                p.set_u32_at(field::W32, r.max_cmd_sn);
            }
            Repr::TaskMgmtRequest(r) => {
                p.set_opcode(Opcode::TaskMgmtRequest, r.immediate);
                p.set_flags(fin | (r.function & FUNCTION_MASK));
                p.set_lun(r.lun);
                p.set_itt(r.itt);
                p.set_u32_at(field::W20, r.ref_itt);
                p.set_u32_at(field::W24, r.cmd_sn);
                p.set_u32_at(field::W28, r.exp_stat_sn);
                p.set_u32_at(field::W32, r.ref_cmd_sn);
                p.set_u32_at(field::W36, r.exp_data_sn);
            }
            Repr::TaskMgmtResponse(r) => {
                p.set_opcode(Opcode::TaskMgmtResponse, false);
                p.set_flags(fin);
                p.set_byte2(r.response);
                p.set_itt(r.itt);
                p.set_u32_at(field::W24, r.stat_sn);
                p.set_u32_at(field::W28, r.exp_cmd_sn);
                p.set_u32_at(field::W32, r.max_cmd_sn);
            }
            Repr::LogoutRequest(r) => {
                p.set_opcode(Opcode::LogoutRequest, r.immediate);
                p.set_flags(fin | (r.reason & FUNCTION_MASK));
                p.set_itt(r.itt);
                p.set_u16_at(field::W20, r.cid);
                p.set_u32_at(field::W24, r.cmd_sn);
                p.set_u32_at(field::W28, r.exp_stat_sn);
            }
            Repr::LogoutResponse(r) => {
                p.set_opcode(Opcode::LogoutResponse, false);
                p.set_flags(fin);
                p.set_byte2(r.response);
                p.set_itt(r.itt);
                p.set_u32_at(field::W24, r.stat_sn);
                p.set_u32_at(field::W28, r.exp_cmd_sn);
                p.set_u32_at(field::W32, r.max_cmd_sn);
                p.set_u16_at(field::W40, r.time2wait);
                p.set_u16_at(field::W40 + 2, r.time2retain);
            }
            Repr::Reject(r) => {
                p.set_opcode(Opcode::Reject, false);
                p.set_flags(fin);
                p.set_byte2(r.reason);
                p.set_itt(RESERVED_TAG);
                p.set_u32_at(field::W24, r.stat_sn);
                p.set_u32_at(field::W28, r.exp_cmd_sn);
                p.set_u32_at(field::W32, r.max_cmd_sn);
                p.set_u32_at(field::W36, r.data_sn);
            }
            Repr::AsyncMessage(r) => {
                p.set_opcode(Opcode::AsyncMessage, false);
                p.set_flags(fin);
                p.set_lun(r.lun);
                p.set_itt(RESERVED_TAG);
                p.set_u32_at(field::W24, r.stat_sn);
                p.set_u32_at(field::W28, r.exp_cmd_sn);
                p.set_u32_at(field::W32, r.max_cmd_sn);
                p.set_bytes_at(field::W36, &[r.event, r.vcode]);
                p.set_u16_at(field::W36 + 2, r.param1);
                p.set_u16_at(field::W40, r.param2);
                p.set_u16_at(field::W40 + 2, r.param3);
            }
        }
    }

    /// ExpCmdSN and MaxCmdSN, for PDUs from the target that carry them.
    pub fn cmd_window(&self) -> Option<(u32, u32)> {
        match *self {
            Repr::LoginResponse(r) => Some((r.exp_cmd_sn, r.max_cmd_sn)),
            Repr::TextResponse(r) => Some((r.exp_cmd_sn, r.max_cmd_sn)),
            Repr::ScsiResponse(r) => Some((r.exp_cmd_sn, r.max_cmd_sn)),
            Repr::DataIn(r) => Some((r.exp_cmd_sn, r.max_cmd_sn)),
            Repr::R2t(r) => Some((r.exp_cmd_sn, r.max_cmd_sn)),
            Repr::NopIn(r) => Some((r.exp_cmd_sn, r.max_cmd_sn)),
            Repr::TaskMgmtResponse(r) => Some((r.exp_cmd_sn, r.max_cmd_sn)),
            Repr::LogoutResponse(r) => Some((r.exp_cmd_sn, r.max_cmd_sn)),
            Repr::Reject(r) => Some((r.exp_cmd_sn, r.max_cmd_sn)),
            Repr::AsyncMessage(r) => Some((r.exp_cmd_sn, r.max_cmd_sn)),
            _ => None,
        }
    }
}

fn login_flags(transit: bool, cont: bool, csg: Stage, nsg: Stage) -> u8 {
    let nsg = if transit { nsg as u8 } else { 0 };
    flag(transit, LOGIN_TRANSIT) | flag(cont, LOGIN_CONTINUE) | ((csg as u8) << 2) | nsg
}
