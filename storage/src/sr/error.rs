//! Errors of SR operations.

use core::fmt;

use super::state::Inconsistent;
use super::{SrType, SuperblockError};
use crate::block::BlockError;
use crate::journal::JournalError;

/// Why an SR operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SrError {
    Block(BlockError),
    Journal(JournalError),
    Superblock(SuperblockError),
    /// The device cannot hold the metadata and one cluster.
    DeviceTooSmall {
        bytes: u64,
    },
    /// Cluster size not a power of two in 64 KiB..=4 MiB, or a device block
    /// size that does not divide 4096.
    BadGeometry,
    NoSuchVdi,
    UuidInUse,
    /// An ISO of that name is already in the library.
    NameInUse,
    ReadOnly,
    /// Beyond the VDI's virtual size.
    OutOfRange {
        offset: u64,
        len: u64,
        size: u64,
    },
    /// No free cluster left.
    NoSpace,
    /// The operation is not one this SR type offers.
    WrongSrType(SrType),
    /// Refused before any change: a shrink, a shared parent, a size that is
    /// not a multiple of 512, ...
    Invalid(&'static str),
    /// An intact journal record that does not apply: the SR's metadata is
    /// inconsistent (a foreign writer, or a bug).
    Inconsistent {
        record: usize,
        why: &'static str,
    },
    /// A journal frame that does not decode as a record.
    BadRecord {
        record: usize,
    },
}

impl fmt::Display for SrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SrError::Block(e) => write!(f, "SR I/O: {e}"),
            SrError::Journal(e) => write!(f, "SR metadata: {e}"),
            SrError::Superblock(SuperblockError::NotAnSr) => {
                write!(f, "not an SR (no superblock); format it first")
            }
            SrError::Superblock(SuperblockError::Damaged) => {
                write!(f, "both SR superblock copies are damaged")
            }
            SrError::Superblock(SuperblockError::Version(v)) => {
                write!(f, "SR format version {v} is not supported by this build")
            }
            SrError::DeviceTooSmall { bytes } => {
                write!(f, "a device of {bytes} bytes is too small for an SR")
            }
            SrError::BadGeometry => write!(
                f,
                "cluster size must be a power of two from 64 KiB to 4 MiB, and the block size divide 4096"
            ),
            SrError::NoSuchVdi => write!(f, "no such VDI"),
            SrError::UuidInUse => write!(f, "a VDI with this uuid exists"),
            SrError::NameInUse => write!(f, "an ISO with this name exists"),
            SrError::ReadOnly => write!(f, "the VDI is read-only"),
            SrError::OutOfRange { offset, len, size } => write!(
                f,
                "bytes {offset}..{} are beyond the VDI's {size} bytes",
                offset.saturating_add(*len)
            ),
            SrError::NoSpace => write!(f, "the SR is full"),
            SrError::WrongSrType(t) => {
                write!(f, "a {} SR does not offer this operation", t.name())
            }
            SrError::Invalid(why) => write!(f, "refused: {why}"),
            SrError::Inconsistent { record, why } => {
                write!(f, "SR metadata record {record} is inconsistent: {why}")
            }
            SrError::BadRecord { record } => {
                write!(f, "SR metadata record {record} does not decode")
            }
        }
    }
}

impl core::error::Error for SrError {}

impl From<BlockError> for SrError {
    fn from(e: BlockError) -> Self {
        SrError::Block(e)
    }
}
impl From<JournalError> for SrError {
    fn from(e: JournalError) -> Self {
        SrError::Journal(e)
    }
}
impl From<Inconsistent> for SrError {
    fn from(e: Inconsistent) -> Self {
        SrError::Invalid(e.0)
    }
}
