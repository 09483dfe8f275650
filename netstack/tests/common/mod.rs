//! The lab the Open vSwitch interop tests share: a network namespace of
//! the test's own, veth pairs into it, `ovsdb-server` and `ovs-vswitchd`
//! (userspace datapath) inside, and our side (a bond under a smoltcp host
//! interface) on the outer veth ends, driven by the wall clock.
//!
//! Every process runs under `timeout` and is killed by its pid when its guard
//! drops, pass or fail; dropping the namespace removes the veths.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use netstack::bond::{Bond, BondConfig};
use netstack::hosted::PacketNic;
use netstack::{HostInterface, IpConfig, MacAddress, Nic, NicError};
use smoltcp::iface::SocketHandle;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::socket::icmp;
use smoltcp::time::Instant;
use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, IpAddress, Ipv4Address, Ipv4Cidr};

/// Hard limit for every daemon the test starts, in seconds.
pub const DAEMON_TIMEOUT: &str = "50";
/// Hard limit for every short command, in seconds.
pub const COMMAND_TIMEOUT: &str = "10";
pub const OUR_IP: Ipv4Address = Ipv4Address::new(10, 213, 0, 2);
pub const BRIDGE_IP: Ipv4Address = Ipv4Address::new(10, 213, 0, 1);
pub const BRIDGE_CIDR: &str = "10.213.0.1/24";
pub const PING_IDENT: u16 = 0x6b6c;
pub const SYSTEM_MAC: MacAddress = MacAddress([0x02, 0x6b, 0x65, 0x65, 0x6c, 0x01]);

