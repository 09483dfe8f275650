//! iSCSI work the XenAPI asks for (SR probe, create, scan, VDI create and
//! destroy on an `lvmoiscsi` SR), run without blocking: each request is a
//! [`Job`], one TCP connection to the target and one iSCSI session on it,
//! driven from the appliance's poll loop through a [`Link`] (a smoltcp
//! socket in the image, a non-blocking `std::net` stream hosted).
//!
//! A job logs in (CHAP one-way or mutual), then runs its work: SendTargets,
//! or REPORT LUNS and each LUN's identity, then an SR operation on the LUN
//! with the wanted SCSIid. SR operations are the storage crate's
//! synchronous [`storage::sr::Sr`] code run over a
//! [`storage::staged::StagedDevice`]: blocks it reads are fetched first
//! (READ(16)), and what it writes is sent afterwards (WRITE(16), with
//! SYNCHRONIZE CACHE at each of its flushes), so the poll loop never waits.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use storage::iscsi::client::DiscoveredTarget;
use storage::sr::{SrType, VdiInfo};

pub mod disk;
pub mod fast;
mod job;
#[cfg(any(test, feature = "hosted"))]
pub mod std_link;
#[cfg(test)]
mod tests;

pub(crate) use job::run_op;
pub use job::{Job, RANDOM_BYTES};

/// iSCSI's well-known port.
pub const DEFAULT_PORT: u16 = 3260;
/// How long a target may take to accept the TCP connection.
pub const CONNECT_TIMEOUT_MS: u64 = 10_000;
/// How long a login may take once connected.
pub const LOGIN_TIMEOUT_MS: u64 = 15_000;
/// How long a whole job may take (a format of a large LUN writes little:
/// the metadata only).
pub const JOB_TIMEOUT_MS: u64 = 300_000;

/// Where the target listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Portal {
    pub ip: [u8; 4],
    pub port: u16,
}

/// CHAP credentials as device_config gives them.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub secret: String,
}

impl core::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// What to do on the SR of a LUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SrOp {
    /// Open it if there is one (`SR.probe` with a SCSIid).
    Probe,
    /// Format an empty SR of this type (`Iscsi` for VDIs, `Iso` for an
    /// ISO library) with this uuid.
    Format {
        uuid: [u8; 16],
        sr_type: SrType,
    },
    /// Open and list the VDIs.
    Scan,
    /// A new empty VDI; on an ISO library an ISO to upload, writable and
    /// unlisted until [`SrOp::FinishIso`] (see `storage::sr::Sr::begin_iso`).
    CreateVdi {
        uuid: [u8; 16],
        name: String,
        size: u64,
    },
    DeleteVdi {
        uuid: [u8; 16],
    },
    /// Grows the VDI to `size` bytes (`VDI.resize`).
    ResizeVdi {
        uuid: [u8; 16],
        size: u64,
    },
    /// The upload of an ISO is complete: it becomes read-only and listed.
    FinishIso {
        uuid: [u8; 16],
    },
    /// Check it is an SR and empty, then erase its superblocks (`SR.destroy`).
    Wipe,
    /// Write `data` into the VDI at byte `offset`, then flush (a piece of
    /// `PUT /import_raw_vdi`).
    WriteVdi {
        uuid: [u8; 16],
        offset: u64,
        data: Chunk,
    },
    /// Read `len` bytes of the VDI at byte `offset` (a piece of
    /// `GET /export_raw_vdi`).
    ReadVdi {
        uuid: [u8; 16],
        offset: u64,
        len: u32,
    },
    /// A batch of an attached disk's requests, in order (see [`disk`]):
    /// completions for each; every write is durable when the job ends.
    Io {
        uuid: [u8; 16],
        requests: Vec<IoRequest>,
    },
    /// A snapshot (read-only) or clone (writable) of VDI `of`, sharing its
    /// clusters (`VDI.snapshot`, `VDI.clone`).
    CopyVdi {
        of: [u8; 16],
        new: [u8; 16],
        name: String,
        snapshot: bool,
    },
    /// Writable copies of several VDIs, all or none (`VM.clone` of a VM's
    /// disks): one login, one journal frame on the SR.
    CloneVdis {
        clones: Vec<VdiClone>,
    },
}

/// One copy of an [`SrOp::CloneVdis`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VdiClone {
    pub of: [u8; 16],
    pub new: [u8; 16],
    pub name: String,
}

