//! A blocking driver for the sans-I/O login and session machines over any
//! `embedded-io` byte stream (a `std::net::TcpStream` hosted, a smoltcp
//! socket wrapper in the image).

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use embedded_io::{Error as _, ErrorKind, Read, Write};

use super::login::{Login, LoginConfig, LoginError, LoginOutcome, Step};
use super::params::key;
use super::pdu::{self, Decoder, Digests};
use super::session::{
    Command, CommandError, CommandResult, Event, Session, SessionError, TaskTag, Timers,
};
use super::text::TextPairs;

/// A millisecond clock supplied by the platform.
pub trait Clock {
    fn now_ms(&self) -> u64;
}

/// ITT of login PDUs; session tags start after it.
const LOGIN_ITT: u32 = 0;

/// From this many commands in flight on, [`Client::pump`] waits for a
/// batch of replies in one read; below it, it takes whatever has arrived.
const BATCH_MIN_IN_FLIGHT: usize = 8;
/// A batched read waits for this fraction of [`Session::bytes_due`]: a
/// quarter, so three quarters of the queue stay at the target meanwhile.
const BATCH_SHARE: usize = 4;

/// The byte stream a [`Client`] runs on.
pub trait Transport: Read + Write {
    /// Fills `buf` in one call: returns once all of it has arrived, with
    /// what did arrive when the stream's read timeout passes (an error of
    /// kind `TimedOut` if nothing did), or 0 when the stream has ended.
    ///
    /// At high queue depth the client reads a batch of replies this way:
    /// one call and one pass over the session per batch instead of per
    /// reply, and its new commands go out together. The default reads
    /// once, which is correct but unbatched.
    fn read_batch(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        self.read(buf)
    }
}

#[derive(Debug)]
pub enum ClientError {
    /// The transport failed.
    Io(ErrorKind),
    /// The target closed the TCP connection.
    ConnectionClosed,
    Login(LoginError),
    Session(SessionError),
    Command(CommandError),
    /// A discovery answer we could not read.
    BadDiscovery(&'static str),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io(k) => write!(f, "connection to the target failed: {k:?}"),
            ClientError::ConnectionClosed => write!(f, "the target closed the connection"),
            ClientError::Login(e) => write!(f, "{e}"),
            ClientError::Session(e) => write!(f, "{e}"),
            ClientError::Command(e) => write!(f, "{e}"),
            ClientError::BadDiscovery(w) => write!(f, "bad SendTargets answer: {w}"),
        }
    }
}

impl core::error::Error for ClientError {}

impl From<LoginError> for ClientError {
    fn from(e: LoginError) -> Self {
        ClientError::Login(e)
    }
}
impl From<SessionError> for ClientError {
    fn from(e: SessionError) -> Self {
        ClientError::Session(e)
    }
}

fn io<E: embedded_io::Error>(e: E) -> ClientError {
    ClientError::Io(e.kind())
}

fn write_all<S: Write>(s: &mut S, mut buf: &[u8]) -> Result<(), ClientError> {
    while !buf.is_empty() {
        match s.write(buf) {
            Ok(0) => return Err(ClientError::ConnectionClosed),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
    }
    Ok(())
}

/// Reads once; `Ok(None)` on a read timeout.
fn read_some<S: Read>(s: &mut S, buf: &mut [u8]) -> Result<Option<usize>, ClientError> {
    read_result(s.read(buf))
}

fn read_result<E: embedded_io::Error>(r: Result<usize, E>) -> Result<Option<usize>, ClientError> {
    match r {
        Ok(0) => Err(ClientError::ConnectionClosed),
        Ok(n) => Ok(Some(n)),
        Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::Interrupted) => Ok(None),
        Err(e) => Err(io(e)),
    }
}

