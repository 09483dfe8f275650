"""The VM lifecycle through the PyPI XenAPI SDK against the image: clone the
built-in template, boot the Debian peer kernel from the boot archive's
library, use its serial console over xapi's CONNECT protocol, shut it down
cleanly (ACPI power button), let it power itself off, pause/unpause, hard
shutdown. Run by vm_lifecycle.rs with KEEL_URL and KEEL_PASSWORD; every wait
is bounded."""

import os
import socket
import sys
import time
import urllib.parse

import XenAPI

URL = os.environ["KEEL_URL"]
READY = "KEEL-VM-INIT-READY"
BOOT_WAIT = float(os.environ.get("KEEL_VM_BOOT_WAIT", "240"))


def log(*args):
    print(*args, flush=True)


class Console:
    """xapi's console protocol: CONNECT <location path>&session_id=..., then raw bytes."""

    def __init__(self, session, console):
        location = session.xenapi.console.get_location(console)
        assert session.xenapi.console.get_protocol(console) == "vt100"
        parsed = urllib.parse.urlparse(location)
        assert parsed.path == "/console", location
        # The location names the host's own address; the test reaches it
        # through the forwarded port.
        url = urllib.parse.urlparse(URL)
        self.sock = socket.create_connection((url.hostname, url.port or 80), timeout=10)
        target = f"{parsed.path}?{parsed.query}&session_id={session._session}"
        self.sock.sendall(f"CONNECT {target} HTTP/1.0\r\n\r\n".encode())
        self.buf = b""
        head = self.read_until(b"\r\n\r\n", 30)
        assert head.startswith(b"HTTP/1.1 200"), head
        self.buf = self.buf[self.buf.index(b"\r\n\r\n") + 4:]
        self.seen = b""

    def read_until(self, needle, timeout):
        deadline = time.monotonic() + timeout
        while needle not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"console: no {needle!r} in {timeout} s; got {self.buf[-400:]!r}")
            self.sock.settimeout(min(left, 5))
            try:
                chunk = self.sock.recv(4096)
            except socket.timeout:
                continue
            if not chunk:
                raise EOFError(f"console closed before {needle!r}; got {self.buf[-400:]!r}")
            self.buf += chunk
        return self.buf

    def expect(self, text, timeout):
        self.read_until(text.encode(), timeout)
        at = self.buf.index(text.encode()) + len(text)
        self.seen += self.buf[:at]
        self.buf = self.buf[at:]

    def send(self, text):
        self.sock.sendall(text.encode())

    def close(self):
        self.sock.close()


def wait_power(x, vm, state, token, timeout):
    """Waits for an event saying `vm` is in `state`; returns the next token."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = x.event_from(["vm"], token, 5.0)
        token = got["token"]
        for ev in got["events"]:
            if ev["ref"] == vm and ev.get("snapshot", {}).get("power_state") == state:
                return token
    raise TimeoutError(f"no event with power_state {state} in {timeout} s "
                       f"(now {x.VM.get_power_state(vm)})")


def booted_console(session, vm):
    x = session.xenapi
    consoles = x.VM.get_consoles(vm)
    assert len(consoles) == 1, consoles
    console = Console(session, consoles[0])
    console.expect(READY, BOOT_WAIT)
    return console


def round_trip(console, tag):
    # The shell's answer differs from the typed line (the tty echoes that).
    console.send(f"echo {tag}-$((6*7))\n")
    console.expect(f"{tag}-42", 60)


def main():
    session = XenAPI.Session(URL)
    session.xenapi.login_with_password("root", os.environ["KEEL_PASSWORD"], "2.21", "vm_flow")
    x = session.xenapi
    template = x.VM.get_by_name_label("Debian-style direct boot")[0]
    assert x.VM.get_is_a_template(template)
    vm = x.VM.clone(template, "deb1")
    x.VM.provision(vm)
    x.VM.set_is_a_template(vm, False)
    x.VM.set_PV_kernel(vm, "boot:debian/vmlinuz")
    x.VM.set_PV_ramdisk(vm, "boot:debian/initrd")
    x.VM.set_PV_args(vm, "console=ttyS0 pci=off")
    mib128 = str(128 << 20)
    x.VM.set_memory_limits(vm, mib128, mib128, mib128, mib128)
    token = x.event_from(["vm"], "", 0.0)["token"]

    log("start")
    x.VM.start(vm, False, False)
    assert x.VM.get_power_state(vm) == "Running"
    token = wait_power(x, vm, "Running", token, 30)
    record = x.VM.get_record(vm)
    assert int(record["domid"]) > 0 and record["resident_on"] != "OpaqueRef:NULL", record
    metrics = x.VM_metrics.get_record(record["metrics"])
    assert int(metrics["VCPUs_number"]) == 1 and int(metrics["memory_actual"]) == 128 << 20, metrics
    assert "clean_shutdown" in record["allowed_operations"]
    try:
        x.VM.start(vm, False, False)
        raise AssertionError("a running VM started again")
    except XenAPI.Failure as f:
        assert f.details == ["VM_BAD_POWER_STATE", vm, "halted", "running"], f.details
    console = booted_console(session, vm)
    log("console: the guest booted")
    round_trip(console, "keel-console")
    log("console: typed and answered")

    log("clean_shutdown")
    task = x.Async.VM.clean_shutdown(vm)
    deadline = time.monotonic() + 90
    while x.task.get_status(task) == "pending" and time.monotonic() < deadline:
        time.sleep(0.5)
    if x.task.get_status(task) != "success":
        # What the guest saw of the button, for the failure message.
        console.send("cat /sys/firmware/acpi/interrupts/ff_pwr_btn; grep -i acpi /proc/interrupts\n")
        time.sleep(5)
        try:
            console.read_until(b"never", 3)
        except (TimeoutError, EOFError):
            pass
        raise AssertionError(f"clean_shutdown: {x.task.get_record(task)}; console: {console.buf[-600:]!r}")
    x.task.destroy(task)
    assert x.VM.get_power_state(vm) == "Halted"
    assert x.VM.get_consoles(vm) == []
    console.close()

    log("start, guest poweroff")
    x.VM.start(vm, False, False)
    console = booted_console(session, vm)
    console.send("poweroff -f\n")
    token = wait_power(x, vm, "Halted", token, 60)
    console.close()
    log("guest powered off: Halted event")

    log("start, pause, unpause, hard_shutdown")
    x.VM.start(vm, False, False)
    console = booted_console(session, vm)
    x.VM.pause(vm)
    assert x.VM.get_power_state(vm) == "Paused"
    x.VM.unpause(vm)
    assert x.VM.get_power_state(vm) == "Running"
    round_trip(console, "after-unpause")
    task = x.Async.VM.hard_shutdown(vm)
    deadline = time.monotonic() + 60
    while x.task.get_status(task) == "pending":
        assert time.monotonic() < deadline, "hard_shutdown task still pending"
        time.sleep(0.5)
    assert x.task.get_status(task) == "success", x.task.get_record(task)
    x.task.destroy(task)
    assert x.VM.get_power_state(vm) == "Halted"
    console.close()
    x.VM.destroy(vm)
    log("KEEL-VM-FLOW-OK")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # the Rust side prints our output
        log(f"KEEL-VM-FLOW-FAILED {type(e).__name__}: {e}")
        sys.exit(1)
