//! An iSCSI LUN as a [`BlockDevice`], over a [`Client`].

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::client::{Client, ClientError, Clock, Transport};
use super::session::{Command, CommandError, DataTransfer, TaskTag};
use crate::block::{BlockDevice, BlockError, check_request};
use crate::scsi::{self, Capacity, Inquiry, ScsiError};

/// Largest transfer of one READ(16)/WRITE(16) we issue.
pub const MAX_TRANSFER: usize = 1024 * 1024;
/// Commands of one large request kept in flight at once.
pub const PIPELINE_DEPTH: usize = 8;
/// How often a UNIT ATTENTION (reset, power on) is retried.
const UNIT_ATTENTION_RETRIES: usize = 3;

#[derive(Debug)]
pub enum LunError {
    Client(ClientError),
    Scsi(ScsiError),
    /// The LU does not offer this operation.
    Unsupported(&'static str),
}

impl fmt::Display for LunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LunError::Client(e) => write!(f, "{e}"),
            LunError::Scsi(e) => write!(f, "{e}"),
            LunError::Unsupported(what) => write!(f, "the LUN does not support {what}"),
        }
    }
}

impl core::error::Error for LunError {}

impl From<ClientError> for LunError {
    fn from(e: ClientError) -> Self {
        LunError::Client(e)
    }
}
impl From<ScsiError> for LunError {
    fn from(e: ScsiError) -> Self {
        LunError::Scsi(e)
    }
}

