//! The appliance's HTTP endpoints as a Linux process (`keel-hosted`): the
//! same [`Endpoints`], [`XenApi`] and per-connection [`Connection`] state
//! machine as the image, with std TCP underneath instead of smoltcp.
//!
//! One thread owns the service and every connection's state; a thread per
//! connection only reads bytes and hands them over, so the service stays
//! single-threaded as in the image, and a waiting `event.from` is a
//! deferred answer, never a blocked thread.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use host_config::HostConfig;

use crate::http::Limits;
use crate::iscsi::{self, Job, JobSpec, std_link::StdLink};
use crate::platform::{Platform, SystemInfo};
use crate::routes::Endpoints;
use crate::server::Stream;
use crate::tls;
use crate::xenapi::{HostFacts, ManagementFacts, XenApi};

/// A connection with no traffic (and nothing awaited) for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A peer that does not take a response within this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a connection's reader looks whether the connection was closed.
const READ_POLL: Duration = Duration::from_secs(5);
/// How long a closed connection's reader goes on discarding what the
/// client still sends (lingering close).
const LINGER: Duration = Duration::from_secs(10);
/// Connections served at once; more are closed on accept.
pub const MAX_CONNECTIONS: usize = 256;
/// Longest the loop sleeps with nothing due.
const MAX_WAIT: Duration = Duration::from_millis(500);

/// The machine under the hosted service: the Linux process's clock, CPUs,
/// memory and randomness.
#[derive(Debug)]
pub struct StdPlatform {
    start: Instant,
}

impl StdPlatform {
    pub fn new() -> Self {
        StdPlatform {
            start: Instant::now(),
        }
    }
}

impl Default for StdPlatform {
    fn default() -> Self {
        Self::new()
    }
}

impl Platform for StdPlatform {
    fn now(&self) -> core::time::Duration {
        self.start.elapsed()
    }

    fn unix_time(&self) -> Option<u64> {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs())
    }

    fn system_info(&self) -> SystemInfo {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (total, free) = meminfo().unwrap_or((0, 0));
        SystemInfo {
            cpus: u32::try_from(cpus).unwrap_or(u32::MAX),
            memory_total: total,
            memory_free: free,
        }
    }

    fn fill_random(&mut self, buf: &mut [u8]) {
        let filled = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(buf));
        if let Err(e) = filled {
            // Without randomness session refs would be guessable: refuse to go on.
            log::error!("hosted: /dev/urandom: {e}");
            std::process::exit(1);
        }
    }

    fn idle(&mut self, deadline: Option<core::time::Duration>) {
        let wait = deadline.map_or(MAX_WAIT, |d| d.saturating_sub(self.now()).min(MAX_WAIT));
        std::thread::sleep(wait);
    }
}

/// `MemTotal` and `MemAvailable` from `/proc/meminfo`, in bytes.
fn meminfo() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    };
    Some((field("MemTotal:")?, field("MemAvailable:")?))
}

/// What the API says about the management interface when hosted: the
/// listening address, on the interface the host config names.
pub fn hosted_facts(config: &HostConfig, listen: SocketAddr, system: SystemInfo) -> HostFacts {
    let address = match listen.ip() {
        IpAddr::V4(ip) if !ip.is_unspecified() => Some((ip.octets(), 32)),
        _ => None,
    };
    HostFacts {
        hostname: config.hostname.clone(),
        system,
        management: ManagementFacts {
            device: config.management.interface.clone(),
            mac: None,
            dhcp: false,
            address,
            gateway: None,
            dns: Vec::new(),
        },
        // A hosted host has no NICs of its own: it shows the ones the config
        // names and the bond and VLAN networks it declares on management.
        networks: crate::xenapi::network_layout(
            config,
            &alloc_nics(crate::xenapi::named_nics(config)),
            &|_| true,
        ),
        boot: None,
    }
}

/// `count` NICs whose MACs are unknown.
fn alloc_nics(count: usize) -> Vec<Option<[u8; 6]>> {
    vec![None; count]
}

