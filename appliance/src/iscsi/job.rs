//! One iSCSI job: connect, log in, run its [`Work`], log out.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use storage::BlockDevice;
use storage::iscsi::chap::CHALLENGE_LEN;
use storage::iscsi::client::{ClientError, parse_send_targets};
use storage::iscsi::conn::Connection;
use storage::iscsi::login::{Chap, ChapCredentials, LoginConfig};
use storage::iscsi::params::Offer;
use storage::iscsi::session::{Command, CommandResult, DataTransfer, Event, Timers};
use storage::scsi;
use storage::sr::{DEFAULT_CLUSTER_SIZE, Sr, SrError, SrType};
use storage::staged::{BlockCache, Staged, StagedDevice};

use super::fast::{CommandOf, DiskRun};
use super::{
    CONNECT_TIMEOUT_MS, Figures, JOB_TIMEOUT_MS, JobError, JobOutput, JobSpec, LOGIN_TIMEOUT_MS,
    Link, LinkState, LunEntry, SrOp, SrSummary, Work,
};

/// Random bytes a job needs: a CHAP challenge and its identifier, and the ISID.
pub const RANDOM_BYTES: usize = CHALLENGE_LEN + 1 + 6;
/// Blocks fetched at once when an SR operation reads what it lacks (1 MiB
/// of 512-byte blocks: a journal is read in a few round trips).
const FETCH_BYTES: u64 = 1024 * 1024;
/// Attempts of one SR operation at most (each after a fetch).
const MAX_ATTEMPTS: u32 = 4096;
/// How often a command that met a UNIT ATTENTION is sent again.
const UNIT_ATTENTION_RETRIES: u8 = 3;
/// How long a logout may take before the connection is just closed.
const LOGOUT_GRACE_MS: u64 = 2000;
/// Bytes taken from the link per read.
const RECEIVE_CHUNK: usize = 32 * 1024;
/// Writes in flight at most while an SR operation's changes are sent.
const WRITES_IN_FLIGHT: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    Working,
    Closing { since: u64 },
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    SendTargets,
    ReportLuns,
    Inquiry(usize),
    Capacity(usize),
    Serial(usize),
    DeviceId(usize),
    Fetch {
        lba: u64,
    },
    Write,
    Sync,
    /// A command of a disk session's request.
    Disk(CommandOf),
}

#[derive(Debug)]
struct Pending {
    command: Option<Command>,
    purpose: Purpose,
    retries: u8,
}

#[derive(Debug, Default)]
struct LunProbe {
    lun: u16,
    inquiry: Option<scsi::Inquiry>,
    capacity: Option<scsi::Capacity>,
    serial: Option<String>,
    scsi_id: Option<String>,
}

#[derive(Debug)]
enum SrStage {
    Attempt,
    Fetching,
    Draining {
        log: Vec<Staged>,
        next: usize,
        outcome: Result<JobOutput, String>,
    },
}

#[derive(Debug)]
struct SrRun {
    lun: u64,
    block_size: u32,
    blocks: u64,
    cache: BlockCache,
    stage: SrStage,
    attempts: u32,
    started: u64,
}

/// A job in progress.
#[derive(Debug)]
pub struct Job {
    spec: JobSpec,
    started: u64,
    conn: Connection,
    state: State,
    work_started: bool,
    pending: BTreeMap<u32, Pending>,
    luns: Vec<LunProbe>,
    sr: Option<SrRun>,
    /// A disk session's serving side, once its LUN is found.
    disk: Option<DiskRun>,
    /// When the disk session got ready (ms).
    disk_since: Option<u64>,
    result: Option<Result<JobOutput, JobError>>,
    reported: bool,
    logged_out: bool,
    figures: Figures,
    login_logged: bool,
    /// The receive buffer, kept between polls.
    rx: Vec<u8>,
}

