//! `cargo xtask bench lacp-failover` (hosted): our LACP bond of two veths
//! against an Open vSwitch `balance-tcp` bond (`lacp-time=fast`) in a
//! namespace of the bench's own; a smoltcp host interface on our bond pings
//! the OVS bridge at 100 Hz, and the member carrying the pings is cut.
//!
//! - `lacp-failover-carrier`: the OVS end of the member is set down inside
//!   the namespace; our end loses carrier.
//! - `lacp-failover-lacp-timeout`: the member goes silent both ways with
//!   carrier up (our side drops everything it would send or receive on it,
//!   as a broken link behind a media converter does): only LACP timeouts
//!   reveal it, on both sides.
//!
//! ours: from the cut until the first ping sent after it is answered (the
//! stream flows again; 10 ms resolution). peer: from the cut until OVS's
//! `bond/show` reports the member disabled (its own detection). Median of
//! [`RUNS`] runs each.
//!
//! - `lacp-failover-image`: the image in QEMU, its bond over two taps in
//!   the namespace (management native on VLAN 5); OVS's internal port pings
//!   it at 100 Hz (`ping -i 0.01`) and the tap carrying the image's answers
//!   is set down inside the namespace. The virtio NIC reports no carrier change,
//!   so the image learns of the cut from the LACP timeout. ours: the longest
//!   run of unanswered pings, times 10 ms. One run (a boot each).
//!
//! Needs root and Open vSwitch.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant as StdInstant};

use netstack::bond::{Bond, BondConfig, BondMode, HashPolicy};
use netstack::hosted::PacketNic;
use netstack::lacp::LacpConfig;
use netstack::{HostInterface, IpConfig, MacAddress, Nic, NicError};
use smoltcp::iface::SocketHandle;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::socket::icmp;
use smoltcp::time::Instant;
use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, IpAddress, Ipv4Address, Ipv4Cidr};

use crate::{Error, Paths, Result};

const RUNS: usize = 3;
const OUR_IP: Ipv4Address = Ipv4Address::new(10, 219, 0, 2);
const BRIDGE_IP: Ipv4Address = Ipv4Address::new(10, 219, 0, 1);
const SYSTEM_MAC: MacAddress = MacAddress([0x02, 0x6b, 0x65, 0x65, 0x6c, 0x42]);
const IDENT: u16 = 0x6c66;
/// Pings before the cut, and how long to keep pinging after it.
const BEFORE_CUT: Duration = Duration::from_secs(1);
const AFTER_CUT: Duration = Duration::from_secs(6);

#[derive(Clone, Copy, PartialEq)]
enum Cut {
    Carrier,
    LacpTimeout,
}

pub fn lacp_failover(paths: &Paths) -> Result<()> {
    for tool in [
        "ovs-vswitchd",
        "ovsdb-server",
        "ovsdb-tool",
        "ovs-vsctl",
        "ovs-appctl",
    ] {
        if run(&["sh", "-c", &format!("command -v {tool}")]).is_err() {
            return Err(Error::new(format!(
                "bench lacp-failover: {tool} missing (cargo xtask setup installs Open vSwitch)"
            )));
        }
    }
    if !run(&["id", "-u"]).is_ok_and(|s| s.trim() == "0") {
        return Err(Error::new(
            "bench lacp-failover: needs root (namespaces, veths, packet sockets)",
        ));
    }
    let dir = paths.target.join("bench/lacp");
    for (name, cut) in [
        ("lacp-failover-carrier", Cut::Carrier),
        ("lacp-failover-lacp-timeout", Cut::LacpTimeout),
    ] {
        let (mut ours, mut peer) = (Vec::new(), Vec::new());
        for i in 0..RUNS {
            let (o, p) =
                one_run(&dir, cut, i).map_err(|e| Error::new(format!("bench {name}: {e}")))?;
            println!("bench {name}: run {} ours={o:.3}s peer={p:.3}s", i + 1);
            ours.push(o);
            peer.push(p);
        }
        let (o, p) = (median(&mut ours), median(&mut peer));
        println!(
            "BENCH {name} ours={o:.3} peer={p:.3} ratio={:.3}",
            o / p.max(1e-3)
        );
    }
    let (o, p) = image_run(paths, &dir)
        .map_err(|e| Error::new(format!("bench lacp-failover-image: {e}")))?;
    println!(
        "BENCH lacp-failover-image ours={o:.3} peer={p:.3} ratio={:.3}",
        o / p.max(1e-3)
    );
    Ok(())
}

