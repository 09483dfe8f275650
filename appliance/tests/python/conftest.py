"""The server the suite drives: keel-hosted, or an image already running.

With $KEEL_URL set (the image in QEMU, booted by the qemu-tests harness with
a known root password in $KEEL_PASSWORD), the suite drives that server.
Otherwise the binary comes from $KEEL_HOSTED (cargo xtask test builds it);
each test session runs its own server on a free loopback port and stops it
by its pid.
"""

import os
import re
import subprocess
import time

import pytest

PASSWORD = os.environ.get("KEEL_PASSWORD", "pytest-secret")
EXTERNAL_URL = os.environ.get("KEEL_URL")
# What the host must say about itself: keel-hosted's defaults, or the
# image's host config and its address inside QEMU's user network.
HOSTNAME = os.environ.get("KEEL_HOSTNAME", "keel")
ADDRESS = os.environ.get("KEEL_ADDRESS", "127.0.0.1")


def launch_hosted(*args):
    """A keel-hosted of its own on a free loopback port, with `args` (a
    `--state FILE` among them); returns the process, its http URL and the
    line saying the database is open (only then are calls served). Stop it
    with `stop_hosted`, by its pid."""
    binary = os.environ.get("KEEL_HOSTED")
    if not binary:
        pytest.fail("set KEEL_HOSTED to the keel-hosted binary")
    proc = subprocess.Popen([binary, "--listen", "127.0.0.1:0", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    match = re.search(r"http://([0-9.]+:[0-9]+)/", line)
    opened = proc.stdout.readline() if match else ""
    if not match or "database in" not in opened:
        stop_hosted(proc)
        pytest.fail(f"keel-hosted did not start: {line!r} {opened!r} {proc.stderr.read()!r}")
    return proc, "http://" + match.group(1), opened


def stop_hosted(proc):
    proc.kill()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


@pytest.fixture(scope="session")
def servers():
    """(http URL, https URL or None) of the server under test."""
    if EXTERNAL_URL:
        tls = os.environ.get("KEEL_TLS_URL")
        yield EXTERNAL_URL.rstrip("/"), tls.rstrip("/") if tls else None
        return
    binary = os.environ.get("KEEL_HOSTED")
    if not binary:
        pytest.fail("set KEEL_HOSTED to the keel-hosted binary "
                    "(cargo build -p appliance --features hosted --bin keel-hosted)")
    proc = subprocess.Popen(
        [binary, "--listen", "127.0.0.1:0", "--listen-tls", "127.0.0.1:0",
         "--root-password", PASSWORD],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        match = re.search(r"http://([0-9.]+):([0-9]+)/", line)
        tls_line = proc.stdout.readline()
        tls = re.search(r"https://([0-9.]+):([0-9]+)/", tls_line)
        if not match or not tls:
            pytest.fail(f"keel-hosted did not start: {line!r} {tls_line!r}")
        yield (f"http://{match.group(1)}:{match.group(2)}",
               f"https://{tls.group(1)}:{tls.group(2)}")
    finally:
        proc.kill()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


@pytest.fixture(scope="session")
def server(servers):
    return servers[0]


@pytest.fixture(scope="session")
def tls_server(servers):
    """The HTTPS URL ($KEEL_TLS_URL for an image)."""
    if servers[1] is None:
        pytest.fail("set KEEL_TLS_URL to the image's HTTPS address")
    return servers[1]


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