impl Job {
    /// Prepares the login; `random` holds [`RANDOM_BYTES`] random bytes.
    pub fn new(spec: JobSpec, now: u64, random: &[u8]) -> Result<Job, JobError> {
        if random.len() < RANDOM_BYTES {
            return Err(JobError::Login(String::from("not enough random bytes")));
        }
        let (challenge, isid_bytes) = random.split_at(CHALLENGE_LEN + 1);
        let mut isid = [0u8; 6];
        isid.copy_from_slice(&isid_bytes[..6]);
        // ISID of type "random" (RFC 7143 §10.12.5).
        isid[0] = 0xc0 | (isid[0] & 0x3f);
        let chap = spec.chap.as_ref().map(|c| Chap {
            initiator: ChapCredentials {
                user: c.user.clone(),
                secret: c.secret.as_bytes().to_vec(),
            },
            target: spec.mutual.as_ref().map(|m| ChapCredentials {
                user: m.user.clone(),
                secret: m.secret.as_bytes().to_vec(),
            }),
            random: challenge.to_vec(),
        });
        let cfg = LoginConfig {
            initiator_name: spec.initiator.clone(),
            target_name: match spec.work {
                Work::Discover => None,
                _ => spec.target_iqn.clone(),
            },
            isid,
            tsih: 0,
            cid: 0,
            initial_cmd_sn: 1,
            chap,
            offer: Offer::default(),
        };
        let conn = Connection::start(
            cfg,
            Timers::default(),
            now,
            CONNECT_TIMEOUT_MS + LOGIN_TIMEOUT_MS,
        )
        .map_err(|e| JobError::Login(e.to_string()))?;
        Ok(Job {
            spec,
            started: now,
            conn,
            state: State::Connecting,
            work_started: false,
            pending: BTreeMap::new(),
            luns: Vec::new(),
            sr: None,
            disk: None,
            disk_since: None,
            result: None,
            reported: false,
            logged_out: false,
            figures: Figures::default(),
            login_logged: false,
            rx: Vec::new(),
        })
    }

    pub fn spec(&self) -> &JobSpec {
        &self.spec
    }

    pub fn figures(&self) -> Figures {
        self.figures
    }

    /// The result, once (the connection may still be closing).
    pub fn take_result(&mut self) -> Option<Result<JobOutput, JobError>> {
        if self.reported {
            return None;
        }
        let r = self.result.clone()?;
        self.reported = true;
        Some(r)
    }

    /// Whether the job is over and its connection closed.
    pub fn closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Ends the job from outside (its connection is gone): it fails with
    /// `e` unless it has a result already.
    pub fn abort(&mut self, e: JobError) {
        self.fail(e);
        self.state = State::Closed;
    }

    fn fail(&mut self, e: JobError) {
        if let Some(run) = &mut self.disk {
            // What the session had not served is served again elsewhere.
            run.release();
        }
        if self.result.is_none() {
            self.result = Some(Err(e));
        }
    }

    fn finish(&mut self, r: Result<JobOutput, JobError>) {
        if self.result.is_none() {
            self.result = Some(r);
        }
    }

