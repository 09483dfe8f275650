//! The full-feature phase (RFC 7143 §4-§11) as a sans-I/O state machine.
//!
//! The caller moves bytes: [`Session::transmit`] / [`Session::transmitted`]
//! for what to send, [`Session::receive_buffer`] / [`Session::received`]
//! for what arrived, and [`Session::poll`] with the current time for NOP
//! pings. Results come out of [`Session::next_event`].

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use super::login::LoginOutcome;
use super::params::{SessionParams, key};
use super::pdu::{
    self, DataIn, DataOut, Decoder, Digests, Frame, LogoutRequest, NopOut, RESERVED_TAG, Repr,
    ScsiCommand, TaskMgmtRequest, TextRequest, logout_reason, task_attr, tmf_function,
    tmf_response,
};
use super::serial;
use super::text::{TextAccumulator, TextError, TextPairs};

/// Identifies a submitted task (it is the ITT on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskTag(pub u32);

/// Data transfer direction of a SCSI command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataTransfer {
    None,
    /// Expect up to this many bytes from the target.
    Read(u32),
    /// Send these bytes.
    Write(Vec<u8>),
}

/// One SCSI command to run on a LUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub lun: u64,
    pub cdb: [u8; 16],
    pub transfer: DataTransfer,
}

/// SCSI-level outcome of a command the target executed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandResult {
    /// SCSI status byte (0 = GOOD, 2 = CHECK CONDITION, ...).
    pub status: u8,
    /// Sense data (for CHECK CONDITION).
    pub sense: Vec<u8>,
    /// Data read (truncated to what the target sent), or the write buffer
    /// handed back.
    pub data: Vec<u8>,
    /// Bytes expected but not transferred (underflow).
    pub residual_underflow: u32,
    /// Bytes the target wanted to transfer beyond the expected length.
    pub residual_overflow: u32,
}

/// Why a command produced no SCSI result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandError {
    /// The iSCSI service response was "target failure" (or another non-zero code).
    TargetFailure(u8),
    /// The target rejected the command PDU with this reason.
    Rejected(u8),
    /// Aborted by task management.
    Aborted,
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::TargetFailure(r) => write!(f, "target failure (iSCSI response {r:#04x})"),
            CommandError::Rejected(r) => write!(f, "target rejected the command (reason {r:#04x})"),
            CommandError::Aborted => write!(f, "command aborted"),
        }
    }
}

/// Something the session finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Command {
        tag: TaskTag,
        result: Result<CommandResult, CommandError>,
    },
    /// A complete Text response (all continuations collected).
    Text {
        tag: TaskTag,
        text: Vec<u8>,
    },
    TaskManagement {
        tag: TaskTag,
        response: u8,
    },
    /// The target answered our Logout; the connection may be closed.
    LoggedOut {
        response: u8,
    },
    /// An Async Message other than one we act on ourselves.
    Async(pdu::AsyncMessage),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    Pdu(pdu::Error),
    Text(TextError),
    /// The target broke the protocol; the connection must be dropped.
    Protocol(&'static str),
    /// A response for a task we do not know.
    UnknownTask(u32),
    /// The target did not answer a NOP-Out ping in time.
    NopTimeout,
    /// The target asked us to log out or is dropping the connection.
    TargetLogout(u8),
    /// The session was logged out or failed before.
    Closed,
    /// More tasks than tags (2^32 - 1) in flight.
    TooManyTasks,
    /// A LOGICAL UNIT RESET after a command timeout went unanswered.
    TaskManagementTimeout,
    /// The target refused the LU reset that should have ended a stuck command.
    TaskManagementFailed(u8),
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Pdu(e) => write!(f, "{e}"),
            SessionError::Text(e) => write!(f, "{e}"),
            SessionError::Protocol(w) => write!(f, "iSCSI protocol error from the target: {w}"),
            SessionError::UnknownTask(t) => {
                write!(f, "target answered unknown task tag {t:#010x}")
            }
            SessionError::NopTimeout => write!(f, "target stopped answering NOP pings"),
            SessionError::TargetLogout(e) => {
                write!(
                    f,
                    "target requested logout or dropped the connection (async event {e})"
                )
            }
            SessionError::Closed => write!(f, "the iSCSI session is closed"),
            SessionError::TooManyTasks => write!(f, "too many tasks in flight"),
            SessionError::TaskManagementTimeout => write!(
                f,
                "a command timed out and the target answered neither ABORT TASK nor LU RESET; dropping the connection"
            ),
            SessionError::TaskManagementFailed(r) => write!(
                f,
                "a command timed out and the target refused the LU reset (response {r}); dropping the connection"
            ),
        }
    }
}

impl core::error::Error for SessionError {}

impl From<pdu::Error> for SessionError {
    fn from(e: pdu::Error) -> Self {
        SessionError::Pdu(e)
    }
}
impl From<TextError> for SessionError {
    fn from(e: TextError) -> Self {
        SessionError::Text(e)
    }
}

/// Timers of the session, in the caller's milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// Send a NOP-Out ping after this long without hearing from the target (0 = never).
    pub nop_interval_ms: u64,
    /// Fail the connection when a ping is not answered within this.
    pub nop_timeout_ms: u64,
    /// A sent command unanswered this long is aborted (ABORT TASK); 0 = never.
    pub command_timeout_ms: u64,
    /// An unanswered ABORT TASK escalates to LOGICAL UNIT RESET after this.
    pub abort_timeout_ms: u64,
    /// An unanswered LU RESET fails the connection (session recovery) after this.
    pub reset_timeout_ms: u64,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            nop_interval_ms: 5000,
            nop_timeout_ms: 5000,
            // open-iscsi's defaults: SCSI command 30 s, abort 15 s, LU reset 30 s.
            command_timeout_ms: 30_000,
            abort_timeout_ms: 15_000,
            reset_timeout_ms: 30_000,
        }
    }
}

