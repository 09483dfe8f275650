//! Host networks over a LACP bond with Open vSwitch as the real peer.
//!
//! Our side: two taps bonded (LACP, fast), the virtual switch with
//! the bond as a trunk uplink (VLAN 5 native, VLAN 20 tagged), and two
//! smoltcp host interfaces: management on VLAN 5, storage on VLAN 20 with
//! MTU 9000. This process holds the taps' descriptors; the taps themselves
//! sit in a namespace of the test's own with OVS: a `balance-tcp` LACP
//! bond over them (trunk, native-untagged 5, allowed 5 and 20) and
//! two internal ports, access on VLAN 5 and 20. From those ports the test
//! pings the management address, opens a TCP connection to it, pings the
//! storage address with 8000-byte payloads that may not be fragmented
//! (`ping -M do -s 8000`), and measures TCP throughput into the storage
//! interface (printed as a FIGURE, not asserted).
//!
//! Needs root, Open vSwitch, iputils `ping` and python3 (`cargo xtask
//! setup` installs them); without them it says SKIP and passes. Every
//! process runs under `timeout` and is killed by its pid.

mod common;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use netstack::bond::{Bond, BondConfig, BondMode, HashPolicy};
use netstack::hosted::TapNic;
use netstack::lacp::LacpConfig;
use netstack::switch::{DropReason, VlanMode, VlanSet};
use netstack::{HostNetworks, IpConfig, MacAddress, NetworkConfig};
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{Ipv4Address, Ipv4Cidr};

use common::{Netns, Ovs, SYSTEM_MAC, ScratchDir, prerequisites_missing, run};

const MGMT_VLAN: u16 = 5;
const STORAGE_VLAN: u16 = 20;
const OUR_MGMT: &str = "10.216.5.2";
const OUR_STORAGE: &str = "10.216.20.2";
const ECHO_PORT: u16 = 80;
const SINK_PORT: u16 = 5001;
/// MTU of the taps: the storage network's 9000 plus room.
const TAP_MTU: usize = 9100;
/// How long the throughput sender sends.
const SEND_SECONDS: u32 = 3;

type Networks = HostNetworks<Bond<TapNic>>;

struct Ours {
    nets: Networks,
    start: StdInstant,
    echo: SocketHandle,
    sink: SocketHandle,
    sink_bytes: u64,
    sink_bad: u64,
    sink_first: Option<StdInstant>,
    sink_last: Option<StdInstant>,
}

impl Ours {
    fn now(&self) -> Instant {
        Instant::from_micros(self.start.elapsed().as_micros() as i64)
    }

    /// One round: bond timers, frames through switch and interfaces, and the
    /// two services (echo on management, a byte sink on storage). True when
    /// there is more work straight away.
    fn pump(&mut self) -> bool {
        let now = self.now();
        self.nets.uplink_mut().poll(now);
        let due = self.nets.poll(now);
        if self.nets.uplink().poll_at().is_some() {
            self.nets.uplink_mut().poll(now);
        }
        let mgmt = self.nets.interface_mut("mgmt").expect("mgmt");
        let echo = mgmt
            .sockets_mut()
            .get_mut::<tcp::Socket<'static>>(self.echo);
        if echo.can_recv() && echo.can_send() {
            let mut data = [0u8; 512];
            let n = echo.recv_slice(&mut data).unwrap_or(0);
            let _ = echo.send_slice(&data[..n]);
        }
        if !echo.is_open() || echo.state() == tcp::State::CloseWait {
            echo.close();
        }
        let storage = self.nets.interface_mut("storage").expect("storage");
        let sink = storage
            .sockets_mut()
            .get_mut::<tcp::Socket<'static>>(self.sink);
        let mut got = 0;
        while sink.can_recv() {
            let _ = sink.recv(|d| {
                got += d.len() as u64;
                self.sink_bad += d.iter().filter(|b| **b != b'k').count() as u64;
                (d.len(), ())
            });
        }
        if got > 0 {
            self.sink_bytes += got;
            self.sink_first.get_or_insert_with(StdInstant::now);
            self.sink_last = Some(StdInstant::now());
        }
        if sink.state() == tcp::State::CloseWait {
            sink.close();
        }
        got > 0 || due.is_some_and(|d| d <= now)
    }