/// Runs a short command under `timeout`; its stdout, or why it failed.
pub fn run(args: &[&str]) -> Result<String, String> {
    let out = Command::new("timeout")
        .arg(COMMAND_TIMEOUT)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{args:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{args:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// A network namespace, deleted on drop (its veth ends go with it, and
/// their peers with them).
pub struct Netns(pub String);

impl Netns {
    pub fn create(name: String) -> Result<Self, String> {
        run(&["ip", "netns", "add", &name])?;
        Ok(Netns(name))
    }

    /// Runs a command inside the namespace.
    pub fn run(&self, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["ip", "netns", "exec", &self.0];
        all.extend_from_slice(args);
        run(&all)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.0]);
    }
}

/// A scratch directory for OVS's database, sockets and logs, removed on drop.
pub struct ScratchDir(pub PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A daemon under `timeout` in the namespace. On drop it is killed by the
/// pid in its pidfile, then the `timeout` wrapper by its own pid.
pub struct Daemon {
    wrapper: Child,
    pidfile: PathBuf,
}

impl Daemon {
    pub fn start(ns: &Netns, args: &[&str], pidfile: PathBuf, log: &Path) -> Result<Self, String> {
        let log = std::fs::File::create(log).map_err(|e| e.to_string())?;
        let wrapper = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.0,
                "timeout",
                "-s",
                "KILL",
                DAEMON_TIMEOUT,
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{args:?}: {e}"))?;
        Ok(Daemon { wrapper, pidfile })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(&self.pidfile)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        {
            signal(pid, "-KILL");
        }
        // `timeout` passes TERM on to the daemon if it had no pidfile yet.
        signal(self.wrapper.id(), "-TERM");
        let deadline = StdInstant::now() + StdDuration::from_secs(2);
        while StdInstant::now() < deadline {
            if let Ok(Some(_)) = self.wrapper.try_wait() {
                return;
            }
            std::thread::sleep(StdDuration::from_millis(20));
        }
        let _ = self.wrapper.kill();
        let _ = self.wrapper.wait();
    }
}

/// ovsdb-server and ovs-vswitchd with all their files in `dir`.
pub struct Ovs {
    dir: PathBuf,
    // Field order is drop order: the switch goes before its database.
    _vswitchd: Daemon,
    _ovsdb: Daemon,
}

impl Ovs {
    pub fn start(ns: &Netns, dir: &Path) -> Result<Self, String> {
        let p = |name: &str| dir.join(name).to_string_lossy().into_owned();
        run(&[
            "ovsdb-tool",
            "create",
            &p("conf.db"),
            "/usr/share/openvswitch/vswitch.ovsschema",
        ])?;
        let ovsdb = Daemon::start(
            ns,
            &[
                "ovsdb-server",
                &p("conf.db"),
                &format!("--remote=punix:{}", p("db.sock")),
                &format!("--unixctl={}", p("ovsdb.ctl")),
                &format!("--pidfile={}", p("ovsdb.pid")),
                "--log-file=/dev/null",
            ],
            dir.join("ovsdb.pid"),
            &dir.join("ovsdb.out"),
        )?;
        wait_for_path(&dir.join("db.sock"))?;
        let db = format!("--db=unix:{}", p("db.sock"));
        ns.run(&["ovs-vsctl", &db, "--no-wait", "init"])?;
        let vswitchd = Daemon::start(
            ns,
            &[
                "ovs-vswitchd",
                &format!("unix:{}", p("db.sock")),
                &format!("--unixctl={}", p("vswitchd.ctl")),
                &format!("--pidfile={}", p("vswitchd.pid")),
                &format!("--log-file={}", p("vswitchd.log")),
            ],
            dir.join("vswitchd.pid"),
            &dir.join("vswitchd.out"),
        )?;
        wait_for_path(&dir.join("vswitchd.ctl"))?;
        Ok(Ovs {
            dir: dir.to_path_buf(),
            _vswitchd: vswitchd,
            _ovsdb: ovsdb,
        })
    }

    pub fn vsctl(&self, ns: &Netns, args: &[&str]) -> Result<String, String> {
        let db = format!("--db=unix:{}", self.dir.join("db.sock").display());
        let mut all = vec!["ovs-vsctl", &db, "--timeout=5"];
        all.extend_from_slice(args);
        ns.run(&all)
    }

    pub fn appctl(&self, ns: &Netns, args: &[&str]) -> Result<String, String> {
        let ctl = self.dir.join("vswitchd.ctl").display().to_string();
        let mut all = vec!["ovs-appctl", "-t", &ctl, "--timeout=5"];
        all.extend_from_slice(args);
        ns.run(&all)
    }
}

pub fn wait_for_path(path: &Path) -> Result<(), String> {
    let deadline = StdInstant::now() + StdDuration::from_secs(10);
    while StdInstant::now() < deadline {
        if path.exists() {
            return Ok(());
        }
        std::thread::sleep(StdDuration::from_millis(20));
    }
    Err(format!("{} did not appear", path.display()))
}

pub type Host = HostInterface<Bond<Deafenable>>;

/// A member NIC the test can make deaf: it still sends, but drops all it
/// receives, like a fibre broken in one direction. Carrier stays up, so only
/// LACP's timeout can reveal the failure.
#[derive(Debug)]
pub struct Deafenable {
    nic: PacketNic,
    deaf: Arc<AtomicBool>,
}

impl Nic for Deafenable {
    fn mac(&self) -> MacAddress {
        self.nic.mac()
    }
    fn mtu(&self) -> usize {
        self.nic.mtu()
    }
    fn link_up(&self) -> bool {
        self.nic.link_up()
    }
    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<usize>, NicError> {
        loop {
            match self.nic.receive(buf)? {
                Some(_) if self.deaf.load(Ordering::Relaxed) => continue,
                other => return Ok(other),
            }
        }
    }
    fn can_transmit(&mut self) -> bool {
        self.nic.can_transmit()
    }
    fn transmit(&mut self, frame: &[u8]) -> Result<(), NicError> {
        self.nic.transmit(frame)
    }
}

/// Our side: the bond and its host interface, driven by the wall clock.
pub struct Ours {
    pub host: Host,
    pub start: StdInstant,
    pub pinger: SocketHandle,
    /// Per member: drop everything it receives.
    pub deaf: [Arc<AtomicBool>; 2],
}

impl Ours {
    pub fn now(&self) -> Instant {
        Instant::from_micros(self.start.elapsed().as_micros() as i64)
    }

    pub fn pump(&mut self) {
        let now = self.now();
        self.host.nic_mut().poll(now);
        self.host.poll(now);
        if self.host.nic().poll_at().is_some() {
            self.host.nic_mut().poll(now);
        }
    }

    /// Pumps for `time`, sleeping 1 ms between rounds.
    pub fn pump_for(&mut self, time: StdDuration) {
        let end = StdInstant::now() + time;
        while StdInstant::now() < end {
            self.pump();
            std::thread::sleep(StdDuration::from_millis(1));
        }
    }

    /// Pumps until `check` (evaluated every 100 ms) holds; how long it took.
    pub fn pump_until(
        &mut self,
        limit: StdDuration,
        mut check: impl FnMut(&mut Self) -> bool,
    ) -> Option<StdDuration> {
        let start = StdInstant::now();
        while start.elapsed() < limit {
            self.pump_for(StdDuration::from_millis(100));
            if check(self) {
                return Some(start.elapsed());
            }
        }
        None
    }

    pub fn members_usable(&self) -> [bool; 2] {
        [
            self.host.nic().is_member_usable(0),
            self.host.nic().is_member_usable(1),
        ]
    }
}

/// Pings the bridge's address from our interface at 100 Hz while pumping;
/// returns (sent, answered). `during` runs once, `at` into the run.
pub fn ping_while(
    ours: &mut Ours,
    count: u16,
    at: StdDuration,
    mut during: impl FnMut(&mut Ours),
) -> (u16, u16) {
    let bridge: Ipv4Address = BRIDGE_IP;
    let mut answered = vec![false; usize::from(count)];
    let start = StdInstant::now();
    let mut sent = 0u16;
    let mut done_during = false;
    // Keep listening a second after the last request for late answers.
    while start.elapsed() < StdDuration::from_millis(10 * u64::from(count) + 1000) {
        ours.pump();
        if !done_during && start.elapsed() >= at {
            during(ours);
            done_during = true;
        }
        let socket = ours
            .host
            .sockets_mut()
            .get_mut::<icmp::Socket<'static>>(ours.pinger);
        let due = start.elapsed().as_millis() / 10;
        if sent < count && u128::from(sent) <= due && socket.can_send() {
            let repr = Icmpv4Repr::EchoRequest {
                ident: PING_IDENT,
                seq_no: sent,
                data: b"keel-lacp",
            };
            if let Ok(buf) = socket.send(repr.buffer_len(), IpAddress::Ipv4(bridge)) {
                repr.emit(
                    &mut Icmpv4Packet::new_unchecked(buf),
                    &ChecksumCapabilities::default(),
                );
                sent += 1;
            }
        }
        while let Ok((data, _)) = socket.recv() {
            let reply = Icmpv4Packet::new_checked(data)
                .and_then(|p| Icmpv4Repr::parse(&p, &ChecksumCapabilities::default()));
            if let Ok(Icmpv4Repr::EchoReply { ident, seq_no, .. }) = reply
                && ident == PING_IDENT
                && let Some(slot) = answered.get_mut(usize::from(seq_no))
            {
                *slot = true;
            }
        }
        std::thread::sleep(StdDuration::from_millis(1));
    }
    (sent, answered.iter().filter(|a| **a).count() as u16)
}

pub fn tx_rx_packets(ifname: &str) -> u64 {
    ["tx_packets", "rx_packets"]
        .iter()
        .filter_map(|c| {
            std::fs::read_to_string(format!("/sys/class/net/{ifname}/statistics/{c}")).ok()
        })
        .filter_map(|s| s.trim().parse::<u64>().ok())
        .sum()
}

pub fn prerequisites_missing() -> Option<String> {
    let root = run(&["id", "-u"]).is_ok_and(|s| s.trim() == "0");
    if !root {
        return Some("not root".into());
    }
    for tool in [
        "ovs-vswitchd",
        "ovsdb-server",
        "ovsdb-tool",
        "ovs-vsctl",
        "ovs-appctl",
        "ip",
        "sysctl",
        "timeout",
    ] {
        if run(&["sh", "-c", &format!("command -v {tool}")]).is_err() {
            return Some(format!("{tool} not installed"));
        }
    }
    None
}

/// The namespace, its veths and OVS, for one test. `name` keeps concurrent
/// tests of one binary apart.
pub struct Lab {
    tag: String,
    // Field order is drop order: OVS, its files, then the namespace.
    pub ovs: Ovs,
    _dir: ScratchDir,
    pub ns: Netns,
}

impl Lab {
    /// Two veth pairs and a running OVS with bridge `br0` (userspace
    /// datapath, no ports yet); `ports` adds them: it gets the OVS-side names.
    pub fn start(name: char, ports: &[&str]) -> Result<Self, String> {
        let pid = std::process::id();
        let tag = format!("k{}{name}", pid % 100_000);
        let ns = Netns::create(format!("keel-lacp-{pid}-{name}"))?;
        for i in 0..2 {
            let (o, h) = (format!("{tag}o{i}"), format!("{tag}h{i}"));
            // One command, so no half-made pair is left outside the namespace:
            // deleting the namespace deletes `o`, and `h` goes with its peer.
            run(&[
                "ip", "link", "add", &h, "type", "veth", "peer", "name", &o, "netns", &ns.0,
            ])?;
            // Our end carries only our frames: no IPv6 chatter from the kernel.
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{h}/disable_ipv6"), "1");
            run(&["ip", "link", "set", &h, "up"])?;
            ns.run(&["ip", "link", "set", &o, "up"])?;
        }
        ns.run(&["ip", "link", "set", "lo", "up"])?;
        // The userspace datapath reads its ports through packet sockets, so
        // the namespace's kernel sees their frames too (the kernel datapath
        // would take them away from it). Without this it answers our ARP
        // requests for the bridge's address with a port's MAC, and our pings
        // go astray.
        ns.run(&["sysctl", "-q", "-w", "net.ipv4.conf.all.arp_ignore=1"])?;
        let dir = ScratchDir(std::env::temp_dir().join(format!("keel-lacp-{pid}-{name}")));
        let _ = std::fs::remove_dir_all(&dir.0);
        std::fs::create_dir_all(&dir.0).map_err(|e| e.to_string())?;
        let ovs = Ovs::start(&ns, &dir.0)?;
        let mut args = vec![
            "add-br",
            "br0",
            "--",
            "set",
            "bridge",
            "br0",
            "datapath_type=netdev",
            "--",
        ];
        args.extend_from_slice(ports);
        ovs.vsctl(&ns, &args)?;
        ns.run(&["ip", "addr", "add", BRIDGE_CIDR, "dev", "br0"])?;
        ns.run(&["ip", "link", "set", "br0", "up"])?;
        Ok(Lab {
            tag,
            ovs,
            _dir: dir,
            ns,
        })
    }

    /// The name member `i` has inside the namespace (an OVS port).
    pub fn ovs_end(&self, i: usize) -> String {
        Self::ovs_end_of(&self.tag, i)
    }

    /// The name of the veth end our bond's member `i` uses.
    pub fn our_end(&self, i: usize) -> String {
        format!("{}h{i}", self.tag)
    }

    /// OVS-side names before the lab exists (for the `ports` argument).
    pub fn ovs_end_of(tag: &str, i: usize) -> String {
        format!("{tag}o{i}")
    }

    pub fn tag(name: char) -> String {
        format!("k{}{name}", std::process::id() % 100_000)
    }

    pub fn appctl(&self, args: &[&str]) -> Result<String, String> {
        self.ovs.appctl(&self.ns, args)
    }

    /// Takes member `i`'s link down (or up) on the OVS side; our end loses
    /// (or regains) carrier with it.
    pub fn set_link(&self, i: usize, up: bool) -> Result<String, String> {
        let state = if up { "up" } else { "down" };
        self.ns.run(&["ip", "link", "set", &self.ovs_end(i), state])
    }

    /// Our bond over the outer veth ends, under a static host interface with
    /// an ICMP socket for [`ping_while`].
    pub fn ours(&self, config: BondConfig) -> Result<Ours, String> {
        let deaf = [0, 1].map(|_| Arc::new(AtomicBool::new(false)));
        let mut members = Vec::new();
        for (i, deaf) in deaf.iter().enumerate() {
            members.push(Deafenable {
                nic: PacketNic::open(&self.our_end(i)).map_err(|e| e.to_string())?,
                deaf: deaf.clone(),
            });
        }
        let start = StdInstant::now();
        let bond = Bond::new(config, members, Instant::ZERO).map_err(|e| e.to_string())?;
        let ip = IpConfig::Static {
            address: Ipv4Cidr::new(OUR_IP, 24),
            gateway: None,
            dns: Vec::new(),
        };
        let seed = u64::from(std::process::id()) << 8 | 1;
        let mut host = HostInterface::new("bond0", bond, ip, Instant::ZERO, seed);
        let buffer =
            || icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 64], vec![0; 8192]);
        let mut socket = icmp::Socket::new(buffer(), buffer());
        socket
            .bind(icmp::Endpoint::Ident(PING_IDENT))
            .map_err(|e| e.to_string())?;
        let pinger = host.add_socket(socket);
        Ok(Ours {
            host,
            start,
            pinger,
            deaf,
        })
    }
}

