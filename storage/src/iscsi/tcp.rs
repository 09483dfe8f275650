//! Hosted transport: `std::net::TcpStream` behind the `embedded-io`
//! traits, a std clock, and one-call helpers for discovery and login.

use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs};
use std::string::String;
use std::time::{Duration, Instant};
use std::vec::Vec;

use super::client::{Client, ClientError, Clock, DiscoveredTarget, Transport};
use super::login::{Chap, ChapCredentials, LoginConfig, LoginError};
use super::lun::{IscsiLun, LunError, Reconnect, ReconnectError};
use super::params::Offer;
use super::session::Timers;

/// The time a blocking read waits before timers run (the session's
/// shortest timer is [`super::session::UNSTICK_AFTER_NOP_REPLY_MS`]).
const READ_TICK: Duration = Duration::from_millis(50);
/// Login (and TCP connect) time limit.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(15);

/// `std::io::Error` as an `embedded_io::Error`.
#[derive(Debug)]
pub struct IoError(pub std::io::Error);

impl core::fmt::Display for IoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.fmt(f)
    }
}

impl core::error::Error for IoError {}

impl embedded_io::Error for IoError {
    fn kind(&self) -> embedded_io::ErrorKind {
        use std::io::ErrorKind as K;
        match self.0.kind() {
            K::WouldBlock | K::TimedOut => embedded_io::ErrorKind::TimedOut,
            K::Interrupted => embedded_io::ErrorKind::Interrupted,
            K::ConnectionReset => embedded_io::ErrorKind::ConnectionReset,
            K::ConnectionAborted => embedded_io::ErrorKind::ConnectionAborted,
            K::ConnectionRefused => embedded_io::ErrorKind::ConnectionRefused,
            K::BrokenPipe => embedded_io::ErrorKind::BrokenPipe,
            K::NotConnected => embedded_io::ErrorKind::NotConnected,
            _ => embedded_io::ErrorKind::Other,
        }
    }
}

/// A TCP connection to a target.
#[derive(Debug)]
pub struct TcpTransport(pub TcpStream);

impl TcpTransport {
    /// Connects with Nagle off and a read tick so timers keep running.
    pub fn connect(host: &str, port: u16) -> Result<Self, ClientError> {
        let addrs = (host, port)
            .to_socket_addrs()
            .map_err(|_| ClientError::Io(embedded_io::ErrorKind::NotFound))?;
        let mut last = embedded_io::ErrorKind::NotFound;
        for a in addrs {
            match TcpStream::connect_timeout(&a, LOGIN_TIMEOUT) {
                Ok(s) => {
                    let io =
                        |e: std::io::Error| ClientError::Io(embedded_io::Error::kind(&IoError(e)));
                    s.set_nodelay(true).map_err(io)?;
                    s.set_read_timeout(Some(READ_TICK)).map_err(io)?;
                    return Ok(TcpTransport(s));
                }
                Err(e) => last = embedded_io::Error::kind(&IoError(e)),
            }
        }
        Err(ClientError::Io(last))
    }
}

impl embedded_io::ErrorType for TcpTransport {
    type Error = IoError;
}

impl embedded_io::Read for TcpTransport {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, IoError> {
        self.0.read(buf).map_err(IoError)
    }
}

impl embedded_io::Write for TcpTransport {
    fn write(&mut self, buf: &[u8]) -> Result<usize, IoError> {
        self.0.write(buf).map_err(IoError)
    }
    fn flush(&mut self) -> Result<(), IoError> {
        self.0.flush().map_err(IoError)
    }
}

impl Transport for TcpTransport {
    /// `recv` with `MSG_WAITALL`: the kernel keeps filling `buf` until it
    /// is full, the read timeout passes (returning what arrived) or the
    /// connection ends.
    #[cfg(unix)]
    fn read_batch(&mut self, buf: &mut [u8]) -> Result<usize, IoError> {
        use nix::sys::socket::{MsgFlags, recv};
        use std::os::fd::AsRawFd;
        recv(self.0.as_raw_fd(), buf, MsgFlags::MSG_WAITALL).map_err(|e| IoError(e.into()))
    }
}

/// Milliseconds since the clock was made.
#[derive(Debug, Clone, Copy)]
pub struct StdClock(Instant);

impl Default for StdClock {
    fn default() -> Self {
        StdClock(Instant::now())
    }
}

impl Clock for StdClock {
    fn now_ms(&self) -> u64 {
        self.0.elapsed().as_millis() as u64
    }
}

/// Random bytes from the OS (for the ISID and CHAP challenges).
pub fn os_random(n: usize) -> Result<Vec<u8>, ClientError> {
    let mut v = std::vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut v))
        .map_err(|e| ClientError::Io(embedded_io::Error::kind(&IoError(e))))?;
    Ok(v)
}

/// A hosted client.
pub type TcpClient = Client<TcpTransport, StdClock>;

