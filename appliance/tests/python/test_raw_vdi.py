"""PUT /import_raw_vdi and GET /export_raw_vdi on a VDI of an lvmoiscsi SR
on a real tgtd (started by test_iscsi's fixture, killed by its pid)."""

import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.dom.minidom

import XenAPI

from conftest import PASSWORD
from test_iscsi import CHAP, IQN, MUTUAL, tgtd  # noqa: F401 (the fixture)

MIB = 1024 * 1024


def pattern(n, seed=7):
    # A pattern that differs at every offset modulo a prime, so a piece
    # written at the wrong place shows.
    return bytes((i * 31 + seed + i // 509) % 251 for i in range(n))


def url_for(server, path, **query):
    return f"{server.rstrip('/')}{path}?{urllib.parse.urlencode(query)}"


def put(url, data, timeout=120):
    req = urllib.request.Request(url, data=data, method="PUT")
    req.add_header("Content-Type", "application/octet-stream")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def get(url, timeout=120):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def make_sr(x, host, address, port):
    config = {
        "target": address, "port": str(port), "targetIQN": IQN,
        "chapuser": CHAP[0], "chappassword": CHAP[1],
        "incoming_chapuser": MUTUAL[0], "incoming_chappassword": MUTUAL[1],
    }
    try:
        x.SR.probe(host, config, "lvmoiscsi", {})
        raise AssertionError("probe without SCSIid must fail")
    except XenAPI.Failure as e:
        doc = xml.dom.minidom.parseString(e.details[3])
        config["SCSIid"] = doc.getElementsByTagName("SCSIid")[0].firstChild.data.strip()
    return x.SR.create(host, config, "0", "raw-sr", "", "lvmoiscsi", "user", True, {})


def new_vdi(x, sr, name, size):
    return x.VDI.create({
        "SR": sr, "name_label": name, "name_description": "", "virtual_size": str(size),
        "type": "user", "sharable": False, "read_only": False, "other_config": {},
    })


def wait_task(x, task, timeout=60):
    end = time.monotonic() + timeout
    while x.task.get_status(task) == "pending" and time.monotonic() < end:
        time.sleep(0.05)
    return x.task.get_record(task)


def test_import_and_export_raw_vdi(server, tgtd):  # noqa: F811
    address = os.environ.get("KEEL_ISCSI_ADDRESS", "127.0.0.1")
    session = XenAPI.Session(server)
    session.xenapi.login_with_password("root", PASSWORD, "2.21", "raw-vdi-test")
    x = session.xenapi
    sid = session._session
    host = x.host.get_all()[0]
    sr = make_sr(x, host, address, tgtd)
    size = 8 * MIB
    vdi = new_vdi(x, sr, "raw", size)

    # Import 3 MiB and a bit with a task that follows it.
    data = pattern(3 * MIB + 4097)
    task = x.task.create("import", "")
    started = time.monotonic()
    status, body = put(url_for(server, "/import_raw_vdi", session_id=sid, vdi=vdi,
                               format="raw", task_id=task), data)
    elapsed = time.monotonic() - started
    assert status == 200, body
    record = wait_task(x, task)
    assert record["status"] == "success", record
    assert float(record["progress"]) == 1.0, record
    print(f"FIGURE raw import {len(data)} bytes in {elapsed:.2f} s")

    # Export: the data, then zeros to the VDI's size.
    task = x.task.create("export", "")
    started = time.monotonic()
    status, body = get(url_for(server, "/export_raw_vdi", session_id=sid, vdi=vdi,
                               format="raw", task_id=task))
    elapsed = time.monotonic() - started
    assert status == 200
    assert len(body) == size
    assert body[:len(data)] == data
    assert body[len(data):] == bytes(size - len(data))
    assert wait_task(x, task)["status"] == "success"
    print(f"FIGURE raw export {size} bytes in {elapsed:.2f} s")

    # A second import over part of it changes only what it writes.
    patch = pattern(MIB + 3, seed=99)
    status, body = put(url_for(server, "/import_raw_vdi", session_id=sid, vdi=vdi), patch)
    assert status == 200, body
    status, body = get(url_for(server, "/export_raw_vdi", session_id=sid, vdi=vdi))
    assert body[:len(patch)] == patch
    assert body[len(patch):len(data)] == data[len(patch):]

    # Errors, each also failing the task.
    task = x.task.create("bad", "")
    status, body = put(url_for(server, "/import_raw_vdi", session_id=sid,
                               vdi="OpaqueRef:nope", task_id=task), b"x")
    assert status == 404 and b"HANDLE_INVALID" in body, body
    assert x.task.get_error_info(task)[:2] == ["HANDLE_INVALID", "VDI"]
    task = x.task.create("big", "")
    status, body = put(url_for(server, "/import_raw_vdi", session_id=sid, vdi=vdi,
                               task_id=task), bytes(size + 1))
    assert status == 413 and b"VDI_TOO_SMALL" in body, body
    assert x.task.get_error_info(task)[0] == "VDI_TOO_SMALL"
    status, body = put(url_for(server, "/import_raw_vdi", session_id="OpaqueRef:bad", vdi=vdi), b"x")
    assert status == 401, body
    status, body = get(url_for(server, "/export_raw_vdi", session_id=sid, vdi=vdi, format="vhd"))
    assert status == 400, body

    # An upload in progress holds the VDI (VDI_IN_USE); cut short, its
    # task fails and the server keeps serving.
    task = x.task.create("cut", "")
    target = urllib.parse.urlparse(url_for(server, "/import_raw_vdi", session_id=sid, vdi=vdi,
                                           task_id=task))
    cut = socket.create_connection((target.hostname, target.port), timeout=30)
    cut.sendall(f"PUT {target.path}?{target.query} HTTP/1.1\r\nHost: h\r\n"
                f"Content-Length: {2 * MIB}\r\n\r\n".encode() + pattern(MIB + 17, seed=3))
    time.sleep(0.5)
    status, body = put(url_for(server, "/import_raw_vdi", session_id=sid, vdi=vdi), b"y")
    assert status == 409 and b"VDI_IN_USE" in body, body
    cut.close()
    record = wait_task(x, task)
    assert record["status"] == "failure", record
    assert record["error_info"][0] == "INTERNAL_ERROR", record
    # What was written is a whole piece (1 MiB) of the cut upload at most;
    # the rest of the VDI is as before.
    status, body = get(url_for(server, "/export_raw_vdi", session_id=sid, vdi=vdi))
    assert status == 200 and len(body) == size
    before = patch + data[len(patch):]
    assert body[MIB:len(data)] == before[MIB:]
    assert body[:MIB] in (pattern(MIB + 17, seed=3)[:MIB], before[:MIB])

    # Snapshot and clone share the clusters: the copies read the parent's
    # data; a write to the clone changes neither the original nor the
    # snapshot.
    parent = body
    snap = x.VDI.snapshot(vdi, {})
    clone = x.VDI.clone(vdi, {})
    s, c = x.VDI.get_record(snap), x.VDI.get_record(clone)
    assert s["is_a_snapshot"] is True and s["read_only"] is True and s["snapshot_of"] == vdi, s
    assert c["is_a_snapshot"] is False and c["read_only"] is False, c
    assert x.VDI.get_snapshots(vdi) == [snap]
    assert int(c["virtual_size"]) == size
    for copy in (snap, clone):
        status, body = get(url_for(server, "/export_raw_vdi", session_id=sid, vdi=copy))
        assert status == 200 and body == parent
    status, body = put(url_for(server, "/import_raw_vdi", session_id=sid, vdi=snap), b"z")
    assert status == 409 and b"VDI_READ_ONLY" in body, body
    change = pattern(5000, seed=42)
    status, body = put(url_for(server, "/import_raw_vdi", session_id=sid, vdi=clone), change)
    assert status == 200, body
    status, body = get(url_for(server, "/export_raw_vdi", session_id=sid, vdi=clone))
    assert body[:5000] == change and body[5000:] == parent[5000:]
    for other in (vdi, snap):
        status, body = get(url_for(server, "/export_raw_vdi", session_id=sid, vdi=other))
        assert body == parent

    for v in (clone, snap, vdi):
        x.VDI.destroy(v)
    x.SR.destroy(sr)
    session.xenapi.session.logout()