/// One request of an [`SrOp::Io`] batch, by 512-byte sector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoRequest {
    pub tag: u64,
    pub op: IoOp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoOp {
    Read {
        lba: u64,
        blocks: u32,
    },
    Write {
        lba: u64,
        data: Chunk,
    },
    Flush,
    /// Blocks the guest no longer needs: the SR may reclaim their clusters.
    Discard {
        lba: u64,
        blocks: u64,
    },
}

/// Bytes a job writes: shared, so the job's attempts do not copy them,
/// and shown by length only in logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Chunk(pub alloc::sync::Arc<[u8]>);

impl core::fmt::Debug for Chunk {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "<{} bytes>", self.0.len())
    }
}

/// What a job does once logged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// SendTargets on a discovery session.
    Discover,
    /// Every LUN of the target with its identity.
    Luns,
    /// An operation on the SR of the LUN whose SCSIid is given.
    Sr { scsi_id: String, op: SrOp },
    /// A session held while a disk is attached, serving its fast path
    /// (see [`fast`]) on the LUN whose SCSIid is given. It touches no SR
    /// metadata, so it runs beside the SR jobs of its LUN.
    Disk {
        scsi_id: String,
        path: fast::DiskPath,
    },
    /// An operation on the SR of one of this host's own disks (a local
    /// SR), named as `device_config:device` names it: no target, no
    /// session; the platform runs it on the disk (see `crate::local_disks`).
    Local { device: String, op: SrOp },
}

/// One request: where, who, what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    pub portal: Portal,
    pub initiator: String,
    /// `None` for discovery.
    pub target_iqn: Option<String>,
    pub chap: Option<Credentials>,
    /// The target's credentials for mutual CHAP.
    pub mutual: Option<Credentials>,
    pub work: Work,
}

impl JobSpec {
    /// A job on the SR of host disk `device`: the iSCSI fields are unused.
    pub fn local(device: &str, op: SrOp) -> JobSpec {
        JobSpec {
            portal: Portal {
                ip: [0; 4],
                port: 0,
            },
            initiator: String::new(),
            target_iqn: None,
            chap: None,
            mutual: None,
            work: Work::Local {
                device: String::from(device),
                op,
            },
        }
    }

    /// The SR operation of an SR job, iSCSI or local.
    pub fn sr_op_mut(&mut self) -> Option<&mut SrOp> {
        match &mut self.work {
            Work::Sr { op, .. } | Work::Local { op, .. } => Some(op),
            _ => None,
        }
    }
}

/// A LUN as `SR.probe` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LunEntry {
    pub lun: u16,
    pub vendor: String,
    pub serial: String,
    pub size: u64,
    pub scsi_id: String,
}

/// An SR as a job found or left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrSummary {
    pub uuid: [u8; 16],
    pub sr_type: SrType,
    pub physical_size: u64,
    pub physical_utilisation: u64,
    pub vdis: Vec<VdiInfo>,
}

/// What a job produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutput {
    Targets(Vec<DiscoveredTarget>),
    Luns(Vec<LunEntry>),
    /// The LUN holds no SR of ours (`SR.probe`).
    NoSr,
    Sr(SrSummary),
    /// Bytes read from a VDI.
    Data(Vec<u8>),
    /// The completions of an [`SrOp::Io`] batch, in its order, and where
    /// the VDI's clusters are after it.
    Io {
        done: Vec<storage::channel::DiskCompletion>,
        extents: storage::sr::VdiExtents,
    },
    /// A disk session ended after its disk was detached.
    SessionEnded,
}

/// Why a job failed, sorted the way the XenAPI reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobError {
    /// No TCP connection to the portal.
    Unreachable(String),
    /// The target refused the login, or failed to prove itself (mutual CHAP).
    Login(String),
    /// The session broke or the target answered nonsense.
    Session(String),
    /// No LUN with that SCSIid behind the target (the LUNs there are).
    NoSuchLun(String, Vec<LunEntry>),
    /// The SR on the LUN refused the operation or could not be read.
    Sr(String),
}

impl core::fmt::Display for JobError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            JobError::Unreachable(w) => write!(f, "target unreachable: {w}"),
            JobError::Login(w) => write!(f, "iSCSI login failed: {w}"),
            JobError::Session(w) => write!(f, "iSCSI session failed: {w}"),
            JobError::NoSuchLun(id, _) => write!(f, "no LUN with SCSIid {id} on the target"),
            JobError::Sr(w) => write!(f, "{w}"),
        }
    }
}

