"""HTTPS: the host's certificate, fetched and pinned; the Python XenAPI SDK
and raw JSON-RPC over TLS 1.2 and 1.3; curl and openssl s_client; bad TLS
input closing only its own connection."""

import hashlib
import json
import os
import socket
import ssl
import subprocess
import tempfile
import urllib.parse
import urllib.request
import xmlrpc.client

import pytest

from conftest import HOSTNAME, PASSWORD


def endpoint(url):
    parts = urllib.parse.urlsplit(url)
    return parts.hostname, parts.port


@pytest.fixture(scope="module")
def pem(server):
    """The certificate as the host reports it over plain HTTP."""
    import XenAPI
    s = XenAPI.Session(server)
    s.xenapi.login_with_password("root", PASSWORD, "2.21", "pytest")
    try:
        return s.xenapi.host.get_server_certificate(s.xenapi.host.get_all()[0])
    finally:
        s.xenapi.session.logout()


def pinned(pem, maximum=None):
    """A context trusting only the host's certificate. The name is not
    checked: the image is reached through a forwarded loopback port, not
    the address its certificate names (checked apart below)."""
    ctx = ssl.create_default_context(cadata=pem)
    ctx.check_hostname = False
    if maximum:
        ctx.maximum_version = maximum
    return ctx


def sha256_colons(der):
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def test_presented_certificate_is_the_reported_one(tls_server, pem):
    host, port = endpoint(tls_server)
    presented = ssl.get_server_certificate((host, port))
    assert ssl.PEM_cert_to_DER_cert(presented) == ssl.PEM_cert_to_DER_cert(pem)
    with urllib.request.urlopen(f"{tls_server}/health", context=pinned(pem), timeout=10) as r:
        health = json.load(r)
    assert health["tls_sha256"] == sha256_colons(ssl.PEM_cert_to_DER_cert(pem))


def test_certificate_names_the_host(pem):
    with tempfile.NamedTemporaryFile("w", suffix=".pem") as f:
        f.write(pem)
        f.flush()
        text = subprocess.run(
            ["openssl", "x509", "-in", f.name, "-noout", "-subject", "-ext",
             "subjectAltName", "-text"],
            capture_output=True, text=True, timeout=10, check=True).stdout
    assert f"CN = {HOSTNAME}" in text
    assert f"DNS:{HOSTNAME}" in text
    assert "ASN1 OID: prime256v1" in text
    assert "ecdsa-with-SHA256" in text


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_sdk_over_https(tls_server, pem, version):
    import XenAPI
    ctx = pinned(pem)
    ctx.minimum_version = version
    ctx.maximum_version = version
    s = XenAPI.Session(tls_server, transport=xmlrpc.client.SafeTransport(context=ctx))
    s.xenapi.login_with_password("root", PASSWORD, "2.21", "pytest")
    try:
        hosts = s.xenapi.host.get_all_records()
        assert len(hosts) == 1
        (host,) = hosts.values()
        assert host["hostname"] == HOSTNAME
        assert s.xenapi.pool.get_all()
        # A large answer spans many TLS records.
        assert isinstance(s.xenapi.VM.get_all_records(), dict)
        task = s.xenapi.Async.host.get_servertime(s.xenapi.host.get_all()[0])
        assert task.startswith("OpaqueRef:")
    finally:
        s.xenapi.session.logout()
    host, port = endpoint(tls_server)
    with socket.create_connection((host, port), timeout=10) as raw:
        with ctx.wrap_socket(raw) as tls:
            assert tls.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2",
                                     ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]


def test_json_rpc_over_https_keep_alive(tls_server, pem):
    import http.client
    host, port = endpoint(tls_server)
    conn = http.client.HTTPSConnection(host, port, context=pinned(pem), timeout=10)
    try:
        def call(method, params):
            body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": 1})
            conn.request("POST", "/jsonrpc", body, {"Content-Type": "application/json"})
            r = conn.getresponse()
            assert r.status == 200
            return json.loads(r.read())
        login = call("session.login_with_password", ["root", PASSWORD])
        ref = login["result"]
        for _ in range(20):
            assert call("host.get_all", [ref])["result"]
        assert "result" in call("session.logout", [ref])
    finally:
        conn.close()


def test_another_certificate_is_refused(tls_server):
    """Pinning means something: a context trusting another certificate fails."""
    with tempfile.TemporaryDirectory() as d:
        key, cert = os.path.join(d, "k.pem"), os.path.join(d, "c.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                        "-subj", f"/CN={HOSTNAME}", "-days", "1"],
                       capture_output=True, timeout=30, check=True)
        ctx = ssl.create_default_context(cafile=cert)
        ctx.check_hostname = False
    host, port = endpoint(tls_server)
    with socket.create_connection((host, port), timeout=10) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            ctx.wrap_socket(raw)


def test_curl_and_openssl(tls_server, pem):
    host, port = endpoint(tls_server)
    with tempfile.NamedTemporaryFile("w", suffix=".pem") as f:
        f.write(pem)
        f.flush()
        # curl checks the name too: pin it to the address the certificate names.
        out = subprocess.run(
            ["curl", "-sS", "--max-time", "20", "--cacert", f.name,
             "--connect-to", f"{HOSTNAME}:443:{host}:{port}",
             f"https://{HOSTNAME}/health"],
            capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["status"] == "ok"
        s_client = subprocess.run(
            ["openssl", "s_client", "-connect", f"{host}:{port}", "-CAfile", f.name,
             "-verify_return_error"],
            input="", capture_output=True, text=True, timeout=30)
        assert "Verify return code: 0 (ok)" in s_client.stdout, s_client.stdout
    # Nothing outside AEAD suites with ECDHE is offered.
    weak = subprocess.run(
        ["openssl", "s_client", "-connect", f"{host}:{port}", "-tls1_2",
         "-cipher", "AES128-SHA:AES256-SHA:ECDHE-ECDSA-AES128-SHA"],
        input="", capture_output=True, text=True, timeout=30)
    assert "Cipher is (NONE)" in weak.stdout or weak.returncode != 0


def closed_after(tls_server, data):
    """Sends `data` and returns what came back before the server closed."""
    host, port = endpoint(tls_server)
    got = b""
    with socket.create_connection((host, port), timeout=30) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        while True:
            try:
                chunk = s.recv(4096)
            except ConnectionResetError:
                break
            if not chunk:
                break
            got += chunk
    return got


@pytest.mark.parametrize("data", [
    bytes(range(256)) * 8,
    b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
    # A ClientHello record header announcing 512 bytes, then only a few.
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    # A record far larger than TLS allows.
    b"\x16\x03\x03\xff\xff" + b"\x00" * 64,
], ids=["garbage", "plain-http", "truncated-hello", "oversized-record"])
def test_bad_tls_input_closes_only_that_connection(tls_server, pem, data):
    got = closed_after(tls_server, data)
    # At most a TLS alert comes back, never an HTTP answer.
    assert not got.startswith(b"HTTP/")
    with urllib.request.urlopen(f"{tls_server}/health", context=pinned(pem), timeout=10) as r:
        assert json.load(r)["status"] == "ok"