#[derive(Debug)]
enum Kind {
    Scsi {
        lun: u64,
        cdb: [u8; 16],
        read: bool,
        write: bool,
        /// Data read so far, or the write data.
        buf: Vec<u8>,
        /// Expected data transfer length.
        expected: usize,
    },
    Text {
        data: Vec<u8>,
        ttt: u32,
        acc: TextAccumulator,
    },
}

#[derive(Debug, Clone, Copy)]
struct Tmf {
    function: u8,
    lun: u64,
    ref_itt: u32,
    deadline: u64,
}

#[derive(Debug)]
struct Task {
    kind: Kind,
    /// CmdSN once sent.
    cmd_sn: Option<u32>,
    /// When it was sent (caller's ms).
    started: u64,
    /// An ABORT TASK for it is outstanding.
    aborting: bool,
}

#[derive(Debug)]
struct Core {
    params: SessionParams,
    digests: Digests,
    timers: Timers,
    cmd_sn: u32,
    exp_stat_sn: u32,
    exp_cmd_sn: u32,
    max_cmd_sn: u32,
    next_itt: u32,
    tasks: BTreeMap<u32, Task>,
    queued: VecDeque<u32>,
    tx: Vec<u8>,
    tx_pos: usize,
    events: VecDeque<Event>,
    ping: Option<(u32, u64)>,
    /// Outstanding task management requests by ITT.
    tmfs: BTreeMap<u32, Tmf>,
    /// The caller's time at the last `poll`/`received`.
    now: u64,
    /// When we answered a target NOP-In, if nothing arrived since (see
    /// [`UNSTICK_AFTER_NOP_REPLY_MS`]).
    nop_reply_at: Option<u64>,
    last_heard: u64,
    logout_sent: bool,
    failed: bool,
}

/// A logged-in iSCSI connection in the full-feature phase (one connection
/// per session, ERL 0).
#[derive(Debug)]
pub struct Session {
    rx: Decoder,
    core: Core,
    /// A Data-In segment being read straight into its command's buffer.
    placing: Option<Placement>,
    /// A placement just ended: read the next header alone, so that the
    /// data after it can be placed too rather than copied.
    header_next: bool,
}

/// Data-In segments at least this long are read straight into their
/// command's buffer (see [`Session::receive_buffer`]) rather than through
/// the decoder and copied.
const PLACE_MIN: usize = 64 * 1024;

/// A Data-In segment whose header has been read and whose data goes
/// straight into the command's buffer, taken from its task meanwhile.
#[derive(Debug)]
struct Placement {
    header: DataIn,
    buf: Vec<u8>,
    /// The next byte of `buf` to fill; the segment ends at `end`.
    at: usize,
    end: usize,
}

/// tgt stops transmitting when the task at the head of its send list is
/// our reply to its NOP-In, leaving responses queued behind it until its
/// next event (its next ping, a second later). A ping of ours is such an
/// event: we send one when commands are in flight and nothing arrived this
/// long after a NOP-Out reply.
pub const UNSTICK_AFTER_NOP_REPLY_MS: u64 = 50;

/// Read buffers reserve at most this up front and grow with the data.
const MAX_PREALLOC: usize = 16 * 1024 * 1024;

/// Read granularity hint for [`Session::receive_buffer`].
pub const RECEIVE_CHUNK: usize = 64 * 1024;

impl Session {
    /// Enters the full-feature phase after `login`; `next_itt` must not
    /// collide with the login's ITT. `now` is the caller's clock in ms.
    pub fn new(login: &LoginOutcome, timers: Timers, next_itt: u32, now: u64) -> Self {
        let p = &login.params;
        let digests = Digests {
            header: p.header_digest,
            data: p.data_digest,
        };
        let mut rx = Decoder::new(p.our_max_recv_data_segment_length as usize);
        rx.set_digests(digests);
        Session {
            rx,
            core: Core {
                params: p.clone(),
                digests,
                timers,
                cmd_sn: login.cmd_sn,
                exp_stat_sn: login.exp_stat_sn,
                exp_cmd_sn: login.exp_cmd_sn,
                max_cmd_sn: login.max_cmd_sn,
                next_itt,
                tasks: BTreeMap::new(),
                queued: VecDeque::new(),
                tx: Vec::new(),
                tx_pos: 0,
                events: VecDeque::new(),
                ping: None,
                tmfs: BTreeMap::new(),
                now,
                nop_reply_at: None,
                last_heard: now,
                logout_sent: false,
                failed: false,
            },
            placing: None,
            header_next: false,
        }
    }

    pub fn params(&self) -> &SessionParams {
        &self.core.params
    }

    /// Tasks submitted and not yet finished.
    pub fn in_flight(&self) -> usize {
        self.core.tasks.len()
    }

