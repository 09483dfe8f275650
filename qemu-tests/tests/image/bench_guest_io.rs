//! Guest I/O at scale, and the figures of `cargo xtask bench guest-io`
//! (issue 8's benchmark, which runs this test and passes its `BENCH` lines
//! on): the workflow's host
//! ([`WorkflowHost`]: LACP bond to OVS, tgtd with CHAP on the storage VLAN,
//! a test host on VLAN 30) and a guest with its root VDI and a 256 MiB
//! data VDI imported with real data; `bench_guest_io_flow.py` measures the
//! guest's direct-I/O `dd` of that disk against our hosted initiator
//! reading the same tgtd LUN (`KEEL_ISCSI_BIN`, the release `iscsi`
//! binary), and the guest's TCP throughput to the VLAN 30 host against the
//! same transfer from another namespace, whose OVS internal port is on
//! VLAN 30 of the same bridge. What it checks: the guest reads the
//! imported data back through the disk session (MD5 of its first MiB),
//! rewrites the whole disk, and every byte of each TCP transfer arrives;
//! times are printed (`BENCH` lines), never asserted.

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use qemu_tests::run_bounded;

use super::lacp_switch::{Netns, prerequisites_missing, run};
use super::workflow::{VLAN, WorkflowHost};

/// The environment variable naming the hosted initiator's CLI.
const ISCSI_BIN_ENV: &str = "KEEL_ISCSI_BIN";
/// The SR holds the 256 MiB data VDI and the 16 MiB root.
const LUN_BYTES: u64 = 1 << 30;
/// The peer side's OVS internal port, moved into a namespace of its own.
const PEER_PORT: &str = "vlan30p";
const PEER_CIDR: &str = "10.30.0.2/24";
/// The setup, a guest boot and transfers at TCG speed (the flow bounds
/// each transfer itself).
const FLOW_TIMEOUT: Duration = Duration::from_secs(1500);
const HARD_TIMEOUT: Duration = Duration::from_secs(1600);

/// A namespace holding a new OVS internal port of `host`'s bridge on VLAN
/// 30 with [`PEER_CIDR`]: a second test host there, whose traffic to the
/// first goes through OVS and nothing else.
fn peer_namespace(host: &WorkflowHost) -> Netns {
    let ns = Netns(format!("keel-qbiop-{}", std::process::id()));
    run(&["ip", "netns", "add", &ns.0]).expect("the peer namespace");
    let switch = &host.switch;
    switch
        .ovs
        .vsctl(
            &switch.ns,
            &[
                "add-port",
                "br0",
                PEER_PORT,
                &format!("tag={VLAN}"),
                "--",
                "set",
                "interface",
                PEER_PORT,
                "type=internal",
            ],
        )
        .expect("the peer's OVS port");
    // ovs-vsctl returns once ovs-vswitchd has the port; its device may
    // take a moment to appear.
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(e) = switch
        .ns
        .run(&["ip", "link", "set", PEER_PORT, "netns", &ns.0])
    {
        assert!(Instant::now() < deadline, "moving {PEER_PORT}: {e}");
        std::thread::sleep(Duration::from_millis(100));
    }
    ns.run(&["ip", "addr", "add", PEER_CIDR, "dev", PEER_PORT])
        .expect("the peer's address");
    ns.run(&["ip", "link", "set", PEER_PORT, "up"])
        .expect("the peer's port up");
    ns
}

/// The guest's TCP sender: busybox `nc` writes about 1 KiB per system call,
/// which under nested TCG makes the guest's CPU the limit (one run of
/// `guest_net`: 16,174 segments of 1,037 B on average for 16 MiB, no
/// retransmission, no drop); this one writes 64 KiB at a time, as the
/// peer's sender does.
const TCP_SEND_C: &str = r#"#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    static char buf[65536];
    struct sockaddr_in a = {0};
    long long left;
    int s;
    char c;
    if (argc != 4) {
        fprintf(stderr, "usage: tcp_send IP PORT BYTES\n");
        return 2;
    }
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &a.sin_addr) != 1) {
        fprintf(stderr, "tcp_send: bad address %s\n", argv[1]);
        return 2;
    }
    s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("tcp_send: connect");
        return 1;
    }
    for (left = atoll(argv[3]); left > 0;) {
        ssize_t n = write(s, buf, left < (long long)sizeof buf ? (size_t)left : sizeof buf);
        if (n <= 0) {
            perror("tcp_send: write");
            return 1;
        }
        left -= n;
    }
    shutdown(s, SHUT_WR);
    while (read(s, &c, 1) > 0) {
    }
    close(s);
    return 0;
}
"#;

/// Builds [`TCP_SEND_C`] statically and puts it at `/bin/tcp_send` in the
/// guests' ext4 root image (`debugfs`, from e2fsprogs).
fn add_tcp_send(dir: &std::path::Path, root: &std::path::Path) {
    let source = dir.join("tcp_send.c");
    let binary = dir.join("tcp_send");
    fs::write(&source, TCP_SEND_C).expect("write tcp_send.c");
    let out = Command::new("timeout")
        .args(["120", "gcc", "-static", "-O2", "-o"])
        .arg(&binary)
        .arg(&source)
        .output()
        .expect("gcc");
    assert!(
        out.status.success(),
        "gcc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for request in [
        format!("write {} bin/tcp_send", binary.display()),
        "sif bin/tcp_send mode 0100755".to_string(),
    ] {
        let out = Command::new("timeout")
            .args(["60", "debugfs", "-w", "-R", &request])
            .arg(root)
            .output()
            .expect("debugfs (e2fsprogs)");
        assert!(
            out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("rror"),
            "debugfs {request}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn guest_disk_and_tcp_at_scale_beside_the_hosted_initiator_and_ovs() {
    if let Some(why) = prerequisites_missing() {
        panic!("the guest-io test needs root and Open vSwitch: {why}");
    }
    let iscsi = std::env::var_os(ISCSI_BIN_ENV).unwrap_or_else(|| {
        panic!("{ISCSI_BIN_ENV}: the release `iscsi` CLI (`cargo xtask test` and `bench guest-io` set it)")
    });
    let host = WorkflowHost::start("qbio", LUN_BYTES, HARD_TIMEOUT);
    add_tcp_send(host.qemu.dir(), &host.root);
    let peer = peer_namespace(&host);
    let mut python = host.flow("bench_guest_io_flow.py");
    python.env(ISCSI_BIN_ENV, iscsi).env("PEER_NS", &peer.0);
    let finished = run_bounded(python, FLOW_TIMEOUT, host.qemu.dir(), "bench_guest_io_flow")
        .expect("the flow ends");
    let serial = super::assert_flow_passed(
        &finished,
        &host.qemu,
        "bench_guest_io_flow.py",
        "KEEL-BIO-FLOW-OK",
    );
    WorkflowHost::assert_guests_booted(&serial);
    for line in finished.stdout.lines().filter(|l| l.starts_with("BENCH ")) {
        println!("{line}");
    }
    drop(host);
    drop(peer);
}
