//! The appliance's iSCSI jobs over smoltcp: each job owns a TCP socket on
//! the host interface whose subnet holds the target (else the management
//! interface, through its gateway), and is moved forward on every poll.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use netstack::switch::HostPort;
use netstack::{HostInterface, HostNetworks, Nic, Uplink};
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::wire::{IpAddress, Ipv4Address};

use crate::iscsi::{Job, JobError, JobSpec, Link, LinkState, RANDOM_BYTES};
use crate::local_disks::LocalDisks;
use crate::platform::Platform;
use crate::xenapi::XenApi;

/// Socket buffers of one iSCSI connection (a 1 MiB fetch streams through;
/// the heap is small, and several jobs may run at once).
const RX_BUFFER: usize = 128 * 1024;
const TX_BUFFER: usize = 128 * 1024;
/// Jobs running at once (disk sessions aside); more wait in the service's queue.
pub const MAX_JOBS: usize = crate::app::MAX_ISCSI_JOBS;
/// How long a job waits for its interface to get an address (DHCP at boot).
const ADDRESS_WAIT_MS: u64 = 60_000;

/// A job and where its socket lives.
struct Running {
    id: u64,
    job: Job,
    iface: String,
    handle: SocketHandle,
}

/// Every running iSCSI job.
#[derive(Default)]
pub struct IscsiJobs {
    running: Vec<Running>,
    next_port: u16,
    /// Jobs taken from the service but not started (over [`MAX_JOBS`], or
    /// their interface has no address yet), with when they were taken (ms).
    waiting: Vec<(u64, JobSpec, u64)>,
}

impl core::fmt::Debug for IscsiJobs {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IscsiJobs")
            .field("running", &self.running.len())
            .finish_non_exhaustive()
    }
}

/// A job's view of its smoltcp socket.
struct SocketLink<'a> {
    socket: &'a mut tcp::Socket<'static>,
}