    /// Moves the job forward over `link`; returns when to poll again (ms).
    pub fn poll(&mut self, link: &mut dyn Link, now: u64) -> Option<u64> {
        if self.state == State::Closed {
            return None;
        }
        let session = matches!(self.spec.work, Work::Disk { .. });
        if self.result.is_none() && !session && now.saturating_sub(self.started) > JOB_TIMEOUT_MS {
            self.fail(JobError::Session(format!(
                "the job did not finish within {} s",
                JOB_TIMEOUT_MS / 1000
            )));
        }
        // What arrived first: a target that refuses a login answers, then closes.
        let mut buf = core::mem::take(&mut self.rx);
        buf.resize(RECEIVE_CHUNK, 0);
        loop {
            let n = link.recv(&mut buf);
            if n == 0 {
                break;
            }
            if let Err(e) = self.conn.receive(&buf[..n], now) {
                let e = self.client_error(e);
                self.fail(e);
                break;
            }
        }
        self.rx = buf;
        match link.state() {
            LinkState::Connecting => {
                if now.saturating_sub(self.started) > CONNECT_TIMEOUT_MS {
                    self.fail(JobError::Unreachable(format!(
                        "no TCP connection to {} within {} s",
                        self.portal(),
                        CONNECT_TIMEOUT_MS / 1000
                    )));
                    link.close();
                    self.state = State::Closed;
                    return None;
                }
                return Some(self.started + CONNECT_TIMEOUT_MS);
            }
            LinkState::Closed => {
                let e = match self.state {
                    State::Connecting => JobError::Unreachable(format!(
                        "{} refused the TCP connection",
                        self.portal()
                    )),
                    _ if !self.conn.logged_in() => JobError::Login(String::from(
                        "the target closed the connection during the login",
                    )),
                    _ => JobError::Session(String::from("the target closed the connection")),
                };
                self.fail(e);
                self.state = State::Closed;
                return None;
            }
            LinkState::Open => {
                if self.state == State::Connecting {
                    self.state = State::Working;
                }
            }
        }
        let mut due = match self.conn.poll(now) {
            Ok(d) => d,
            Err(e) => {
                let e = self.client_error(e);
                self.fail(e);
                None
            }
        };
        if self.conn.logged_in() {
            if !self.login_logged {
                self.login_logged = true;
                let at = self.conn.logged_in_at().unwrap_or(now);
                self.figures.login_ms = at.saturating_sub(self.started);
                log::info!(
                    "iscsi: logged in to {} at {} in {} ms ({})",
                    self.spec.target_iqn.as_deref().unwrap_or("discovery"),
                    self.portal(),
                    self.figures.login_ms,
                    match (&self.spec.chap, &self.spec.mutual) {
                        (Some(_), Some(_)) => "mutual CHAP",
                        (Some(_), None) => "CHAP",
                        _ => "no authentication",
                    }
                );
            }
            if let Err(e) = self.advance(now) {
                self.fail(e);
            }
        }
        // Send what the work queued.
        loop {
            let tx = self.conn.transmit();
            if tx.is_empty() {
                break;
            }
            let n = link.send(tx);
            if n == 0 {
                break;
            }
            self.conn.transmitted(n);
        }
        match self.state {
            State::Working if self.result.is_some() => {
                let logout = self
                    .conn
                    .session()
                    .map(|s| s.logout().is_ok())
                    .unwrap_or(false);
                if logout {
                    self.state = State::Closing { since: now };
                    let tx = self.conn.transmit();
                    let n = link.send(tx);
                    self.conn.transmitted(n);
                    due = Some(now + LOGOUT_GRACE_MS);
                } else {
                    link.close();
                    self.state = State::Closed;
                    return None;
                }
            }
            State::Closing { since } => {
                if self.logged_out || now.saturating_sub(since) > LOGOUT_GRACE_MS {
                    link.close();
                    self.state = State::Closed;
                    return None;
                }
                due = Some(since + LOGOUT_GRACE_MS);
            }
            _ => {}
        }
        if !self.conn.transmit().is_empty() {
            return Some(now);
        }
        due
    }

    fn portal(&self) -> String {
        let [a, b, c, d] = self.spec.portal.ip;
        format!("{a}.{b}.{c}.{d}:{}", self.spec.portal.port)
    }

    fn client_error(&self, e: ClientError) -> JobError {
        match e {
            ClientError::Login(e) => JobError::Login(e.to_string()),
            ClientError::Io(embedded_io::ErrorKind::TimedOut) if !self.conn.logged_in() => {
                JobError::Login(String::from(
                    "the target did not complete the login in time",
                ))
            }
            e => JobError::Session(e.to_string()),
        }
    }

    fn submit(&mut self, command: Command, purpose: Purpose) -> Result<(), JobError> {
        let session = self
            .conn
            .session()
            .ok_or_else(|| JobError::Session(String::from("not logged in")))?;
        let tag = session
            .submit(command.clone())
            .map_err(|e| JobError::Session(e.to_string()))?;
        self.pending.insert(
            tag.0,
            Pending {
                command: Some(command),
                purpose,
                retries: 0,
            },
        );
        Ok(())
    }

    fn scsi(
        &mut self,
        lun: u64,
        cdb: scsi::Cdb,
        transfer: DataTransfer,
        purpose: Purpose,
    ) -> Result<(), JobError> {
        self.submit(Command { lun, cdb, transfer }, purpose)
    }

