//! Sense data (SPC-4 §4.5) decoded into actionable errors.

use core::fmt;

use super::{sense_key, status};

/// The useful part of sense data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    pub key: u8,
    pub asc: u8,
    pub ascq: u8,
}

impl Sense {
    /// Parses fixed (0x70/0x71) or descriptor (0x72/0x73) format sense data.
    pub fn parse(data: &[u8]) -> Option<Self> {
        let code = data.first()? & 0x7f;
        match code {
            0x70 | 0x71 => Some(Sense {
                key: data.get(2)? & 0x0f,
                asc: data.get(12).copied().unwrap_or(0),
                ascq: data.get(13).copied().unwrap_or(0),
            }),
            0x72 | 0x73 => Some(Sense {
                key: data.get(1)? & 0x0f,
                asc: data.get(2).copied().unwrap_or(0),
                ascq: data.get(3).copied().unwrap_or(0),
            }),
            _ => None,
        }
    }
}

/// A SCSI command failed at the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScsiError {
    /// CHECK CONDITION with decoded sense data.
    CheckCondition(Sense),
    /// CHECK CONDITION without usable sense data.
    CheckConditionNoSense,
    /// The LU is busy or its task set is full: retry later.
    Busy,
    /// Another initiator holds a reservation on the LU.
    ReservationConflict,
    /// The task was aborted by another initiator or a reset.
    TaskAborted,
    /// Any other status byte.
    Status(u8),
    /// The target returned less data than the command's format needs.
    ShortResponse(&'static str),
}

impl ScsiError {
    pub fn sense_key(&self) -> Option<u8> {
        match self {
            ScsiError::CheckCondition(s) => Some(s.key),
            _ => None,
        }
    }

    /// UNIT ATTENTION: a reset or a change happened; the command may be retried.
    pub fn is_unit_attention(&self) -> bool {
        self.sense_key() == Some(sense_key::UNIT_ATTENTION)
    }

    /// Whether retrying the same command can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ScsiError::Busy | ScsiError::TaskAborted)
            || matches!(
                self.sense_key(),
                Some(sense_key::UNIT_ATTENTION | sense_key::ABORTED_COMMAND)
            )
    }
}

impl fmt::Display for ScsiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScsiError::CheckCondition(s) => {
                let what = match (s.key, s.asc) {
                    (sense_key::NOT_READY, _) => {
                        "the LUN is not ready (starting, offline or being formatted)"
                    }
                    (sense_key::MEDIUM_ERROR, _) => {
                        "the target could not read or write its medium (a failing disk or backing store)"
                    }
                    (sense_key::HARDWARE_ERROR, _) => "the target reports a hardware failure",
                    (sense_key::ILLEGAL_REQUEST, 0x21) => {
                        "the block address is beyond the end of the LUN"
                    }
                    (sense_key::ILLEGAL_REQUEST, 0x25) => "the LUN does not exist on this target",
                    (sense_key::ILLEGAL_REQUEST, 0x20) => {
                        "the target does not support this command"
                    }
                    (sense_key::ILLEGAL_REQUEST, 0x24) => {
                        "the target refused a field of the command"
                    }
                    (sense_key::ILLEGAL_REQUEST, _) => "the target refused the command",
                    (sense_key::UNIT_ATTENTION, _) => {
                        "the LUN was reset or changed (retry the command)"
                    }
                    (sense_key::DATA_PROTECT, _) => "the LUN is write-protected",
                    (sense_key::ABORTED_COMMAND, _) => "the target aborted the command (retry it)",
                    (sense_key::MISCOMPARE, _) => "compare failed",
                    (sense_key::BLANK_CHECK, _) => "blank medium",
                    (sense_key::RECOVERED_ERROR, _) => "recovered error",
                    _ => "the command failed",
                };
                write!(
                    f,
                    "{what} (sense key {:#x}, ASC/ASCQ {:#04x}/{:#04x})",
                    s.key, s.asc, s.ascq
                )
            }
            ScsiError::CheckConditionNoSense => write!(f, "CHECK CONDITION without sense data"),
            ScsiError::Busy => write!(f, "the LUN is busy; retry later"),
            ScsiError::ReservationConflict => {
                write!(f, "another host holds a SCSI reservation on this LUN")
            }
            ScsiError::TaskAborted => write!(f, "the command was aborted; retry it"),
            ScsiError::Status(s) => write!(f, "SCSI status {s:#04x}"),
            ScsiError::ShortResponse(w) => write!(f, "short {w} response from the target"),
        }
    }
}

impl core::error::Error for ScsiError {}

/// Maps a status byte (and sense data) to `Ok` or an error.
pub fn check(status_byte: u8, sense: &[u8]) -> Result<(), ScsiError> {
    match status_byte {
        status::GOOD | status::CONDITION_MET => Ok(()),
        status::CHECK_CONDITION => Err(Sense::parse(sense)
            .map(ScsiError::CheckCondition)
            .unwrap_or(ScsiError::CheckConditionNoSense)),
        status::BUSY | status::TASK_SET_FULL => Err(ScsiError::Busy),
        status::RESERVATION_CONFLICT => Err(ScsiError::ReservationConflict),
        status::TASK_ABORTED => Err(ScsiError::TaskAborted),
        s => Err(ScsiError::Status(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_and_descriptor() {
        let mut fixed = [0u8; 18];
        fixed[0] = 0x70;
        fixed[2] = 0x05;
        fixed[12] = 0x21;
        let e = check(2, &fixed).expect_err("check condition");
        assert_eq!(
            e,
            ScsiError::CheckCondition(Sense {
                key: 5,
                asc: 0x21,
                ascq: 0
            })
        );
        assert!(alloc::format!("{e}").contains("beyond the end"));
        let desc = [0x72, 0x06, 0x29, 0x00];
        assert!(check(2, &desc).expect_err("ua").is_unit_attention());
        assert_eq!(check(2, &[]), Err(ScsiError::CheckConditionNoSense));
        assert_eq!(check(2, &[0x70]), Err(ScsiError::CheckConditionNoSense));
        assert_eq!(check(0x18, &[]), Err(ScsiError::ReservationConflict));
        assert_eq!(check(0, &[]), Ok(()));
    }
}