impl Link for SocketLink<'_> {
    fn state(&self) -> LinkState {
        match self.socket.state() {
            tcp::State::SynSent | tcp::State::SynReceived => LinkState::Connecting,
            tcp::State::Established => LinkState::Open,
            _ => LinkState::Closed,
        }
    }

    fn send(&mut self, bytes: &[u8]) -> usize {
        if !self.socket.can_send() {
            return 0;
        }
        self.socket.send_slice(bytes).unwrap_or(0)
    }

    fn recv(&mut self, buf: &mut [u8]) -> usize {
        if !self.socket.can_recv() {
            return 0;
        }
        self.socket.recv_slice(buf).unwrap_or(0)
    }

    fn close(&mut self) {
        self.socket.close();
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The interface a target at `ip` is reached from: the one whose subnet
/// holds it, else the management interface (its gateway routes it).
fn interface_for<N: Nic>(net: &HostNetworks<Uplink<N>>, ip: Ipv4Address) -> String {
    net.interfaces()
        .find(|i: &&HostInterface<HostPort>| i.ipv4_cidr().is_some_and(|c| c.contains_addr(&ip)))
        .unwrap_or_else(|| net.primary())
        .name()
        .into()
}

impl IscsiJobs {
    /// Runs the local SR jobs the service queued on `local`, starts the
    /// iSCSI ones, moves every job forward, and reports the ended ones.
    /// Returns when to poll again.
    pub fn poll<N: Nic>(
        &mut self,
        net: &mut HostNetworks<Uplink<N>>,
        local: &mut LocalDisks,
        api: &mut XenApi,
        platform: &mut dyn Platform,
    ) -> Option<Duration> {
        let now = millis(platform.now());
        let mut due: Option<u64> = None;
        // Jobs on the host's own disks run now (see `local_disks`).
        let (jobs, ran) = local.run_jobs(api.take_storage_jobs(), api, platform);
        if ran {
            due = Some(now);
        }
        self.waiting
            .extend(jobs.into_iter().map(|(id, spec)| (id, spec, now)));
        let mut w = 0;
        while w < self.waiting.len() {
            let (_, spec, taken) = &self.waiting[w];
            let busy = self
                .running
                .iter()
                .filter(|r| !crate::iscsi::is_session(r.job.spec()))
                .count();
            if busy >= MAX_JOBS && !crate::iscsi::is_session(spec) {
                w += 1;
                continue;
            }
            if self
                .running
                .iter()
                .any(|r| crate::iscsi::same_sr(r.job.spec(), spec))
            {
                // One SR operation per LUN at a time, in the order asked:
                // each appends to the SR's journal where it found its end.
                w += 1;
                continue;
            }
            let ip = Ipv4Address::from(spec.portal.ip);
            let addressed = net
                .interface(&interface_for(net, ip))
                .is_some_and(|i| i.ipv4_cidr().is_some());
            if !addressed && now.saturating_sub(*taken) < ADDRESS_WAIT_MS {
                // At boot the PBDs are plugged before DHCP has answered.
                due = Some(due.map_or(now + 100, |d| d.min(now + 100)));
                w += 1;
                continue;
            }
            let (id, spec, _) = self.waiting.remove(w);
            if let Err(e) = self.start(net, id, spec, now, platform) {
                log::warn!("iscsi: job {id} did not start: {e}");
                api.storage_finished(id, Err(e), platform);
            }
        }
        let mut i = 0;
        while i < self.running.len() {
            let r = &mut self.running[i];
            let job_due = match net.interface_mut(&r.iface) {
                Some(iface) => {
                    let socket = iface
                        .sockets_mut()
                        .get_mut::<tcp::Socket<'static>>(r.handle);
                    let mut link = SocketLink { socket };
                    r.job.poll(&mut link, now)
                }
                None => None,
            };
            if let Some(result) = r.job.take_result() {
                if let Some(spec) = crate::iscsi::retry_without_chap(r.job.spec(), &result) {
                    self.waiting.insert(0, (r.id, spec, now));
                    due = Some(now);
                    i += 1;
                    continue;
                }
                crate::iscsi::report(r.id, r.job.spec(), &result, r.job.figures());
                api.storage_finished(r.id, result, platform);
                // The answer goes out on the next round, straight away.
                due = Some(now);
            }
            if r.job.closed() || net.interface(&r.iface).is_none() {
                let mut r = self.running.swap_remove(i);
                if !r.job.closed() {
                    // Its interface went away: it ends here, and whoever
                    // waits for it (a call, a disk) hears so.
                    r.job.abort(JobError::Unreachable(format!(
                        "interface {} went away",
                        r.iface
                    )));
                    if let Some(result) = r.job.take_result() {
                        crate::iscsi::report(r.id, r.job.spec(), &result, r.job.figures());
                        api.storage_finished(r.id, result, platform);
                        due = Some(now);
                    }
                }
                if let Some(iface) = net.interface_mut(&r.iface) {
                    iface.sockets_mut().remove(r.handle);
                }
                continue;
            }
            if let Some(d) = job_due {
                due = Some(due.map_or(d, |x| x.min(d)));
            }
            i += 1;
        }
        if api.disks_waiting() {
            // A disk's slow request waits for its fast path to drain.
            due = Some(due.map_or(now + 1, |d| d.min(now + 1)));
        }
        due.map(Duration::from_millis)
    }

    fn start<N: Nic>(
        &mut self,
        net: &mut HostNetworks<Uplink<N>>,
        id: u64,
        spec: JobSpec,
        now: u64,
        platform: &mut dyn Platform,
    ) -> Result<(), JobError> {
        let mut random = [0u8; RANDOM_BYTES + 2];
        platform.fill_random(&mut random);
        let ip = Ipv4Address::from(spec.portal.ip);
        let port = spec.portal.port;
        let job = Job::new(spec, now, &random[..RANDOM_BYTES])?;
        let name = interface_for(net, ip);
        let iface = net
            .interface_mut(&name)
            .ok_or_else(|| JobError::Unreachable(format!("no interface {name}")))?;
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(alloc::vec![0; RX_BUFFER]),
            tcp::SocketBuffer::new(alloc::vec![0; TX_BUFFER]),
        );
        socket.set_nagle_enabled(false);
        let handle = iface.add_socket(socket);
        // Ephemeral ports from a random start, so a restarted host does not
        // reuse the four-tuple of a connection the target still remembers.
        if self.next_port == 0 {
            self.next_port =
                49152 + u16::from_le_bytes([random[RANDOM_BYTES], random[RANDOM_BYTES + 1]]) % 8192;
        }
        let local = self.next_port;
        self.next_port = if self.next_port >= 65000 {
            49152
        } else {
            self.next_port + 1
        };
        if let Err(e) = iface.connect_tcp(handle, (IpAddress::Ipv4(ip), port), local) {
            iface.sockets_mut().remove(handle);
            return Err(JobError::Unreachable(format!(
                "cannot open a connection to {ip}:{port}: {e:?}"
            )));
        }
        self.running.push(Running {
            id,
            job,
            iface: name,
            handle,
        });
        Ok(())
    }
}