    fn advance(&mut self, now: u64) -> Result<(), JobError> {
        if self.result.is_some() {
            // Only the logout is awaited now.
            if let Some(s) = self.conn.session() {
                while let Some(ev) = s.next_event() {
                    if matches!(ev, Event::LoggedOut { .. }) {
                        self.logged_out = true;
                    }
                }
            }
            return Ok(());
        }
        if !self.work_started {
            self.work_started = true;
            match self.spec.work {
                Work::Discover => {
                    let session = self
                        .conn
                        .session()
                        .ok_or_else(|| JobError::Session(String::from("not logged in")))?;
                    let tag = session
                        .send_targets()
                        .map_err(|e| JobError::Session(e.to_string()))?;
                    self.pending.insert(
                        tag.0,
                        Pending {
                            command: None,
                            purpose: Purpose::SendTargets,
                            retries: 0,
                        },
                    );
                }
                Work::Local { .. } => {
                    return Err(JobError::Session(String::from(
                        "a job on a host disk was sent to an iSCSI target",
                    )));
                }
                Work::Luns | Work::Sr { .. } | Work::Disk { .. } => {
                    let len = 8 + 8 * 256;
                    self.scsi(
                        0,
                        scsi::report_luns(len),
                        DataTransfer::Read(len),
                        Purpose::ReportLuns,
                    )?;
                }
            }
        }
        let mut events = Vec::new();
        if let Some(s) = self.conn.session() {
            while let Some(ev) = s.next_event() {
                events.push(ev);
            }
        }
        for ev in events {
            self.event(ev, now)?;
            if self.result.is_some() {
                return Ok(());
            }
        }
        self.serve_disk(now);
        if let Some(run) = &self.sr
            && matches!(run.stage, SrStage::Attempt)
        {
            self.attempt(now)?;
        }
        if self
            .sr
            .as_ref()
            .is_some_and(|r| matches!(r.stage, SrStage::Draining { .. }))
        {
            self.drain(now)?;
        }
        Ok(())
    }

    fn event(&mut self, ev: Event, now: u64) -> Result<(), JobError> {
        match ev {
            Event::Text { tag, text } => {
                if self.pending.remove(&tag.0).is_some() {
                    let targets =
                        parse_send_targets(&text).map_err(|e| JobError::Session(e.to_string()))?;
                    self.finish(Ok(JobOutput::Targets(targets)));
                }
                Ok(())
            }
            Event::Command { tag, result } => {
                let Some(mut pending) = self.pending.remove(&tag.0) else {
                    return Ok(());
                };
                let r = match (result, pending.purpose) {
                    (Ok(r), _) => r,
                    (Err(e), Purpose::Disk(of)) => {
                        log::warn!("iscsi: a disk command failed: {e}");
                        self.disk_done(of, Err(()));
                        return Ok(());
                    }
                    (Err(e), _) => return Err(JobError::Session(e.to_string())),
                };
                match scsi::check(r.status, &r.sense) {
                    Ok(()) => self.completed(pending.purpose, r, now),
                    Err(e) if e.is_unit_attention() && pending.retries < UNIT_ATTENTION_RETRIES => {
                        let command = pending.command.take().ok_or_else(|| {
                            JobError::Session(String::from("a retried command was lost"))
                        })?;
                        let session = self
                            .conn
                            .session()
                            .ok_or_else(|| JobError::Session(String::from("not logged in")))?;
                        let tag = session
                            .submit(command.clone())
                            .map_err(|e| JobError::Session(e.to_string()))?;
                        pending.command = Some(command);
                        pending.retries += 1;
                        self.pending.insert(tag.0, pending);
                        Ok(())
                    }
                    Err(e) => match pending.purpose {
                        Purpose::Disk(of) => {
                            log::warn!("iscsi: a disk command failed: {e}");
                            self.disk_done(of, Err(()));
                            Ok(())
                        }
                        // A LUN without one of these pages is still listed.
                        Purpose::Capacity(_) | Purpose::Serial(_) | Purpose::DeviceId(_) => {
                            self.luns_done_check()
                        }
                        _ => Err(JobError::Session(format!("SCSI command failed: {e}"))),
                    },
                }
            }
            Event::LoggedOut { .. } => {
                self.logged_out = true;
                Ok(())
            }
            Event::TaskManagement { .. } | Event::Async(_) => Ok(()),
        }
    }