/// What a job measured (logged on the serial console).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    /// From connecting to the full-feature phase.
    pub login_ms: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// The SR operation, from its first fetch to its last write (a disk
    /// session: from ready to its end).
    pub sr_ms: u64,
}

/// The state of the TCP connection under a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Connecting,
    Open,
    /// Closed by the peer or reset (or never established).
    Closed,
}

/// A non-blocking byte stream to the target.
pub trait Link {
    fn state(&self) -> LinkState;
    /// Queues what fits; returns how much.
    fn send(&mut self, bytes: &[u8]) -> usize;
    /// Reads what has arrived; 0 when nothing has.
    fn recv(&mut self, buf: &mut [u8]) -> usize;
    /// Starts a graceful close.
    fn close(&mut self);
}

/// Whether a job is a disk's session: it lasts as long as the disk is
/// attached, so it does not count against the jobs run at once.
pub fn is_session(spec: &JobSpec) -> bool {
    matches!(spec.work, Work::Disk { .. })
}

/// Whether two jobs work on the SR of the same LUN.
pub fn same_sr(a: &JobSpec, b: &JobSpec) -> bool {
    match (&a.work, &b.work) {
        (Work::Sr { scsi_id: x, .. }, Work::Sr { scsi_id: y, .. }) => {
            x == y && a.portal == b.portal && a.target_iqn == b.target_iqn
        }
        (Work::Local { device: x, .. }, Work::Local { device: y, .. }) => x == y,
        _ => false,
    }
}

/// A discovery whose CHAP login was refused is asked again without
/// credentials: targets such as tgt keep no accounts for discovery sessions
/// and refuse CHAP there (the login to the target itself still uses them).
pub fn retry_without_chap(spec: &JobSpec, result: &Result<JobOutput, JobError>) -> Option<JobSpec> {
    if !matches!(result, Err(JobError::Login(_)))
        || spec.work != Work::Discover
        || spec.chap.is_none()
    {
        return None;
    }
    log::info!("iscsi: discovery with CHAP refused; asking again without credentials");
    let mut spec = spec.clone();
    spec.chap = None;
    spec.mutual = None;
    Some(spec)
}

/// The figures of a finished job on the serial log.
pub fn report(id: u64, spec: &JobSpec, result: &Result<JobOutput, JobError>, f: Figures) {
    let what = match &spec.work {
        Work::Discover => String::from("discovery"),
        Work::Luns => String::from("LUN listing"),
        Work::Sr { op, .. } => format!("SR {op:?}"),
        Work::Disk { .. } => String::from("disk session"),
        Work::Local { op, .. } => format!("local SR {op:?}"),
    };
    let what: String = what.split(" {").next().unwrap_or("").into();
    match result {
        Ok(_) if matches!(spec.work, Work::Disk { .. }) => {
            log::info!(
                "iscsi: job {id} disk session done: login {} ms, served {} ms, read {} bytes, wrote {} bytes",
                f.login_ms,
                f.sr_ms,
                f.bytes_read,
                f.bytes_written
            );
        }
        Ok(_) => {
            // MB/s with one decimal, in integers (no floats in the image's hot paths).
            let bytes = f.bytes_read + f.bytes_written;
            let tenths = if f.sr_ms == 0 {
                0
            } else {
                bytes * 10_000 / (f.sr_ms * 1_000_000).max(1)
            };
            log::info!(
                "iscsi: job {id} {what} done: login {} ms, read {} bytes, wrote {} bytes, SR work {} ms ({}.{} MB/s)",
                f.login_ms,
                f.bytes_read,
                f.bytes_written,
                f.sr_ms,
                tenths / 10,
                tenths % 10
            );
        }
        Err(e) => log::warn!("iscsi: job {id} {what} failed: {e}"),
    }
}

/// Parses a dotted IPv4 address (targets are named by address: the
/// appliance has no resolver on the storage path).
pub fn parse_ipv4(s: &str) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = s.trim().split('.');
    for slot in &mut out {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *slot = part.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

#[cfg(test)]
mod address_tests {
    use super::*;

    #[test]
    fn ipv4_addresses() {
        assert_eq!(parse_ipv4("10.0.2.2"), Some([10, 0, 2, 2]));
        assert_eq!(parse_ipv4(" 192.168.1.254 "), Some([192, 168, 1, 254]));
        for bad in [
            "",
            "10.0.2",
            "10.0.2.2.1",
            "256.1.1.1",
            "a.b.c.d",
            "10..2.2",
            "target.example",
        ] {
            assert_eq!(parse_ipv4(bad), None, "{bad}");
        }
    }
}
