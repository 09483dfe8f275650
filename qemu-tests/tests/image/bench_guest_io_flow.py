"""`cargo xtask bench guest-io` through the PyPI XenAPI SDK: the workflow's
host (an iSCSI SR with CHAP on tgtd, a network on VLAN 30 over the LACP
bond) runs a guest whose second disk is a 256 MiB VDI imported with real
data (PUT /import_raw_vdi: every cluster allocated), and measures, in the
same run:

- guest-disk-read: the guest's `dd iflag=direct bs=1M` of the 256 MiB from
  its virtio-blk disk (the disk's iSCSI fast path), against our hosted
  initiator (`iscsi read`, KEEL_ISCSI_BIN) reading 256 MiB of the same tgtd
  LUN from the namespace;
- guest-disk-write: the guest's `dd oflag=direct bs=1M` of 256 MiB over
  that disk (clusters the VDI owns: written in place), no peer;
- guest-net-tcp: NET_MIB MiB of TCP from the guest (busybox `nc`) to the
  test host on VLAN 30, against the same byte count sent to it from
  another namespace (PEER_NS) whose OVS internal port is on VLAN 30 of the
  same bridge; both timed at the receiver, first byte to last.

Prints `BENCH <name> ours=<x> peer=<y> ratio=<ours/peer>` lines (MB/s,
10^6 bytes a second); times are never asserted. Every wait is bounded and
every process it starts has a timeout and is killed by its pid."""

import hashlib
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import XenAPI  # noqa: E402

from storage_flow import imported_vdi, iscsi_sr  # noqa: E402
from vm_flow import log  # noqa: E402
from workflow_flow import URL, console_run, new_vm, start, task_done, vlan_network  # noqa: E402

DISK_MIB = 256
NET_MIB = int(os.environ.get("NET_MIB", "64"))
NET_PORT = 5001
RECEIVER = os.environ["VLAN_PEER"].split("/")[0]
# Generous bounds for TCG: a transfer that does not end within them failed.
DISK_TIMEOUT = 900
NET_TIMEOUT = 600


def mbs(nbytes, seconds):
    return nbytes / seconds / 1e6


def figure(text):
    log(f"FIGURE guest-io: {text}")


def bench(name, ours, peer, note):
    log(f"BENCH {name} ours={ours:.2f} peer={peer:.2f} ratio={ours / peer:.3f} ({note})")


class Receiver:
    """A TCP listener on the VLAN 30 test host that takes one connection
    and reads exactly `count` bytes from it, in a thread; `seconds` is the
    time from the first byte to the last."""

    def __init__(self, count):
        self.count = count
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((RECEIVER, NET_PORT))
        self.listener.listen(1)
        self.listener.settimeout(NET_TIMEOUT)
        self.seconds = None
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            conn, _ = self.listener.accept()
            deadline = time.monotonic() + NET_TIMEOUT
            got, first = 0, None
            with conn:
                conn.settimeout(30)
                while got < self.count:
                    assert time.monotonic() < deadline, f"{got} of {self.count} bytes in {NET_TIMEOUT} s"
                    chunk = conn.recv(min(1 << 20, self.count - got))
                    if not chunk:
                        raise EOFError(f"sender closed after {got} of {self.count} bytes")
                    if first is None:
                        first = time.monotonic()
                    got += len(chunk)
                self.seconds = time.monotonic() - first
        except Exception as e:  # reported by result()
            self.error = e
        finally:
            self.listener.close()

    def result(self):
        self.thread.join(NET_TIMEOUT + 60)
        assert not self.thread.is_alive(), "the receiver did not finish"
        if self.error is not None:
            raise self.error
        return self.seconds


def bounded(args, timeout, **kwargs):
    """subprocess.run with a hard timeout (the child is killed by its pid)."""
    return subprocess.run(args, timeout=timeout, check=True, **kwargs)


def hosted_read(nbytes):
    """Seconds our hosted initiator takes to read `nbytes` of the LUN from
    offset 0 (login to logout), its output counted and discarded."""
    env = os.environ
    url = (f"iscsi://{env['ISCSI_CHAP_USER']}%{env['ISCSI_CHAP_SECRET']}@"
           f"{env['ISCSI_TARGET']}:{env['ISCSI_PORT']}/{env['ISCSI_IQN']}/1")
    args = [env["KEEL_ISCSI_BIN"], "read", url, "--offset", "0", "--length", str(nbytes),
            "--target-user", env["ISCSI_MUTUAL_USER"],
            "--target-password", env["ISCSI_MUTUAL_SECRET"]]
    t0 = time.monotonic()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    killer = threading.Timer(DISK_TIMEOUT, proc.kill)
    killer.start()
    try:
        got = 0
        while chunk := proc.stdout.read(1 << 20):
            got += len(chunk)
        err = proc.stderr.read().decode(errors="replace")
        status = proc.wait()
    finally:
        killer.cancel()
    seconds = time.monotonic() - t0
    assert status == 0 and got == nbytes, f"iscsi read: exit {status}, {got} bytes: {err}"
    return seconds


def peer_send(nbytes):
    """Sends `nbytes` to the receiver from the peer namespace."""
    sender = ("import socket,sys\n"
              "s=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=30)\n"
              "b=bytes(65536)\n"
              "for _ in range(int(sys.argv[3])//65536): s.sendall(b)\n"
              "s.close()\n")
    bounded(["ip", "netns", "exec", os.environ["PEER_NS"], "python3", "-c", sender,
             RECEIVER, str(NET_PORT), str(nbytes)], NET_TIMEOUT)


