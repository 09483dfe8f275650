"""What the HTTP path must do whatever carries it (std TCP when hosted,
smoltcp inside the image behind QEMU's user network): keep-alive, many
connections opened at once, large responses."""

import http.client
import json
import threading
import xmlrpc.client

import XenAPI

from conftest import PASSWORD


def connect(server, timeout=30):
    host, port = server[len("http://"):].split(":")
    return http.client.HTTPConnection(host, int(port), timeout=timeout)


def jsonrpc_on(connection, method, params, id=1):
    body = json.dumps({"id": id, "jsonrpc": "2.0", "method": method, "params": params})
    connection.request("POST", "/jsonrpc", body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 200
    assert response.getheader("Connection") == "keep-alive"
    return json.loads(response.read())


def test_keep_alive_serves_many_calls_on_one_connection(server, session):
    host = session.xenapi.host.get_all()[0]
    connection = connect(server)
    jsonrpc_on(connection, "pool.get_all", [session.handle])
    first = connection.sock
    for i in range(200):
        reply = jsonrpc_on(connection, "host.get_record", [session.handle, host], id=i)
        assert reply["id"] == i and reply["result"]["API_version_major"] == 2
    # http.client reconnects silently when the server closed: it must not have.
    assert connection.sock is first
    connection.close()


def test_many_connections_open_at_once(server, session):
    # Xen Orchestra loads every object type with up to 20 calls in flight.
    # The connections are opened one after another (QEMU's port forward
    # listens with a backlog of 1, which a burst of connects overflows),
    # each answers a first call, and all stay open while every one answers
    # a second call at the same time.
    count = 24
    connections = [connect(server) for _ in range(count)]
    try:
        for i, connection in enumerate(connections):
            assert len(jsonrpc_on(connection, "pool.get_all", [session.handle], id=i)["result"]) == 1
        first = [c.sock for c in connections]
        barrier = threading.Barrier(count)
        results = [None] * count

        def worker(i):
            barrier.wait(timeout=30)
            results[i] = jsonrpc_on(connections[i], "host.get_all", [session.handle], id=i)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert all(r is not None and r["id"] == i and len(r["result"]) == 1
                   for i, r in enumerate(results)), results
        # None was closed and silently reopened by http.client.
        assert all(c.sock is s for c, s in zip(connections, first))
    finally:
        for connection in connections:
            connection.close()


def test_large_responses_arrive_whole(server, session):
    # Tasks are the one object type every host can make in numbers.
    tasks = [session.xenapi.task.create(f"bulk {i}", "x" * 200) for i in range(400)]
    try:
        records = session.xenapi.task.get_all_records()
        assert set(tasks) <= set(records)
        assert all(records[t]["name_description"] == "x" * 200 for t in tasks)
        connection = connect(server)
        reply = jsonrpc_on(connection, "task.get_all_records", [session.handle])
        assert set(tasks) <= set(reply["result"])
        connection.close()
        methods = xmlrpc.client.ServerProxy(server + "/").system.listMethods()
        assert len(methods) > 500
    finally:
        for t in tasks:
            session.xenapi.task.destroy(t)
    assert not set(tasks) & set(session.xenapi.task.get_all())


def test_sessions_from_many_clients(server):
    sessions = []
    try:
        for _ in range(10):
            s = XenAPI.Session(server)
            s.xenapi.login_with_password("root", PASSWORD, "2.21", "pytest")
            sessions.append(s)
        assert len({s.handle for s in sessions}) == 10
        for s in sessions:
            assert len(s.xenapi.host.get_all()) == 1
    finally:
        for s in sessions:
            s.xenapi.session.logout()
