//! A guest's NIC: the stock Debian kernel loads its own `virtio_net` (from
//! `target/peer/modules/`) and finds our virtio-net, a VIF on the
//! management network of the image's switch. Through the VIF, the switch
//! and the image's uplink, QEMU's user networking (slirp) leases the guest
//! an address for its own MAC; the guest pings slirp's gateway, reads the
//! host's own `/health` through the switch (VIF to host port, no uplink;
//! with `nc`, as the static busybox's `wget` segfaults),
//! and streams 16 MiB to a listener of this test (slirp forwards the
//! gateway's address to the machine running QEMU): the listener counts the
//! bytes and answers the count, which the guest prints.
//!
//! A guest flooding its NIC beside other guests and the API is the
//! `isolation` test's.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use qemu_tests::cpio::Cpio;

use super::{health, keel};

/// The modules in load order (dependencies first).
const MODULES: &[&str] = &[
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "failover",
    "net_failover",
    "virtio_net",
];

/// What the guest streams to the test's listener.
const STREAM_BYTES: u64 = 16 << 20;
/// The host's management address: slirp's first lease, which the image
/// asks for long before the guest boots (asserted through /health).
const HOST_IP: &str = "10.0.2.15";

/// The init after [`super::GUEST_INIT_PREAMBLE`].
const INIT: &str = r#"i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done
echo "KEEL-NET-DEV=$(cat /sys/class/net/eth0/address) mtu $(cat /sys/class/net/eth0/mtu)" > /dev/console
ip link set lo up
ip link set eth0 up
udhcpc -i eth0 -n -q -t 10 -T 2 -s /udhcpc.script > /dev/null 2>&1 || echo KEEL-NET-NO-LEASE > /dev/console
ping -c 3 -W 5 10.0.2.2 > /dev/null 2>&1 && echo KEEL-NET-PING-GATEWAY-OK > /dev/console
echo "KEEL-NET-HEALTH=$(printf 'GET /health HTTP/1.0\r\nHost: HOST_IP\r\n\r\n' | nc -w 20 HOST_IP 80 | grep -o '"status": *"[a-z]*"')" > /dev/console
t0=$(cut -d' ' -f1 /proc/uptime | tr -d .)
echo "KEEL-NET-STREAM-ANSWER=$(dd if=/dev/zero bs=64k count=STREAM_BLOCKS 2>/dev/null | nc -w 20 10.0.2.2 SINK_PORT)" > /dev/console
t1=$(cut -d' ' -f1 /proc/uptime | tr -d .)
echo "KEEL-NET-STREAM-GUEST-MS=$((t1 - t0))0" > /dev/console
grep eth0 /proc/net/dev > /dev/console
grep Tcp: /proc/net/snmp > /dev/console
# The console drains before the kernel prints its power-off lines into it.
sleep 2
poweroff -f
"#;

/// busybox udhcpc's hook: configures the lease and says what it got.
const UDHCPC_SCRIPT: &str = r#"#!/bin/busybox sh
case "$1" in
bound|renew)
    ifconfig "$interface" "$ip" netmask "$subnet" up
    [ -n "$router" ] && route add default gw "$router" dev "$interface"
    echo "KEEL-NET-LEASE=$ip/$subnet router $router" > /dev/console
    ;;
esac
exit 0
"#;

fn guest_initrd(sink_port: u16) -> Vec<u8> {
    let init = format!("{}{INIT}", super::GUEST_INIT_PREAMBLE)
        .replace("MODULES", &MODULES.join(" "))
        .replace("HOST_IP", HOST_IP)
        .replace("SINK_PORT", &sink_port.to_string())
        .replace("STREAM_BLOCKS", &(STREAM_BYTES / 65536).to_string());
    super::peer_initrd(
        MODULES,
        &[
            ("init", 0o755, init.as_bytes()),
            ("udhcpc.script", 0o755, UDHCPC_SCRIPT.as_bytes()),
        ],
    )
}

/// One connection the sink took: bytes until EOF and the time they took.
#[derive(Debug)]
struct Received {
    bytes: u64,
    took: Duration,
}

/// Reads `stream` to EOF (or a 60 s silence), answers the count, reports it.
fn drain(mut stream: TcpStream, report: &mpsc::Sender<Received>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let start = Instant::now();
    let mut buf = vec![0u8; 256 * 1024];
    let mut bytes = 0u64;
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        bytes += n as u64;
    }
    let took = start.elapsed();
    let _ = stream.write_all(format!("KEEL-SINK-GOT-{bytes}\n").as_bytes());
    let _ = report.send(Received { bytes, took });
}

