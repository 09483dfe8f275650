//! A non-blocking iSCSI connection: the login stage machine, then the
//! full-feature [`Session`], fed by the caller with the bytes its socket
//! received and drained of the bytes to send. Nothing here waits: the
//! appliance drives it from its poll loop over a smoltcp socket, next to
//! the HTTP server, with its own clock.

use alloc::vec::Vec;

use super::client::ClientError;
use super::login::{LOGIN_MAX_DATA, Login, LoginConfig, LoginError, Step};
use super::pdu::{Decoder, Digests};
use super::session::{Session, Timers};

/// ITT of the login PDUs; session tags start after it (as in [`super::client`]).
const LOGIN_ITT: u32 = 0;

#[derive(Debug)]
enum Phase {
    LoggingIn {
        login: Login,
        rx: Decoder,
        tx: Vec<u8>,
        tx_pos: usize,
    },
    FullFeature(Session),
    Failed,
}

/// One connection from the first login request to logout.
#[derive(Debug)]
pub struct Connection {
    phase: Phase,
    timers: Timers,
    /// When the login gives up (caller's ms).
    login_deadline: u64,
    /// When the full-feature phase began (caller's ms), once it did.
    logged_in_at: Option<u64>,
}

impl Connection {
    /// Starts a login; the first request is ready in [`Connection::transmit`]
    /// (send it once the TCP connection is up). The login fails with a
    /// time-out unless it completes within `login_timeout_ms`.
    pub fn start(
        cfg: LoginConfig,
        timers: Timers,
        now: u64,
        login_timeout_ms: u64,
    ) -> Result<Self, ClientError> {
        let mut tx = Vec::new();
        let max = (cfg.offer.max_recv_data_segment_length as usize).max(LOGIN_MAX_DATA);
        let login = Login::start(cfg, LOGIN_ITT, &mut tx)?;
        let mut rx = Decoder::new(max);
        rx.set_digests(Digests::default());
        Ok(Connection {
            phase: Phase::LoggingIn {
                login,
                rx,
                tx,
                tx_pos: 0,
            },
            timers,
            login_deadline: now.saturating_add(login_timeout_ms),
            logged_in_at: None,
        })
    }

    /// Whether the full-feature phase has been reached.
    pub fn logged_in(&self) -> bool {
        matches!(self.phase, Phase::FullFeature(_))
    }

    /// When the login completed (caller's ms).
    pub fn logged_in_at(&self) -> Option<u64> {
        self.logged_in_at
    }

    /// The session, once logged in.
    pub fn session(&mut self) -> Option<&mut Session> {
        match &mut self.phase {
            Phase::FullFeature(s) => Some(s),
            _ => None,
        }
    }

    /// Bytes waiting to be sent.
    pub fn transmit(&self) -> &[u8] {
        match &self.phase {
            Phase::LoggingIn { tx, tx_pos, .. } => &tx[*tx_pos..],
            Phase::FullFeature(s) => s.transmit(),
            Phase::Failed => &[],
        }
    }

    /// Marks `n` bytes of [`Connection::transmit`] as sent.
    pub fn transmitted(&mut self, n: usize) {
        match &mut self.phase {
            Phase::LoggingIn { tx, tx_pos, .. } => {
                *tx_pos = (*tx_pos + n).min(tx.len());
                if *tx_pos == tx.len() {
                    tx.clear();
                    *tx_pos = 0;
                }
            }
            Phase::FullFeature(s) => s.transmitted(n),
            Phase::Failed => {}
        }
    }

    /// Processes bytes the target sent.
    pub fn receive(&mut self, bytes: &[u8], now: u64) -> Result<(), ClientError> {
        let result = self.receive_inner(bytes, now);
        if result.is_err() {
            self.phase = Phase::Failed;
        }
        result
    }

    fn receive_inner(&mut self, bytes: &[u8], now: u64) -> Result<(), ClientError> {
        match &mut self.phase {
            Phase::Failed => Err(ClientError::Session(super::session::SessionError::Closed)),
            Phase::FullFeature(s) => Ok(s.receive(bytes, now)?),
            Phase::LoggingIn { login, rx, tx, .. } => {
                rx.feed(bytes);
                loop {
                    let step = match rx.next_frame() {
                        None => return Ok(()),
                        Some(Err(e)) => return Err(LoginError::from(e).into()),
                        Some(Ok(frame)) => login.handle(&frame, tx)?,
                    };
                    if let Step::Done(outcome) = step {
                        let rest = rx.take_buffered();
                        let mut session = Session::new(&outcome, self.timers, LOGIN_ITT + 1, now);
                        if !rest.is_empty() {
                            session.receive(&rest, now)?;
                        }
                        self.phase = Phase::FullFeature(session);
                        self.logged_in_at = Some(now);
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Runs timers (the login deadline, then the session's NOP pings and
    /// command time-outs); returns when to call again (ms).
    pub fn poll(&mut self, now: u64) -> Result<Option<u64>, ClientError> {
        let result = match &mut self.phase {
            Phase::Failed => Err(ClientError::Session(super::session::SessionError::Closed)),
            Phase::LoggingIn { .. } if now >= self.login_deadline => {
                Err(ClientError::Io(embedded_io::ErrorKind::TimedOut))
            }
            Phase::LoggingIn { .. } => Ok(Some(self.login_deadline)),
            Phase::FullFeature(s) => s.poll(now).map_err(ClientError::from),
        };
        if result.is_err() {
            self.phase = Phase::Failed;
        }
        result
    }
}