/// Runs a login to completion on `stream`.
pub fn login<S: Read + Write, C: Clock>(
    stream: &mut S,
    clock: &C,
    cfg: LoginConfig,
    timeout_ms: u64,
) -> Result<LoginOutcome, ClientError> {
    let deadline = clock.now_ms().saturating_add(timeout_ms);
    let mut out = Vec::new();
    let max = cfg.offer.max_recv_data_segment_length as usize;
    let mut login = Login::start(cfg, LOGIN_ITT, &mut out)?;
    let mut dec = Decoder::new(max.max(super::login::LOGIN_MAX_DATA));
    dec.set_digests(Digests::default());
    loop {
        write_all(stream, &out)?;
        stream.flush().map_err(io)?;
        out.clear();
        loop {
            if let Some(frame) = dec.next_frame() {
                let frame = frame.map_err(LoginError::from)?;
                match login.handle(&frame, &mut out)? {
                    Step::Done(outcome) => return Ok(outcome),
                    Step::Continue => break,
                }
            }
            if clock.now_ms() >= deadline {
                return Err(ClientError::Io(ErrorKind::TimedOut));
            }
            let want = dec.wanted().max(4096);
            if let Some(n) = read_some(stream, dec.read_space(want))? {
                dec.commit(n);
            }
        }
    }
}

/// One logged-in connection driven synchronously.
#[derive(Debug)]
pub struct Client<S, C> {
    stream: S,
    clock: C,
    session: Session,
    /// Events for tags nobody waits on yet.
    stash: VecDeque<Event>,
}

/// A target found by SendTargets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredTarget {
    pub name: String,
    /// `host:port,tpgt` entries as the target sent them.
    pub addresses: Vec<String>,
}

impl DiscoveredTarget {
    /// The addresses parsed into portals (unparsable ones skipped).
    pub fn portals(&self) -> Vec<super::url::Portal> {
        self.addresses
            .iter()
            .filter_map(|a| super::url::parse_portal(a).ok())
            .collect()
    }
}

/// Groups `TargetName`/`TargetAddress` pairs (a name owns the addresses after it).
pub fn parse_send_targets(text: &[u8]) -> Result<Vec<DiscoveredTarget>, ClientError> {
    let pairs = TextPairs::parse(text).map_err(|_| ClientError::BadDiscovery("malformed text"))?;
    let mut out: Vec<DiscoveredTarget> = Vec::new();
    for (k, v) in pairs.iter() {
        match k {
            key::TARGET_NAME => out.push(DiscoveredTarget {
                name: v.into(),
                addresses: Vec::new(),
            }),
            key::TARGET_ADDRESS => match out.last_mut() {
                Some(t) => t.addresses.push(v.into()),
                None => return Err(ClientError::BadDiscovery("TargetAddress before TargetName")),
            },
            _ => {}
        }
    }
    Ok(out)
}

