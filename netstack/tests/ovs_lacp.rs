//! Interop with a real LACP partner: Open vSwitch's userspace datapath.
//!
//! The test makes a network namespace of its own with `ovsdb-server` and
//! `ovs-vswitchd` in it, bonds two veth ends there (`lacp=active`,
//! `lacp-time=fast`, `balance-tcp`) and runs our LACP bond, with a smoltcp
//! host interface on top, on the other two ends from this process. It checks
//! what OVS reports, pings our interface from the bridge's own port through
//! the bond, cuts the member carrying the pings, and restores it.
//!
//! Needs root and Open vSwitch (`cargo xtask setup` installs it); without
//! them it says SKIP and passes. Every process it starts runs under
//! `timeout` and is killed by its pid when the test ends, pass or fail, and
//! the namespace (with the veths) is deleted.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use netstack::Nic;
use netstack::bond::{Bond, BondConfig, BondMode, HashPolicy};
use netstack::hosted::PacketNic;
use netstack::lacp::LacpConfig;
use netstack::wire::{
    EtherType, EthernetFrame, LACPDU_LEN, LacpState, LacpduPacket, LacpduRepr,
    SLOW_PROTOCOLS_MULTICAST,
};
use netstack::{HostInterface, IpConfig, MacAddress};
use smoltcp::iface::SocketHandle;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::socket::icmp;
use smoltcp::time::Instant;
use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, IpAddress, Ipv4Address, Ipv4Cidr};

/// Hard limit for every daemon the test starts, in seconds.
const DAEMON_TIMEOUT: &str = "50";
/// Hard limit for every short command, in seconds.
const COMMAND_TIMEOUT: &str = "10";
const OUR_IP: Ipv4Address = Ipv4Address::new(10, 213, 0, 2);
const BRIDGE_IP: Ipv4Address = Ipv4Address::new(10, 213, 0, 1);
const BRIDGE_CIDR: &str = "10.213.0.1/24";
const PING_IDENT: u16 = 0x6b6c;
const SYSTEM_MAC: MacAddress = MacAddress([0x02, 0x6b, 0x65, 0x65, 0x6c, 0x01]);