enum Input {
    /// A new connection, the flag that tells its reader it was closed, and
    /// whether it came to the HTTPS listener.
    Accepted(u64, TcpStream, Arc<AtomicBool>, bool, Arc<AtomicUsize>),
    Data(u64, Vec<u8>),
    Closed(u64),
}

struct Peer {
    stream: TcpStream,
    closed: Arc<AtomicBool>,
    http: Stream,
    /// Bytes read and not yet taken by `http` (TLS takes at most two records at a time).
    unread: Vec<u8>,
    /// Bytes read and not yet taken (`unread` and what is on its way): the
    /// reader waits while there are [`MAX_QUEUED`] (a streamed body the
    /// handler holds back stays bounded).
    queued: Arc<AtomicUsize>,
    last_activity: Instant,
    peer_closed: bool,
}

/// Size of a state file `--state` creates.
pub const STATE_FILE_BYTES: u64 = 64 << 20;

/// Opens (creating a blank one if missing) the state file as the database's store.
pub fn open_state(path: &std::path::Path) -> std::io::Result<Box<dyn crate::xenapi::StateStore>> {
    use crate::state_store::BlockStore;
    if !path.exists() {
        std::fs::File::create_new(path)?.set_len(STATE_FILE_BYTES)?;
    }
    let dev = storage::file::FileBlockDevice::open(path, 512, false)?;
    let mut id = [0u8; 8];
    StdPlatform::new().fill_random(&mut id);
    match BlockStore::open_or_format(dev, u64::from_le_bytes(id)) {
        Ok((store, _)) => Ok(Box::new(store)),
        Err((_, e)) => Err(std::io::Error::other(format!("{}: {e}", path.display()))),
    }
}

/// Files as host disks for local SRs: the `n`th is `/dev/vd<a+n>`, its
/// serial (the `/dev/disk/by-id/` name) the file's name.
pub fn open_host_disks(
    paths: &[std::path::PathBuf],
) -> std::io::Result<crate::local_disks::LocalDisks> {
    use crate::local_disks::{HostDiskInfo, LocalDisks, by_id_name, short_name};
    let mut disks = LocalDisks::new();
    for (i, path) in paths.iter().enumerate() {
        let dev = storage::file::FileBlockDevice::open(path, 512, false)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?;
        let serial = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let info = HostDiskInfo {
            device: short_name(i),
            by_id: by_id_name(&serial),
            size: storage::BlockDevice::num_blocks(&dev) * 512,
            reserved: None,
        };
        disks.add(info, Box::new(dev));
    }
    Ok(disks)
}

/// Serves `listener` (and HTTPS on `tls_listener`) forever, keeping the
/// database in `state` if given, with `host_disks` for local SRs.
pub fn serve(
    listener: TcpListener,
    tls_listener: Option<TcpListener>,
    config: &HostConfig,
    state: Option<&std::path::Path>,
    host_disks: &[std::path::PathBuf],
) -> std::io::Result<()> {
    let mut platform = StdPlatform::new();
    let listen = listener.local_addr()?;
    let facts = hosted_facts(config, listen, platform.system_info());
    let mut api = XenApi::new(config, facts, &mut platform);
    // iSCSI jobs run in the service loop over non-blocking std TCP.
    api.enable_storage_driver();
    let local = open_host_disks(host_disks)?;
    api.set_host_disks(local.infos());
    let mut store = state.map(open_state).transpose()?;
    let tls_config = match &tls_listener {
        Some(l) => {
            let address = match l.local_addr()?.ip() {
                IpAddr::V4(ip) if !ip.is_unspecified() => Some(ip.octets()),
                _ => None,
            };
            let subject = tls::Subject {
                hostname: &config.hostname,
                address,
                unix_now: platform.unix_time(),
            };
            let clock = Arc::new(tls::Clock::default());
            clock.set(platform.unix_time(), platform.now());
            let mut random = |buf: &mut [u8]| platform.fill_random(buf);
            let tls::HostTls {
                config: server,
                certificate,
                source,
                refused,
            } = tls::host_tls(
                config.tls.as_ref(),
                store.as_deref_mut().map(|s| s as _),
                &subject,
                &mut random,
                clock,
            )
            .map_err(std::io::Error::other)?;
            if let Some(why) = refused {
                eprintln!(
                    "keel-hosted: the certificate supplied in the host config cannot be \
                     used: {why}; serving the host's own certificate instead"
                );
            }
            println!(
                "keel-hosted: tls certificate sha256 {} ({})",
                certificate.sha256,
                source.word()
            );
            api.set_server_certificate(certificate);
            Some(server)
        }
        None => None,
    };
    if let (Some(path), Some(store)) = (state, store) {
        let attached = api
            .attach_store(Box::new(tls::store::HideIdentity(store)), &mut platform)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?;
        println!(
            "keel-hosted: database in {} ({} objects loaded)",
            path.display(),
            attached.loaded
        );
    }
    let (tx, rx) = sync_channel::<Input>(64);
    let ids = Arc::new(AtomicU64::new(1));
    let open = Arc::new(AtomicUsize::new(0));
    if let Some(l) = tls_listener {
        let (tx, ids, open) = (tx.clone(), Arc::clone(&ids), Arc::clone(&open));
        std::thread::spawn(move || accept(l, true, &tx, &ids, &open));
    }
    std::thread::spawn(move || accept(listener, false, &tx, &ids, &open));
    run(
        &rx,
        &mut api,
        &mut platform,
        &config.hostname,
        listen,
        tls_config,
        local,
    )
}