    /// A lower bound on the bytes the target still owes us if every
    /// command sent succeeds: a response header per command plus the read
    /// data not yet received, less what the decoder already holds. A
    /// failed command, or a target that sends less, makes it too high.
    pub fn bytes_due(&self) -> usize {
        let c = &self.core;
        let header = pdu::BHS_LEN + if c.digests.header { 4 } else { 0 };
        let due: usize = c
            .tasks
            .iter()
            .filter(|(_, t)| t.cmd_sn.is_some() && !t.aborting)
            .map(|(itt, t)| match (&t.kind, &self.placing) {
                // Its buffer is out being filled; the header has arrived.
                (Kind::Scsi { expected, .. }, Some(p)) if p.header.itt == *itt => {
                    let after = if p.header.has_status {
                        0
                    } else {
                        header + expected.saturating_sub(p.end)
                    };
                    p.end - p.at + after
                }
                (
                    Kind::Scsi {
                        read: true,
                        buf,
                        expected,
                        ..
                    },
                    _,
                ) => header + expected.saturating_sub(buf.len()),
                _ => header,
            })
            .sum();
        due.saturating_sub(self.rx.buffered())
    }

    /// Whether the CmdSN window lets another command go out now.
    pub fn window_open(&self) -> bool {
        serial::le(self.core.cmd_sn, self.core.max_cmd_sn)
    }

    /// (CmdSN, ExpStatSN, ExpCmdSN, MaxCmdSN), for diagnostics and tests.
    pub fn sequence_numbers(&self) -> (u32, u32, u32, u32) {
        let c = &self.core;
        (c.cmd_sn, c.exp_stat_sn, c.exp_cmd_sn, c.max_cmd_sn)
    }

    /// Queues a SCSI command; it goes out as soon as the window allows.
    pub fn submit(&mut self, cmd: Command) -> Result<TaskTag, SessionError> {
        self.core.check_open()?;
        let (read, write, buf, expected) = match cmd.transfer {
            DataTransfer::None => (false, false, Vec::new(), 0),
            // Filled as Data-In arrives (in order, as negotiated): no zeroing.
            DataTransfer::Read(n) => {
                let n = n as usize;
                (true, false, Vec::with_capacity(n.min(MAX_PREALLOC)), n)
            }
            DataTransfer::Write(d) => {
                let n = d.len();
                (false, true, d, n)
            }
        };
        let kind = Kind::Scsi {
            lun: cmd.lun,
            cdb: cmd.cdb,
            read,
            write,
            buf,
            expected,
        };
        let itt = self.core.add_task(kind)?;
        self.core.flush_queue()?;
        Ok(TaskTag(itt))
    }

    /// Queues a Text request (e.g. `SendTargets=All`); the answer arrives as
    /// [`Event::Text`] once all continuation PDUs are in.
    pub fn text_request(&mut self, text: &TextPairs) -> Result<TaskTag, SessionError> {
        self.core.check_open()?;
        let kind = Kind::Text {
            data: text.encode(),
            ttt: RESERVED_TAG,
            acc: TextAccumulator::new(),
        };
        let itt = self.core.add_task(kind)?;
        self.core.flush_queue()?;
        Ok(TaskTag(itt))
    }

    /// SendTargets discovery.
    pub fn send_targets(&mut self) -> Result<TaskTag, SessionError> {
        let mut t = TextPairs::new();
        t.push(key::SEND_TARGETS, "All");
        self.text_request(&t)
    }

    /// Sends ABORT TASK for `tag` (immediate).
    pub fn abort_task(&mut self, tag: TaskTag) -> Result<TaskTag, SessionError> {
        let (lun, ref_cmd_sn) = match self.core.tasks.get(&tag.0) {
            Some(Task {
                kind: Kind::Scsi { lun, .. },
                cmd_sn,
                ..
            }) => (*lun, cmd_sn.unwrap_or(self.core.cmd_sn)),
            _ => (0, self.core.cmd_sn),
        };
        let deadline = self
            .core
            .now
            .saturating_add(self.core.timers.abort_timeout_ms);
        self.core
            .tmf(tmf_function::ABORT_TASK, lun, tag.0, ref_cmd_sn, deadline)
    }

    /// Sends LOGICAL UNIT RESET (immediate).
    pub fn lun_reset(&mut self, lun: u64) -> Result<TaskTag, SessionError> {
        let deadline = self
            .core
            .now
            .saturating_add(self.core.timers.reset_timeout_ms);
        let cmd_sn = self.core.cmd_sn;
        self.core.tmf(
            tmf_function::LOGICAL_UNIT_RESET,
            lun,
            RESERVED_TAG,
            cmd_sn,
            deadline,
        )
    }

    /// Sends a NOP-Out ping now.
    pub fn ping(&mut self, now: u64) -> Result<(), SessionError> {
        self.core.check_open()?;
        self.core.send_ping(now)
    }

    /// Sends Logout (close the session); [`Event::LoggedOut`] follows.
    pub fn logout(&mut self) -> Result<(), SessionError> {
        self.core.check_open()?;
        let itt = self.core.alloc_itt()?;
        let c = &mut self.core;
        let repr = Repr::LogoutRequest(LogoutRequest {
            immediate: true,
            reason: logout_reason::CLOSE_SESSION,
            itt,
            cid: 0,
            cmd_sn: c.cmd_sn,
            exp_stat_sn: c.exp_stat_sn,
        });
        c.emit(&repr, &[])?;
        c.logout_sent = true;
        Ok(())
    }

    /// Bytes waiting to be sent.
    pub fn transmit(&self) -> &[u8] {
        &self.core.tx[self.core.tx_pos..]
    }

    /// Marks `n` bytes of [`Session::transmit`] as sent.
    pub fn transmitted(&mut self, n: usize) {
        let c = &mut self.core;
        c.tx_pos = (c.tx_pos + n).min(c.tx.len());
        if c.tx_pos == c.tx.len() {
            c.tx.clear();
            c.tx_pos = 0;
        }
    }