    fn completed(&mut self, purpose: Purpose, r: CommandResult, now: u64) -> Result<(), JobError> {
        match purpose {
            Purpose::SendTargets => Ok(()),
            Purpose::ReportLuns => {
                let luns = scsi::parse_report_luns(&r.data)
                    .map_err(|e| JobError::Session(e.to_string()))?;
                self.luns = luns
                    .into_iter()
                    .map(|l| LunProbe {
                        lun: scsi::lun_from_wire(l),
                        ..LunProbe::default()
                    })
                    .collect();
                for i in 0..self.luns.len() {
                    let wire = scsi::lun_to_wire(self.luns[i].lun);
                    self.scsi(
                        wire,
                        scsi::inquiry(None, 96),
                        DataTransfer::Read(96),
                        Purpose::Inquiry(i),
                    )?;
                    self.scsi(
                        wire,
                        scsi::read_capacity_16(),
                        DataTransfer::Read(scsi::READ_CAPACITY_16_LEN),
                        Purpose::Capacity(i),
                    )?;
                    self.scsi(
                        wire,
                        scsi::inquiry(Some(scsi::vpd::UNIT_SERIAL_NUMBER), 255),
                        DataTransfer::Read(255),
                        Purpose::Serial(i),
                    )?;
                    self.scsi(
                        wire,
                        scsi::inquiry(Some(scsi::vpd::DEVICE_IDENTIFICATION), 1024),
                        DataTransfer::Read(1024),
                        Purpose::DeviceId(i),
                    )?;
                }
                self.luns_done_check()
            }
            Purpose::Inquiry(i) => {
                let inquiry =
                    scsi::parse_inquiry(&r.data).map_err(|e| JobError::Session(e.to_string()))?;
                if let Some(l) = self.luns.get_mut(i) {
                    l.inquiry = Some(inquiry);
                }
                self.luns_done_check()
            }
            Purpose::Capacity(i) => {
                if let Some(l) = self.luns.get_mut(i) {
                    l.capacity = scsi::parse_read_capacity_16(&r.data).ok();
                }
                self.luns_done_check()
            }
            Purpose::Serial(i) => {
                if let Some(l) = self.luns.get_mut(i) {
                    l.serial = scsi::parse_unit_serial(&r.data).ok();
                }
                self.luns_done_check()
            }
            Purpose::DeviceId(i) => {
                if let Some(l) = self.luns.get_mut(i) {
                    l.scsi_id = scsi::parse_device_identification(&r.data)
                        .ok()
                        .and_then(|d| scsi::scsi_id(&d));
                }
                self.luns_done_check()
            }
            Purpose::Fetch { lba } => {
                self.figures.bytes_read += r.data.len() as u64;
                if let Some(run) = &mut self.sr {
                    let bs = run.block_size as usize;
                    let whole = r.data.len() / bs * bs;
                    if whole == 0 {
                        return Err(JobError::Session(String::from(
                            "the target returned no data for a READ(16)",
                        )));
                    }
                    run.cache.insert(lba, run.block_size, &r.data[..whole]);
                    run.stage = SrStage::Attempt;
                }
                let _ = now;
                Ok(())
            }
            Purpose::Write | Purpose::Sync => Ok(()),
            Purpose::Disk(of) => {
                self.disk_done(of, Ok(r.data));
                Ok(())
            }
        }
    }

    fn disk_done(&mut self, of: CommandOf, result: Result<Vec<u8>, ()>) {
        if let Some(run) = &mut self.disk {
            run.completed(of, result);
            self.figures.bytes_read = run.bytes_read;
            self.figures.bytes_written = run.bytes_written;
        }
    }

    /// A disk session sends the commands of the requests queued for it, and
    /// ends (with a logout) once the disk is detached and they completed.
    fn serve_disk(&mut self, now: u64) {
        let Some(run) = &mut self.disk else {
            return;
        };
        let since = *self.disk_since.get_or_insert(now);
        self.figures.sr_ms = now.saturating_sub(since);
        if run.finished() {
            self.finish(Ok(JobOutput::SessionEnded));
            return;
        }
        for (command, of) in run.take_commands() {
            if let Err(e) = self.submit(command, Purpose::Disk(of)) {
                if let Some(run) = &mut self.disk {
                    run.completed(of, Err(()));
                }
                self.fail(e);
                return;
            }
        }
    }

