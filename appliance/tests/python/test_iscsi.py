"""An lvmoiscsi SR on a real tgtd with mutual CHAP, through the XenAPI SDK.

The test starts its own tgtd on loopback (a hard timeout kills it by its
pid, and so does the end of the test). keel-hosted reaches it at
127.0.0.1; the image in QEMU at the address in $KEEL_ISCSI_ADDRESS (QEMU's
user network maps the host's loopback to 10.0.2.2).
"""

import os
import socket
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import PASSWORD
from iscsi_flow import flow

IQN = "iqn.2026-12.dev.keel:pytest"
LUN_BYTES = 64 * 1024 * 1024
CHAP = ("pytest-initiator", "initiator-secret-0123")
MUTUAL = ("pytest-target", "target-secret-456789")
TGTD_HARD_TIMEOUT = 180
ADMIN_TIMEOUT = 15


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def tgtd():
    with tempfile.TemporaryDirectory(prefix="keel-pytest-tgtd-") as tmp:
        backing = os.path.join(tmp, "lun1.img")
        with open(backing, "wb") as f:
            f.truncate(LUN_BYTES)
        for attempt in range(5):
            port = free_port()
            control = str(23_000 + os.getpid() % 2_000 + attempt * 19)
            log = open(os.path.join(tmp, "tgtd.log"), "ab")
            proc = subprocess.Popen(
                ["tgtd", "-f", "--iscsi", f"portal=127.0.0.1:{port}", "-C", control],
                stdout=log, stderr=log)
            watchdog = threading.Timer(TGTD_HARD_TIMEOUT, proc.kill)
            watchdog.start()
            try:
                if ready(proc, control, port):
                    configure(control, backing)
                    yield port
                    return
            finally:
                watchdog.cancel()
                proc.kill()
                proc.wait(timeout=10)
                log.close()
        pytest.fail("tgtd did not start")


def admin(control, *args):
    return subprocess.run(
        ["tgtadm", "-C", control, "--lld", "iscsi", *args],
        capture_output=True, timeout=ADMIN_TIMEOUT).returncode == 0


def ready(proc, control, port):
    end = time.monotonic() + 5
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        if admin(control, "--op", "show", "--mode", "sys"):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                pass
        time.sleep(0.05)
    return False


def configure(control, backing):
    for args in [
        ["--op", "new", "--mode", "target", "--tid", "1", "-T", IQN],
        ["--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "1", "-b", backing],
        ["--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL"],
        ["--op", "new", "--mode", "account", "--user", CHAP[0], "--password", CHAP[1]],
        ["--op", "new", "--mode", "account", "--user", MUTUAL[0], "--password", MUTUAL[1]],
        ["--op", "bind", "--mode", "account", "--tid", "1", "--user", CHAP[0]],
        ["--op", "bind", "--mode", "account", "--tid", "1", "--user", MUTUAL[0], "--outgoing"],
    ]:
        assert admin(control, *args), args


def test_lvmoiscsi_sr_probe_create_vdis_and_destroy(server, tgtd):
    address = os.environ.get("KEEL_ISCSI_ADDRESS", "127.0.0.1")
    seen = flow(server, PASSWORD, address, tgtd, IQN, LUN_BYTES, CHAP, MUTUAL, destroy=True)
    assert seen["wrong_secret"][0] == "SR_BACKEND_FAILURE_68"
    assert seen["mutual_failure"][0] == "SR_BACKEND_FAILURE_68"
