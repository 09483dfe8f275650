"""Xen Orchestra's npm `xen-api` client (installed by `cargo xtask setup`
into appliance/tests/node) connects to the hosted server, loads every
object and follows an event, over each of its transports."""

import os
import subprocess

import pytest

from conftest import PASSWORD

NODE_DIR = os.path.join(os.path.dirname(__file__), "..", "node")


@pytest.mark.parametrize("transport", ["auto", "json-rpc", "xml-rpc"])
def test_xen_api_client(server, transport):
    if not os.path.isfile(os.path.join(NODE_DIR, "node_modules", "xen-api", "package.json")):
        pytest.fail("xen-api is not installed: run `cargo xtask setup` "
                    "(npm ci in appliance/tests/node)")
    result = subprocess.run(
        ["node", "smoke.mjs", server, PASSWORD, transport],
        cwd=NODE_DIR, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "followed an event" in result.stdout


@pytest.mark.parametrize("transport", ["json-rpc", "xml-rpc"])
def test_xen_api_client_over_https(tls_server, transport):
    """Over HTTPS, as Xen Orchestra adds a host with `allowUnauthorized`."""
    test_xen_api_client(tls_server, transport)