    /// Once every LUN is identified: the list, or the SR work on one.
    fn luns_done_check(&mut self) -> Result<(), JobError> {
        let identifying = self.pending.values().any(|p| {
            matches!(
                p.purpose,
                Purpose::ReportLuns
                    | Purpose::Inquiry(_)
                    | Purpose::Capacity(_)
                    | Purpose::Serial(_)
                    | Purpose::DeviceId(_)
            )
        });
        if identifying || self.sr.is_some() || self.disk.is_some() {
            return Ok(());
        }
        // Disks only (tgt's LUN 0 is its controller).
        let entries: Vec<LunEntry> = self
            .luns
            .iter()
            .filter(|l| l.inquiry.as_ref().is_some_and(|i| i.device_type == 0))
            .filter_map(|l| {
                let capacity = l.capacity?;
                Some(LunEntry {
                    lun: l.lun,
                    vendor: l
                        .inquiry
                        .as_ref()
                        .map(|i| i.vendor.clone())
                        .unwrap_or_default(),
                    serial: l.serial.clone().unwrap_or_default(),
                    size: capacity.bytes(),
                    scsi_id: l.scsi_id.clone().unwrap_or_default(),
                })
            })
            .collect();
        match self.spec.work.clone() {
            Work::Luns => {
                self.finish(Ok(JobOutput::Luns(entries)));
                Ok(())
            }
            Work::Sr { scsi_id, .. } => {
                let found = self.luns.iter().find(|l| {
                    l.scsi_id.as_deref() == Some(scsi_id.as_str()) && l.capacity.is_some()
                });
                let Some(lun) = found else {
                    return Err(JobError::NoSuchLun(scsi_id, entries));
                };
                let capacity = lun.capacity.unwrap_or(scsi::Capacity {
                    last_lba: 0,
                    block_size: 512,
                    thin_provisioned: false,
                });
                self.sr = Some(SrRun {
                    lun: scsi::lun_to_wire(lun.lun),
                    block_size: capacity.block_size,
                    blocks: capacity.blocks(),
                    cache: BlockCache::new(),
                    stage: SrStage::Attempt,
                    attempts: 0,
                    started: 0,
                });
                Ok(())
            }
            Work::Disk { scsi_id, path } => {
                let found = self.luns.iter().find(|l| {
                    l.scsi_id.as_deref() == Some(scsi_id.as_str()) && l.capacity.is_some()
                });
                let Some((lun, capacity)) = found.and_then(|l| Some((l.lun, l.capacity?))) else {
                    return Err(JobError::NoSuchLun(scsi_id, entries));
                };
                if u64::from(capacity.block_size) != super::fast::SECTOR {
                    // Guest sectors would not map to whole LUN blocks.
                    return Err(JobError::Session(format!(
                        "the LUN has {}-byte blocks; the disk fast path needs 512",
                        capacity.block_size
                    )));
                }
                log::info!("iscsi: disk session ready on LUN {lun}");
                self.disk = Some(DiskRun::new(
                    path,
                    scsi::lun_to_wire(lun),
                    capacity.block_size,
                ));
                Ok(())
            }
            Work::Discover | Work::Local { .. } => Ok(()),
        }
    }

    /// Runs the SR operation once over what has been fetched.
    fn attempt(&mut self, now: u64) -> Result<(), JobError> {
        let Work::Sr { op, .. } = &self.spec.work else {
            return Ok(());
        };
        let op = op.clone();
        let Some(run) = &mut self.sr else {
            return Ok(());
        };
        if run.attempts == 0 {
            run.started = now;
        }
        run.attempts += 1;
        if run.attempts > MAX_ATTEMPTS {
            return Err(JobError::Sr(String::from(
                "the SR metadata needed more reads than any valid SR does",
            )));
        }
        let mut dev = StagedDevice::new(&run.cache, run.block_size, run.blocks);
        let outcome = run_op(&op, &mut dev);
        if let Some(lba) = dev.miss() {
            let bs = u64::from(run.block_size.max(1));
            let blocks = (FETCH_BYTES / bs).clamp(1, run.blocks.saturating_sub(lba).max(1));
            let lun = run.lun;
            run.stage = SrStage::Fetching;
            let len = u32::try_from(blocks * bs).unwrap_or(u32::MAX);
            return self.scsi(
                lun,
                scsi::read_16(lba, blocks as u32),
                DataTransfer::Read(len),
                Purpose::Fetch { lba },
            );
        }
        let log = dev.into_log();
        run.stage = SrStage::Draining {
            log,
            next: 0,
            outcome,
        };
        Ok(())
    }