impl<S: Transport, C: Clock> Client<S, C> {
    /// Logs in on `stream` and enters the full-feature phase.
    pub fn login(
        mut stream: S,
        clock: C,
        cfg: LoginConfig,
        timers: Timers,
        timeout_ms: u64,
    ) -> Result<Self, ClientError> {
        let outcome = login(&mut stream, &clock, cfg, timeout_ms)?;
        let session = Session::new(&outcome, timers, LOGIN_ITT + 1, clock.now_ms());
        Ok(Client {
            stream,
            clock,
            session,
            stash: VecDeque::new(),
        })
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    pub fn into_session(self) -> Session {
        self.session
    }

    /// Queues a command without waiting.
    pub fn submit(&mut self, cmd: Command) -> Result<TaskTag, ClientError> {
        Ok(self.session.submit(cmd)?)
    }

    /// Sends what is queued, reads once (a batch at high queue depth, see
    /// [`Transport::read_batch`]), runs timers.
    pub fn pump(&mut self) -> Result<(), ClientError> {
        let tx = self.session.transmit();
        if !tx.is_empty() {
            let n = tx.len();
            write_all(&mut self.stream, tx)?;
            self.session.transmitted(n);
            self.stream.flush().map_err(io)?;
        }
        let now = self.clock.now_ms();
        let batch = if self.session.in_flight() >= BATCH_MIN_IN_FLIGHT {
            self.session.bytes_due() / BATCH_SHARE
        } else {
            0
        };
        let buf = self.session.receive_buffer();
        let read = if batch > 1 {
            let n = batch.min(buf.len());
            read_result(self.stream.read_batch(&mut buf[..n]))?
        } else {
            read_some(&mut self.stream, buf)?
        };
        if let Some(n) = read {
            self.session.received(n, self.clock.now_ms())?;
        }
        self.session.poll(now)?;
        while let Some(ev) = self.session.next_event() {
            self.stash.push_back(ev);
        }
        Ok(())
    }

    /// Keeps the connection serviced (NOP replies, pings, timers) for
    /// `ms` milliseconds, stashing any events.
    pub fn run_for(&mut self, ms: u64) -> Result<(), ClientError> {
        let end = self.clock.now_ms().saturating_add(ms);
        while self.clock.now_ms() < end {
            self.pump()?;
        }
        Ok(())
    }

    /// Waits for any event.
    pub fn next_event(&mut self) -> Result<Event, ClientError> {
        loop {
            if let Some(ev) = self.stash.pop_front() {
                return Ok(ev);
            }
            self.pump()?;
        }
    }

    fn wait_for<T>(
        &mut self,
        mut pick: impl FnMut(&Event) -> bool,
        take: impl FnOnce(Event) -> T,
    ) -> Result<T, ClientError> {
        loop {
            if let Some(i) = self.stash.iter().position(&mut pick)
                && let Some(ev) = self.stash.remove(i)
            {
                return Ok(take(ev));
            }
            self.pump()?;
        }
    }

    /// Waits for one command's completion.
    pub fn wait(&mut self, tag: TaskTag) -> Result<CommandResult, ClientError> {
        let r = self.wait_for(
            |e| matches!(e, Event::Command { tag: t, .. } if *t == tag),
            |e| match e {
                Event::Command { result, .. } => result,
                _ => Err(CommandError::Aborted),
            },
        )?;
        r.map_err(ClientError::Command)
    }

    /// Runs one command and waits for it.
    pub fn execute(&mut self, cmd: Command) -> Result<CommandResult, ClientError> {
        let tag = self.submit(cmd)?;
        self.wait(tag)
    }

    fn wait_task_management(&mut self, tag: TaskTag) -> Result<u8, ClientError> {
        self.wait_for(
            |e| matches!(e, Event::TaskManagement { tag: t, .. } if *t == tag),
            |e| match e {
                Event::TaskManagement { response, .. } => response,
                _ => pdu::tmf_response::REJECTED,
            },
        )
    }

    /// ABORT TASK for `tag`; returns the TMF response
    /// ([`pdu::tmf_response`]: 0 complete, 1 no such task, ...).
    pub fn abort_task(&mut self, tag: TaskTag) -> Result<u8, ClientError> {
        let tmf = self.session.abort_task(tag)?;
        self.wait_task_management(tmf)
    }

    /// LOGICAL UNIT RESET; returns the TMF response.
    pub fn lun_reset(&mut self, lun: u64) -> Result<u8, ClientError> {
        let tmf = self.session.lun_reset(lun)?;
        self.wait_task_management(tmf)
    }

    /// SendTargets=All on this (discovery) session.
    pub fn send_targets(&mut self) -> Result<Vec<DiscoveredTarget>, ClientError> {
        let tag = self.session.send_targets()?;
        let text = self.wait_for(
            |e| matches!(e, Event::Text { tag: t, .. } if *t == tag),
            |e| match e {
                Event::Text { text, .. } => text,
                _ => Vec::new(),
            },
        )?;
        parse_send_targets(&text)
    }

    /// Logs out and waits for the answer.
    pub fn logout(mut self) -> Result<(), ClientError> {
        self.session.logout()?;
        self.wait_for(|e| matches!(e, Event::LoggedOut { .. }), |_| ())
    }
}
