//! A host's LACP bond partner for the image tests: a network namespace of
//! the test's own holding two taps (the image's `eth1` and `eth2`, QEMU runs
//! in the namespace) that are members of an Open vSwitch LACP bond
//! (`balance-tcp`, fast) on a userspace-datapath bridge, with OVS internal
//! ports as test hosts on the VLANs the bond trunks. OVS's daemons run under
//! `timeout` and are killed by their pids; deleting the namespace removes
//! the taps.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use qemu_tests::Qemu;

/// The host config both bond tests boot: `bond0` of eth1 and eth2 in LACP,
/// management on VLAN 5 (native, untagged), storage on VLAN 20 with MTU 9000.
pub(super) const CONFIG: &str = r#"hostname = "keel-bond-test"
root_password = "qemu-tests-password"

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
address = "10.218.5.2/24"

[[network]]
name = "storage"
purpose = "storage"
interface = "bond0"
vlan = 20
mtu = 9000
mode = "static"
address = "10.218.20.2/24"
"#;
pub(super) const PASSWORD: &str = "qemu-tests-password";
pub(super) const MGMT_IP: &str = "10.218.5.2";
pub(super) const STORAGE_IP: &str = "10.218.20.2";
/// The test host's address on the storage VLAN.
pub(super) const STORAGE_PEER: &str = "10.218.20.1";

/// A short command under `timeout`; its stdout or why it failed.
pub(super) fn run(args: &[&str]) -> Result<String, String> {
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
            "{args:?}: {}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A namespace, deleted (with its taps) on drop.
pub(super) struct Netns(pub(super) String);

impl Netns {
    pub(super) fn run(&self, args: &[&str]) -> Result<String, String> {
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

/// A daemon under `timeout` in the namespace, killed by the pid in its
/// pidfile and then the wrapper's own pid.
struct Daemon {
    wrapper: Child,
    pidfile: PathBuf,
}

impl Daemon {
    fn start(
        ns: &Netns,
        args: &[&str],
        pidfile: PathBuf,
        log: &Path,
        limit: Duration,
    ) -> Result<Self, String> {
        let log = fs::File::create(log).map_err(|e| e.to_string())?;
        let wrapper = Command::new("ip")
            .args(["netns", "exec", &ns.0, "timeout", "-s", "KILL"])
            .arg(limit.as_secs().to_string())
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
        if let Some(pid) = fs::read_to_string(&self.pidfile)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        {
            let _ = run(&["kill", "-KILL", &pid.to_string()]);
        }
        // The pidfile may be gone with the test directory (the QEMU run
        // owning it drops first): `timeout` passes TERM on to its daemon,
        // whereas killing `timeout` outright would orphan it.
        let _ = run(&["kill", "-TERM", &self.wrapper.id().to_string()]);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.wrapper.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.wrapper.kill();
        let _ = self.wrapper.wait();
    }
}

fn wait_for_path(path: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if path.exists() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("{} did not appear", path.display()))
}

/// ovsdb-server and ovs-vswitchd (userspace datapath) with their files in `dir`.
pub(super) struct Ovs {
    dir: PathBuf,
    // Field order is drop order: the switch before its database.
    _vswitchd: Daemon,
    _ovsdb: Daemon,
}

impl Ovs {
    fn start(ns: &Netns, dir: &Path, limit: Duration) -> Result<Self, String> {
        let p = |name: &str| dir.join(name).display().to_string();
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
            limit,
        )?;
        wait_for_path(&dir.join("db.sock"))?;
        ns.run(&[
            "ovs-vsctl",
            &format!("--db=unix:{}", p("db.sock")),
            "--no-wait",
            "init",
        ])?;
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
            limit,
        )?;
        wait_for_path(&dir.join("vswitchd.ctl"))?;
        Ok(Ovs {
            dir: dir.to_path_buf(),
            _vswitchd: vswitchd,
            _ovsdb: ovsdb,
        })
    }

    pub(super) fn vsctl(&self, ns: &Netns, args: &[&str]) -> Result<String, String> {
        let db = format!("--db=unix:{}", self.dir.join("db.sock").display());
        let mut all = vec!["ovs-vsctl", &db, "--timeout=5"];
        all.extend_from_slice(args);
        ns.run(&all)
    }

    pub(super) fn appctl(&self, ns: &Netns, args: &[&str]) -> Result<String, String> {
        let ctl = self.dir.join("vswitchd.ctl").display().to_string();
        let mut all = vec!["ovs-appctl", "-t", &ctl, "--timeout=5"];
        all.extend_from_slice(args);
        ns.run(&all)
    }
}

pub(super) fn prerequisites_missing() -> Option<String> {
    if !run(&["id", "-u"]).is_ok_and(|s| s.trim() == "0") {
        return Some("not root".into());
    }
    for tool in [
        "ovs-vswitchd",
        "ovsdb-server",
        "ovsdb-tool",
        "ovs-vsctl",
        "ovs-appctl",
        "curl",
        "ping",
    ] {
        if run(&["sh", "-c", &format!("command -v {tool}")]).is_err() {
            return Some(format!("{tool} not installed"));
        }
    }
    None
}