    /// Pumps until `child` exits (or `limit`); its status and stdout.
    fn pump_while(&mut self, mut child: Child, limit: StdDuration) -> (bool, String) {
        let start = StdInstant::now();
        let status = loop {
            if !self.pump() {
                std::thread::sleep(StdDuration::from_micros(200));
            }
            if let Ok(Some(status)) = child.try_wait() {
                break Some(status);
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        };
        let mut out = String::new();
        if let Some(mut stdout) = child.stdout.take() {
            let _ = stdout.read_to_string(&mut out);
        }
        (status.is_some_and(|s| s.success()), out)
    }

    fn pump_until(&mut self, limit: StdDuration, mut check: impl FnMut(&Self) -> bool) -> bool {
        let start = StdInstant::now();
        while start.elapsed() < limit {
            self.pump();
            if check(self) {
                return true;
            }
            std::thread::sleep(StdDuration::from_millis(1));
        }
        false
    }
}

/// Starts `args` inside the namespace under `timeout`, stdout piped.
fn spawn_in(ns: &Netns, args: &[&str]) -> Child {
    Command::new("ip")
        .args(["netns", "exec", &ns.0, "timeout", "-s", "KILL", "20"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn in namespace")
}

fn static_ip(ip: &str) -> IpConfig {
    IpConfig::Static {
        address: Ipv4Cidr::new(ip.parse::<Ipv4Address>().expect("ip"), 24),
        gateway: None,
        dns: Vec::new(),
    }
}

fn tcp_socket(buffer: usize) -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; buffer]),
        tcp::SocketBuffer::new(vec![0; buffer]),
    )
}

/// The name of member `i`'s tap.
fn tap_name(tag: &str, i: usize) -> String {
    format!("{tag}t{i}")
}