    /// Sends what the completed attempt wrote, flush by flush.
    fn drain(&mut self, now: u64) -> Result<(), JobError> {
        loop {
            let in_flight = self.pending.len();
            let sync_pending = self.pending.values().any(|p| p.purpose == Purpose::Sync);
            let Some(run) = &mut self.sr else {
                return Ok(());
            };
            let (lun, bs) = (run.lun, run.block_size);
            let SrStage::Draining { log, next, outcome } = &mut run.stage else {
                return Ok(());
            };
            if sync_pending {
                return Ok(());
            }
            if *next >= log.len() {
                if in_flight > 0 {
                    return Ok(());
                }
                let outcome = core::mem::replace(outcome, Err(String::new()));
                self.figures.sr_ms = now.saturating_sub(run.started);
                let r = outcome.map_err(JobError::Sr);
                self.finish(r);
                return Ok(());
            }
            match &mut log[*next] {
                Staged::Write { lba, data } => {
                    if in_flight >= WRITES_IN_FLIGHT {
                        return Ok(());
                    }
                    let data = core::mem::take(data);
                    let lba = *lba;
                    *next += 1;
                    let blocks = (data.len() / bs.max(1) as usize) as u32;
                    self.figures.bytes_written += data.len() as u64;
                    self.scsi(
                        lun,
                        scsi::write_16(lba, blocks),
                        DataTransfer::Write(data),
                        Purpose::Write,
                    )?;
                }
                Staged::Flush => {
                    if in_flight > 0 {
                        return Ok(());
                    }
                    *next += 1;
                    self.scsi(
                        lun,
                        scsi::synchronize_cache_16(),
                        DataTransfer::None,
                        Purpose::Sync,
                    )?;
                }
            }
        }
    }
}

pub(crate) fn summary<D: BlockDevice>(sr: &Sr<D>) -> SrSummary {
    SrSummary {
        uuid: sr.superblock().uuid,
        sr_type: sr.sr_type(),
        physical_size: sr.physical_size(),
        physical_utilisation: sr.physical_utilisation(),
        vdis: sr.vdis(),
    }
}