/// Both bond members enabled in OVS's bond with us as the LACP partner.
fn both_members_enabled(ovs: &Ovs, ns: &Netns, taps: &[String]) -> bool {
    let (Ok(bond), Ok(lacp)) = (
        ovs.appctl(ns, &["bond/show", "bond0"]),
        ovs.appctl(ns, &["lacp/show", "bond0"]),
    ) else {
        return false;
    };
    taps.iter().all(|t| {
        bond.contains(&format!("member {t}: enabled"))
            && lacp.contains(&format!("member: {t}: current attached"))
    })
}

/// An OVS internal port: a test host on VLAN `tag` with address `cidr`.
#[derive(Clone, Copy)]
pub(super) struct Port<'a> {
    pub(super) name: &'a str,
    pub(super) tag: u16,
    pub(super) cidr: &'a str,
    pub(super) mtu: Option<u32>,
}

/// The management and storage test hosts of [`CONFIG`].
pub(super) const MGMT_AND_STORAGE: [Port<'static>; 2] = [
    Port {
        name: "mgmt0",
        tag: 5,
        cidr: "10.218.5.1/24",
        mtu: None,
    },
    Port {
        name: "stor0",
        tag: 20,
        cidr: "10.218.20.1/24",
        mtu: Some(9000),
    },
];

/// The namespace, its taps and the OVS bridge `br0` with the bond `bond0`
/// over them (native VLAN 5, trunking `trunks`) and `ports`. Field order is
/// drop order: the switch before the namespace.
pub(super) struct LacpSwitch {
    pub(super) ovs: Ovs,
    pub(super) taps: Vec<String>,
    pub(super) ns: Netns,
}

impl LacpSwitch {
    /// Builds it in the namespace `keel-<name>-<pid>`, with OVS's files in
    /// `dir`; OVS's daemons are killed after `limit` whatever happens.
    pub(super) fn start(
        name: &str,
        dir: &Path,
        trunks: &[u16],
        ports: &[Port<'_>],
        limit: Duration,
    ) -> LacpSwitch {
        let ns = Netns(format!("keel-{name}-{}", std::process::id()));
        run(&["ip", "netns", "add", &ns.0]).expect("namespace");
        let taps: Vec<String> = (0..2).map(|i| format!("kqt{i}")).collect();
        for tap in &taps {
            ns.run(&["ip", "tuntap", "add", "dev", tap, "mode", "tap"])
                .expect("tap");
            ns.run(&["ip", "link", "set", tap, "mtu", "9100", "up"])
                .expect("tap up");
        }
        ns.run(&["ip", "link", "set", "lo", "up"]).expect("lo");
        ns.run(&["sysctl", "-q", "-w", "net.ipv4.conf.all.arp_ignore=1"])
            .expect("arp_ignore");
        fs::create_dir_all(dir).expect("ovs dir");
        let ovs = Ovs::start(&ns, dir, limit).expect("OVS");
        let trunks = trunks
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut args: Vec<String> = [
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
            &taps[0],
            &taps[1],
            "lacp=active",
            "other_config:lacp-time=fast",
            "--",
            "set",
            "port",
            "bond0",
            "bond_mode=balance-tcp",
            "vlan_mode=native-untagged",
            "tag=5",
            &format!("trunks={trunks}"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for port in ports {
            args.extend(
                [
                    "--",
                    "add-port",
                    "br0",
                    port.name,
                    &format!("tag={}", port.tag),
                    "--",
                    "set",
                    "interface",
                    port.name,
                    "type=internal",
                ]
                .iter()
                .map(|s| s.to_string()),
            );
            if let Some(mtu) = port.mtu {
                args.push(format!("mtu_request={mtu}"));
            }
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ovs.vsctl(&ns, &args).expect("OVS bridge");
        for port in ports {
            ns.run(&["ip", "addr", "add", port.cidr, "dev", port.name])
                .expect("address");
            ns.run(&["ip", "link", "set", port.name, "up"]).expect("up");
        }
        LacpSwitch { ovs, taps, ns }
    }

    /// Waits (60 s at most) until OVS enables both members with the image
    /// as its LACP partner; how long that took.
    pub(super) fn wait_both_members_enabled(&self, qemu: &Qemu) -> Duration {
        let start = Instant::now();
        while !self.both_members_enabled() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "OVS did not enable both members:\n{}\n{}\n{}",
                self.ovs
                    .appctl(&self.ns, &["lacp/show", "bond0"])
                    .unwrap_or_else(|e| e),
                self.ovs
                    .appctl(&self.ns, &["bond/show", "bond0"])
                    .unwrap_or_else(|e| e),
                qemu.serial_tail(30)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        start.elapsed()
    }

    /// Both bond members enabled in OVS's bond with us as the LACP partner.
    pub(super) fn both_members_enabled(&self) -> bool {
        both_members_enabled(&self.ovs, &self.ns, &self.taps)
    }
}