#[test]
fn debian_guest_reaches_the_host_and_the_network_through_its_vif() {
    let sink = TcpListener::bind("127.0.0.1:0").expect("bind the sink");
    let sink_port = sink.local_addr().expect("sink address").port();
    let (report, received) = mpsc::channel();
    // Serves every connection the guest opens; ends with the test process.
    std::thread::spawn(move || {
        for stream in sink.incoming().flatten() {
            let report = report.clone();
            std::thread::spawn(move || drain(stream, &report));
        }
    });

    let builder = keel(2, 1024).hard_timeout(Duration::from_secs(400));
    let peer = qemu_tests::workspace_root().join("target/peer");
    let mut cpio = Cpio::default();
    let files: Vec<(String, Vec<u8>)> = vec![
        (
            "guests/vnet/kernel".into(),
            fs::read(peer.join("vmlinuz")).expect("target/peer/vmlinuz (run `cargo xtask setup`)"),
        ),
        ("guests/vnet/initrd".into(), guest_initrd(sink_port)),
        ("guests/vnet/cmdline".into(), b"console=ttyS0".to_vec()),
        ("guests/vnet/nic".into(), b"management".to_vec()),
    ];
    for (path, data) in &files {
        cpio.file(path, 0o644, data);
    }
    let archive = builder.dir().join("modules.cpio");
    fs::write(&archive, cpio.finish()).expect("write archive");
    let qemu = builder.initrd(&archive).spawn().expect("spawn QEMU");

    let timeout = Duration::from_secs(300);
    let (_, json) = health(&qemu);
    assert_eq!(json["management_ip"], HOST_IP, "{json}");
    // The MAC comes from the VM's name (Xen's OUI), the MTU from the network.
    qemu.wait_for_serial("vif: vm vnet: 00:16:3e:", timeout)
        .expect("the host plugs the VIF");
    qemu.wait_for_serial("on network eth0 (VLAN", timeout)
        .expect("the VIF is on the management network");
    let attached = "is virtio-net at 00:01.0";
    qemu.wait_for_serial(attached, timeout)
        .expect("the host attaches the NIC");
    let serial = qemu.serial();
    let mac = serial
        .lines()
        .find_map(|l| {
            let at = l.find("vif: vm vnet: ")? + "vif: vm vnet: ".len();
            l.get(at..at + 17).map(str::to_string)
        })
        .expect("the VIF's MAC in the log");
    for line in [
        format!("vm vnet: KEEL-NET-DEV={mac} mtu 1500"),
        "vm vnet: KEEL-NET-LEASE=10.0.2.".to_string(),
        "vm vnet: KEEL-NET-PING-GATEWAY-OK".to_string(),
        "vm vnet: KEEL-NET-HEALTH=\"status\"".to_string(),
        format!("vm vnet: KEEL-NET-STREAM-ANSWER=KEEL-SINK-GOT-{STREAM_BYTES}"),
    ] {
        qemu.wait_for_serial(&line, timeout)
            .unwrap_or_else(|e| panic!("{line}: {e}"));
    }
    let serial = qemu.serial();
    let lease = serial
        .lines()
        .find(|l| l.contains("KEEL-NET-LEASE="))
        .unwrap_or_default();
    assert!(
        !lease.contains(&format!("={HOST_IP}/")),
        "the guest has its own lease: {lease}"
    );
    let health_line = serial
        .lines()
        .find(|l| l.contains("KEEL-NET-HEALTH="))
        .unwrap_or_default();
    assert!(
        health_line.contains("\"status\":\"ok\"") || health_line.contains("\"status\": \"ok\""),
        "the guest read the host's /health: {health_line}"
    );
    let stream = received
        .recv_timeout(Duration::from_secs(30))
        .expect("the sink saw the stream");
    assert_eq!(stream.bytes, STREAM_BYTES, "{stream:?}");
    let secs = stream.took.as_secs_f64().max(1e-6);
    println!(
        "FIGURE guest-to-network TCP through VIF, switch and uplink (slirp): {} MiB in {:.2} s = {:.1} MiB/s",
        STREAM_BYTES >> 20,
        secs,
        STREAM_BYTES as f64 / secs / f64::from(1 << 20)
    );

    qemu.wait_for_serial("vm vnet: powered off (ACPI S5)", timeout)
        .expect("the guest powers off");
    let (_, json) = health(&qemu);
    assert_eq!(json["status"], "ok", "{json}");
    let serial = qemu.serial();
    // What the guest's TCP and the VIF counted (retransmissions, drops).
    for line in serial
        .lines()
        .filter(|l| l.contains("vm vnet: Tcp:") || l.contains("vm vnet: nic "))
    {
        println!("FIGURE guest-net counters: {line}");
    }
    assert!(
        !serial.contains("KEEL-INSMOD-FAILED"),
        "a module did not load"
    );
    assert!(
        !serial.contains("Kernel panic"),
        "the guest kernel panicked"
    );
}
