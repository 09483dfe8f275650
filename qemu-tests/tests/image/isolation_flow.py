"""Isolation under a disk-hammering guest, through the PyPI XenAPI SDK: while
the boot-archive guest `hammer` loops direct-I/O writes and reads over its
virtio disk, a XenAPI VM is started, its serial console answers commands over
CONNECT /console, and the API answers host.get_record and GET /health. Every
wait is bounded; latencies are printed as FIGURE lines, never asserted. Run by
isolation.rs with KEEL_URL and KEEL_PASSWORD."""

import os
import statistics
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import XenAPI  # noqa: E402

from vm_flow import booted_console, log, round_trip, wait_power  # noqa: E402

URL = os.environ["KEEL_URL"]
ROUNDS = 10


def timed(f):
    t0 = time.monotonic()
    value = f()
    return (time.monotonic() - t0) * 1000.0, value


def figure(name, samples):
    samples = sorted(samples)
    log(f"FIGURE {name} under a disk-hammering and a NIC-flooding guest: n={len(samples)} "
        f"min {samples[0]:.1f} ms, median {statistics.median(samples):.1f} ms, "
        f"max {samples[-1]:.1f} ms")


def health():
    with urllib.request.urlopen(URL + "/health", timeout=30) as r:
        assert r.status == 200, r.status
        return r.read()


def main():
    session = XenAPI.Session(URL)
    session.xenapi.login_with_password("root", os.environ["KEEL_PASSWORD"], "2.21", "isolation")
    x = session.xenapi
    template = x.VM.get_by_name_label("Debian-style direct boot")[0]
    vm = x.VM.clone(template, "quiet")
    x.VM.provision(vm)
    x.VM.set_is_a_template(vm, False)
    x.VM.set_PV_kernel(vm, "boot:debian/vmlinuz")
    x.VM.set_PV_ramdisk(vm, "boot:debian/initrd")
    x.VM.set_PV_args(vm, "console=ttyS0 pci=off")
    mib128 = str(128 << 20)
    x.VM.set_memory_limits(vm, mib128, mib128, mib128, mib128)
    token = x.event_from(["vm"], "", 0.0)["token"]
    x.VM.start(vm, False, False)
    token = wait_power(x, vm, "Running", token, 60)
    console = booted_console(session, vm)
    log("KEEL-ISOLATION-QUIET-BOOTED")
    host = x.host.get_all()[0]
    consoles, records, healths = [], [], []
    for i in range(ROUNDS):
        ms, _ = timed(lambda: round_trip(console, f"iso{i}"))
        consoles.append(ms)
        ms, record = timed(lambda: x.host.get_record(host))
        assert record["uuid"], record
        records.append(ms)
        ms, body = timed(health)
        assert b'"status":"ok"' in body.replace(b" ", b""), body
        healths.append(ms)
    figure("console round trip (echo over CONNECT /console)", consoles)
    figure("host.get_record", records)
    figure("GET /health", healths)
    x.VM.hard_shutdown(vm)
    assert x.VM.get_power_state(vm) == "Halted"
    console.close()
    x.VM.destroy(vm)
    log("KEEL-ISOLATION-FLOW-OK")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # the Rust side prints our output
        log(f"KEEL-ISOLATION-FLOW-FAILED {type(e).__name__}: {e}")
        sys.exit(1)