    /// A buffer to read received bytes into; then call [`Session::received`].
    ///
    /// Once the header of a long Data-In segment (at least [`PLACE_MIN`],
    /// in order, no data digest) has arrived, this is the rest of that
    /// segment in the command's own buffer: its data is read there once,
    /// not into the decoder and copied.
    pub fn receive_buffer(&mut self) -> &mut [u8] {
        if self.placing.is_none() {
            self.placing = self.start_placement();
        }
        if let Some(p) = &mut self.placing {
            return &mut p.buf[p.at..p.end];
        }
        if self.header_next && self.rx.buffered() == 0 {
            let header = pdu::BHS_LEN + if self.core.digests.header { 4 } else { 0 };
            return &mut self.rx.read_space(header)[..header];
        }
        let want = self.rx.wanted().max(RECEIVE_CHUNK);
        self.rx.read_space(want)
    }

    /// Processes `n` bytes read into [`Session::receive_buffer`].
    pub fn received(&mut self, n: usize, now: u64) -> Result<(), SessionError> {
        self.core.now = now;
        self.header_next = false;
        if self.placing.is_some() {
            self.placed(n, now)?;
        } else {
            self.rx.commit(n);
        }
        self.process(now)
    }

    /// Processes bytes from a slice (copying).
    pub fn receive(&mut self, mut bytes: &[u8], now: u64) -> Result<(), SessionError> {
        self.core.now = now;
        if let Some(p) = &mut self.placing {
            let n = bytes.len().min(p.end - p.at);
            p.buf[p.at..p.at + n].copy_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            self.placed(n, now)?;
        }
        self.rx.feed(bytes);
        self.process(now)
    }

    /// Starts reading the Data-In segment whose header the decoder holds
    /// into its command's buffer, if it qualifies; anything unusual is
    /// left to the decoder path, which also reports the errors.
    fn start_placement(&mut self) -> Option<Placement> {
        if self.core.digests.data || self.core.failed {
            return None;
        }
        let (Repr::DataIn(header), data_start, len) = self.rx.peek_header()?.ok()? else {
            return None;
        };
        let have = self.rx.buffered().checked_sub(data_start)?;
        if len < PLACE_MIN || len % 4 != 0 || have >= len {
            return None;
        }
        let Task {
            kind:
                Kind::Scsi {
                    read: true,
                    buf,
                    expected,
                    ..
                },
            ..
        } = self.core.tasks.get_mut(&header.itt)?
        else {
            return None;
        };
        let off = header.offset as usize;
        let end = off.checked_add(len).filter(|&e| e <= *expected)?;
        if off != buf.len() {
            return None;
        }
        let mut buf = core::mem::take(buf);
        buf.resize(end, 0);
        let arrived = &self.rx.buffered_bytes()[data_start..data_start + have];
        buf[off..off + have].copy_from_slice(arrived);
        self.rx.consume(data_start + have);
        Some(Placement {
            header,
            buf,
            at: off + have,
            end,
        })
    }

    /// Counts `n` bytes read into the placement; at its end, gives the
    /// buffer back to the command and handles the Data-In (its data
    /// already in place).
    fn placed(&mut self, n: usize, now: u64) -> Result<(), SessionError> {
        let Some(p) = &mut self.placing else {
            return Ok(());
        };
        self.core.last_heard = now;
        p.at = (p.at + n).min(p.end);
        if p.at < p.end {
            return Ok(());
        }
        let Some(p) = self.placing.take() else {
            return Ok(());
        };
        self.header_next = true;
        let itt = p.header.itt;
        let Some(Task {
            kind: Kind::Scsi { buf, .. },
            ..
        }) = self.core.tasks.get_mut(&itt)
        else {
            self.core.failed = true;
            return Err(SessionError::UnknownTask(itt));
        };
        *buf = p.buf;
        // The data segment is in the buffer already: handled as empty.
        let frame = Frame {
            repr: Repr::DataIn(p.header),
            ahs: &[],
            data: &[],
        };
        let r = self.core.handle(&frame);
        if r.is_err() {
            self.core.failed = true;
        }
        r
    }

    fn process(&mut self, now: u64) -> Result<(), SessionError> {
        if self.core.failed {
            return Err(SessionError::Closed);
        }
        let mut heard = false;
        let res = loop {
            let frame = match self.rx.next_frame() {
                None => break Ok(()),
                Some(Err(e)) => break Err(SessionError::Pdu(e)),
                Some(Ok(f)) => f,
            };
            heard = true;
            if let Err(e) = self.core.handle(&frame) {
                break Err(e);
            }
        };
        if heard {
            self.core.last_heard = now;
        }
        if res.is_err() {
            self.core.failed = true;
            return res;
        }
        self.core.flush_queue()
    }

