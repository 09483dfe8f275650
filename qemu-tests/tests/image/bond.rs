//! The seed scenario in the image: two extra NICs on taps that are members
//! of an Open vSwitch LACP bond (`balance-tcp`, fast) in a namespace of the
//! test's own; the host config bonds them (`bond0` of eth1 and eth2), puts
//! management on VLAN 5 (native, untagged) and storage on VLAN 20 with MTU
//! 9000. From OVS internal ports on those VLANs, `/health` answers on the
//! management address and the storage address answers 8000-byte pings that
//! may not be fragmented (`ping -M do -s 8000`); OVS shows both members
//! enabled with us as its LACP partner, and the XenAPI (JSON-RPC) shows the
//! PIFs, the Bond and the VLAN that were brought up.
//!
//! QEMU runs inside the namespace (its taps are there); OVS's daemons run
//! under `timeout` and are killed by their pids; deleting the namespace
//! removes the taps. Needs root and Open vSwitch, else it says SKIP.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use qemu_tests::host_config_bin_from_env;

use super::{BOOT_TIMEOUT, keel};

const MGMT_IP: &str = "10.218.5.2";
const STORAGE_IP: &str = "10.218.20.2";

const CONFIG: &str = r#"hostname = "keel-bond-test"
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

/// A short command under `timeout`; its stdout or why it failed.
fn run(args: &[&str]) -> Result<String, String> {
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
struct Netns(String);

impl Netns {
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

/// A daemon under `timeout` in the namespace, killed by the pid in its
/// pidfile and then the wrapper's own pid.
struct Daemon {
    wrapper: Child,
    pidfile: PathBuf,
}

impl Daemon {
    fn start(ns: &Netns, args: &[&str], pidfile: PathBuf, log: &Path) -> Result<Self, String> {
        let log = fs::File::create(log).map_err(|e| e.to_string())?;
        let wrapper = Command::new("ip")
            .args(["netns", "exec", &ns.0, "timeout", "-s", "KILL", "200"])
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
struct Ovs {
    dir: PathBuf,
    // Field order is drop order: the switch before its database.
    _vswitchd: Daemon,
    _ovsdb: Daemon,
}

impl Ovs {
    fn start(ns: &Netns, dir: &Path) -> Result<Self, String> {
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

fn prerequisites_missing() -> Option<String> {
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

#[test]
fn management_and_storage_vlans_over_a_lacp_bond_with_open_vswitch() {
    if let Some(why) = prerequisites_missing() {
        eprintln!("SKIP management_and_storage_vlans_over_a_lacp_bond_with_open_vswitch: {why}");
        return;
    }
    let tool = host_config_bin_from_env().expect("the host-config tool");
    let builder = keel(2, 512);
    let (toml, module) = (
        builder.dir().join("bond.toml"),
        builder.dir().join("bond.bin"),
    );
    fs::write(&toml, CONFIG).expect("write the config");
    let out = Command::new(&tool)
        .arg("compile")
        .arg(&toml)
        .arg("-o")
        .arg(&module)
        .output()
        .expect("run host-config");
    assert!(
        out.status.success(),
        "compile: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let pid = std::process::id();
    let ns = Netns(format!("keel-qbond-{pid}"));
    run(&["ip", "netns", "add", &ns.0]).expect("namespace");
    let taps: Vec<String> = (0..2).map(|i| format!("kq{}t{i}", pid % 100_000)).collect();
    for tap in &taps {
        ns.run(&["ip", "tuntap", "add", "dev", tap, "mode", "tap"])
            .expect("tap");
        ns.run(&["ip", "link", "set", tap, "mtu", "9100", "up"])
            .expect("tap up");
    }
    ns.run(&["ip", "link", "set", "lo", "up"]).expect("lo");
    ns.run(&["sysctl", "-q", "-w", "net.ipv4.conf.all.arp_ignore=1"])
        .expect("arp_ignore");
    let dir = builder.dir().join("ovs");
    fs::create_dir_all(&dir).expect("ovs dir");
    let ovs = Ovs::start(&ns, &dir).expect("OVS");
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
    .expect("OVS bridge");
    for (port, cidr) in [("mgmt0", "10.218.5.1/24"), ("stor0", "10.218.20.1/24")] {
        ns.run(&["ip", "addr", "add", cidr, "dev", port])
            .expect("address");
        ns.run(&["ip", "link", "set", port, "up"]).expect("up");
    }

    let qemu = builder
        .initrd(&module)
        .tap(&taps[0])
        .tap(&taps[1])
        .netns(&ns.0)
        .spawn()
        .expect("spawn QEMU");
    qemu.wait_for_serial("net: storage on bond0 VLAN 20", BOOT_TIMEOUT)
        .expect("storage network up on the console");
    let serial = qemu.serial();
    assert!(
        serial.contains("net: bond0 on bond0 VLAN 5 (native, untagged)"),
        "{}",
        qemu.serial_tail(30)
    );

    // LACP: OVS enables both members with us as partner.
    let start = Instant::now();
    while !both_members_enabled(&ovs, &ns, &taps) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "OVS did not enable both members:\n{}\n{}\n{}",
            ovs.appctl(&ns, &["lacp/show", "bond0"])
                .unwrap_or_else(|e| e),
            ovs.appctl(&ns, &["bond/show", "bond0"])
                .unwrap_or_else(|e| e),
            qemu.serial_tail(30)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "FIGURE image_lacp_both_members_enabled_after={:.1}s",
        start.elapsed().as_secs_f64()
    );

    // /health on the management address, native VLAN 5.
    let url = format!("http://{MGMT_IP}/health");
    let start = Instant::now();
    let body = loop {
        match ns.run(&["curl", "-s", "-m", "5", &url]) {
            Ok(body) if body.contains("\"status\":\"ok\"") => break body,
            other => assert!(
                start.elapsed() < Duration::from_secs(60),
                "GET {url}: {other:?}\n{}",
                qemu.serial_tail(30)
            ),
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        body.contains(&format!("\"management_ip\":\"{MGMT_IP}\"")),
        "{body}"
    );
    assert!(body.contains("\"hostname\":\"keel-bond-test\""), "{body}");

    // The storage address on VLAN 20, with jumbo frames that may not be
    // fragmented: 8000 bytes of ICMP payload, 8028-byte IP packets.
    let ping = ns.run(&[
        "ping", "-M", "do", "-s", "8000", "-c", "3", "-W", "3", STORAGE_IP,
    ]);
    assert!(
        ping.as_ref()
            .is_ok_and(|out| out.contains(" 0% packet loss") && out.contains("8008 bytes from")),
        "ping -M do -s 8000 {STORAGE_IP}: {ping:?}\n{}",
        qemu.serial_tail(30)
    );
    assert!(
        both_members_enabled(&ovs, &ns, &taps),
        "both members still enabled"
    );

    // The XenAPI shows what was brought up: a PIF per NIC, the bond and its
    // master PIF, the storage VLAN with its PIF and network.
    let call = |method: &str, params: serde_json::Value| -> serde_json::Value {
        let body =
            serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let out = ns
            .run(&[
                "curl",
                "-s",
                "-m",
                "10",
                "-H",
                "Content-Type: application/json",
                "-d",
                &body.to_string(),
                &format!("http://{MGMT_IP}/jsonrpc"),
            ])
            .unwrap_or_else(|e| panic!("{method}: {e}"));
        let answer: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{method}: {e}: {out}"));
        assert!(answer["error"].is_null(), "{method}: {answer}");
        answer["result"].clone()
    };
    let session = call(
        "session.login_with_password",
        serde_json::json!(["root", "qemu-tests-password"]),
    );
    let session = session.as_str().expect("a session ref").to_string();
    let records = |class: &str| {
        let all = call(
            &format!("{class}.get_all_records"),
            serde_json::json!([session]),
        );
        all.as_object().expect("records").clone()
    };
    let pifs = records("PIF");
    let pif = |device: &str, vlan: i64| {
        pifs.iter()
            .find(|(_, p)| p["device"] == device && p["VLAN"] == vlan)
            .map(|(r, p)| (r.clone(), p.clone()))
            .unwrap_or_else(|| panic!("no PIF {device} VLAN {vlan}: {pifs:?}"))
    };
    assert_eq!(pifs.len(), 5, "eth0..eth2, bond0, bond0 VLAN 20: {pifs:?}");
    let (master, bond_pif) = pif("bond0", -1);
    assert_eq!(bond_pif["management"], true);
    assert_eq!(bond_pif["IP"], MGMT_IP);
    assert_eq!(bond_pif["MTU"], 9000);
    let (storage_ref, storage) = pif("bond0", 20);
    assert_eq!(storage["IP"], STORAGE_IP);
    assert_eq!(storage["MTU"], 9000);
    let bonds = records("Bond");
    let (bond_ref, bond) = bonds.iter().next().expect("a Bond");
    assert_eq!(bond["master"], master.as_str());
    assert_eq!(bond["mode"], "lacp");
    assert_eq!(bond["properties"]["lacp-time"], "fast");
    assert_eq!(bond["primary_slave"], pif("eth1", -1).0.as_str());
    assert_eq!(pif("eth2", -1).1["bond_slave_of"], bond_ref.as_str());
    let vlans = records("VLAN");
    let (_, vlan) = vlans.iter().next().expect("a VLAN");
    assert_eq!(vlan["tag"], 20);
    assert_eq!(vlan["tagged_PIF"], master.as_str());
    assert_eq!(vlan["untagged_PIF"], storage_ref.as_str());
    drop(qemu);
    drop(ovs);
}