/// One SR operation over a device: the staged device of an iSCSI job, or
/// a host disk (see `crate::local_disks`).
pub(crate) fn run_op<D: BlockDevice>(op: &SrOp, dev: &mut D) -> Result<JobOutput, String> {
    let e = |e: SrError| e.to_string();
    match op {
        SrOp::Probe => match Sr::open(dev) {
            Ok(sr) => Ok(JobOutput::Sr(summary(&sr))),
            Err(SrError::Superblock(_)) => Ok(JobOutput::NoSr),
            Err(err) => Err(e(err)),
        },
        SrOp::Scan => Sr::open(dev)
            .map(|sr| JobOutput::Sr(summary(&sr)))
            .map_err(e),
        SrOp::Format { uuid, sr_type } => {
            let sr = Sr::format(dev, *sr_type, *uuid, DEFAULT_CLUSTER_SIZE).map_err(e)?;
            let s = summary(&sr);
            sr.close().map_err(e)?;
            Ok(JobOutput::Sr(s))
        }
        SrOp::CreateVdi { uuid, name, size } => {
            let mut sr = Sr::open(dev).map_err(e)?;
            match sr.sr_type() {
                SrType::Iso => sr.begin_iso(*uuid, name, *size),
                _ => sr.create_vdi(*uuid, name, *size),
            }
            .map_err(e)?;
            let s = summary(&sr);
            sr.close().map_err(e)?;
            Ok(JobOutput::Sr(s))
        }
        SrOp::Wipe => {
            let sr = Sr::open(&mut *dev).map_err(e)?;
            let s = summary(&sr);
            // An ISO library's unfinished ISOs (an upload a restart cut)
            // are no VDIs of the user's: they go with the SR.
            let held = match sr.sr_type() {
                SrType::Iso => sr.isos().len(),
                _ => s.vdis.len(),
            };
            if held > 0 {
                return Err(alloc::format!(
                    "the SR still holds {held} VDIs; destroy them first"
                ));
            }
            drop(sr);
            // Both superblock copies (and the lease after them) go: the
            // LUN is no SR any more, and no host opens it as one.
            let zeros = vec![0u8; storage::sr::superblock::LEASE_OFFSET as usize + 4096];
            storage::region::write_bytes(&mut *dev, 0, &zeros).map_err(|e| e.to_string())?;
            dev.flush().map_err(|e| e.to_string())?;
            Ok(JobOutput::Sr(s))
        }
        SrOp::WriteVdi { uuid, offset, data } => {
            let mut sr = Sr::open(dev).map_err(e)?;
            sr.write(uuid, *offset, &data.0).map_err(e)?;
            let s = summary(&sr);
            sr.close().map_err(e)?;
            Ok(JobOutput::Sr(s))
        }
        SrOp::ReadVdi { uuid, offset, len } => {
            let mut sr = Sr::open(dev).map_err(e)?;
            let mut buf = vec![0u8; *len as usize];
            sr.read(uuid, *offset, &mut buf).map_err(e)?;
            Ok(JobOutput::Data(buf))
        }
        SrOp::Io { uuid, requests } => {
            let mut sr = Sr::open(dev).map_err(e)?;
            let mut done = Vec::with_capacity(requests.len());
            {
                let mut disk = sr.vdi_device(uuid).map_err(e)?;
                for r in requests {
                    let result = match &r.op {
                        super::IoOp::Read { lba, blocks } => {
                            let mut buf = vec![0u8; *blocks as usize * 512];
                            disk.read_blocks(*lba, &mut buf).map(|()| buf)
                        }
                        super::IoOp::Write { lba, data } => {
                            disk.write_blocks(*lba, &data.0).map(|()| Vec::new())
                        }
                        super::IoOp::Flush => disk.flush().map(|()| Vec::new()),
                        super::IoOp::Discard { lba, blocks } => {
                            disk.discard(*lba, *blocks).map(|()| Vec::new())
                        }
                    };
                    done.push(storage::channel::DiskCompletion { tag: r.tag, result });
                }
            }
            // Where the VDI's clusters are now, for the disk's fast path.
            let extents = sr.vdi_extents(uuid).map_err(e)?;
            sr.close().map_err(e)?;
            Ok(JobOutput::Io { done, extents })
        }
        SrOp::CopyVdi {
            of,
            new,
            name,
            snapshot,
        } => {
            let mut sr = Sr::open(dev).map_err(e)?;
            if *snapshot {
                sr.snapshot(of, *new, name).map_err(e)?;
            } else {
                sr.clone_vdi(of, *new, name).map_err(e)?;
            }
            let s = summary(&sr);
            sr.close().map_err(e)?;
            Ok(JobOutput::Sr(s))
        }
        SrOp::CloneVdis { clones } => {
            let mut sr = Sr::open(dev).map_err(e)?;
            let list: Vec<([u8; 16], [u8; 16], &str)> = clones
                .iter()
                .map(|c| (c.of, c.new, c.name.as_str()))
                .collect();
            sr.clone_vdis(&list).map_err(e)?;
            let s = summary(&sr);
            sr.close().map_err(e)?;
            Ok(JobOutput::Sr(s))
        }
        SrOp::FinishIso { uuid } => {
            let mut sr = Sr::open(dev).map_err(e)?;
            sr.finish_iso(uuid).map_err(e)?;
            let s = summary(&sr);
            sr.close().map_err(e)?;
            Ok(JobOutput::Sr(s))
        }
        SrOp::ResizeVdi { uuid, size } => {
            let mut sr = Sr::open(dev).map_err(e)?;
            sr.resize(uuid, *size).map_err(e)?;
            let s = summary(&sr);
            sr.close().map_err(e)?;
            Ok(JobOutput::Sr(s))
        }
        SrOp::DeleteVdi { uuid } => {
            let mut sr = Sr::open(dev).map_err(e)?;
            sr.delete(uuid).map_err(e)?;
            let s = summary(&sr);
            sr.close().map_err(e)?;
            Ok(JobOutput::Sr(s))
        }
    }
}