#[test]
fn vlan_networks_over_a_lacp_bond_answer_open_vswitch() {
    if let Some(why) = prerequisites_missing() {
        eprintln!("SKIP vlan_networks_over_a_lacp_bond_answer_open_vswitch: {why}");
        return;
    }
    for tool in ["ping", "python3"] {
        if run(&["sh", "-c", &format!("command -v {tool}")]).is_err() {
            eprintln!(
                "SKIP vlan_networks_over_a_lacp_bond_answer_open_vswitch: {tool} not installed"
            );
            return;
        }
    }
    let pid = std::process::id();
    let tag = format!("k{}v", pid % 100_000);
    let ns = Netns::create(format!("keel-vlan-{pid}")).expect("namespace");
    let mut members = Vec::new();
    for i in 0..2u8 {
        let name = tap_name(&tag, usize::from(i));
        let mac = MacAddress([0x02, 0x6b, 0x65, 0x65, 0x76, i + 1]);
        members.push(TapNic::create(&name, mac, TAP_MTU).expect("tap"));
        run(&["ip", "link", "set", &name, "netns", &ns.0]).expect("tap into the namespace");
        let mtu = TAP_MTU.to_string();
        ns.run(&["ip", "link", "set", &name, "mtu", &mtu, "up"])
            .expect("tap up");
    }
    ns.run(&["ip", "link", "set", "lo", "up"]).expect("lo");
    // See common::Lab: the namespace's kernel also sees the bond members'
    // frames; it must not answer ARP for the internal ports' addresses there.
    ns.run(&["sysctl", "-q", "-w", "net.ipv4.conf.all.arp_ignore=1"])
        .expect("arp_ignore");
    let dir = ScratchDir(std::env::temp_dir().join(format!("keel-vlan-{pid}")));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).expect("scratch dir");
    let ovs = Ovs::start(&ns, &dir.0).expect("OVS");
    let (o0, o1) = (tap_name(&tag, 0), tap_name(&tag, 1));
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
            &o0,
            &o1,
            "lacp=active",
            "other_config:lacp-time=fast",
            "--",
            "set",
            "port",
            "bond0",
            "bond_mode=balance-tcp",
            "vlan_mode=native-untagged",
            "tag=5",
            "trunks=5,20",
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
            "--",
            "add-port",
            "br0",
            "stor0",
            "tag=20",
            "--",
            "set",
            "interface",
            "stor0",
            "type=internal",
            "mtu_request=9000",
        ],
    )
    .expect("OVS bridge, bond and internal ports");
    for (port, cidr) in [("mgmt0", "10.216.5.1/24"), ("stor0", "10.216.20.1/24")] {
        ns.run(&["ip", "addr", "add", cidr, "dev", port])
            .expect("address");
        ns.run(&["ip", "link", "set", port, "up"]).expect("port up");
    }

    // Our side.
    let bond = Bond::new(
        BondConfig::new(BondMode::Lacp {
            hash: HashPolicy::TcpUdpPorts,
            lacp: LacpConfig::new(SYSTEM_MAC),
        }),
        members,
        Instant::ZERO,
    )
    .expect("bond");
    let networks = [
        NetworkConfig {
            name: "mgmt".into(),
            vlan: MGMT_VLAN,
            mtu: 1500,
            ip: static_ip(OUR_MGMT),
            mac: None,
        },
        NetworkConfig {
            name: "storage".into(),
            vlan: STORAGE_VLAN,
            mtu: 9000,
            ip: static_ip(OUR_STORAGE),
            mac: None,
        },
    ];
    let trunk = VlanMode::Trunk {
        native: Some(MGMT_VLAN),
        allowed: VlanSet::of(&[STORAGE_VLAN]).expect("vlans"),
    };
    let mut nets = HostNetworks::new(bond, trunk, &networks, Instant::ZERO, u64::from(pid))
        .expect("host networks");
    let mgmt = nets.interface_mut("mgmt").expect("mgmt");
    let echo = mgmt.add_socket(tcp_socket(4096));
    mgmt.sockets_mut()
        .get_mut::<tcp::Socket<'static>>(echo)
        .listen(ECHO_PORT)
        .expect("listen");
    let storage = nets.interface_mut("storage").expect("storage");
    let sink = storage.add_socket(tcp_socket(512 * 1024));
    storage
        .sockets_mut()
        .get_mut::<tcp::Socket<'static>>(sink)
        .listen(SINK_PORT)
        .expect("listen");
    let mut ours = Ours {
        nets,
        start: StdInstant::now(),
        echo,
        sink,
        sink_bytes: 0,
        sink_bad: 0,
        sink_first: None,
        sink_last: None,
    };

    // 1. LACP brings both members up.
    let negotiated = ours.pump_until(StdDuration::from_secs(15), |o| {
        (0..2).all(|i| o.nets.uplink().is_member_usable(i))
    });
    assert!(
        negotiated,
        "LACP with OVS: {}",
        ovs.appctl(&ns, &["lacp/show"]).unwrap_or_else(|e| e)
    );

    // 2. Ping the management address (native VLAN, untagged on the bond).
    let (ok, out) = ours.pump_while(
        spawn_in(&ns, &["ping", "-c", "5", "-i", "0.2", "-W", "2", OUR_MGMT]),
        StdDuration::from_secs(15),
    );
    eprintln!("{out}");
    assert!(ok && out.contains("5 received"), "management ping:\n{out}");

    // 2b. IPv6: Linux reaches the management interface's link-local
    // address (fe80:: and the modified EUI-64 of its MAC) over the same
    // native VLAN, after neighbour discovery.
    let ll = ours.nets.interface("mgmt").expect("mgmt").ipv6_link_local();
    let target = format!("{ll}%mgmt0");
    let (ok, out) = ours.pump_while(
        spawn_in(
            &ns,
            &["ping", "-6", "-c", "3", "-i", "0.2", "-w", "10", &target],
        ),
        StdDuration::from_secs(20),
    );
    eprintln!("{out}");
    assert!(ok && out.contains("3 received"), "link-local ping6:\n{out}");

    // 3. A TCP connection to the management address: our echo answers.
    let (ok, out) = ours.pump_while(
        spawn_in(
            &ns,
            &[
                "bash",
                "-c",
                &format!(
                    "exec 3<>/dev/tcp/{OUR_MGMT}/{ECHO_PORT}; printf keel-hello >&3; head -c 10 <&3"
                ),
            ],
        ),
        StdDuration::from_secs(15),
    );
    assert!(ok && out == "keel-hello", "TCP echo on management: {out:?}");

    // 4. 8000-byte pings to storage, fragmentation prohibited: they cross
    // the bond tagged VLAN 20 as 8046-byte frames.
    let before = ours
        .nets
        .switch()
        .port_stats(ours.nets.uplink_port())
        .expect("uplink stats");
    let (ok, out) = ours.pump_while(
        spawn_in(
            &ns,
            &[
                "ping",
                "-M",
                "do",
                "-s",
                "8000",
                "-c",
                "5",
                "-i",
                "0.2",
                "-W",
                "2",
                OUR_STORAGE,
            ],
        ),
        StdDuration::from_secs(15),
    );
    eprintln!("{out}");
    assert!(
        ok && out.contains("5 received") && out.contains("8008 bytes from"),
        "jumbo ping to storage:\n{out}"
    );
    let after = ours
        .nets
        .switch()
        .port_stats(ours.nets.uplink_port())
        .expect("uplink stats");
    // Each echo request is one 8000 + 8 + 20 byte IP packet in a tagged frame.
    assert!(
        after.rx_bytes - before.rx_bytes >= 5 * (8028 + 18),
        "jumbo frames arrived whole: {before:?} -> {after:?}"
    );
    let drops = ours.nets.switch().stats().dropped;
    assert_eq!(drops.get(DropReason::Oversize), 0);
    // The management network stays at 1500: an unfragmentable 8000-byte ping
    // to it is refused by the sender's own interface.
    let (ok, _) = ours.pump_while(
        spawn_in(
            &ns,
            &[
                "ping", "-M", "do", "-s", "8000", "-c", "1", "-W", "1", OUR_MGMT,
            ],
        ),
        StdDuration::from_secs(10),
    );
    assert!(
        !ok,
        "no 8000-byte unfragmented ping fits the 1500 management network"
    );

    // 5. Throughput: a TCP stream from the namespace into the storage
    // interface for a few seconds (kernel TCP -> OVS userspace datapath ->
    // LACP bond -> switch -> smoltcp).
    let sender = format!(
        "import socket,time\n\
         s=socket.create_connection(('{OUR_STORAGE}',{SINK_PORT}))\n\
         b=b'k'*65536\n\
         end=time.time()+{SEND_SECONDS}\n\
         n=0\n\
         while time.time()<end:\n    s.sendall(b); n+=len(b)\n\
         s.close()\n\
         print(n)\n"
    );
    let (ok, out) = ours.pump_while(
        spawn_in(&ns, &["python3", "-c", &sender]),
        StdDuration::from_secs(20),
    );
    let sent: u64 = out.trim().parse().unwrap_or(0);
    assert!(ok && sent > 0, "sender failed: {out:?}");
    let all_in = ours.pump_until(StdDuration::from_secs(10), |o| o.sink_bytes >= sent);
    assert!(all_in, "received {} of {sent} bytes", ours.sink_bytes);
    assert_eq!(ours.sink_bad, 0, "the stream arrived intact");
    let secs = match (ours.sink_first, ours.sink_last) {
        (Some(a), Some(b)) => (b - a).as_secs_f64().max(1e-3),
        _ => 1.0,
    };
    eprintln!(
        "FIGURE vlan_storage_tcp_throughput mbit_per_s={:.0} bytes={} secs={:.2} (profile: {})",
        ours.sink_bytes as f64 * 8.0 / secs / 1e6,
        ours.sink_bytes,
        secs,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    let bond = ours.nets.uplink().stats();
    eprintln!(
        "FIGURE vlan_networks switch={:?} bond={:?}",
        ours.nets.switch().stats(),
        bond
    );
    drop(ours);
    drop(ovs);
}