/// How to reach and authenticate to a target.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub initiator_name: String,
    /// `None` for discovery.
    pub target_name: Option<String>,
    pub chap: Option<ChapCredentials>,
    pub mutual: Option<ChapCredentials>,
    pub offer: Offer,
}

/// ISID of type "random" (RFC 7143 §10.12.5: T = 0b11).
fn random_isid() -> Result<[u8; 6], ClientError> {
    let r = os_random(6)?;
    let mut isid = [0u8; 6];
    isid.copy_from_slice(&r);
    isid[0] = 0xc0 | (isid[0] & 0x3f);
    Ok(isid)
}

/// Connects and logs in as a new session.
pub fn connect(t: &Target) -> Result<TcpClient, ClientError> {
    connect_isid(t, random_isid()?)
}

/// Connects and logs in with a given ISID (and TSIH 0): reusing the ISID
/// of a failed session makes the target reinstate it (ERL 0).
pub fn connect_isid(t: &Target, isid: [u8; 6]) -> Result<TcpClient, ClientError> {
    match login_at(t, &t.host, t.port, isid) {
        // Follow one redirection (RFC 7143 §6.3.1, status class 1).
        Err(ClientError::Login(LoginError::Redirected {
            address: Some(a), ..
        })) => {
            let p = super::url::parse_portal(&a)
                .map_err(|_| ClientError::Login(LoginError::Protocol("bad redirect address")))?;
            log::info!("iSCSI login redirected to {}:{}", p.host, p.port);
            login_at(t, &p.host, p.port, isid)
        }
        r => r,
    }
}

fn login_at(t: &Target, host: &str, port: u16, isid: [u8; 6]) -> Result<TcpClient, ClientError> {
    let stream = TcpTransport::connect(host, port)?;
    let chap = match &t.chap {
        Some(c) => Some(Chap {
            initiator: c.clone(),
            target: t.mutual.clone(),
            random: os_random(super::chap::CHALLENGE_LEN + 1)?,
        }),
        None => None,
    };
    let cfg = LoginConfig {
        initiator_name: t.initiator_name.clone(),
        target_name: t.target_name.clone(),
        isid,
        tsih: 0,
        cid: 0,
        initial_cmd_sn: 1,
        chap,
        offer: t.offer,
    };
    Client::login(
        stream,
        StdClock::default(),
        cfg,
        Timers::default(),
        LOGIN_TIMEOUT.as_millis() as u64,
    )
}

/// SendTargets discovery on a discovery session.
pub fn discover(t: &Target) -> Result<Vec<DiscoveredTarget>, ClientError> {
    let mut d = t.clone();
    d.target_name = None;
    let mut c = connect(&d)?;
    let targets = c.send_targets()?;
    c.logout()?;
    Ok(targets)
}

/// Reconnects to a [`Target`] with a fixed ISID until a replacement timeout.
#[derive(Debug)]
pub struct TcpReconnect {
    target: Target,
    isid: [u8; 6],
    replacement_timeout: Duration,
    first_failure: Option<Instant>,
}

impl Reconnect<TcpTransport, StdClock> for TcpReconnect {
    fn reconnect(&mut self, attempt: u32, time2wait_ms: u64) -> Result<TcpClient, ReconnectError> {
        let now = Instant::now();
        if attempt == 0 {
            self.first_failure = Some(now);
        }
        let first = *self.first_failure.get_or_insert(now);
        // Time2Wait first, then a short backoff while the target comes back.
        let wait = if attempt == 0 {
            Duration::from_millis(time2wait_ms)
        } else {
            Duration::from_millis(100u64 << attempt.min(4))
        };
        if now.duration_since(first) + wait > self.replacement_timeout {
            return Err(ReconnectError::GiveUp(ClientError::Io(
                embedded_io::ErrorKind::TimedOut,
            )));
        }
        std::thread::sleep(wait);
        connect_isid(&self.target, self.isid).map_err(ReconnectError::Retry)
    }
}

/// Opens `lun` with ERL-0 session recovery: a dropped connection or a
/// restarted target is reinstated within `replacement_timeout` and the
/// interrupted operation retried.
pub fn open_recovering_lun(
    t: &Target,
    lun: u16,
    replacement_timeout: Duration,
) -> Result<IscsiLun<TcpTransport, StdClock>, LunError> {
    let isid = random_isid()?;
    let client = connect_isid(t, isid)?;
    let r = TcpReconnect {
        target: t.clone(),
        isid,
        replacement_timeout,
        first_failure: None,
    };
    Ok(IscsiLun::open(client, lun)?.with_reconnect(std::boxed::Box::new(r)))
}

/// A hosted LUN can move to another thread (e.g. a VM's I/O thread).
const _: fn() = || {
    fn assert_send<T: Send>() {}
    assert_send::<IscsiLun<TcpTransport, StdClock>>();
};