def main():
    session = XenAPI.Session(URL)
    session.xenapi.login_with_password("root", os.environ["KEEL_PASSWORD"], "2.21", "bench-guest-io")
    x = session.xenapi
    host = x.host.get_all()[0]
    sr = iscsi_sr(x, host, "bench-sr")
    net = vlan_network(x)

    # The data VDI first: its clusters come first on the LUN, which the
    # hosted initiator reads from offset 0.
    disk_bytes = DISK_MIB << 20
    block = hashlib.sha256(b"keel-guest-io").digest() * (1 << 15)  # 1 MiB, no zeros runs
    data = block * DISK_MIB
    t0 = time.monotonic()
    data_vdi, _ = imported_vdi(session, URL, sr, "bench-data", data, timeout=DISK_TIMEOUT)
    figure(f"VDI.create + PUT /import_raw_vdi of {DISK_MIB} MiB "
           f"{time.monotonic() - t0:.1f} s ({mbs(disk_bytes, time.monotonic() - t0):.2f} MB/s)")
    del data
    root_vdi, _ = imported_vdi(session, URL, sr, "root", open(os.environ["ROOT_IMAGE"], "rb").read())

    ip = os.environ["GUEST_IP"]
    vm, vif = new_vm(x, "bio1", root_vdi, net, ip)
    x.VBD.create({"VM": vm, "VDI": data_vdi, "userdevice": "1", "bootable": False, "mode": "RW",
                  "type": "Disk", "empty": False, "other_config": {}})
    console = start(session, vm, ip, x.VIF.get_MAC(vif), "bench guest boot")

    log("guest-disk-read: the guest reads its imported disk, then the hosted initiator the LUN")
    # The guest sees the imported bytes (direct reads of the first and the
    # last MiB, each the imported block).
    want = hashlib.md5(block).hexdigest()
    for name, skip in [("firstmib", 0), ("lastmib", DISK_MIB - 1)]:
        console_run(console, f"dd if=/dev/vdb bs=1M skip={skip} count=1 iflag=direct 2>/dev/null"
                             f" | md5sum | grep -q {want}", name)
    t0 = time.monotonic()
    console_run(console, f"dd if=/dev/vdb of=/dev/null bs=1M count={DISK_MIB} iflag=direct",
                "read", DISK_TIMEOUT)
    guest_read = time.monotonic() - t0
    host_read = hosted_read(disk_bytes)
    figure(f"guest dd of {DISK_MIB} MiB (iflag=direct bs=1M) {guest_read:.1f} s, "
           f"hosted `iscsi read` of {DISK_MIB} MiB {host_read:.1f} s")
    bench("guest-disk-read", mbs(disk_bytes, guest_read), mbs(disk_bytes, host_read),
          f"MB/s, {DISK_MIB} MiB: guest dd iflag=direct bs=1M from its virtio-blk on the iSCSI"
          " VDI vs. our hosted initiator reading the same tgtd LUN")

    t0 = time.monotonic()
    console_run(console, f"dd if=/dev/zero of=/dev/vdb bs=1M count={DISK_MIB} oflag=direct",
                "write", DISK_TIMEOUT)
    guest_write = time.monotonic() - t0
    # The rewrite landed: the last MiB reads back as zeros.
    zeros = hashlib.md5(bytes(1 << 20)).hexdigest()
    console_run(console, f"dd if=/dev/vdb bs=1M skip={DISK_MIB - 1} count=1 iflag=direct"
                         f" 2>/dev/null | md5sum | grep -q {zeros}", "rewritten")
    log(f"BENCH guest-disk-write ours={mbs(disk_bytes, guest_write):.2f} (MB/s, {DISK_MIB} MiB: "
        "guest dd oflag=direct bs=1M over the imported VDI's allocated clusters; no peer)")

    log(f"guest-net-tcp: {NET_MIB} MiB from the guest, then from the peer namespace")
    net_bytes = NET_MIB << 20
    receiver = Receiver(net_bytes)
    # tcp_send (built by the bench, 64 KiB writes like the peer's sender)
    # ends when the receiver closes after the last byte; the receiver checks
    # the count.
    console_run(console, f"tcp_send {RECEIVER} {NET_PORT} {net_bytes}; true", "sent",
                NET_TIMEOUT)
    guest_net = receiver.result()
    receiver = Receiver(net_bytes)
    peer_send(net_bytes)
    peer_net = receiver.result()
    figure(f"{NET_MIB} MiB over TCP: guest -> VLAN 30 host {guest_net:.2f} s, "
           f"peer namespace -> VLAN 30 host {peer_net:.2f} s")
    bench("guest-net-tcp", mbs(net_bytes, guest_net), mbs(net_bytes, peer_net),
          f"MB/s, {NET_MIB} MiB timed at the receiver: guest on VLAN 30 through our switch and"
          " the LACP bond to OVS vs. another namespace's OVS internal port on the same bridge")

    task_done(x, x.Async.VM.hard_shutdown(vm), 60)
    console.close()
    log("KEEL-BIO-FLOW-OK")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # the Rust side prints our output
        log(f"KEEL-BIO-FLOW-FAILED {type(e).__name__}: {e}")
        sys.exit(1)