/// The host config of the image run: `bond0` of the two tap NICs (eth1,
/// eth2), management native on VLAN 5.
const IMAGE_CONFIG: &str = r#"hostname = "keel-bench-lacp"
[[bond]]
name = "bond0"
members = ["eth1", "eth2"]
mode = "lacp"
lacp_rate = "fast"
[management]
interface = "bond0"
vlan = 5
native = true
mode = "static"
address = "10.220.5.2/24"
"#;
const IMAGE_MGMT_IP: &str = "10.220.5.2";

/// Frames a namespace interface received: on a tap, what QEMU (the image)
/// sent through it.
fn ns_received(lab: &Lab, ifname: &str) -> u64 {
    lab.ns_run(&[
        "cat",
        &format!("/sys/class/net/{ifname}/statistics/rx_packets"),
    ])
    .ok()
    .and_then(|s| s.trim().parse::<u64>().ok())
    .unwrap_or(0)
}

/// Polls OVS's `bond/show` from a thread until `watching` clears; returns
/// when each of `ends` was first seen disabled.
fn watch_ovs(lab: &Lab, watching: Arc<AtomicBool>) -> thread::JoinHandle<[Option<StdInstant>; 2]> {
    let (ctl, ns) = (lab.dir.join("vswitchd.ctl"), lab.ns.clone());
    let ends = [lab.ovs_end(0), lab.ovs_end(1)];
    thread::spawn(move || {
        let mut disabled_at: [Option<StdInstant>; 2] = [None, None];
        while watching.load(Ordering::Relaxed) {
            let out = run(&[
                "ip",
                "netns",
                "exec",
                &ns,
                "ovs-appctl",
                "-t",
                &ctl.display().to_string(),
                "--timeout=5",
                "bond/show",
                "bond0",
            ])
            .unwrap_or_default();
            let now = StdInstant::now();
            for (i, end) in ends.iter().enumerate() {
                if out.contains(&format!("member {end}: disabled")) {
                    disabled_at[i].get_or_insert(now);
                }
            }
            thread::sleep(Duration::from_millis(5));
        }
        disabled_at
    })
}

/// The uptime stamp (`[   6.121376] ...`) of the first console line
/// containing `needle`.
fn uptime_of(text: &str, needle: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.contains(needle))?;
    let stamp = line.strip_prefix('[')?.split(']').next()?;
    stamp.trim().parse().ok()
}

