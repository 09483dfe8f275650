"""A TLS certificate supplied in the host config (`tls_certificate_file`,
`tls_key_file`): keel-hosted serves it instead of its own; a key that does
not match or does not load is reported and the host's own certificate is
served. The image's side is qemu-tests/tests/image (the serial log says
"with the supplied certificate")."""

import os
import re
import ssl
import subprocess
import xmlrpc.client

import pytest
import XenAPI

from conftest import EXTERNAL_URL, PASSWORD

pytestmark = pytest.mark.skipif(
    bool(EXTERNAL_URL), reason="starts its own keel-hosted processes")


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, timeout=60,
                   capture_output=True)


def make_cert(directory, name, key_args):
    """A self-signed certificate and its key, `name`.crt and `name`.key."""
    openssl("req", "-x509", *key_args, "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.crt", "-days", "30", "-subj", f"/CN={name}",
            "-addext", f"subjectAltName=DNS:{name}", cwd=directory)
    with open(os.path.join(directory, f"{name}.crt")) as f:
        return f.read()


def write_config(directory, cert, key):
    path = os.path.join(directory, f"host-{cert}-{key}.toml")
    with open(path, "w") as f:
        f.write(f'hostname = "keel"\ntls_certificate_file = "{cert}.crt"\n'
                f'tls_key_file = "{key}.key"\n')
    return path


def start(config, state):
    """keel-hosted with `config` (None: none) and `state`; returns the
    process, its https URL, the certificate line and what it said on stderr
    before it."""
    args = [os.environ["KEEL_HOSTED"], "--listen", "127.0.0.1:0",
            "--listen-tls", "127.0.0.1:0", "--root-password", PASSWORD,
            "--state", str(state)]
    if config:
        args += ["--host-config", config]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines = [proc.stdout.readline() for _ in range(3)]
    https = re.search(r"https://[0-9.:]+", lines[1])
    if not https or "tls certificate sha256" not in lines[2]:
        proc.kill()
        pytest.fail(f"keel-hosted did not start: {lines!r}")
    return proc, https.group(0), lines[2]


def stop(proc):
    proc.kill()
    proc.wait(timeout=10)
    return proc.stderr.read()


def served(url):
    host, port = url.removeprefix("https://").rsplit(":", 1)
    return ssl.get_server_certificate((host, int(port)), timeout=10)


def same(pem_a, pem_b):
    return ssl.PEM_cert_to_DER_cert(pem_a) == ssl.PEM_cert_to_DER_cert(pem_b)


@pytest.mark.parametrize("key_args", [
    ["-newkey", "rsa:2048"],
    ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
], ids=["rsa-2048", "ecdsa-p384"])
def test_the_supplied_certificate_is_served(tmp_path, key_args):
    pem = make_cert(tmp_path, "supplied", key_args)
    config = write_config(tmp_path, "supplied", "supplied")
    proc, url, line = start(config, tmp_path / "state")
    try:
        assert line.rstrip().endswith("(supplied)"), line
        assert same(served(url), pem)
        # The SDK over HTTPS, trusting only the supplied certificate.
        ctx = ssl.create_default_context(cadata=pem)
        ctx.check_hostname = False
        s = XenAPI.Session(url, transport=xmlrpc.client.SafeTransport(context=ctx))
        s.xenapi.login_with_password("root", PASSWORD, "2.21", "pytest")
        host = s.xenapi.host.get_all()[0]
        assert same(s.xenapi.host.get_server_certificate(host), pem)
        s.xenapi.session.logout()
    finally:
        stop(proc)
    # The supplied certificate is not kept: without it the host makes its own.
    proc, url, line = start(None, tmp_path / "state")
    try:
        assert line.rstrip().endswith("(new)"), line
        assert not same(served(url), pem)
    finally:
        stop(proc)


def test_a_key_that_does_not_fit_falls_back_to_the_hosts_own(tmp_path):
    pem = make_cert(tmp_path, "one", ["-newkey", "ec", "-pkeyopt",
                                      "ec_paramgen_curve:P-256"])
    make_cert(tmp_path, "two", ["-newkey", "ec", "-pkeyopt",
                                "ec_paramgen_curve:P-256"])
    state = tmp_path / "state"
    # First the host's own certificate, kept in the state file.
    proc, url, line = start(None, state)
    own = served(url)
    stop(proc)
    # A key of another certificate: refused, the host's own is served.
    proc, url, line = start(write_config(tmp_path, "one", "two"), state)
    try:
        assert line.rstrip().endswith("(stored)"), line
        assert same(served(url), own) and not same(own, pem)
    finally:
        err = stop(proc)
    assert "cannot be used: the key does not match the certificate" in err, err
    # An Ed448 key (the provider has no Ed448): it does not load.
    openssl("genpkey", "-algorithm", "ed448", "-out", "ed448.key", cwd=tmp_path)
    proc, url, line = start(write_config(tmp_path, "one", "ed448"), state)
    try:
        assert same(served(url), own)
    finally:
        err = stop(proc)
    assert "cannot be used: the key does not load" in err, err


def test_the_tool_refuses_a_config_naming_half_a_pair(tmp_path):
    make_cert(tmp_path, "half", ["-newkey", "rsa:2048"])
    path = tmp_path / "host.toml"
    path.write_text('tls_certificate_file = "half.crt"\n')
    proc = subprocess.run(
        [os.environ["KEEL_HOSTED"], "--host-config", str(path)],
        capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "give both `tls_certificate_file` and `tls_key_file`" in proc.stderr
