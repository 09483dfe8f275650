"""The TLS side of `cargo xtask bench api`: plain HTTP against HTTPS on the
same keel-hosted, from Python's http.client (OpenSSL underneath).

Usage: bench_api_tls.py HTTP_URL HTTPS_URL PASSWORD CONNECTS CALLS
Prints one JSON object of microsecond lists: "connect_plain" (TCP connect),
"connect_tls13" and "connect_tls12" (TCP connect + full handshake, no
session resumption), "call_plain" and "call_tls" (JSON-RPC host.get_record
over one keep-alive connection). The server's certificate is fetched through
host.get_server_certificate and pinned. Exits non-zero on a wrong answer.
"""

import http.client
import json
import socket
import ssl
import sys
import time
import urllib.parse


def endpoint(url):
    parts = urllib.parse.urlsplit(url)
    return parts.hostname, parts.port


def rpc(conn, method, params):
    body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": 1})
    conn.request("POST", "/jsonrpc", body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    answer = json.loads(response.read())
    if response.status != 200 or "result" not in answer:
        sys.exit(f"{method}: {response.status} {answer}")
    return answer["result"]


def timed(n, fn):
    out = []
    for _ in range(n):
        start = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - start) / 1000.0)
    return out


def main():
    http_url, https_url, password = sys.argv[1:4]
    connects, calls = int(sys.argv[4]), int(sys.argv[5])
    plain_at, tls_at = endpoint(http_url), endpoint(https_url)

    plain = http.client.HTTPConnection(*plain_at, timeout=30)
    session = rpc(plain, "session.login_with_password", ["root", password])
    host = rpc(plain, "host.get_all", [session])[0]
    pem = rpc(plain, "host.get_server_certificate", [session, host])

    def context(version):
        ctx = ssl.create_default_context(cadata=pem)
        ctx.check_hostname = False
        ctx.minimum_version = ctx.maximum_version = version
        return ctx

    tls13, tls12 = context(ssl.TLSVersion.TLSv1_3), context(ssl.TLSVersion.TLSv1_2)

    def connect_plain():
        socket.create_connection(plain_at, timeout=30).close()

    def connect_tls(ctx):
        raw = socket.create_connection(tls_at, timeout=30)
        with ctx.wrap_socket(raw) as s:
            if s.getpeercert(binary_form=True) != ssl.PEM_cert_to_DER_cert(pem):
                sys.exit("the server presented another certificate")

    secure = http.client.HTTPSConnection(*tls_at, context=tls13, timeout=30)

    def call(conn):
        def run():
            if rpc(conn, "host.get_record", [session, host])["uuid"] == "":
                sys.exit("host.get_record returned an incomplete record")
        return run

    timed(10, call(plain))
    timed(10, call(secure))
    result = {
        "connect_plain": timed(connects, connect_plain),
        "connect_tls13": timed(connects, lambda: connect_tls(tls13)),
        "connect_tls12": timed(connects, lambda: connect_tls(tls12)),
        "call_plain": timed(calls, call(plain)),
        "call_tls": timed(calls, call(secure)),
    }
    rpc(plain, "session.logout", [session])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