fn image_run(paths: &Paths, dir: &Path) -> std::result::Result<(f64, f64), String> {
    let image = crate::image::build(paths).map_err(|e| e.to_string())?;
    let run_dir = dir.join("image");
    std::fs::create_dir_all(&run_dir).map_err(|e| e.to_string())?;
    let (toml, module) = (run_dir.join("host.toml"), run_dir.join("host-config.bin"));
    std::fs::write(&toml, IMAGE_CONFIG).map_err(|e| e.to_string())?;
    crate::hostcfg::compile(
        crate::hostcfg::Source {
            file: Some(&toml),
            root_password: Some("bench-lacp-password"),
        },
        &module,
    )
    .map_err(|e| e.to_string())?;
    let lab = start_lab(dir, 2 * RUNS, Members::Taps)?;
    let qemu = qemu_tests::Qemu::kernel(image)
        .and_then(|b| b.name("bench-lacp-image"))
        .map_err(|e| e.to_string())?
        .initrd(&module)
        .cpus(2)
        .memory_mib(512)
        .tap(lab.ovs_end(0))
        .tap(lab.ovs_end(1))
        .netns(&lab.ns)
        .hard_timeout(Duration::from_secs(150))
        .spawn()
        .map_err(|e| e.to_string())?;
    let serving = qemu
        .wait_for_serial("http: serving", Duration::from_secs(90))
        .map_err(|e| e.to_string())?;
    // The console's clock (uptime) against QEMU's start: where the console
    // says "http: serving", and when this process saw it (an upper bound).
    let offset = uptime_of(&serving, "http: serving")
        .map(|uptime| qemu.elapsed().as_secs_f64() - uptime)
        .ok_or("no uptime on the console's http line")?;
    let enabled = |lab: &Lab| {
        let bond = lab.appctl(&["bond/show", "bond0"]).unwrap_or_default();
        (0..2).all(|i| bond.contains(&format!("member {}: enabled", lab.ovs_end(i))))
    };
    let start = StdInstant::now();
    while !enabled(&lab) {
        if start.elapsed() > Duration::from_secs(60) {
            return Err(format!(
                "OVS did not enable both members: {}",
                lab.appctl(&["lacp/show"]).unwrap_or_else(|e| e)
            ));
        }
        thread::sleep(Duration::from_millis(200));
    }
    // Warm up ARP both ways.
    let warm = (0..10).any(|_| {
        lab.ns_run(&["ping", "-c", "1", "-W", "1", IMAGE_MGMT_IP])
            .is_ok()
    });
    if !warm {
        return Err(format!(
            "the image's management address does not answer ping\n{}",
            qemu.serial_tail(20)
        ));
    }
    let pinger = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns,
            "timeout",
            "30",
            "ping",
            "-n",
            "-i",
            "0.01",
            "-W",
            "1",
            "-c",
            "700",
            IMAGE_MGMT_IP,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    thread::sleep(Duration::from_millis(1000));
    // Cut the member the image sends its answers on: that direction is
    // the one the image itself has to move.
    let before = [
        ns_received(&lab, &lab.ovs_end(0)),
        ns_received(&lab, &lab.ovs_end(1)),
    ];
    thread::sleep(Duration::from_millis(500));
    let delta = [
        ns_received(&lab, &lab.ovs_end(0)) - before[0],
        ns_received(&lab, &lab.ovs_end(1)) - before[1],
    ];
    let member = usize::from(delta[1] > delta[0]);
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = watch_ovs(&lab, watching.clone());
    lab.ns_run(&["ip", "link", "set", &lab.ovs_end(member), "down"])?;
    let cut_time = StdInstant::now();
    let cut_qemu = qemu.elapsed().as_secs_f64();
    let cut_note = format!(
        "cut eth{} (tap {}) {cut_qemu:.3} s after QEMU started\n",
        member + 1,
        lab.ovs_end(member),
    );
    let out = pinger.wait_with_output().map_err(|e| e.to_string())?;
    watching.store(false, Ordering::Relaxed);
    let disabled_at = watcher
        .join()
        .map_err(|_| "the OVS watcher panicked".to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut answered: Vec<u32> = text
        .lines()
        .filter_map(|l| l.split("icmp_seq=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect();
    answered.sort_unstable();
    answered.dedup();
    let longest_gap = answered
        .windows(2)
        .map(|w| w[1] - w[0] - 1)
        .max()
        .ok_or("the ping stream got no answers")?;
    if answered.last().is_none_or(|&last| last < 600) {
        return Err(format!(
            "the stream did not recover: last answer {:?}",
            answered.last()
        ));
    }
    let peer = disabled_at[member]
        .ok_or("OVS never reported the cut member disabled")?
        .saturating_duration_since(cut_time);
    // The image's own account (bond and LACP events), kept for reading;
    // from it, when the image took the member out, on QEMU's clock.
    let serial = qemu.serial();
    let _ = std::fs::write(run_dir.join("serial.log"), &serial);
    let line = format!("bond: member {member} ");
    let disabled = serial
        .lines()
        .filter(|l| l.contains(&line) && l.ends_with(" disabled"))
        .filter_map(|l| uptime_of(l, &line))
        .next_back();
    match disabled {
        Some(uptime) => println!(
            "bench lacp-failover-image: the image disabled eth{} {:.3} s after the cut (LACP timeout, from its console)",
            member + 1,
            uptime + offset - cut_qemu
        ),
        None => println!(
            "bench lacp-failover-image: the image never disabled eth{}",
            member + 1
        ),
    }
    let _ = std::fs::write(run_dir.join("ping.txt"), format!("{cut_note}{text}"));
    drop(qemu);
    Ok((f64::from(longest_gap) * 0.01, peer.as_secs_f64()))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A short command under `timeout`.
fn run(args: &[&str]) -> std::result::Result<String, String> {
    let out = Command::new("timeout")
        .arg("10")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{args:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The namespace (deleted with its veths on drop) and OVS in it.
struct Lab {
    ovs: Vec<Daemon>,
    dir: PathBuf,
    ns: String,
    tag: String,
}

impl Lab {
    fn ns_run(&self, args: &[&str]) -> std::result::Result<String, String> {
        let mut all = vec!["ip", "netns", "exec", &self.ns];
        all.extend_from_slice(args);
        run(&all)
    }

    fn appctl(&self, args: &[&str]) -> std::result::Result<String, String> {
        let ctl = self.dir.join("vswitchd.ctl").display().to_string();
        let mut all = vec!["ovs-appctl", "-t", &ctl, "--timeout=5"];
        all.extend_from_slice(args);
        self.ns_run(&all)
    }

    fn ovs_end(&self, i: usize) -> String {
        format!("{}o{i}", self.tag)
    }

    fn our_end(&self, i: usize) -> String {
        format!("{}h{i}", self.tag)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // The switch before its database, then the namespace.
        while let Some(daemon) = self.ovs.pop() {
            drop(daemon);
        }
        let _ = run(&["ip", "netns", "del", &self.ns]);
    }
}

/// A daemon under `timeout`, killed by its pidfile's pid, then the wrapper's.
struct Daemon {
    wrapper: Child,
    pidfile: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(&self.pidfile)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        {
            let _ = run(&["kill", "-KILL", &pid.to_string()]);
        }
        // Without a pidfile, TERM to `timeout` reaches its daemon; killing
        // `timeout` outright would orphan it.
        let _ = run(&["kill", "-TERM", &self.wrapper.id().to_string()]);
        let deadline = StdInstant::now() + Duration::from_secs(2);
        while StdInstant::now() < deadline {
            if let Ok(Some(_)) = self.wrapper.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.wrapper.kill();
        let _ = self.wrapper.wait();
    }
}

fn daemon(
    ns: &str,
    args: &[&str],
    pidfile: PathBuf,
    log: &Path,
) -> std::result::Result<Daemon, String> {
    let log = std::fs::File::create(log).map_err(|e| e.to_string())?;
    let wrapper = Command::new("ip")
        .args(["netns", "exec", ns, "timeout", "-s", "KILL", "60"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("{args:?}: {e}"))?;
    Ok(Daemon { wrapper, pidfile })
}

fn wait_for(path: &Path) -> std::result::Result<(), String> {
    let deadline = StdInstant::now() + Duration::from_secs(10);
    while !path.exists() {
        if StdInstant::now() > deadline {
            return Err(format!("{} did not appear", path.display()));
        }
        thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// What the OVS bond's members are: veths whose other ends this process
/// uses, or taps for QEMU.
#[derive(Clone, Copy, PartialEq)]
enum Members {
    Veths,
    Taps,
}

fn start_lab(dir: &Path, run_index: usize, members: Members) -> std::result::Result<Lab, String> {
    let pid = std::process::id();
    let tag = format!("kb{}{run_index}", pid % 10_000);
    let ns = format!("keel-bench-lacp-{pid}-{run_index}");
    let dir = dir.join(format!("run{run_index}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    run(&["ip", "netns", "add", &ns])?;
    let mut lab = Lab {
        ovs: Vec::new(),
        dir: dir.clone(),
        ns,
        tag,
    };
    for i in 0..2 {
        let (o, h) = (lab.ovs_end(i), lab.our_end(i));
        match members {
            Members::Veths => {
                run(&[
                    "ip", "link", "add", &h, "type", "veth", "peer", "name", &o, "netns", &lab.ns,
                ])?;
                let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{h}/disable_ipv6"), "1");
                run(&["ip", "link", "set", &h, "up"])?;
            }
            Members::Taps => {
                lab.ns_run(&["ip", "tuntap", "add", "dev", &o, "mode", "tap"])?;
            }
        }
        lab.ns_run(&["ip", "link", "set", &o, "up"])?;
    }
    lab.ns_run(&["ip", "link", "set", "lo", "up"])?;
    lab.ns_run(&["sysctl", "-q", "-w", "net.ipv4.conf.all.arp_ignore=1"])?;
    let p = |name: &str| dir.join(name).display().to_string();
    run(&[
        "ovsdb-tool",
        "create",
        &p("conf.db"),
        "/usr/share/openvswitch/vswitch.ovsschema",
    ])?;
    let db_args = [
        "ovsdb-server".to_string(),
        p("conf.db"),
        format!("--remote=punix:{}", p("db.sock")),
        format!("--unixctl={}", p("ovsdb.ctl")),
        format!("--pidfile={}", p("ovsdb.pid")),
        "--log-file=/dev/null".to_string(),
    ];
    let db_args: Vec<&str> = db_args.iter().map(String::as_str).collect();
    lab.ovs.push(daemon(
        &lab.ns,
        &db_args,
        dir.join("ovsdb.pid"),
        &dir.join("ovsdb.out"),
    )?);
    wait_for(&dir.join("db.sock"))?;
    let db = format!("--db=unix:{}", p("db.sock"));
    lab.ns_run(&["ovs-vsctl", &db, "--no-wait", "init"])?;
    let sw_args = [
        "ovs-vswitchd".to_string(),
        format!("unix:{}", p("db.sock")),
        format!("--unixctl={}", p("vswitchd.ctl")),
        format!("--pidfile={}", p("vswitchd.pid")),
        format!("--log-file={}", p("vswitchd.log")),
    ];
    let sw_args: Vec<&str> = sw_args.iter().map(String::as_str).collect();
    lab.ovs.push(daemon(
        &lab.ns,
        &sw_args,
        dir.join("vswitchd.pid"),
        &dir.join("vswitchd.out"),
    )?);
    wait_for(&dir.join("vswitchd.ctl"))?;
    let (o0, o1) = (lab.ovs_end(0), lab.ovs_end(1));
    lab.ns_run(&[
        "ovs-vsctl",
        &db,
        "--timeout=5",
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
        &o0,
        &o1,
        "lacp=active",
        "other_config:lacp-time=fast",
        "--",
        "set",
        "port",
        "bond0",
        "bond_mode=balance-tcp",
    ])?;
    match members {
        Members::Veths => {
            lab.ns_run(&["ip", "addr", "add", "10.219.0.1/24", "dev", "br0"])?;
            lab.ns_run(&["ip", "link", "set", "br0", "up"])?;
        }
        Members::Taps => {
            // The image's management VLAN 5 is native on the bond; an
            // internal port on VLAN 5 is the pinging host.
            lab.ns_run(&[
                "ovs-vsctl",
                &db,
                "--timeout=5",
                "set",
                "port",
                "bond0",
                "vlan_mode=native-untagged",
                "tag=5",
                "trunks=5",
                "--",
                "add-port",
                "br0",
                "mgmt0",
                "tag=5",
                "--",
                "set",
                "interface",
                "mgmt0",
                "type=internal",
            ])?;
            lab.ns_run(&["ip", "addr", "add", "10.220.5.1/24", "dev", "mgmt0"])?;
            lab.ns_run(&["ip", "link", "set", "mgmt0", "up"])?;
        }
    }
    Ok(lab)
}

/// A member that can be made silent: it neither sends nor receives, while
/// its carrier stays up.
#[derive(Debug)]
struct Silenceable {
    nic: PacketNic,
    silent: Arc<AtomicBool>,
}

impl Nic for Silenceable {
    fn mac(&self) -> MacAddress {
        self.nic.mac()
    }
    fn mtu(&self) -> usize {
        self.nic.mtu()
    }
    fn link_up(&self) -> bool {
        self.nic.link_up()
    }
    fn receive(&mut self, buf: &mut [u8]) -> std::result::Result<Option<usize>, NicError> {
        loop {
            match self.nic.receive(buf)? {
                Some(_) if self.silent.load(Ordering::Relaxed) => continue,
                other => return Ok(other),
            }
        }
    }
    fn can_transmit(&mut self) -> bool {
        self.nic.can_transmit()
    }
    fn transmit(&mut self, frame: &[u8]) -> std::result::Result<(), NicError> {
        if self.silent.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.nic.transmit(frame)
    }
}

struct Ours {
    host: HostInterface<Bond<Silenceable>>,
    pinger: SocketHandle,
    start: StdInstant,
    silent: [Arc<AtomicBool>; 2],
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
}

fn ours(lab: &Lab) -> std::result::Result<Ours, String> {
    let silent = [0, 1].map(|_| Arc::new(AtomicBool::new(false)));
    let mut members = Vec::new();
    for (i, flag) in silent.iter().enumerate() {
        members.push(Silenceable {
            nic: PacketNic::open(&lab.our_end(i)).map_err(|e| e.to_string())?,
            silent: flag.clone(),
        });
    }
    let bond = Bond::new(
        BondConfig::new(BondMode::Lacp {
            hash: HashPolicy::TcpUdpPorts,
            lacp: LacpConfig::new(SYSTEM_MAC),
        }),
        members,
        Instant::ZERO,
    )
    .map_err(|e| e.to_string())?;
    let ip = IpConfig::Static {
        address: Ipv4Cidr::new(OUR_IP, 24),
        gateway: None,
        dns: Vec::new(),
    };
    let mut host = HostInterface::new(
        "bond0",
        bond,
        ip,
        Instant::ZERO,
        u64::from(std::process::id()),
    );
    let buffer = || icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 64], vec![0; 8192]);
    let mut socket = icmp::Socket::new(buffer(), buffer());
    socket
        .bind(icmp::Endpoint::Ident(IDENT))
        .map_err(|e| e.to_string())?;
    let pinger = host.add_socket(socket);
    Ok(Ours {
        host,
        pinger,
        start: StdInstant::now(),
        silent,
    })
}

/// Pings every 100 ms until one is answered (at most 10 s).
fn warm_up(ours: &mut Ours) -> bool {
    let start = StdInstant::now();
    let mut seq = 60_000u16;
    let mut last_sent: Option<StdInstant> = None;
    while start.elapsed() < Duration::from_secs(10) {
        ours.pump();
        let socket = ours
            .host
            .sockets_mut()
            .get_mut::<icmp::Socket<'static>>(ours.pinger);
        if last_sent.is_none_or(|t| t.elapsed() >= Duration::from_millis(100)) && socket.can_send()
        {
            let repr = Icmpv4Repr::EchoRequest {
                ident: IDENT,
                seq_no: seq,
                data: b"keel-warm-up",
            };
            if let Ok(buf) = socket.send(repr.buffer_len(), IpAddress::Ipv4(BRIDGE_IP)) {
                repr.emit(
                    &mut Icmpv4Packet::new_unchecked(buf),
                    &ChecksumCapabilities::default(),
                );
                seq = seq.wrapping_add(1);
                last_sent = Some(StdInstant::now());
            }
        }
        if socket.recv().is_ok() {
            // Let late warm-up answers drain before the measured stream.
            for _ in 0..200 {
                ours.pump();
                let socket = ours
                    .host
                    .sockets_mut()
                    .get_mut::<icmp::Socket<'static>>(ours.pinger);
                while socket.recv().is_ok() {}
                thread::sleep(Duration::from_millis(1));
            }
            return true;
        }
        thread::sleep(Duration::from_millis(1));
    }
    false
}

fn packets(ifname: &str) -> u64 {
    ["tx_packets", "rx_packets"]
        .iter()
        .filter_map(|c| {
            std::fs::read_to_string(format!("/sys/class/net/{ifname}/statistics/{c}")).ok()
        })
        .filter_map(|s| s.trim().parse::<u64>().ok())
        .sum()
}

/// One measurement: (ours, peer) in seconds.
fn one_run(dir: &Path, cut: Cut, index: usize) -> std::result::Result<(f64, f64), String> {
    let lab = start_lab(
        dir,
        index + if cut == Cut::Carrier { 0 } else { RUNS },
        Members::Veths,
    )?;
    let mut ours = ours(&lab)?;
    // LACP up on both members, as both sides see it.
    let deadline = StdInstant::now() + Duration::from_secs(20);
    loop {
        ours.pump();
        let bond = ours.host.nic();
        if bond.is_member_usable(0) && bond.is_member_usable(1) {
            break;
        }
        if StdInstant::now() > deadline {
            return Err(format!(
                "LACP did not come up: {}",
                lab.appctl(&["lacp/show"]).unwrap_or_else(|e| e)
            ));
        }
        thread::sleep(Duration::from_millis(1));
    }

    // Warm up: ARP has to cross the bond and OVS both ways first.
    if !warm_up(&mut ours) {
        return Err("no ping was answered within 10 s of LACP coming up".into());
    }

    // OVS's view, polled from a thread: when it disables each member.
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = watch_ovs(&lab, watching.clone());

    // 100 Hz pings; record when each was sent and whether it was answered.
    let total = ((BEFORE_CUT + AFTER_CUT).as_millis() / 10) as usize;
    let mut sent_at: Vec<Option<StdInstant>> = vec![None; total];
    let mut answered = vec![false; total];
    let start = StdInstant::now();
    let mut cut_at: Option<(StdInstant, usize)> = None;
    let before = [packets(&lab.our_end(0)), packets(&lab.our_end(1))];
    let mut next = 0usize;
    while start.elapsed() < BEFORE_CUT + AFTER_CUT + Duration::from_millis(500) {
        ours.pump();
        if cut_at.is_none() && start.elapsed() >= BEFORE_CUT {
            let delta = [
                packets(&lab.our_end(0)) - before[0],
                packets(&lab.our_end(1)) - before[1],
            ];
            let member = usize::from(delta[1] > delta[0]);
            match cut {
                Cut::Carrier => {
                    lab.ns_run(&["ip", "link", "set", &lab.ovs_end(member), "down"])?;
                }
                Cut::LacpTimeout => ours.silent[member].store(true, Ordering::Relaxed),
            }
            cut_at = Some((StdInstant::now(), member));
        }
        let socket = ours
            .host
            .sockets_mut()
            .get_mut::<icmp::Socket<'static>>(ours.pinger);
        let due = (start.elapsed().as_millis() / 10) as usize;
        if next < total && next <= due && socket.can_send() {
            let repr = Icmpv4Repr::EchoRequest {
                ident: IDENT,
                seq_no: next as u16,
                data: b"keel-failover",
            };
            if let Ok(buf) = socket.send(repr.buffer_len(), IpAddress::Ipv4(BRIDGE_IP)) {
                repr.emit(
                    &mut Icmpv4Packet::new_unchecked(buf),
                    &ChecksumCapabilities::default(),
                );
                sent_at[next] = Some(StdInstant::now());
                next += 1;
            }
        }
        while let Ok((data, _)) = socket.recv() {
            let reply = Icmpv4Packet::new_checked(data)
                .and_then(|p| Icmpv4Repr::parse(&p, &ChecksumCapabilities::default()));
            if let Ok(Icmpv4Repr::EchoReply {
                ident: IDENT,
                seq_no,
                ..
            }) = reply
                && let Some(slot) = answered.get_mut(usize::from(seq_no))
            {
                *slot = true;
            }
        }
        thread::sleep(Duration::from_millis(1));
    }
    watching.store(false, Ordering::Relaxed);
    let disabled_at = watcher
        .join()
        .map_err(|_| "the OVS watcher panicked".to_string())?;
    let (cut_time, member) = cut_at.ok_or("the cut never happened")?;
    let flowing = (0..total)
        .filter(|&i| answered[i])
        .filter_map(|i| sent_at[i])
        .find(|&t| t > cut_time)
        .ok_or("no ping was answered after the cut")?;
    let answered_before = (0..total)
        .filter(|&i| answered[i] && sent_at[i].is_some_and(|t| t < cut_time))
        .count();
    if answered_before == 0 {
        return Err("no ping was answered before the cut".into());
    }
    let peer = disabled_at[member]
        .ok_or("OVS never reported the cut member disabled")?
        .saturating_duration_since(cut_time);
    Ok((
        flowing.saturating_duration_since(cut_time).as_secs_f64(),
        peer.as_secs_f64(),
    ))
}
