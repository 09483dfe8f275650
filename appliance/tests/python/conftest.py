"""Starts keel-hosted for the test session and stops it by its pid.

The binary comes from $KEEL_HOSTED (cargo xtask test builds it); each test
session runs its own server on a free loopback port.
"""

import os
import re
import subprocess
import time

import pytest

PASSWORD = "pytest-secret"


@pytest.fixture(scope="session")
def server():
    binary = os.environ.get("KEEL_HOSTED")
    if not binary:
        pytest.fail("set KEEL_HOSTED to the keel-hosted binary "
                    "(cargo build -p appliance --features hosted --bin keel-hosted)")
    proc = subprocess.Popen(
        [binary, "--listen", "127.0.0.1:0", "--root-password", PASSWORD],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        match = re.search(r"http://([0-9.]+):([0-9]+)/", line)
        if not match:
            pytest.fail(f"keel-hosted did not start: {line!r} {proc.stderr.read()!r}")
        yield f"http://{match.group(1)}:{match.group(2)}"
    finally:
        proc.kill()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


@pytest.fixture()
def session(server):
    import XenAPI
    s = XenAPI.Session(server)
    s.xenapi.login_with_password("root", PASSWORD, "2.21", "pytest")
    yield s
    try:
        s.xenapi.session.logout()
    except Exception:
        pass