/// Pings until one answer comes back (ARP has to cross the switch both ways
/// first); false after five tries.
pub fn warm_up(ours: &mut Ours) -> bool {
    (0..5).any(|_| ping_while(ours, 10, StdDuration::ZERO, |_| {}).1 > 0)
}

/// Which member carries the ping flow: the one whose counters moved most.
/// `counters` are sysfs statistics names (`rx_packets`, `tx_packets`) of
/// our veth ends: the answers arrive as rx, our requests leave as tx.
pub fn ping_member(ours: &mut Ours, lab: &Lab, counters: &[&str]) -> (usize, u16, u16) {
    let count = |i: usize| packets(&lab.our_end(i), counters);
    let before = [count(0), count(1)];
    let (sent, answered) = ping_while(ours, 50, StdDuration::ZERO, |_| {});
    let delta = [count(0) - before[0], count(1) - before[1]];
    let member = if delta[0] >= delta[1] { 0 } else { 1 };
    (member, sent, answered)
}

fn packets(ifname: &str, counters: &[&str]) -> u64 {
    counters
        .iter()
        .filter_map(|c| {
            std::fs::read_to_string(format!("/sys/class/net/{ifname}/statistics/{c}")).ok()
        })
        .filter_map(|s| s.trim().parse::<u64>().ok())
        .sum()
}

/// Both directions of a member: what a cut interrupts.
pub const BOTH_WAYS: &[&str] = &["rx_packets", "tx_packets"];
/// Frames arriving on a member: what a deaf member loses.
pub const RECEIVED: &[&str] = &["rx_packets"];

/// Everything worth seeing when traffic does not get through.
pub fn diagnose(lab: &Lab, ours: &Ours) -> String {
    let show = |args: &[&str]| lab.appctl(args).unwrap_or_else(|e| e);
    format!(
        "no ping answered in 5 tries\nbond {:?}\niface {:?}\nframes {:?}\n{}\n{}\n{}\n{}",
        ours.host.nic().stats(),
        ours.host.stats(),
        [
            tx_rx_packets(&lab.our_end(0)),
            tx_rx_packets(&lab.our_end(1))
        ],
        show(&["bond/show"]),
        show(&["fdb/show", "br0"]),
        show(&["dpctl/dump-flows"]),
        lab.ns.run(&["ip", "neigh"]).unwrap_or_else(|e| e),
    )
}
