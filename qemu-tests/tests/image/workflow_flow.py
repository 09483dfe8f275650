"""The user workflow of issue 8 through the PyPI XenAPI SDK: an iSCSI SR with
CHAP, a network on VLAN 30 over the management bond, a VDI holding an ext4
root filesystem, a VM with a VBD and a VIF; the guest is reached from VLAN 30
(ping, HTTP), is cut off and let through again by its VIF's locking mode
(disabled, locked to no / its / another address, back to the network's
default), keeps data written over its console across a shutdown, and a
clone of the VM (VM.clone: a copy-on-write clone of its disk) boots beside
it. Run by workflow.rs inside the test's namespace; every wait is bounded;
timings are printed as FIGURE lines, never asserted."""

import os
import re
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import XenAPI  # noqa: E402

from storage_flow import debian_vm, imported_vdi, iscsi_sr  # noqa: E402
from vm_flow import Console, log  # noqa: E402

URL = os.environ["KEEL_URL"]
BOOT_WAIT = 240.0


def figure(text):
    log(f"FIGURE workflow: {text}")


def http_get(ip, path, timeout=30):
    """The body of http://ip/path and how long the read took (ms)."""
    t0 = time.monotonic()
    with urllib.request.urlopen(f"http://{ip}{path}", timeout=timeout) as r:
        assert r.status == 200, (path, r.status)
        body = r.read().decode()
    return body, (time.monotonic() - t0) * 1000.0


