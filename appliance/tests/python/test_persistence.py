"""keel-hosted --state FILE keeps the database across restarts (the image's
state disk is tested by qemu-tests/tests/image/persistence.rs)."""

import os
import re
import subprocess

import pytest
import XenAPI

from conftest import EXTERNAL_URL, PASSWORD

pytestmark = pytest.mark.skipif(
    bool(EXTERNAL_URL), reason="starts its own keel-hosted processes")


def start(state):
    proc = subprocess.Popen(
        [os.environ["KEEL_HOSTED"], "--listen", "127.0.0.1:0",
         "--root-password", PASSWORD, "--state", str(state)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    match = re.search(r"http://([0-9.:]+)/", line)
    if not match:
        proc.kill()
        pytest.fail(f"keel-hosted did not start: {line!r} {proc.stderr.read()!r}")
    # The second line says the database is open: only then are calls served.
    opened = proc.stdout.readline()
    assert "database in" in opened, opened
    session = XenAPI.Session("http://" + match.group(1))
    session.xenapi.login_with_password("root", PASSWORD, "2.21", "pytest")
    return proc, session, opened


def stop(proc):
    proc.kill()
    proc.wait(timeout=10)


def test_objects_survive_a_restart(tmp_path):
    state = tmp_path / "state.img"
    proc, s, opened = start(state)
    try:
        assert "(0 objects loaded)" in opened
        pool = s.xenapi.pool.get_all()[0]
        host = s.xenapi.host.get_all()[0]
        s.xenapi.pool.set_name_label(pool, "kept")
        s.xenapi.host.add_to_other_config(host, "rack", "r7")
        uuid = s.xenapi.host.get_uuid(host)
    finally:
        stop(proc)

    proc, s, opened = start(state)
    try:
        assert "(0 objects loaded)" not in opened
        pool = s.xenapi.pool.get_all()[0]
        host = s.xenapi.host.get_all()[0]
        assert s.xenapi.pool.get_name_label(pool) == "kept"
        assert s.xenapi.host.get_uuid(host) == uuid
        assert s.xenapi.host.get_other_config(host)["rack"] == "r7"
        # host_metrics is rebuilt for the running host and linked again.
        metrics = s.xenapi.host.get_metrics(host)
        assert int(s.xenapi.host_metrics.get_memory_total(metrics)) > 0
    finally:
        stop(proc)


def test_a_file_with_other_data_is_refused(tmp_path):
    state = tmp_path / "foreign.img"
    state.write_bytes(b"not a keel store" * 4096)
    proc = subprocess.run(
        [os.environ["KEEL_HOSTED"], "--listen", "127.0.0.1:0",
         "--root-password", PASSWORD, "--state", str(state)],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "left untouched" in proc.stderr
    assert state.read_bytes() == b"not a keel store" * 4096
