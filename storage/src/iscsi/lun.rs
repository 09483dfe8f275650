//! An iSCSI LUN as a [`BlockDevice`], over a [`Client`].

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use embedded_io::{Read, Write};

use super::client::{Client, ClientError, Clock};
use super::session::{Command, DataTransfer, TaskTag};
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
}

impl fmt::Display for LunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LunError::Client(e) => write!(f, "{e}"),
            LunError::Scsi(e) => write!(f, "{e}"),
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
pub fn scsi_command<S: Read + Write, C: Clock>(
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
}

/// INQUIRY (standard, VPD 0x80/0x83) and READ CAPACITY(16) of one LUN.
pub fn lun_info<S: Read + Write, C: Clock>(
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
    Ok(LunInfo {
        lun,
        inquiry,
        capacity,
        serial,
        scsi_id,
    })
}

/// REPORT LUNS, decoded to LUN numbers.
pub fn report_luns<S: Read + Write, C: Clock>(
    client: &mut Client<S, C>,
) -> Result<Vec<u16>, LunError> {
    let len = 8 + 8 * 256;
    let data = scsi_command(client, 0, scsi::report_luns(len), DataTransfer::Read(len))?;
    Ok(scsi::parse_report_luns(&data)?
        .into_iter()
        .map(scsi::lun_from_wire)
        .collect())
}

/// A LUN opened for block I/O.
#[derive(Debug)]
pub struct IscsiLun<S, C> {
    client: Client<S, C>,
    lun: u64,
    capacity: Capacity,
    last_error: Option<LunError>,
}

impl<S: Read + Write, C: Clock> IscsiLun<S, C> {
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
        Ok(IscsiLun {
            client,
            lun: wire,
            capacity,
            last_error: None,
        })
    }

    pub fn capacity(&self) -> Capacity {
        self.capacity
    }

    pub fn client(&mut self) -> &mut Client<S, C> {
        &mut self.client
    }

    pub fn into_client(self) -> Client<S, C> {
        self.client
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
        let chunk = (MAX_TRANSFER / bs).max(1) * bs;
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

impl<S: Read + Write, C: Clock> BlockDevice for IscsiLun<S, C> {
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
        let mut short = false;
        let r = self.pipelined(
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
        );
        match r {
            Ok(()) if !short => Ok(()),
            Ok(()) => Err(self.fail(LunError::Scsi(ScsiError::ShortResponse("READ(16)")))),
            Err(e) => Err(self.fail(e)),
        }
    }

    fn write_blocks(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        check_request(self, lba, buf.len())?;
        let bs = self.capacity.block_size as usize;
        let lun = self.lun;
        let r = self.pipelined(
            lba,
            buf.len(),
            |l, at, n| Command {
                lun,
                cdb: scsi::write_16(l, (n / bs) as u32),
                transfer: DataTransfer::Write(buf[at..at + n].to_vec()),
            },
            |_, _| {},
        );
        r.map_err(|e| self.fail(e))
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        let lun = self.lun;
        scsi_command(
            &mut self.client,
            lun,
            scsi::synchronize_cache_16(),
            DataTransfer::None,
        )
        .map(|_| ())
        .map_err(|e| self.fail(e))
    }
}