/// Runs a short command under `timeout`; its stdout, or why it failed.
fn run(args: &[&str]) -> Result<String, String> {
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

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// A network namespace, deleted on drop (its veth ends go with it, and
/// their peers with them).
struct Netns(String);

impl Netns {
    fn create(name: String) -> Result<Self, String> {
        run(&["ip", "netns", "add", &name])?;
        Ok(Netns(name))
    }

    /// Runs a command inside the namespace.
    fn run(&self, args: &[&str]) -> Result<String, String> {
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
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A daemon under `timeout` in the namespace. On drop it is killed by the
/// pid in its pidfile, then the `timeout` wrapper by its own pid.
struct Daemon {
    wrapper: Child,
    pidfile: PathBuf,
}

impl Daemon {
    fn start(ns: &Netns, args: &[&str], pidfile: PathBuf, log: &Path) -> Result<Self, String> {
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
struct Ovs {
    dir: PathBuf,
    // Field order is drop order: the switch goes before its database.
    _vswitchd: Daemon,
    _ovsdb: Daemon,
}

impl Ovs {
    fn start(ns: &Netns, dir: &Path) -> Result<Self, String> {
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

    fn vsctl(&self, ns: &Netns, args: &[&str]) -> Result<String, String> {
        let db = format!("--db=unix:{}", self.dir.join("db.sock").display());
        let mut all = vec!["ovs-vsctl", &db, "--timeout=5"];
        all.extend_from_slice(args);
        ns.run(&all)
    }

    fn appctl(&self, ns: &Netns, args: &[&str]) -> Result<String, String> {
        let ctl = self.dir.join("vswitchd.ctl").display().to_string();
        let mut all = vec!["ovs-appctl", "-t", &ctl, "--timeout=5"];
        all.extend_from_slice(args);
        ns.run(&all)
    }
}

fn wait_for_path(path: &Path) -> Result<(), String> {
    let deadline = StdInstant::now() + StdDuration::from_secs(10);
    while StdInstant::now() < deadline {
        if path.exists() {
            return Ok(());
        }
        std::thread::sleep(StdDuration::from_millis(20));
    }
    Err(format!("{} did not appear", path.display()))
}

/// What `lacp/show` and `bond/show` say about one member.
#[derive(Debug, Default, PartialEq)]
struct MemberView {
    /// `current attached`, `expired detached`, ...
    status: String,
    may_enable: bool,
    partner_sys_id: String,
    /// `enabled` or `disabled` in `bond/show`.
    bond_state: String,
}

fn member_view(ovs: &Ovs, ns: &Netns, member: &str) -> Result<MemberView, String> {
    let lacp = ovs.appctl(ns, &["lacp/show", "bond0"])?;
    let bond = ovs.appctl(ns, &["bond/show", "bond0"])?;
    let mut view = MemberView::default();
    let mut in_member = false;
    for line in lacp.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("member: ") {
            in_member = rest.starts_with(&format!("{member}:"));
            if in_member {
                view.status = rest[member.len() + 1..].trim().to_string();
            }
        } else if in_member {
            if let Some(v) = line.strip_prefix("may_enable: ") {
                view.may_enable = v == "true";
            } else if let Some(v) = line.strip_prefix("partner sys_id: ") {
                view.partner_sys_id = v.to_string();
            }
        }
    }
    for line in bond.lines() {
        if let Some(rest) = line.trim().strip_prefix(&format!("member {member}: ")) {
            view.bond_state = rest.trim().to_string();
        }
    }
    Ok(view)
}

fn enabled_with_us(view: &MemberView) -> bool {
    view.status.starts_with("current attached")
        && view.may_enable
        && view.bond_state == "enabled"
        && view.partner_sys_id == SYSTEM_MAC.to_string()
}

type Host = HostInterface<Bond<PacketNic>>;

/// Our side: the bond and its host interface, driven by the wall clock.
struct Ours {
    host: Host,
    start: StdInstant,
    pinger: SocketHandle,
}

impl Ours {
    fn now(&self) -> Instant {
        Instant::from_micros(self.start.elapsed().as_micros() as i64)
    }

    fn pump(&mut self) {
        let now = self.now();
        self.host.nic_mut().poll(now);
        self.host.poll(now);
        if self.host.nic().poll_at().is_some() {
            self.host.nic_mut().poll(now);
        }
    }

    /// Pumps for `time`, sleeping 1 ms between rounds.
    fn pump_for(&mut self, time: StdDuration) {
        let end = StdInstant::now() + time;
        while StdInstant::now() < end {
            self.pump();
            std::thread::sleep(StdDuration::from_millis(1));
        }
    }

    /// Pumps until `check` (evaluated every 100 ms) holds; how long it took.
    fn pump_until(
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

    fn members_usable(&self) -> [bool; 2] {
        [
            self.host.nic().is_member_usable(0),
            self.host.nic().is_member_usable(1),
        ]
    }
}

/// Pings the bridge's address from our interface at 100 Hz while pumping;
/// returns (sent, answered). `during` runs once, `at` into the run.
fn ping_while(
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

fn tx_rx_packets(ifname: &str) -> u64 {
    ["tx_packets", "rx_packets"]
        .iter()
        .filter_map(|c| {
            std::fs::read_to_string(format!("/sys/class/net/{ifname}/statistics/{c}")).ok()
        })
        .filter_map(|s| s.trim().parse::<u64>().ok())
        .sum()
}

/// A LACPDU from OVS parses, says what `lacp/show` says, and re-emits to
/// the same bytes (so our reserved-byte and TLV layout matches OVS's).
fn check_ovs_lacpdu(frame: &[u8]) {
    let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
    eprintln!("FIGURE ovs_lacpdu len={} bytes={hex}", frame.len());
    let eth = EthernetFrame::new_checked(frame).expect("ethernet");
    assert_eq!(eth.dst_addr(), SLOW_PROTOCOLS_MULTICAST);
    let payload = eth.payload();
    assert_eq!(payload.len(), LACPDU_LEN, "OVS sends exactly 110 bytes");
    let packet = LacpduPacket::new_checked(payload).expect("OVS's LACPDU parses");
    assert_eq!(packet.version(), 1);
    let repr = LacpduRepr::parse(&packet);
    assert_eq!(
        repr.partner.system, SYSTEM_MAC,
        "OVS names us as its partner"
    );
    let want = LacpState::ACTIVITY
        | LacpState::TIMEOUT
        | LacpState::AGGREGATION
        | LacpState::SYNCHRONIZATION
        | LacpState::COLLECTING
        | LacpState::DISTRIBUTING;
    assert!(
        repr.actor.state.has(want),
        "OVS actor state {:?}",
        repr.actor.state
    );
    assert!(
        repr.partner.state.has(want),
        "our state as OVS sees it {:?}",
        repr.partner.state
    );
    let mut again = [0u8; LACPDU_LEN];
    repr.emit(&mut again).expect("emit");
    assert_eq!(&again[..], payload, "our emitter writes what OVS writes");
}

fn prerequisites_missing() -> Option<String> {
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
    ] {
        if run(&["sh", "-c", &format!("command -v {tool}")]).is_err() {
            return Some(format!("{tool} not installed"));
        }
    }
    None
}

#[test]
fn lacp_bond_interoperates_with_open_vswitch() {
    if let Some(why) = prerequisites_missing() {
        eprintln!("SKIP lacp_bond_interoperates_with_open_vswitch: {why}");
        return;
    }
    let test_start = StdInstant::now();
    let tag = std::process::id() % 100_000;
    let ns = Netns::create(format!("keel-lacp-{}", std::process::id())).expect("namespace");
    let ovs_end = |i: usize| format!("k{tag}o{i}");
    let our_end = |i: usize| format!("k{tag}h{i}");
    for i in 0..2 {
        let (o, h) = (ovs_end(i), our_end(i));
        run(&["ip", "link", "add", &h, "type", "veth", "peer", "name", &o]).expect("veth");
        run(&["ip", "link", "set", &o, "netns", &ns.0]).expect("move veth");
        // Our end carries only our frames: no IPv6 chatter from the kernel.
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{h}/disable_ipv6"), "1");
        run(&["ip", "link", "set", &h, "up"]).expect("up");
        ns.run(&["ip", "link", "set", &o, "up"]).expect("up");
    }
    ns.run(&["ip", "link", "set", "lo", "up"]).expect("lo");
    // The userspace datapath reads its members through packet sockets, so
    // the namespace's kernel sees their frames too (the kernel datapath would
    // take them away from it). Without this it answers our ARP requests for
    // the bridge's address with a member's MAC, and our pings go astray.
    ns.run(&["sysctl", "-q", "-w", "net.ipv4.conf.all.arp_ignore=1"])
        .expect("arp_ignore");

    let dir = ScratchDir(std::env::temp_dir().join(format!("keel-lacp-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).expect("temp dir");
    let ovs = Ovs::start(&ns, &dir.0).expect("OVS starts");
    ovs.vsctl(
        &ns,
        &[
            "add-br",
            "br0",
            "--",
            "set",
            "bridge",
            "br0",
            "datapath_type=netdev",
            "--",
            "add-bond",
            "br0",
            "bond0",
            &ovs_end(0),
            &ovs_end(1),
            "lacp=active",
            "other_config:lacp-time=fast",
            "--",
            "set",
            "port",
            "bond0",
            "bond_mode=balance-tcp",
        ],
    )
    .expect("OVS bond configured");
    ns.run(&["ip", "addr", "add", BRIDGE_CIDR, "dev", "br0"])
        .expect("bridge address");
    ns.run(&["ip", "link", "set", "br0", "up"])
        .expect("bridge up");

    let members = [0, 1].map(|i| PacketNic::open(&our_end(i)).expect("open our veth end"));
    let start = StdInstant::now();
    let now = Instant::ZERO;
    let bond = Bond::new(
        BondConfig::new(BondMode::Lacp {
            hash: HashPolicy::TcpUdpPorts,
            lacp: LacpConfig::new(SYSTEM_MAC),
        }),
        members,
        now,
    )
    .expect("bond");
    let config = IpConfig::Static {
        address: Ipv4Cidr::new(OUR_IP, 24),
        gateway: None,
        dns: Vec::new(),
    };
    let mut host = HostInterface::new("bond0", bond, config, now, u64::from(tag) | 1);
    let buffer = || icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 64], vec![0; 8192]);
    let mut socket = icmp::Socket::new(buffer(), buffer());
    socket
        .bind(icmp::Endpoint::Ident(PING_IDENT))
        .expect("bind ICMP");
    let pinger = host.add_socket(socket);
    let mut ours = Ours {
        host,
        start,
        pinger,
    };

    // 1. Negotiation: OVS sees us as its partner on both members.
    let took = ours.pump_until(StdDuration::from_secs(15), |ours| {
        ours.members_usable() == [true, true]
            && (0..2)
                .all(|i| member_view(&ovs, &ns, &ovs_end(i)).is_ok_and(|v| enabled_with_us(&v)))
    });
    let lacp_show = ovs.appctl(&ns, &["lacp/show", "bond0"]).unwrap_or_default();
    let Some(took) = took else {
        panic!(
            "not negotiated in 15 s; ours {:?}\n{lacp_show}\n{}",
            ours.members_usable(),
            ovs.appctl(&ns, &["bond/show", "bond0"]).unwrap_or_default()
        );
    };
    eprintln!(
        "FIGURE ovs_both_members_enabled_after={:.2}s",
        took.as_secs_f64()
    );
    assert!(
        lacp_show.contains("status: active negotiated"),
        "{lacp_show}"
    );
    let lacp = ours.host.nic().lacp().expect("lacp mode");
    for port in lacp.ports() {
        assert_eq!(port.counters().bad, 0, "every OVS LACPDU parses");
        assert!(port.counters().rx > 0);
        assert_eq!(
            port.partner().system_priority,
            65534,
            "OVS's default priority"
        );
    }

    // What OVS sends, byte for byte: a second socket on member 0 sees a copy.
    let mut tap = PacketNic::open(&our_end(0)).expect("second socket");
    let mut frame = [0u8; 1514];
    let mut ovs_pdu = None;
    let deadline = StdInstant::now() + StdDuration::from_secs(3);
    while ovs_pdu.is_none() && StdInstant::now() < deadline {
        ours.pump();
        while let Ok(Some(len)) = tap.receive(&mut frame) {
            let eth = EthernetFrame::new_checked(&frame[..len]).expect("frame");
            if eth.ethertype() == EtherType::SLOW_PROTOCOLS
                && eth.src_addr() != ours.host.nic().member(0).map_or(SYSTEM_MAC, |m| m.mac())
            {
                ovs_pdu = Some(frame[..len].to_vec());
            }
        }
        std::thread::sleep(StdDuration::from_millis(1));
    }
    let ovs_pdu = ovs_pdu.expect("OVS sends a LACPDU every second");
    check_ovs_lacpdu(&ovs_pdu);
    drop(tap);

    // 2. Traffic through the bond. The first answer needs ARP through the
    // bond both ways; give it a few tries.
    let first_answer = StdInstant::now();
    let mut warm = false;
    for _ in 0..5 {
        if ping_while(&mut ours, 10, StdDuration::ZERO, |_| {}).1 > 0 {
            warm = true;
            break;
        }
    }
    if !warm {
        let diag = |args: &[&str]| ovs.appctl(&ns, args).unwrap_or_else(|e| e);
        panic!(
            "no ping answered through the bond in 5 tries\nbond {:?}\niface {:?}\nours {:?} {:?}\n{}\n{}\n{}\n{}\n{}",
            ours.host.nic().stats(),
            ours.host.stats(),
            [tx_rx_packets(&our_end(0)), tx_rx_packets(&our_end(1))],
            ours.host.nic().lacp().map(|l| l
                .ports()
                .iter()
                .map(|p| (p.mux_state(), *p.counters()))
                .collect::<Vec<_>>()),
            diag(&["bond/show", "bond0"]),
            diag(&["fdb/show", "br0"]),
            diag(&["dpctl/dump-flows"]),
            ns.run(&["ip", "neigh"]).unwrap_or_else(|e| e),
            ns.run(&["ip", "-s", "link"]).unwrap_or_else(|e| e),
        );
    }
    eprintln!(
        "FIGURE first_ping_answered_after={:.2}s",
        first_answer.elapsed().as_secs_f64()
    );
    // Which member carries the ping flow?
    let before = [tx_rx_packets(&our_end(0)), tx_rx_packets(&our_end(1))];
    let (sent, answered) = ping_while(&mut ours, 50, StdDuration::ZERO, |_| {});
    assert!(
        answered + 1 >= sent,
        "ping through the bond: {answered}/{sent}"
    );
    let delta = [
        tx_rx_packets(&our_end(0)) - before[0],
        tx_rx_packets(&our_end(1)) - before[1],
    ];
    let carrying = if delta[0] >= delta[1] { 0 } else { 1 };
    eprintln!("FIGURE ping_member={carrying} frames={delta:?}");

    // 3. Cut the member carrying the pings, in the middle of a 100 Hz ping.
    let cut = ovs_end(carrying);
    let (sent, answered) = ping_while(&mut ours, 300, StdDuration::from_millis(1000), |_| {
        ns.run(&["ip", "link", "set", &cut, "down"]).expect("cut");
    });
    let lost = sent - answered;
    eprintln!(
        "FIGURE cut_ping sent={sent} answered={answered} interruption_ms~{}",
        u32::from(lost) * 10
    );
    assert!(
        answered + 50 >= sent,
        "traffic keeps flowing on the other member: {answered}/{sent}"
    );
    assert!(
        !ours.members_usable()[carrying],
        "we dropped the cut member"
    );
    assert!(ours.members_usable()[1 - carrying], "and kept the other");
    let view = member_view(&ovs, &ns, &cut).expect("lacp/show");
    assert_eq!(
        view.bond_state, "disabled",
        "OVS reports the cut member down: {view:?}"
    );
    let other = member_view(&ovs, &ns, &ovs_end(1 - carrying)).expect("lacp/show");
    assert!(
        enabled_with_us(&other),
        "the other member stays enabled: {other:?}"
    );

    // 4. Restore: both members enabled again on both sides.
    ns.run(&["ip", "link", "set", &cut, "up"]).expect("restore");
    let back = ours
        .pump_until(StdDuration::from_secs(15), |ours| {
            ours.members_usable() == [true, true]
                && member_view(&ovs, &ns, &cut).is_ok_and(|v| enabled_with_us(&v))
        })
        .unwrap_or_else(|| {
            panic!(
                "member not back in 15 s: {:?}",
                member_view(&ovs, &ns, &cut)
            )
        });
    eprintln!(
        "FIGURE restored_member_enabled_after={:.2}s",
        back.as_secs_f64()
    );
    let (sent, answered) = ping_while(&mut ours, 50, StdDuration::ZERO, |_| {});
    assert!(
        answered + 1 >= sent,
        "ping after restore: {answered}/{sent}"
    );
    eprintln!(
        "FIGURE test_wall_time={:.1}s",
        test_start.elapsed().as_secs_f64()
    );

    // Guards drop in reverse order: OVS, then the scratch directory, then
    // the namespace with the veths.
}
