"""Bad input: every malformed, oversized, mistyped or dangling request gets
the XenAPI error xapi would give (HTTP 200 with the error in the body), or
HTTP 400/413 when the body is not a call at all; the server carries on."""

import json
import socket
import time
import urllib.error
import urllib.request

import pytest
import XenAPI

from conftest import PASSWORD

NULL = "OpaqueRef:NULL"


def post(server, path, body, content_type="text/xml"):
    request = urllib.request.Request(server + path, data=body,
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def call(server, method, params):
    """A JSON-RPC 2.0 call; returns its error as [code, params...] or None."""
    body = json.dumps({"jsonrpc": "2.0", "id": 7, "method": method, "params": params})
    status, reply = post(server, "/jsonrpc", body.encode(), "application/json")
    assert status == 200, reply
    reply = json.loads(reply)
    assert reply["id"] == 7
    if "error" in reply:
        return [reply["error"]["message"]] + reply["error"]["data"]
    return None


def xml_call(method, value_xml):
    return (f"<?xml version='1.0'?><methodCall><methodName>{method}</methodName><params>"
            f"<param><value>{value_xml}</value></param></params></methodCall>").encode()


def nested_xml(levels):
    return "<array><data><value>" * levels + "x" + "</value></data></array>" * levels


def nested_json(levels):
    return json.loads("[" * levels + "]" * levels)


@pytest.fixture(autouse=True)
def still_serving(server, session):
    """After each test the server still answers a session made before it."""
    yield
    assert len(session.xenapi.pool.get_all()) == 1


@pytest.mark.parametrize("body", [
    b"",
    b"<methodCall>",
    b"\xff\xfe",
    b"<!DOCTYPE x [<!ENTITY a 'aaaa'>]><methodCall/>",
    b"<methodCall><methodName>a&foo;</methodName></methodCall>",
    b"<methodCall><methodName>pool.get_all</methodName></methodCall><trailing/>",
    xml_call("pool.get_all", "<int>x</int>"),
    xml_call("pool.get_all", "<int>99999999999999999999</int>"),
    xml_call("pool.get_all", "<boolean>7</boolean>"),
    xml_call("pool.get_all", "<double>abc</double>"),
    xml_call("pool.get_all", "<frobnicate>1</frobnicate>"),
    xml_call("pool.get_all", "<struct><member><value>1</value></member></struct>"),
    b"<methodCall><methodName>m</methodName><params><param>" + b"<value><array><data>" * 5000,
    # 128 elements deep at most: 42 array levels plus the envelope is over.
    xml_call("pool.get_all", nested_xml(42)),
])
def test_malformed_xml_is_400(server, body):
    status, reply = post(server, "/RPC2", body)
    assert status == 400, reply
    assert "error" in json.loads(reply)


def test_deep_but_bounded_xml_is_a_call(server):
    status, reply = post(server, "/RPC2", xml_call("pool.get_all", nested_xml(41)))
    assert status == 200 and b"SESSION_INVALID" in reply


@pytest.mark.parametrize("body", [
    b"",
    b"{",
    b"[]",
    b'{"method":"x"}',
    b'{"id":1,"method":"pool.get_all","params":"x"}',
    b'{"id":{},"method":"pool.get_all","params":[]}',
    b'{"jsonrpc":"2.0","method":"pool.get_all","params":[]}',
    b'{"id":1,"method":"pool.get_all","params":["\xff"]}',
    b'{"id":1,"method":"pool.get_all","params":[1e999]}',
    b'{"id":1,"method":5,"params":[]}',
    b"[" * 100000,
    # 32 levels at most, the envelope and params included.
    json.dumps({"id": 1, "method": "pool.get_all", "params": [nested_json(31)]}).encode(),
])
def test_malformed_json_is_400(server, body):
    status, reply = post(server, "/jsonrpc", body, "application/json")
    assert status == 400, reply
    assert "error" in json.loads(reply)


def test_deep_but_bounded_json_is_a_call(server):
    body = json.dumps({"id": 1, "method": "pool.get_all", "params": [nested_json(30)]})
    status, reply = post(server, "/jsonrpc", body.encode(), "application/json")
    assert status == 200 and json.loads(reply)["error"][0] == "SESSION_INVALID"


@pytest.mark.parametrize("path,content_type", [("/RPC2", "text/xml"),
                                               ("/jsonrpc", "application/json")])
def test_huge_body_is_413(server, path, content_type):
    status, _ = post(server, path, b"<" * (2 * 1024 * 1024), content_type)
    assert status == 413


def raw_exchange(server, request):
    host, port = server[len("http://"):].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(request)
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply


def test_announced_huge_body_is_refused_before_it_is_sent(server):
    reply = raw_exchange(server, b"POST /RPC2 HTTP/1.1\r\nHost: h\r\n"
                                 b"Content-Type: text/xml\r\nContent-Length: 100000000\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 413 ")


def test_chunked_body_over_the_limit_is_413(server):
    chunk = b"%x\r\n" % 65536 + b"<" * 65536 + b"\r\n"
    reply = raw_exchange(server, b"POST /RPC2 HTTP/1.1\r\nHost: h\r\nContent-Type: text/xml\r\n"
                                 b"Transfer-Encoding: chunked\r\n\r\n" + chunk * 40)
    assert reply.startswith(b"HTTP/1.1 413 ")


@pytest.mark.parametrize("request_bytes,status", [
    (b"BROKEN\r\n\r\n", b"400"),
    (b"POST /RPC2 HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n", b"400"),
    (b"GET /jsonrpc HTTP/1.1\r\nHost: h\r\n\r\n", b"405"),
    (b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"x" * 20000 + b"\r\n\r\n", b"431"),
])
def test_bad_http_gets_its_status(server, request_bytes, status):
    reply = raw_exchange(server, request_bytes)
    assert reply.split(b" ")[1] == status, reply[:200]


def test_parameter_count(server, session):
    s = session.handle
    host = session.xenapi.host.get_all()[0]
    assert call(server, "host.get_record", [s, host, "extra"]) == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH", "host.get_record", "1", "2"]
    assert call(server, "session.login_with_password", ["root"]) == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH", "session.login_with_password", "4", "1"]
    tasks = session.xenapi.task.get_all()
    assert call(server, "Async.pool.get_all", [s, "extra"]) == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH", "Async.pool.get_all", "0", "1"]
    assert session.xenapi.task.get_all() == tasks, "no task for a call that cannot be made"


def test_sessions_that_are_not_sessions(server):
    for params in ([], [5], [None], [["OpaqueRef:x"]], ["OpaqueRef:nope"]):
        error = call(server, "pool.get_all", params)
        assert error[0] == "SESSION_INVALID", (params, error)
    # The session is checked before the method name, as xapi does.
    assert call(server, "Foo.bar", ["OpaqueRef:nope"])[0] == "SESSION_INVALID"


def test_unknown_methods(server, session):
    for name in ["Foo.bar", "pool..get_all", "", "pool.get_all.x", "Async.VM.nope",
                 "pool.set_master", "VM.get_nonexistent_field"]:
        assert call(server, name, [session.handle]) == ["MESSAGE_METHOD_UNKNOWN", name]


def test_wrong_types(server, session):
    s = session.handle
    pool = session.xenapi.pool.get_all()[0]
    cases = [
        ("pool.set_wlb_enabled", [s, pool, "maybe"], "value"),
        ("pool.set_name_label", [s, pool, True], "value"),
        ("pool.set_name_label", [s, pool, 1.5], "value"),
        ("pool.set_name_label", [s, pool, ["x"]], "value"),
        ("pool.set_other_config", [s, pool, "x"], "value"),
        ("pool.set_other_config", [s, pool, {"a": ["nested"]}], "value"),
        ("pool.set_default_SR", [s, pool, [1]], "value"),
        ("VM.set_VCPUs_max", [s, NULL, "abc"], "value"),
        ("VM.set_VCPUs_max", [s, NULL, 1.5], "value"),
        ("event.from", [s, ["*"], "", "soon"], "timeout"),
        ("event.from", [s, "*", "", 0.0], "classes"),
    ]
    for method, params, field in cases:
        assert call(server, method, params) == ["FIELD_TYPE_ERROR", field], (method, params)
    # Nothing was changed by the refused calls.
    assert session.xenapi.pool.get_other_config(pool) == session.xenapi.pool.get_record(pool)["other_config"]
    assert session.xenapi.pool.get_wlb_enabled(pool) in (True, False)


def test_wrong_types_over_xmlrpc(server, session):
    s = session.handle
    pool = session.xenapi.pool.get_all()[0]
    body = (f"<methodCall><methodName>pool.set_wlb_enabled</methodName><params>"
            f"<param><value>{s}</value></param><param><value>{pool}</value></param>"
            f"<param><value><array><data/></array></value></param></params></methodCall>")
    status, reply = post(server, "/RPC2", body.encode())
    assert status == 200 and b"FIELD_TYPE_ERROR" in reply


def test_unknown_refs_and_uuids(server, session):
    s = session.handle
    pool = session.xenapi.pool.get_all()[0]
    pool_uuid = session.xenapi.pool.get_uuid(pool)
    assert call(server, "task.get_record", [s, pool]) == ["HANDLE_INVALID", "task", pool]
    assert call(server, "host.get_record", [s, NULL]) == ["HANDLE_INVALID", "host", NULL]
    assert call(server, "host.get_record", [s, None]) == ["HANDLE_INVALID", "host", NULL]
    assert call(server, "pool.set_default_SR", [s, pool, "OpaqueRef:nope"]) == [
        "HANDLE_INVALID", "SR", "OpaqueRef:nope"]
    assert call(server, "host.get_by_uuid", [s, pool_uuid]) == ["UUID_INVALID", "host", pool_uuid]
    assert call(server, "host.get_by_uuid", [s, 5]) == ["UUID_INVALID", "host", "5"]
    assert call(server, "event.from", [s, ["*"], "garbage", 0.0]) == [
        "EVENT_FROM_TOKEN_PARSE_FAILURE", "garbage"]
    assert call(server, "VM.start", [s, NULL, False, False]) == ["HANDLE_INVALID", "VM", NULL]


def test_sdk_sees_failures_not_faults(session):
    # The SDK raises XenAPI.Failure for API errors (a Fault would mean the
    # envelope itself was wrong).
    with pytest.raises(XenAPI.Failure) as failure:
        session.xenapi.host.get_record("OpaqueRef:00000000-0000-0000-0000-000000000000")
    assert failure.value.details[:2] == ["HANDLE_INVALID", "host"]
    with pytest.raises(XenAPI.Failure) as failure:
        session.xenapi.pool.set_wlb_enabled(session.xenapi.pool.get_all()[0], "maybe")
    assert failure.value.details == ["FIELD_TYPE_ERROR", "value"]


def test_many_unfinished_uploads_do_not_exhaust_the_server(server, session):
    # Each connection announces a 1 MB body and sends as much of it as the
    # server takes for a while; together they offer far more than the image's
    # heap. The server must hold them back (TCP flow control) and go on
    # serving everyone else.
    host, port = server[len("http://"):].split(":")
    uploads = []
    try:
        for _ in range(24):
            s = socket.create_connection((host, int(port)), timeout=30)
            s.sendall(b"POST /RPC2 HTTP/1.1\r\nHost: h\r\nContent-Type: text/xml\r\n"
                      b"Content-Length: 1000000\r\n\r\n")
            s.setblocking(False)
            uploads.append([s, 0])
        chunk = b"<" * 65536
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            progressed = False
            for upload in uploads:
                if upload[1] >= 999_000:
                    continue
                try:
                    sent = upload[0].send(chunk[:999_000 - upload[1]])
                    upload[1] += sent
                    progressed = progressed or sent > 0
                except (BlockingIOError, InterruptedError):
                    pass
            if not progressed:
                time.sleep(0.05)
        other = XenAPI.Session(server)
        other.xenapi.login_with_password("root", PASSWORD, "2.21", "pytest")
        assert len(other.xenapi.pool.get_all()) == 1
        other.xenapi.session.logout()
    finally:
        for s, _ in uploads:
            s.close()
