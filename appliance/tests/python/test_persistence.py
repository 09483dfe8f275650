"""keel-hosted --state FILE keeps the database across restarts (the image's
state disk is tested by qemu-tests/tests/image/persistence.rs)."""

import base64
import contextlib
import hashlib
import os
import subprocess

import pytest
import XenAPI

from conftest import EXTERNAL_URL, PASSWORD, launch_hosted, stop_hosted

pytestmark = pytest.mark.skipif(
    bool(EXTERNAL_URL), reason="starts its own keel-hosted processes")


def start(state):
    proc, url, opened = launch_hosted("--root-password", PASSWORD, "--state", state)
    session = XenAPI.Session(url)
    session.xenapi.login_with_password("root", PASSWORD, "2.21", "pytest")
    return proc, session, opened


def stop(proc):
    stop_hosted(proc)


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


def phc(password, salt=b"keel-pytest-salt", iterations=1000):
    """A PHC PBKDF2-SHA256 hash as the host config takes it."""
    raw = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    b64 = lambda b: base64.b64encode(b).decode().rstrip("=")
    return f"$pbkdf2-sha256$i={iterations},l=32${b64(salt)}${b64(raw)}"


@contextlib.contextmanager
def configured(config, state):
    """A keel-hosted with host config `config` on `state` for the block: its URL."""
    proc, url, _ = launch_hosted("--host-config", config, "--state", state)
    try:
        yield url
    finally:
        stop(proc)


def login_fails(url, password):
    try:
        XenAPI.Session(url).xenapi.login_with_password("root", password, "2.21", "pytest")
    except XenAPI.Failure as f:
        return f.details[0]
    return None


def test_a_changed_password_survives_a_restart_until_the_config_changes(tmp_path):
    config, state = tmp_path / "host.toml", tmp_path / "state.img"
    config.write_text(f'root_password_hash = "{phc("first-password")}"\n')
    with configured(config, state) as url:
        s = XenAPI.Session(url)
        s.xenapi.login_with_password("root", "first-password", "2.21", "pytest")
        x = s.xenapi
        for old, new in (("wrong-password", "second-password"), ("first-password", "")):
            try:
                x.session.change_password(old, new)
                raise AssertionError("change_password accepted a wrong old or empty new password")
            except XenAPI.Failure as f:
                assert f.details[0] == "CHANGE_PASSWORD_REJECTED", f.details
        x.session.change_password("first-password", "second-password")
        # The session stays valid; new logins take the new password only.
        assert x.pool.get_all()
        assert login_fails(url, "first-password") == "SESSION_AUTHENTICATION_FAILED"
        assert login_fails(url, "second-password") is None

    with configured(config, state) as url:
        assert login_fails(url, "second-password") is None
        assert login_fails(url, "first-password") == "SESSION_AUTHENTICATION_FAILED"

    # A host config provisioning another password (a reset) wins.
    config.write_text(f'root_password_hash = "{phc("reset-password", salt=b"another-salt-123")}"\n')
    with configured(config, state) as url:
        assert login_fails(url, "reset-password") is None
        assert login_fails(url, "second-password") == "SESSION_AUTHENTICATION_FAILED"


@contextlib.contextmanager
def restarted(state):
    """A keel-hosted on `state` for the block: its logged-in API."""
    proc, s, _ = start(state)
    try:
        yield s.xenapi
    finally:
        stop(proc)


def test_a_host_disabled_without_auto_enable_stays_disabled(tmp_path):
    state = tmp_path / "state.img"
    with restarted(state) as x:
        x.host.disable(x.host.get_all()[0])
    # Disabled with auto_enable (the default): enabled again after a restart.
    with restarted(state) as x:
        host = x.host.get_all()[0]
        assert x.host.get_enabled(host) is True
        x.host.disable(host, False)
    with restarted(state) as x:
        host = x.host.get_all()[0]
        assert x.host.get_enabled(host) is False
        x.host.enable(host)
    with restarted(state) as x:
        assert x.host.get_enabled(x.host.get_all()[0]) is True