fn accept(
    listener: TcpListener,
    tls: bool,
    tx: &SyncSender<Input>,
    ids: &AtomicU64,
    open: &Arc<AtomicUsize>,
) {
    for stream in listener.incoming() {
        let id = ids.fetch_add(1, Ordering::Relaxed);
        let Ok(stream) = stream else { continue };
        if open.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
            log::warn!("hosted: {MAX_CONNECTIONS} connections open; refusing another");
            let _ = stream.shutdown(Shutdown::Both);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
        // Lets the reader notice a connection we closed whose peer never
        // closes; a silent peer is fine otherwise (it may be waiting for an
        // `event.from` answer), the service loop decides about idleness.
        let _ = stream.set_read_timeout(Some(READ_POLL));
        let Ok(reader) = stream.try_clone() else {
            continue;
        };
        let closed = Arc::new(AtomicBool::new(false));
        let queued = Arc::new(AtomicUsize::new(0));
        if tx
            .send(Input::Accepted(
                id,
                stream,
                Arc::clone(&closed),
                tls,
                Arc::clone(&queued),
            ))
            .is_err()
        {
            return;
        }
        let tx = tx.clone();
        open.fetch_add(1, Ordering::Relaxed);
        let open = Arc::clone(open);
        std::thread::spawn(move || {
            read(id, reader, &tx, &closed, &queued);
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

fn read(
    id: u64,
    mut stream: TcpStream,
    tx: &SyncSender<Input>,
    closed: &AtomicBool,
    queued: &AtomicUsize,
) {
    let mut buf = vec![0u8; 64 * 1024];
    // When the service closed our side, since when this reader has been
    // discarding what the client still sends.
    let mut lingering: Option<Instant> = None;
    loop {
        // Back-pressure: the service has not taken what was read before.
        while queued.load(Ordering::Relaxed) >= MAX_QUEUED && !closed.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(1));
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(_) if closed.load(Ordering::Relaxed) => {
                // Answered (a body refused with 413, say) and closed for
                // writing: the rest is read and dropped, so the client can
                // finish sending and read the answer instead of meeting a
                // reset; at most for LINGER.
                let since = *lingering.get_or_insert_with(Instant::now);
                if since.elapsed() >= LINGER {
                    return;
                }
            }
            Ok(n) => {
                queued.fetch_add(n, Ordering::Relaxed);
                let data = buf.get(..n).unwrap_or_default().to_vec();
                if tx.send(Input::Data(id, data)).is_err() {
                    return;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if closed.load(Ordering::Relaxed) {
                    return;
                }
            }
            Err(_) => break,
        }
    }
    let _ = tx.send(Input::Closed(id));
}

fn run(
    rx: &Receiver<Input>,
    api: &mut XenApi,
    platform: &mut StdPlatform,
    hostname: &str,
    listen: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    local: crate::local_disks::LocalDisks,
) -> std::io::Result<()> {
    let limits = Limits::default();
    let mut peers: HashMap<u64, Peer> = HashMap::new();
    let mut jobs = HostedJobs {
        local,
        ..HostedJobs::default()
    };
    let management_ip = match listen.ip() {
        IpAddr::V4(ip) => Some(smoltcp::wire::Ipv4Address::from(ip.octets())),
        IpAddr::V6(_) => None,
    };
    loop {
        let busy = jobs.poll(api, platform);
        // No guests run here; the first round still checks the VM records
        // and adds the built-in template.
        api.poll_vms(platform);
        let now = platform.now();
        let wait = api
            .next_deadline()
            .map_or(MAX_WAIT, |d| d.saturating_sub(now).min(MAX_WAIT));
        // A running iSCSI job is moved forward every few milliseconds.
        let wait = if busy { wait.min(JOB_POLL) } else { wait };
        let touched = match rx.recv_timeout(wait) {
            Ok(Input::Accepted(id, stream, closed, is_tls, queued)) => {
                match Stream::new(tls.as_ref().filter(|_| is_tls)) {
                    Some(http) => {
                        peers.insert(
                            id,
                            Peer {
                                stream,
                                closed,
                                http,
                                unread: Vec::new(),
                                queued,
                                last_activity: Instant::now(),
                                peer_closed: false,
                            },
                        );
                    }
                    None => {
                        closed.store(true, Ordering::Relaxed);
                        let _ = stream.shutdown(Shutdown::Both);
                    }
                }
                Some(id)
            }
            Ok(Input::Data(id, data)) => {
                if let Some(peer) = peers.get_mut(&id) {
                    if peer.unread.is_empty() {
                        peer.unread = data;
                    } else {
                        peer.unread.extend_from_slice(&data);
                    }
                    peer.last_activity = Instant::now();
                }
                Some(id)
            }
            Ok(Input::Closed(id)) => {
                if let Some(peer) = peers.get_mut(&id) {
                    peer.peer_closed = true;
                }
                Some(id)
            }
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        };
        let uptime = platform.now();
        let mut endpoints = Endpoints {
            api,
            platform,
            hostname,
            management_ip,
            uptime,
        };
        // The connection that had news, and every connection awaiting a
        // deferred answer (an event may have arrived for it).
        let ids: Vec<u64> = peers
            .iter()
            .filter(|(id, p)| Some(**id) == touched || p.http.is_waiting())
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let Some(peer) = peers.get_mut(&id) else {
                continue;
            };
            let written = peer.serve(&mut endpoints, &limits);
            if peer.http.is_waiting() {
                peer.last_activity = Instant::now();
            }
            let idle = peer.last_activity.elapsed() >= IDLE_TIMEOUT;
            if !written || idle || peer.http.finished(peer.peer_closed) {
                peer.http.abandon(&mut endpoints);
                // Closing only our side lets a client still sending (a body
                // refused with 413) finish and read the answer; its reader
                // thread drains the rest until the client closes or times out.
                let how = if written {
                    Shutdown::Write
                } else {
                    Shutdown::Both
                };
                peer.close(how);
                peers.remove(&id);
            }
        }
        // Jobs the answers just queued (the next piece of a raw VDI
        // transfer, say) start now, not after the next wait.
        if api.storage_jobs_queued() {
            jobs.poll(api, platform);
        }
        if touched.is_none() {
            // Close idle connections now and then.
            peers.retain(|_, p| {
                let keep = p.is_waiting_or_recent();
                if !keep {
                    p.close(Shutdown::Write);
                }
                keep
            });
        }
    }
}

/// How often running iSCSI jobs are moved forward.
const JOB_POLL: Duration = Duration::from_millis(2);

/// iSCSI jobs of the hosted service, each over its own [`StdLink`].
#[derive(Default)]
struct HostedJobs {
    running: Vec<(u64, Job, StdLink)>,
    waiting: Vec<(u64, JobSpec)>,
    /// Files served as host disks (`--host-disk`), for local SRs.
    local: crate::local_disks::LocalDisks,
}

impl HostedJobs {
    /// Starts queued jobs, moves the running ones, reports the ended ones;
    /// whether any job is still running.
    fn poll(&mut self, api: &mut XenApi, platform: &mut StdPlatform) -> bool {
        let now = u64::try_from(platform.now().as_millis()).unwrap_or(u64::MAX);
        let (jobs, ran) = self.local.run_jobs(api.take_storage_jobs(), api, platform);
        self.waiting.extend(jobs);
        let mut w = 0;
        while w < self.waiting.len() {
            let spec = &self.waiting[w].1;
            let busy = self
                .running
                .iter()
                .filter(|(_, j, _)| !iscsi::is_session(j.spec()))
                .count();
            if busy >= crate::app::MAX_ISCSI_JOBS && !iscsi::is_session(spec) {
                w += 1;
                continue;
            }
            if self
                .running
                .iter()
                .any(|(_, j, _)| iscsi::same_sr(j.spec(), spec))
            {
                w += 1;
                continue;
            }
            let (id, spec) = self.waiting.remove(w);
            let mut random = [0u8; iscsi::RANDOM_BYTES];
            platform.fill_random(&mut random);
            let portal = spec.portal;
            match Job::new(spec, now, &random) {
                Ok(job) => self.running.push((id, job, StdLink::connect(portal))),
                Err(e) => api.storage_finished(id, Err(e), platform),
            }
        }
        let mut i = 0;
        while i < self.running.len() {
            let (id, job, link) = &mut self.running[i];
            job.poll(link, now);
            if let Some(result) = job.take_result() {
                if let Some(spec) = iscsi::retry_without_chap(job.spec(), &result) {
                    self.waiting.insert(0, (*id, spec));
                } else {
                    iscsi::report(*id, job.spec(), &result, job.figures());
                    api.storage_finished(*id, result, platform);
                }
            }
            if job.closed() {
                self.running.swap_remove(i);
            } else {
                i += 1;
            }
        }
        ran || !self.running.is_empty() || !self.waiting.is_empty() || api.disks_waiting()
    }
}

/// Bytes a connection's reader may have read ahead of the service.
const MAX_QUEUED: usize = 1024 * 1024;

impl Peer {
    /// Hands the unread bytes to the connection, answers what is complete and
    /// writes the answers; whether every write succeeded.
    fn serve(&mut self, endpoints: &mut Endpoints<'_>, limits: &Limits) -> bool {
        loop {
            let room = self.http.room(limits).min(self.unread.len());
            if room > 0 {
                self.http
                    .receive(self.unread.get(..room).unwrap_or_default());
                self.unread.drain(..room);
                self.queued.fetch_sub(room, Ordering::Relaxed);
            }
            let closed = self.peer_closed && self.unread.is_empty();
            self.http.respond(endpoints, limits, closed);
            // A large TLS answer is encrypted in parts as the earlier ones go out.
            let mut wrote = false;
            while !self.http.output().is_empty() {
                let out = self.http.output().len();
                if self.stream.write_all(self.http.output()).is_err() {
                    return false;
                }
                self.http.sent(out, limits);
                wrote = true;
            }
            // A streamed response body goes on while pieces are ready
            // (the write blocks on a slow client).
            if wrote && self.http.is_sending() {
                continue;
            }
            // Plain HTTP holds a whole request; more than that is dropped,
            // as the connection answers 413 and closes. A streamed body
            // the handler holds back (back-pressure) is kept.
            if self.unread.is_empty() || self.http.room(limits) == 0 {
                if matches!(self.http, Stream::Plain(_)) && !self.http.is_waiting() {
                    self.queued.fetch_sub(self.unread.len(), Ordering::Relaxed);
                    self.unread.clear();
                }
                return true;
            }
        }
    }

    /// Closes our side (`how`) and lets the reader thread end.
    fn close(&self, how: Shutdown) {
        self.closed.store(true, Ordering::Relaxed);
        let _ = self.stream.shutdown(how);
    }

    fn is_waiting_or_recent(&self) -> bool {
        self.http.is_waiting() || self.last_activity.elapsed() < IDLE_TIMEOUT
    }
}

/// `keel-hosted`'s command line.
#[derive(Debug)]
pub struct Options {
    pub listen: SocketAddr,
    /// Where HTTPS listens (`--listen-tls`), if it is served.
    pub listen_tls: Option<SocketAddr>,
    pub config: HostConfig,
    /// Where the database is kept (`--state`); in memory only without it.
    pub state: Option<std::path::PathBuf>,
    /// Files served as host disks (`--host-disk`, repeated).
    pub host_disks: Vec<std::path::PathBuf>,
}

pub const USAGE: &str = "\
usage: keel-hosted [--listen ADDR:PORT] [--listen-tls ADDR:PORT]
                   [--host-config FILE] [--root-password PW] [--state FILE]
                   [--host-disk FILE]...

Serves the keel appliance's HTTP endpoints (XenAPI on /, /RPC2, /xmlrpc and
/jsonrpc; /health) as a Linux process, for tests and development.

  --listen ADDR:PORT   where to listen (default 127.0.0.1:8080; port 0 picks a
                       free one). The first line on stdout is
                       `keel-hosted: listening on http://ADDR:PORT/`.
  --listen-tls ADDR:PORT  also serve HTTPS there (port 0 picks a free one),
                       with the host's self-signed ECDSA P-256 certificate
                       (kept in --state FILE, else made anew at each start).
                       Stdout then says
                       `keel-hosted: listening on https://ADDR:PORT/` and
                       `keel-hosted: tls certificate sha256 AB:CD:...`.
  --host-config FILE   host configuration: TOML (as for `host-config check`)
                       or a compiled boot module (`host-config compile`)
  --root-password PW   set or override the root password (hashed at start)
  --state FILE         keep the XenAPI database in FILE (the configuration
                       store, as on the image's state disk); a missing FILE
                       is created blank (64 MiB, sparse). Without it the
                       database lives in memory only.
  --host-disk FILE     serve FILE as a host disk for local SRs (type lvm or
                       ext), as the image serves its extra disks: the first
                       is /dev/vda, the next /dev/vdb..., each also named
                       /dev/disk/by-id/virtio-<file name>. Repeatable.
";

/// Parses the arguments after the program name.
pub fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 8080));
    let mut listen_tls = None;
    let mut config = HostConfig::default();
    let mut password = None;
    let mut state = None;
    let mut host_disks = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .cloned()
                .ok_or_else(|| format!("{arg} needs a value"))
        };
        match arg.as_str() {
            "--listen" => {
                let v = value()?;
                listen = v.parse().map_err(|e| format!("--listen {v}: {e}"))?;
            }
            "--listen-tls" => {
                let v = value()?;
                listen_tls = Some(v.parse().map_err(|e| format!("--listen-tls {v}: {e}"))?);
            }
            "--host-config" => {
                let path = std::path::PathBuf::from(value()?);
                config = if path.extension().is_some_and(|e| e == "toml") {
                    host_config::load_file(&path)?
                } else {
                    host_config::tool::read_module(&path)?
                };
            }
            "--root-password" => password = Some(value()?),
            "--state" => state = Some(std::path::PathBuf::from(value()?)),
            "--host-disk" => host_disks.push(std::path::PathBuf::from(value()?)),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if let Some(pw) = password {
        config.root_password_hash = Some(
            host_config::hash_password_random(&pw)
                .map_err(|e| format!("hashing the root password: {e}"))?,
        );
    }
    Ok(Options {
        listen,
        listen_tls,
        config,
        state,
        host_disks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args() {
        let o = parse_args(&["--listen".into(), "127.0.0.1:0".into()]).unwrap();
        assert_eq!(o.listen.port(), 0);
        assert!(o.config.root_password_hash.is_none());
        assert!(parse_args(&["--bogus".into()]).is_err());
        assert!(parse_args(&["--listen".into()]).is_err());
    }
}