    /// Runs timers; returns when to call again (ms), if anything is pending.
    pub fn poll(&mut self, now: u64) -> Result<Option<u64>, SessionError> {
        let c = &mut self.core;
        if c.failed {
            return Err(SessionError::Closed);
        }
        c.now = now;
        if c.logout_sent {
            return Ok(None);
        }
        let escalation = match c.escalate(now) {
            Ok(d) => d,
            Err(e) => {
                c.failed = true;
                return Err(e);
            }
        };
        let mut unstick = None;
        if let Some(t) = c.nop_reply_at
            && !c.tasks.is_empty()
            && c.ping.is_none()
        {
            let due = t.saturating_add(UNSTICK_AFTER_NOP_REPLY_MS);
            if now >= due {
                c.nop_reply_at = None;
                c.send_ping(now)?;
            } else {
                unstick = Some(due);
            }
        }
        let escalation = match (escalation, unstick) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let ping = if let Some((_, deadline)) = c.ping {
            if now >= deadline {
                c.failed = true;
                return Err(SessionError::NopTimeout);
            }
            Some(deadline)
        } else if c.timers.nop_interval_ms == 0 {
            None
        } else {
            let due = c.last_heard.saturating_add(c.timers.nop_interval_ms);
            if now >= due {
                c.send_ping(now)?;
                c.ping.map(|(_, d)| d)
            } else {
                Some(due)
            }
        };
        Ok(match (escalation, ping) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    pub fn next_event(&mut self) -> Option<Event> {
        self.core.events.pop_front()
    }

    /// Ends the connection after a failure and hands back every unfinished
    /// SCSI command, for a retry on a new session (ERL 0 recovery).
    pub fn into_unfinished(self) -> Vec<(TaskTag, Command)> {
        let mut out = Vec::new();
        for (itt, t) in self.core.tasks {
            if let Kind::Scsi {
                lun,
                cdb,
                read,
                write,
                buf,
                expected,
            } = t.kind
            {
                let transfer = if write {
                    DataTransfer::Write(buf)
                } else if read {
                    DataTransfer::Read(expected as u32)
                } else {
                    DataTransfer::None
                };
                out.push((TaskTag(itt), Command { lun, cdb, transfer }));
            }
        }
        out
    }
}

impl Core {
    fn check_open(&self) -> Result<(), SessionError> {
        if self.failed || self.logout_sent {
            Err(SessionError::Closed)
        } else {
            Ok(())
        }
    }

    fn alloc_itt(&mut self) -> Result<u32, SessionError> {
        for _ in 0..16 {
            let itt = self.next_itt;
            self.next_itt = self.next_itt.wrapping_add(1);
            if itt != RESERVED_TAG && !self.tasks.contains_key(&itt) {
                return Ok(itt);
            }
        }
        Err(SessionError::TooManyTasks)
    }

    fn add_task(&mut self, kind: Kind) -> Result<u32, SessionError> {
        let itt = self.alloc_itt()?;
        self.tasks.insert(
            itt,
            Task {
                kind,
                cmd_sn: None,
                started: self.now,
                aborting: false,
            },
        );
        self.queued.push_back(itt);
        Ok(itt)
    }

    fn emit(&mut self, repr: &Repr, data: &[u8]) -> Result<(), SessionError> {
        pdu::encode(&mut self.tx, repr, data, self.digests)?;
        Ok(())
    }

    fn send_ping(&mut self, now: u64) -> Result<(), SessionError> {
        let itt = self.alloc_itt()?;
        let repr = Repr::NopOut(NopOut {
            immediate: true,
            lun: 0,
            itt,
            ttt: RESERVED_TAG,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
        });
        self.emit(&repr, &[])?;
        self.ping = Some((itt, now.saturating_add(self.timers.nop_timeout_ms)));
        Ok(())
    }

    fn tmf(
        &mut self,
        function: u8,
        lun: u64,
        ref_itt: u32,
        ref_cmd_sn: u32,
        deadline: u64,
    ) -> Result<TaskTag, SessionError> {
        self.check_open()?;
        let itt = self.alloc_itt()?;
        let repr = Repr::TaskMgmtRequest(TaskMgmtRequest {
            immediate: true,
            function,
            lun,
            itt,
            ref_itt,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            ref_cmd_sn,
            exp_data_sn: 0,
        });
        self.emit(&repr, &[])?;
        self.tmfs.insert(
            itt,
            Tmf {
                function,
                lun,
                ref_itt,
                deadline,
            },
        );
        Ok(TaskTag(itt))
    }

    /// Sends an LU reset for `lun` unless one is already outstanding.
    fn reset_lun(&mut self, lun: u64) -> Result<(), SessionError> {
        let pending = self
            .tmfs
            .values()
            .any(|t| t.function == tmf_function::LOGICAL_UNIT_RESET && t.lun == lun);
        if !pending {
            log::warn!("iSCSI: ABORT TASK did not end a stuck command; resetting the LU");
            let deadline = self.now.saturating_add(self.timers.reset_timeout_ms);
            let cmd_sn = self.cmd_sn;
            self.tmf(
                tmf_function::LOGICAL_UNIT_RESET,
                lun,
                RESERVED_TAG,
                cmd_sn,
                deadline,
            )?;
        }
        Ok(())
    }

    /// Timeout escalation (RFC 7143 §7, open-iscsi's policy): a stuck
    /// command gets ABORT TASK, an unanswered abort an LU reset, an
    /// unanswered reset fails the connection. Returns the next deadline.
    fn escalate(&mut self, now: u64) -> Result<Option<u64>, SessionError> {
        let overdue: Vec<(u32, Tmf)> = self
            .tmfs
            .iter()
            .filter(|(_, t)| now >= t.deadline)
            .map(|(itt, t)| (*itt, *t))
            .collect();
        for (itt, t) in overdue {
            self.tmfs.remove(&itt);
            if t.function != tmf_function::ABORT_TASK {
                return Err(SessionError::TaskManagementTimeout);
            }
            self.reset_lun(t.lun)?;
        }
        let timeout = self.timers.command_timeout_ms;
        let mut next: Option<u64> = self.tmfs.values().map(|t| t.deadline).min();
        if timeout == 0 {
            return Ok(next);
        }
        let mut stuck = Vec::new();
        for (itt, t) in &self.tasks {
            let (Kind::Scsi { lun, .. }, Some(cmd_sn), false) = (&t.kind, t.cmd_sn, t.aborting)
            else {
                continue;
            };
            let due = t.started.saturating_add(timeout);
            if now >= due {
                stuck.push((*itt, *lun, cmd_sn));
            } else {
                next = Some(next.map_or(due, |n| n.min(due)));
            }
        }
        for (itt, lun, cmd_sn) in stuck {
            log::warn!("iSCSI: command {itt:#x} timed out; sending ABORT TASK");
            if let Some(t) = self.tasks.get_mut(&itt) {
                t.aborting = true;
            }
            let deadline = now.saturating_add(self.timers.abort_timeout_ms);
            self.tmf(tmf_function::ABORT_TASK, lun, itt, cmd_sn, deadline)?;
            next = Some(next.map_or(deadline, |n| n.min(deadline)));
        }
        Ok(next)
    }

    /// Sends queued tasks while the CmdSN window is open.
    fn flush_queue(&mut self) -> Result<(), SessionError> {
        while serial::le(self.cmd_sn, self.max_cmd_sn) {
            let Some(itt) = self.queued.pop_front() else {
                break;
            };
            let cmd_sn = self.cmd_sn;
            self.cmd_sn = self.cmd_sn.wrapping_add(1);
            self.send_task(itt, cmd_sn)?;
        }
        Ok(())
    }

    fn send_task(&mut self, itt: u32, cmd_sn: u32) -> Result<(), SessionError> {
        let exp_stat_sn = self.exp_stat_sn;
        let digests = self.digests;
        let mrdsl = self.params.target_max_recv_data_segment_length.max(512) as usize;
        let p = &self.params;
        let now = self.now;
        let Some(task) = self.tasks.get_mut(&itt) else {
            return Ok(());
        };
        task.cmd_sn = Some(cmd_sn);
        task.started = now;
        match &mut task.kind {
            Kind::Scsi {
                lun,
                cdb,
                read,
                write,
                buf,
                expected,
            } => {
                let len = *expected;
                let (imm, unsolicited) = if *write {
                    let first = p.first_burst_length as usize;
                    let imm = if p.immediate_data {
                        len.min(first).min(mrdsl)
                    } else {
                        0
                    };
                    let uns = if p.initial_r2t { imm } else { len.min(first) };
                    (imm, uns)
                } else {
                    (0, 0)
                };
                let repr = Repr::ScsiCommand(ScsiCommand {
                    immediate: false,
                    final_: unsolicited == imm,
                    read: *read,
                    write: *write,
                    attr: task_attr::SIMPLE,
                    lun: *lun,
                    itt,
                    expected_len: len as u32,
                    cmd_sn,
                    exp_stat_sn,
                    cdb: *cdb,
                });
                pdu::encode(&mut self.tx, &repr, &buf[..imm], digests)?;
                if unsolicited > imm {
                    emit_data_out(
                        &mut self.tx,
                        digests,
                        mrdsl,
                        DataOutSeq {
                            lun: *lun,
                            itt,
                            ttt: RESERVED_TAG,
                            exp_stat_sn,
                            offset: imm,
                        },
                        &buf[imm..unsolicited],
                    )?;
                }
            }
            Kind::Text { data, ttt, .. } => {
                // Our requests are small; send them in one PDU when they fit.
                let more = data.len() > mrdsl;
                let chunk_len = data.len().min(mrdsl);
                let repr = Repr::TextRequest(TextRequest {
                    immediate: false,
                    final_: !more,
                    cont: more,
                    lun: 0,
                    itt,
                    ttt: *ttt,
                    cmd_sn,
                    exp_stat_sn,
                });
                let chunk: Vec<u8> = data.drain(..chunk_len).collect();
                pdu::encode(&mut self.tx, &repr, &chunk, digests)?;
            }
        }
        Ok(())
    }

    fn update_window(&mut self, exp: u32, max: u32) {
        // MaxCmdSN below ExpCmdSN - 1 is invalid; stale updates are ignored.
        if serial::lt(max, exp.wrapping_sub(1)) {
            return;
        }
        if serial::gt(exp, self.exp_cmd_sn) {
            self.exp_cmd_sn = exp;
        }
        if serial::gt(max, self.max_cmd_sn) {
            self.max_cmd_sn = max;
        }
    }

    fn status_seen(&mut self, stat_sn: u32) {
        let next = stat_sn.wrapping_add(1);
        if serial::gt(next, self.exp_stat_sn) {
            self.exp_stat_sn = next;
        }
    }

    fn handle(&mut self, f: &Frame<'_>) -> Result<(), SessionError> {
        self.nop_reply_at = None;
        if let Some((exp, max)) = f.repr.cmd_window() {
            self.update_window(exp, max);
        }
        match f.repr {
            Repr::DataIn(d) => {
                let Some(Task {
                    kind:
                        Kind::Scsi {
                            buf,
                            expected,
                            read,
                            ..
                        },
                    ..
                }) = self.tasks.get_mut(&d.itt)
                else {
                    return Err(SessionError::UnknownTask(d.itt));
                };
                if !*read && !f.data.is_empty() {
                    return Err(SessionError::Protocol(
                        "Data-In for a command that reads nothing",
                    ));
                }
                let off = d.offset as usize;
                let end = off
                    .checked_add(f.data.len())
                    .filter(|&e| e <= *expected)
                    .ok_or(SessionError::Protocol(
                        "Data-In beyond the expected transfer length",
                    ))?;
                if off == buf.len() {
                    buf.extend_from_slice(f.data);
                } else {
                    if end > buf.len() {
                        buf.resize(end, 0);
                    }
                    buf[off..end].copy_from_slice(f.data);
                }
                if d.has_status {
                    self.status_seen(d.stat_sn);
                    let under = if d.underflow { d.residual } else { 0 };
                    let over = if d.overflow { d.residual } else { 0 };
                    self.complete_scsi(d.itt, d.status, &[], under, over);
                }
            }
            Repr::ScsiResponse(r) => {
                self.status_seen(r.stat_sn);
                if !self.tasks.contains_key(&r.itt) {
                    return Err(SessionError::UnknownTask(r.itt));
                }
                if r.response != 0 {
                    self.tasks.remove(&r.itt);
                    self.events.push_back(Event::Command {
                        tag: TaskTag(r.itt),
                        result: Err(CommandError::TargetFailure(r.response)),
                    });
                    return Ok(());
                }
                let sense = sense_from_segment(f.data)?;
                let under = if r.underflow { r.residual } else { 0 };
                let over = if r.overflow { r.residual } else { 0 };
                self.complete_scsi(r.itt, r.status, sense, under, over);
            }
            Repr::R2t(r) => {
                let exp_stat_sn = self.exp_stat_sn;
                let digests = self.digests;
                let mrdsl = self.params.target_max_recv_data_segment_length.max(512) as usize;
                let max_burst = self.params.max_burst_length as usize;
                let Some(Task {
                    kind:
                        Kind::Scsi {
                            buf, write, lun, ..
                        },
                    ..
                }) = self.tasks.get(&r.itt)
                else {
                    return Err(SessionError::UnknownTask(r.itt));
                };
                let off = r.offset as usize;
                let len = r.desired_len as usize;
                if !*write || len == 0 || len > max_burst {
                    return Err(SessionError::Protocol("R2T with an invalid length"));
                }
                let end = off
                    .checked_add(len)
                    .filter(|&e| e <= buf.len())
                    .ok_or(SessionError::Protocol("R2T beyond the write's length"))?;
                emit_data_out(
                    &mut self.tx,
                    digests,
                    mrdsl,
                    DataOutSeq {
                        lun: *lun,
                        itt: r.itt,
                        ttt: r.ttt,
                        exp_stat_sn,
                        offset: off,
                    },
                    &buf[off..end],
                )?;
            }
            Repr::NopIn(n) => {
                if n.itt != RESERVED_TAG {
                    self.status_seen(n.stat_sn);
                    if self.ping.is_some_and(|(itt, _)| itt == n.itt) {
                        self.ping = None;
                    }
                }
                if n.ttt != RESERVED_TAG {
                    // The target pings us: answer at once, echoing TTT and LUN.
                    let repr = Repr::NopOut(NopOut {
                        immediate: true,
                        lun: n.lun,
                        itt: RESERVED_TAG,
                        ttt: n.ttt,
                        cmd_sn: self.cmd_sn,
                        exp_stat_sn: self.exp_stat_sn,
                    });
                    self.emit(&repr, &[])?;
                    self.nop_reply_at = Some(self.now);
                }
            }
            Repr::TextResponse(r) => {
                self.status_seen(r.stat_sn);
                let Some(Task {
                    kind: Kind::Text { acc, ttt, data },
                    ..
                }) = self.tasks.get_mut(&r.itt)
                else {
                    return Err(SessionError::UnknownTask(r.itt));
                };
                match acc.push(f.data, r.cont)? {
                    Some(text) => {
                        self.tasks.remove(&r.itt);
                        self.events.push_back(Event::Text {
                            tag: TaskTag(r.itt),
                            text,
                        });
                    }
                    None => {
                        // Ask for the next part: empty request echoing TTT.
                        *ttt = r.ttt;
                        data.clear();
                        self.queued.push_back(r.itt);
                    }
                }
            }
            Repr::TaskMgmtResponse(r) => {
                self.status_seen(r.stat_sn);
                let done = matches!(
                    r.response,
                    tmf_response::COMPLETE | tmf_response::TASK_DOES_NOT_EXIST
                );
                let tmf = self.tmfs.remove(&r.itt);
                if let Some(t) = tmf
                    && !done
                {
                    // An abort the target cannot do escalates to an LU
                    // reset; a refused reset leaves only the connection.
                    if t.function == tmf_function::ABORT_TASK {
                        self.reset_lun(t.lun)?;
                    } else if t.function == tmf_function::LOGICAL_UNIT_RESET {
                        return Err(SessionError::TaskManagementFailed(r.response));
                    }
                }
                if let Some(Tmf {
                    function,
                    lun,
                    ref_itt,
                    ..
                }) = tmf
                    && done
                {
                    // Responses come in StatSN order: a task still here
                    // after its abort completed will never be answered.
                    let victims: Vec<u32> = match function {
                        tmf_function::ABORT_TASK => vec![ref_itt],
                        _ => self
                            .tasks
                            .iter()
                            .filter(
                                |(_, t)| matches!(t.kind, Kind::Scsi { lun: l, .. } if l == lun),
                            )
                            .map(|(itt, _)| *itt)
                            .collect(),
                    };
                    for itt in victims {
                        if self.tasks.remove(&itt).is_some() {
                            self.queued.retain(|q| *q != itt);
                            self.events.push_back(Event::Command {
                                tag: TaskTag(itt),
                                result: Err(CommandError::Aborted),
                            });
                        }
                    }
                }
                self.events.push_back(Event::TaskManagement {
                    tag: TaskTag(r.itt),
                    response: r.response,
                });
            }
            Repr::LogoutResponse(r) => {
                self.status_seen(r.stat_sn);
                self.logout_sent = true;
                self.events.push_back(Event::LoggedOut {
                    response: r.response,
                });
            }
            Repr::Reject(r) => {
                self.status_seen(r.stat_sn);
                // The data segment holds the rejected PDU's header.
                let rejected = pdu::Packet::new_unchecked(f.data);
                if f.data.len() >= pdu::BHS_LEN && self.tasks.remove(&rejected.itt()).is_some() {
                    self.events.push_back(Event::Command {
                        tag: TaskTag(rejected.itt()),
                        result: Err(CommandError::Rejected(r.reason)),
                    });
                } else {
                    return Err(SessionError::Protocol("target rejected a PDU"));
                }
            }
            Repr::AsyncMessage(a) => {
                self.status_seen(a.stat_sn);
                match a.event {
                    pdu::async_event::LOGOUT_REQUESTED
                    | pdu::async_event::DROPPING_CONNECTION
                    | pdu::async_event::DROPPING_ALL_CONNECTIONS => {
                        return Err(SessionError::TargetLogout(a.event));
                    }
                    _ => self.events.push_back(Event::Async(a)),
                }
            }
            Repr::LoginResponse(_) => {
                return Err(SessionError::Protocol(
                    "Login Response in full-feature phase",
                ));
            }
            _ => {
                return Err(SessionError::Protocol(
                    "initiator PDU received from the target",
                ));
            }
        }
        Ok(())
    }

    fn complete_scsi(&mut self, itt: u32, status: u8, sense: &[u8], under: u32, over: u32) {
        let Some(task) = self.tasks.remove(&itt) else {
            return;
        };
        let Kind::Scsi {
            mut buf,
            read,
            expected,
            ..
        } = task.kind
        else {
            return;
        };
        if read {
            // What the target says it sent, never beyond what was expected.
            let sent = expected.saturating_sub(under as usize);
            buf.resize(sent.max(buf.len()).min(expected), 0);
        }
        self.events.push_back(Event::Command {
            tag: TaskTag(itt),
            result: Ok(CommandResult {
                status,
                sense: sense.to_vec(),
                data: buf,
                residual_underflow: under,
                residual_overflow: over,
            }),
        });
    }
}

/// The SCSI Response data segment: SenseLength (2 bytes) then sense data.
fn sense_from_segment(data: &[u8]) -> Result<&[u8], SessionError> {
    if data.len() < 2 {
        return Ok(&[]);
    }
    let n = usize::from(u16::from_be_bytes([data[0], data[1]]));
    data.get(2..2 + n).ok_or(SessionError::Protocol(
        "sense length beyond the data segment",
    ))
}

struct DataOutSeq {
    lun: u64,
    itt: u32,
    ttt: u32,
    exp_stat_sn: u32,
    offset: usize,
}

/// One Data-Out sequence, cut to the target's MaxRecvDataSegmentLength.
fn emit_data_out(
    tx: &mut Vec<u8>,
    digests: Digests,
    mrdsl: usize,
    seq: DataOutSeq,
    data: &[u8],
) -> Result<(), SessionError> {
    let n = data.len().div_ceil(mrdsl);
    for (i, chunk) in data.chunks(mrdsl).enumerate() {
        let repr = Repr::DataOut(DataOut {
            final_: i + 1 == n,
            lun: seq.lun,
            itt: seq.itt,
            ttt: seq.ttt,
            exp_stat_sn: seq.exp_stat_sn,
            data_sn: i as u32,
            offset: (seq.offset + i * mrdsl) as u32,
        });
        pdu::encode(tx, &repr, chunk, digests)?;
    }
    Ok(())
}

/// Fuzz entry point: arbitrary target bytes into a session with reads,
/// writes and a text request in flight. Must never panic.
pub fn fuzz_session(data: &[u8]) {
    let login = LoginOutcome {
        tsih: 1,
        isid: [0xc0, 0, 0, 0, 0, 1],
        cmd_sn: 1,
        exp_stat_sn: 1,
        exp_cmd_sn: 1,
        max_cmd_sn: 64,
        params: SessionParams::default(),
    };
    let mut s = Session::new(&login, Timers::default(), 1, 0);
    let _ = s.submit(Command {
        lun: 0,
        cdb: [0; 16],
        transfer: DataTransfer::Read(4096),
    });
    let _ = s.submit(Command {
        lun: 0,
        cdb: [0; 16],
        transfer: DataTransfer::Write(vec![0u8; 70_000]),
    });
    let _ = s.send_targets();
    // Long enough for its Data-In to be placed (see `receive_buffer`).
    let _ = s.submit(Command {
        lun: 0,
        cdb: [0; 16],
        transfer: DataTransfer::Read(300_000),
    });
    // Alternately copied in and read into the session's own buffer.
    for (i, mut chunk) in data.chunks(97).enumerate() {
        let ok = if i % 2 == 0 {
            s.receive(chunk, 1).is_ok()
        } else {
            loop {
                let buf = s.receive_buffer();
                let n = buf.len().min(chunk.len());
                buf[..n].copy_from_slice(&chunk[..n]);
                chunk = &chunk[n..];
                if n == 0 || s.received(n, 1).is_err() {
                    break false;
                }
                if chunk.is_empty() {
                    break true;
                }
            }
        };
        if !ok {
            break;
        }
        let _ = s.bytes_due();
        while s.next_event().is_some() {}
    }
    let _ = s.poll(100_000);
}

#[cfg(test)]
mod tests;