/// Runs one SCSI command, retrying UNIT ATTENTION; returns the data read.
pub fn scsi_command<S: Transport, C: Clock>(
    client: &mut Client<S, C>,
    lun: u64,
    cdb: scsi::Cdb,
    transfer: DataTransfer,
) -> Result<Vec<u8>, LunError> {
    let mut attempt = 0;
    loop {
        let r = client.execute(Command {
            lun,
            cdb,
            transfer: transfer.clone(),
        })?;
        match scsi::check(r.status, &r.sense) {
            Ok(()) => return Ok(r.data),
            Err(e) if e.is_unit_attention() && attempt < UNIT_ATTENTION_RETRIES => attempt += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Identity of a LUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LunInfo {
    pub lun: u16,
    pub inquiry: Inquiry,
    /// `None` for LUNs without a capacity (e.g. tgt's controller LUN 0).
    pub capacity: Option<Capacity>,
    pub serial: Option<String>,
    pub scsi_id: Option<String>,
    /// `None` when the LU has no Block Limits page.
    pub block_limits: Option<scsi::BlockLimits>,
}

/// INQUIRY (standard, VPD 0x80/0x83) and READ CAPACITY(16) of one LUN.
pub fn lun_info<S: Transport, C: Clock>(
    client: &mut Client<S, C>,
    lun: u16,
) -> Result<LunInfo, LunError> {
    let wire = scsi::lun_to_wire(lun);
    let data = scsi_command(
        client,
        wire,
        scsi::inquiry(None, 96),
        DataTransfer::Read(96),
    )?;
    let inquiry = scsi::parse_inquiry(&data)?;
    let capacity = scsi_command(
        client,
        wire,
        scsi::read_capacity_16(),
        DataTransfer::Read(scsi::READ_CAPACITY_16_LEN),
    )
    .ok()
    .and_then(|d| scsi::parse_read_capacity_16(&d).ok());
    let serial = scsi_command(
        client,
        wire,
        scsi::inquiry(Some(scsi::vpd::UNIT_SERIAL_NUMBER), 255),
        DataTransfer::Read(255),
    )
    .ok()
    .and_then(|d| scsi::parse_unit_serial(&d).ok());
    let scsi_id = scsi_command(
        client,
        wire,
        scsi::inquiry(Some(scsi::vpd::DEVICE_IDENTIFICATION), 1024),
        DataTransfer::Read(1024),
    )
    .ok()
    .and_then(|d| scsi::parse_device_identification(&d).ok())
    .and_then(|d| scsi::scsi_id(&d));
    let block_limits = block_limits(client, wire);
    Ok(LunInfo {
        lun,
        inquiry,
        capacity,
        serial,
        scsi_id,
        block_limits,
    })
}

/// The Block Limits VPD page, if the LU has one.
fn block_limits<S: Transport, C: Clock>(
    client: &mut Client<S, C>,
    wire: u64,
) -> Option<scsi::BlockLimits> {
    scsi_command(
        client,
        wire,
        scsi::inquiry(Some(scsi::vpd::BLOCK_LIMITS), 64),
        DataTransfer::Read(64),
    )
    .ok()
    .and_then(|d| scsi::parse_block_limits(&d).ok())
}

/// REPORT LUNS, decoded to LUN numbers.
pub fn report_luns<S: Transport, C: Clock>(
    client: &mut Client<S, C>,
) -> Result<Vec<u16>, LunError> {
    let len = 8 + 8 * 256;
    let data = scsi_command(client, 0, scsi::report_luns(len), DataTransfer::Read(len))?;
    Ok(scsi::parse_report_luns(&data)?
        .into_iter()
        .map(scsi::lun_from_wire)
        .collect())
}

/// Why a reconnect attempt produced no client.
#[derive(Debug)]
pub enum ReconnectError {
    /// Try again (the target may still be restarting).
    Retry(ClientError),
    /// The replacement timeout is over: report the failure upwards.
    GiveUp(ClientError),
}

/// Makes a new logged-in client for the same target with the same ISID,
/// so the target reinstates the session (ERL 0, RFC 7143 §6.3.5) and
/// drops the old one's tasks. The implementation waits before connecting
/// (at least `time2wait_ms` the first time, then backing off) and gives up
/// after its replacement timeout.
pub trait Reconnect<S, C> {
    fn reconnect(
        &mut self,
        attempt: u32,
        time2wait_ms: u64,
    ) -> Result<Client<S, C>, ReconnectError>;
}

/// How often one block request may reinstate the session.
const RECOVERIES_PER_REQUEST: usize = 5;
/// How often a block request is resent after a retryable command failure.
const COMMAND_RETRIES: usize = 5;

/// Whether resending the same command can succeed.
pub fn is_retryable(e: &LunError) -> bool {
    match e {
        LunError::Client(ClientError::Command(CommandError::Aborted)) => true,
        LunError::Scsi(s) => s.is_retryable(),
        _ => false,
    }
}

/// Whether an error means the connection (not the command) failed.
pub fn is_connection_failure(e: &LunError) -> bool {
    matches!(
        e,
        LunError::Client(
            ClientError::Io(_) | ClientError::ConnectionClosed | ClientError::Session(_)
        )
    )
}

/// A LUN opened for block I/O; with a [`Reconnect`], connection failures
/// are recovered by session reinstatement and the operation is retried,
/// so the caller sees no error and no acknowledged write is lost.
pub struct IscsiLun<S, C> {
    client: Client<S, C>,
    lun: u64,
    capacity: Capacity,
    /// Bytes per READ(16)/WRITE(16): [`MAX_TRANSFER`] or the LU's limit.
    max_transfer: usize,
    /// Blocks one UNMAP may release (the LU's limit, else u32::MAX).
    max_unmap: u32,
    last_error: Option<LunError>,
    reconnect: Option<Box<dyn Reconnect<S, C> + Send>>,
    recoveries: u32,
}

impl<S, C> fmt::Debug for IscsiLun<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IscsiLun")
            .field("lun", &self.lun)
            .field("capacity", &self.capacity)
            .field("recoveries", &self.recoveries)
            .finish_non_exhaustive()
    }
}

impl<S: Transport, C: Clock> IscsiLun<S, C> {
    /// Reads the capacity of `lun` on a logged-in client.
    pub fn open(mut client: Client<S, C>, lun: u16) -> Result<Self, LunError> {
        let wire = scsi::lun_to_wire(lun);
        let data = scsi_command(
            &mut client,
            wire,
            scsi::read_capacity_16(),
            DataTransfer::Read(scsi::READ_CAPACITY_16_LEN),
        )?;
        let capacity = scsi::parse_read_capacity_16(&data)?;
        let bs = capacity.block_size as usize;
        let limits = block_limits(&mut client, wire);
        let max_unmap = limits
            .map(|l| l.max_unmap_lba_count)
            .filter(|&n| n > 0)
            .unwrap_or(u32::MAX);
        let limit = limits
            .map(|l| l.max_transfer_blocks as usize)
            .filter(|&b| b > 0)
            .map_or(MAX_TRANSFER, |b| b.saturating_mul(bs).min(MAX_TRANSFER));
        Ok(IscsiLun {
            client,
            lun: wire,
            capacity,
            max_transfer: (limit / bs).max(1) * bs,
            max_unmap,
            last_error: None,
            reconnect: None,
            recoveries: 0,
        })
    }

    /// Enables ERL-0 session recovery through `r`.
    pub fn with_reconnect(mut self, r: Box<dyn Reconnect<S, C> + Send>) -> Self {
        self.reconnect = Some(r);
        self
    }

    /// How many times the session was reinstated.
    pub fn recoveries(&self) -> u32 {
        self.recoveries
    }

    /// Replaces the failed connection with a reinstated session.
    fn recover(&mut self, cause: &LunError) -> Result<(), LunError> {
        let time2wait_ms = u64::from(self.client.session().params().default_time2wait) * 1000;
        let Some(r) = self.reconnect.as_mut() else {
            return Err(LunError::Client(ClientError::ConnectionClosed));
        };
        log::warn!("iSCSI connection failed ({cause}); reinstating the session");
        let mut attempt = 0;
        loop {
            match r.reconnect(attempt, time2wait_ms) {
                Ok(mut c) => {
                    // Absorbs the UNIT ATTENTION a new I_T nexus reports.
                    match scsi_command(
                        &mut c,
                        self.lun,
                        scsi::test_unit_ready(),
                        DataTransfer::None,
                    ) {
                        Ok(_) => {
                            self.client = c;
                            self.recoveries += 1;
                            log::info!("iSCSI session reinstated after {} attempt(s)", attempt + 1);
                            return Ok(());
                        }
                        Err(e) if is_connection_failure(&e) => {}
                        Err(e) => return Err(e),
                    }
                }
                Err(ReconnectError::Retry(_)) => {}
                Err(ReconnectError::GiveUp(e)) => return Err(LunError::Client(e)),
            }
            attempt += 1;
        }
    }

    /// Runs `op`, recovering the session and retrying on connection failures.
    fn with_recovery(
        &mut self,
        mut op: impl FnMut(&mut Self) -> Result<(), LunError>,
    ) -> Result<(), LunError> {
        let mut retries = 0;
        let mut recoveries = 0;
        loop {
            match op(self) {
                // Bounded: a target that breaks the protocol the same way
                // after every reinstatement must not keep us looping.
                Err(e)
                    if is_connection_failure(&e)
                        && self.reconnect.is_some()
                        && recoveries < RECOVERIES_PER_REQUEST =>
                {
                    recoveries += 1;
                    self.recover(&e)?;
                }
                // Aborted by timeout escalation, BUSY, UNIT ATTENTION...:
                // the same request can succeed when sent again.
                Err(e) if is_retryable(&e) && retries < COMMAND_RETRIES => {
                    log::warn!("iSCSI command failed ({e}); retrying");
                    retries += 1;
                }
                r => return r,
            }
        }
    }

    pub fn capacity(&self) -> Capacity {
        self.capacity
    }

    /// Largest transfer of one command (the LU's Block Limits, at most [`MAX_TRANSFER`]).
    pub fn max_transfer_bytes(&self) -> usize {
        self.max_transfer
    }

    pub fn client(&mut self) -> &mut Client<S, C> {
        &mut self.client
    }

    pub fn into_client(self) -> Client<S, C> {
        self.client
    }

    /// Releases `blocks` blocks from `lba` on a thin-provisioned LU
    /// (UNMAP); later reads of them return zeros on most targets.
    pub fn unmap(&mut self, lba: u64, blocks: u64) -> Result<(), LunError> {
        if !self.capacity.thin_provisioned {
            return Err(LunError::Unsupported("UNMAP (it is not thin-provisioned)"));
        }
        let end = lba
            .checked_add(blocks)
            .filter(|&e| e <= self.capacity.blocks())
            .ok_or(LunError::Scsi(ScsiError::CheckCondition(scsi::Sense {
                key: scsi::sense_key::ILLEGAL_REQUEST,
                asc: 0x21,
                ascq: 0,
            })))?;
        // One descriptor per command, within the LU's UNMAP limit.
        let lun = self.lun;
        let mut at = lba;
        while at < end {
            let n = (end - at).min(u64::from(self.max_unmap)) as u32;
            let list = scsi::unmap_parameter_list(&[(at, n)]);
            let cdb = scsi::unmap(list.len() as u16);
            self.with_recovery(|me| {
                scsi_command(&mut me.client, lun, cdb, DataTransfer::Write(list.clone()))
                    .map(|_| ())
            })?;
            at += u64::from(n);
        }
        Ok(())
    }

    /// The detailed cause of the last `BlockError::Io`.
    pub fn last_error(&self) -> Option<&LunError> {
        self.last_error.as_ref()
    }

    fn fail(&mut self, e: LunError) -> BlockError {
        log::warn!("iSCSI LUN I/O failed: {e}");
        self.last_error = Some(e);
        BlockError::Io
    }

    /// Runs the chunks of one request with up to [`PIPELINE_DEPTH`] in flight.
    fn pipelined(
        &mut self,
        lba: u64,
        len: usize,
        mut make: impl FnMut(u64, usize, usize) -> Command,
        mut done: impl FnMut(usize, Vec<u8>),
    ) -> Result<(), LunError> {
        let bs = self.capacity.block_size as usize;
        let chunk = self.max_transfer;
        let mut inflight: VecDeque<(TaskTag, usize)> = VecDeque::new();
        let mut off = 0;
        while off < len || !inflight.is_empty() {
            while off < len && inflight.len() < PIPELINE_DEPTH {
                let n = chunk.min(len - off);
                let cmd = make(lba + (off / bs) as u64, off, n);
                inflight.push_back((self.client.submit(cmd)?, off));
                off += n;
            }
            if let Some((tag, at)) = inflight.pop_front() {
                let r = self.client.wait(tag)?;
                scsi::check(r.status, &r.sense)?;
                done(at, r.data);
            }
        }
        Ok(())
    }
}

impl<S: Transport, C: Clock> BlockDevice for IscsiLun<S, C> {
    fn block_size(&self) -> u32 {
        self.capacity.block_size
    }

    fn num_blocks(&self) -> u64 {
        self.capacity.blocks()
    }

    fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        check_request(self, lba, buf.len())?;
        let bs = self.capacity.block_size as usize;
        let lun = self.lun;
        let len = buf.len();
        let r = self.with_recovery(|me| {
            let mut short = false;
            me.pipelined(
                lba,
                len,
                |l, _, n| Command {
                    lun,
                    cdb: scsi::read_16(l, (n / bs) as u32),
                    transfer: DataTransfer::Read(n as u32),
                },
                |at, data| {
                    let end = (at + data.len()).min(len);
                    short |= end - at != data.len() || data.is_empty();
                    buf[at..end].copy_from_slice(&data[..end - at]);
                },
            )?;
            if short {
                return Err(LunError::Scsi(ScsiError::ShortResponse("READ(16)")));
            }
            Ok(())
        });
        r.map_err(|e| self.fail(e))
    }

    fn write_blocks(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        check_request(self, lba, buf.len())?;
        let bs = self.capacity.block_size as usize;
        let lun = self.lun;
        let r = self.with_recovery(|me| {
            me.pipelined(
                lba,
                buf.len(),
                |l, at, n| Command {
                    lun,
                    cdb: scsi::write_16(l, (n / bs) as u32),
                    transfer: DataTransfer::Write(buf[at..at + n].to_vec()),
                },
                |_, _| {},
            )
        });
        r.map_err(|e| self.fail(e))
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        let lun = self.lun;
        let r = self.with_recovery(|me| {
            scsi_command(
                &mut me.client,
                lun,
                scsi::synchronize_cache_16(),
                DataTransfer::None,
            )
            .map(|_| ())
        });
        r.map_err(|e| self.fail(e))
    }
}

#[cfg(test)]
mod tests;