def http_status(ip, path):
    try:
        with urllib.request.urlopen(f"http://{ip}{path}", timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def ping(ip, count, deadline):
    """`count` pings; ping ends when all are answered or after `deadline` s
    (a late answer under TCG counts, a missing one does not)."""
    return subprocess.run(["ping", "-n", "-c", str(count), "-i", "0.2", "-w", str(deadline), ip],
                          capture_output=True, text=True, timeout=deadline + 10)


def wait_reachable(ip, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ping(ip, 1, 1).returncode == 0:
            return
    raise TimeoutError(f"{ip} did not answer a ping in {timeout} s")


def ping_rtt(ip):
    """Five pings, all answered; their average round trip (ms)."""
    out = ping(ip, 5, 30).stdout
    assert "5 received" in out, out
    return float(re.search(r"= [\d.]+/([\d.]+)/", out).group(1))


def task_done(x, task, timeout):
    deadline = time.monotonic() + timeout
    while x.task.get_status(task) == "pending":
        assert time.monotonic() < deadline, f"task still pending after {timeout} s"
        time.sleep(0.5)
    assert x.task.get_status(task) == "success", x.task.get_record(task)
    x.task.destroy(task)


def pv_args(ip):
    """The guest's command line: its address for the root's init."""
    return f"console=ttyS0 quiet keel.ip={ip}/24"


def new_vm(x, name, vdi, net, ip):
    """A VM from the template booting the Debian kernel with `vdi` as its
    disk, a VIF on `net` and `ip` on its command line; (vm, vif)."""
    vm, _ = debian_vm(x, name, vdi, memory=128 << 20)
    x.VM.set_PV_args(vm, pv_args(ip))
    vif = x.VIF.create({"device": "0", "network": net, "VM": vm, "MAC": "", "MTU": "1500",
                        "other_config": {}, "qos_algorithm_type": "",
                        "qos_algorithm_params": {}})
    return vm, vif


def vlan_network(x):
    """A network on VLAN $VLAN over the management bond."""
    log(f"network on VLAN {os.environ['VLAN']} over the management bond")
    pifs = x.PIF.get_all_records()
    mgmt = [ref for ref, p in pifs.items() if p["management"]]
    assert len(mgmt) == 1 and pifs[mgmt[0]]["device"] == "bond0", pifs
    net = x.network.create({"name_label": "vlan30", "name_description": "", "MTU": "1500",
                            "other_config": {}})
    x.pool.create_VLAN_from_PIF(mgmt[0], net, os.environ["VLAN"])
    return net


def expect_boot(console, text):
    """Waits for `text` on the console; fails at once if the guest panics."""
    deadline = time.monotonic() + BOOT_WAIT
    while True:
        try:
            console.expect(text, 5)
            return
        except TimeoutError:
            if b"Kernel panic" in console.buf or time.monotonic() > deadline:
                raise


def start(session, vm, ip, mac, label):
    """Starts `vm`; waits for its init on the console and for a ping answer
    from VLAN 30; prints how long each took. Returns the console."""
    x = session.xenapi
    t0 = time.monotonic()
    x.VM.start(vm, False, False)
    consoles = x.VM.get_consoles(vm)
    assert len(consoles) == 1, consoles
    console = Console(session, consoles[0])
    expect_boot(console, f"KEEL-WF-READY {ip}/24")
    ready = time.monotonic() - t0
    # The guest printed the MAC its virtio-net device has: the VIF's.
    assert f"KEEL-WF-NET eth0 {ip}/24 {mac}".encode() in console.seen, console.seen[-2000:]
    wait_reachable(ip, 60)
    reachable = time.monotonic() - t0
    figure(f"{label}: VM.start -> init ready on the console {ready:.1f} s, "
           f"-> first ping answer from VLAN 30 {reachable:.1f} s")
    return console


def console_run(console, command, tag, timeout=60):
    """Runs `command` in the guest's shell; waits for `tag-42` after it (the
    typed line the tty echoes holds `$((6*7))`, not 42)."""
    console.send(f"{command} && echo {tag}-$((6*7))\n")
    console.expect(f"{tag}-42", timeout)


def main():
    session = XenAPI.Session(URL)
    session.xenapi.login_with_password("root", os.environ["KEEL_PASSWORD"], "2.21", "workflow")
    x = session.xenapi
    host = x.host.get_all()[0]

    log("iSCSI SR with CHAP: probe, create")
    sr = iscsi_sr(x, host, "workflow-sr")

    net = vlan_network(x)

    log("VDI with the ext4 root image: create, PUT /import_raw_vdi")
    data = open(os.environ["ROOT_IMAGE"], "rb").read()
    t0 = time.monotonic()
    vdi, _ = imported_vdi(session, URL, sr, "root", data)
    figure(f"VDI.create + import of the {len(data) >> 20} MiB root image "
           f"{time.monotonic() - t0:.1f} s")

    ip, clone_ip = os.environ["GUEST_IP"], os.environ["CLONE_IP"]
    vm, vif = new_vm(x, "wf1", vdi, net, ip)
    mac = x.VIF.get_MAC(vif)
    assert re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", mac), mac

    log("start; reach the guest from VLAN 30")
    console = start(session, vm, ip, mac, "first boot")
    figure(f"ping RTT host on VLAN 30 -> guest, average of 5: {ping_rtt(ip):.2f} ms")
    body, ms = http_get(ip, "/index.html")
    assert body.strip() == os.environ["INDEX"], body
    figure(f"HTTP read of the guest's /index.html from VLAN 30 {ms:.1f} ms")
    assert http_get(ip, "/whoami.txt")[0].strip() == ip

    log("VIF locking, applied at once to the running guest's VIF by the switch")
    assert x.VIF.get_locking_mode(vif) == "network_default"
    x.VIF.set_locking_mode(vif, "disabled")
    assert ping(ip, 2, 2).returncode != 0, "a disabled VIF passes no ping"
    x.VIF.set_locking_mode(vif, "locked")
    assert ping(ip, 2, 2).returncode != 0, "locked with no address passes nothing"
    x.VIF.set_ipv4_allowed(vif, [ip])
    t0 = time.monotonic()
    wait_reachable(ip, 30)
    figure(f"VIF locked to the guest's address: ping answered {time.monotonic() - t0:.1f} s "
           "after VIF.set_ipv4_allowed")
    x.VIF.set_ipv4_allowed(vif, [clone_ip])
    assert ping(ip, 2, 2).returncode != 0, "locked to another address"
    x.VIF.set_locking_mode(vif, "network_default")
    wait_reachable(ip, 30)

    log("write data in the guest; clean_shutdown; start again")
    token = f"KEEL-DATA-{secrets.token_hex(8)}"
    console_run(console, f"echo {token} > /www/data.txt && sync", "wrote")
    task_done(x, x.Async.VM.clean_shutdown(vm), 90)
    assert x.VM.get_power_state(vm) == "Halted"
    console.close()

    log("VM.clone of the halted VM: a copy-on-write clone of its disk, a VIF of its own")
    clone = x.VM.clone(vm, "wf2")
    [clone_vbd] = x.VM.get_VBDs(clone)
    clone_vdi = x.VBD.get_VDI(clone_vbd)
    assert clone_vdi != vdi and x.VDI.get_SR(clone_vdi) == sr, clone_vdi
    [clone_vif] = x.VM.get_VIFs(clone)
    assert x.VIF.get_network(clone_vif) == net
    clone_mac = x.VIF.get_MAC(clone_vif)
    assert clone_mac != mac and re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", clone_mac), clone_mac
    x.VM.set_PV_args(clone, pv_args(clone_ip))

    console = start(session, vm, ip, mac, "second boot")
    console_run(console, "grep -x " + token + " /www/data.txt", "persisted")
    assert http_get(ip, "/data.txt")[0].strip() == token

    log("boot the clone beside the running original")
    clone_console = start(session, clone, clone_ip, clone_mac, "clone boot (original running)")
    assert http_get(clone_ip, "/whoami.txt")[0].strip() == clone_ip
    assert http_get(clone_ip, "/data.txt")[0].strip() == token
    console_run(clone_console, "echo clone-only > /www/clone.txt && sync", "clonewrote")
    assert http_get(clone_ip, "/clone.txt")[0].strip() == "clone-only"
    # Copy-on-write: the clone's write is not in the original's disk.
    assert http_status(ip, "/clone.txt") == 404
    console_run(console, "[ ! -e /www/clone.txt ]", "origlacks")
    figure(f"ping RTT host on VLAN 30 -> clone, average of 5: {ping_rtt(clone_ip):.2f} ms")
    assert ping_rtt(ip) > 0
    assert x.VM.get_power_state(vm) == "Running" and x.VM.get_power_state(clone) == "Running"

    for v in (clone, vm):
        task_done(x, x.Async.VM.hard_shutdown(v), 60)
    console.close()
    clone_console.close()
    log("KEEL-WF-FLOW-OK")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # the Rust side prints our output
        log(f"KEEL-WF-FLOW-FAILED {type(e).__name__}: {e}")
        sys.exit(1)
