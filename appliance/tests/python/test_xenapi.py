"""The hosted keel XenAPI driven by the official PyPI XenAPI SDK, and by raw
JSON-RPC 1.0/2.0 requests."""

import json
import os
import time
import urllib.request
import xmlrpc.client

import pytest
import XenAPI

from conftest import ADDRESS, HOSTNAME, PASSWORD

CLASSES = ["pool", "host", "host_metrics", "network", "PIF", "SR", "VDI", "VM",
           "VM_metrics", "task", "VBD", "VIF", "PBD", "Bond", "VLAN", "console",
           "message"]

# Fields every record must carry (what XO, Ansible and the SDK read).
REQUIRED = {
    "pool": ["uuid", "name_label", "master", "other_config", "restrictions",
             "ha_enabled", "ha_statefiles", "default_SR", "cpu_info", "tags"],
    "host": ["uuid", "address", "hostname", "name_label", "enabled", "metrics",
             "PIFs", "PBDs", "resident_VMs", "API_version_major",
             "API_version_minor", "cpu_info", "capabilities", "chipset_info",
             "license_params", "bios_strings", "other_config",
             "control_domain", "software_version"],
    "host_metrics": ["uuid", "live", "memory_total", "memory_free"],
    "network": ["uuid", "name_label", "bridge", "PIFs", "VIFs", "MTU",
                "other_config"],
    "PIF": ["uuid", "device", "host", "network", "MAC", "MTU", "VLAN",
            "physical", "currently_attached", "management", "IP", "netmask",
            "gateway", "DNS", "ip_configuration_mode", "bond_master_of",
            "bond_slave_of", "VLAN_master_of", "VLAN_slave_of"],
}


def jsonrpc(server, body):
    request = urllib.request.Request(
        server + "/jsonrpc", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json"
        return json.loads(response.read())


def test_login_logout(server):
    s = XenAPI.Session(server)
    s.xenapi.login_with_password("root", PASSWORD, "2.21", "pytest")
    assert s.handle.startswith("OpaqueRef:")
    assert s.API_version == "2.21"
    s.xenapi.session.logout()


def test_bad_password(server):
    s = XenAPI.Session(server)
    with pytest.raises(XenAPI.Failure) as failure:
        s.xenapi.login_with_password("root", "wrong", "2.21", "pytest")
    assert failure.value.details == [
        "SESSION_AUTHENTICATION_FAILED", "root", "Authentication failure"]


def test_invalid_session_relogs_in(server, session):
    # End the session behind the SDK's back: its next call gets
    # SESSION_INVALID, logs in again by itself and retries.
    old = session.handle
    proxy = xmlrpc.client.ServerProxy(server + "/RPC2")
    assert proxy.session.logout(old)["Status"] == "Success"
    assert proxy.pool.get_all(old)["ErrorDescription"] == ["SESSION_INVALID", old]
    assert len(session.xenapi.pool.get_all()) == 1
    assert session.handle != old


def test_unknown_method(session):
    with pytest.raises(XenAPI.Failure) as failure:
        session.xenapi.VM.no_such_call()
    assert failure.value.details == ["MESSAGE_METHOD_UNKNOWN", "VM.no_such_call"]


def test_parameter_count_mismatch(session):
    with pytest.raises(XenAPI.Failure) as failure:
        session.xenapi.host.get_record()
    assert failure.value.details == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH", "host.get_record", "1", "0"]


@pytest.mark.parametrize("cls", CLASSES)
def test_get_all_records_on_every_class(session, cls):
    records = getattr(session.xenapi, cls).get_all_records()
    refs = getattr(session.xenapi, cls).get_all()
    assert sorted(records) == sorted(refs)
    for ref, record in records.items():
        assert ref.startswith("OpaqueRef:")
        assert getattr(session.xenapi, cls).get_by_uuid(record["uuid"]) == ref
        assert getattr(session.xenapi, cls).get_record(ref) == record


@pytest.mark.parametrize("cls", sorted(REQUIRED))
def test_record_field_completeness(session, cls):
    records = getattr(session.xenapi, cls).get_all_records()
    assert records, f"this host has a {cls}"
    for record in records.values():
        missing = [f for f in REQUIRED[cls] if f not in record]
        assert not missing, missing


def test_host_is_described_truthfully(session):
    pool = session.xenapi.pool.get_all()
    assert len(pool) == 1
    host = session.xenapi.pool.get_master(pool[0])
    record = session.xenapi.host.get_record(host)
    assert record["hostname"] == HOSTNAME
    assert record["address"] == ADDRESS
    assert int(record["cpu_info"]["cpu_count"]) >= 1
    version = record["software_version"]["product_version"]
    assert len(version.split(".")) == 3
    metrics = session.xenapi.host_metrics.get_record(record["metrics"])
    assert int(metrics["memory_total"]) > 0
    pifs = [session.xenapi.PIF.get_record(p) for p in record["PIFs"]]
    management = [p for p in pifs if p["management"]]
    assert len(management) == 1 and management[0]["IP"] == ADDRESS


def test_setter_and_map_helper(session):
    pool = session.xenapi.pool.get_all()[0]
    session.xenapi.pool.set_name_label(pool, "pytest pool")
    assert session.xenapi.pool.get_name_label(pool) == "pytest pool"
    assert session.xenapi.pool.get_by_name_label("pytest pool") == [pool]
    session.xenapi.pool.remove_from_other_config(pool, "pytest")
    session.xenapi.pool.add_to_other_config(pool, "pytest", "1")
    assert session.xenapi.pool.get_other_config(pool)["pytest"] == "1"
    with pytest.raises(XenAPI.Failure) as failure:
        session.xenapi.pool.add_to_other_config(pool, "pytest", "2")
    assert failure.value.details[0] == "MAP_DUPLICATE_KEY"
    session.xenapi.pool.remove_from_other_config(pool, "pytest")
    session.xenapi.pool.remove_from_other_config(pool, "pytest")
    assert "pytest" not in session.xenapi.pool.get_other_config(pool)


def test_not_yet_implemented_is_honest(session):
    with pytest.raises(XenAPI.Failure) as failure:
        session.xenapi.pool.disable_ha()
    assert failure.value.details == ["NOT_IMPLEMENTED", "pool.disable_ha"]
    with pytest.raises(XenAPI.Failure) as failure:
        session.xenapi.VM.start("OpaqueRef:NULL", False, False)
    assert failure.value.details == ["HANDLE_INVALID", "VM", "OpaqueRef:NULL"]


@pytest.mark.parametrize("path", ["", "/", "/RPC2", "/xmlrpc"])
def test_xmlrpc_paths(server, path):
    s = XenAPI.Session(server + path)
    s.xenapi.login_with_password("root", PASSWORD, "2.21", "pytest")
    assert len(s.xenapi.host.get_all()) == 1
    s.xenapi.session.logout()


def test_list_methods_is_bare(server):
    methods = xmlrpc.client.ServerProxy(server + "/").system.listMethods()
    assert "VM.get_all_records" in methods
    assert "session.login_with_password" in methods


def test_event_from(session, server):
    everything = session.xenapi.event_from(["*"], "", 1.0)
    classes = {e["class"] for e in everything["events"]}
    assert {"pool", "host", "pif"} <= classes
    assert all(e["operation"] == "add" for e in everything["events"])
    token = everything["token"]
    # Nothing changes: the call waits for its timeout and returns empty.
    start = time.monotonic()
    quiet = session.xenapi.event_from(["pool"], token, 1.0)
    assert quiet["events"] == [] and time.monotonic() - start >= 0.9
    # Another session's change arrives.
    other = XenAPI.Session(server)
    other.xenapi.login_with_password("root", PASSWORD, "2.21", "pytest")
    pool = other.xenapi.pool.get_all()[0]
    other.xenapi.pool.add_to_other_config(pool, "xo:barrier", "1")
    changed = session.xenapi.event_from(["pool"], quiet["token"], 5.0)
    assert [e["operation"] for e in changed["events"]] == ["mod"]
    assert changed["events"][0]["snapshot"]["other_config"]["xo:barrier"] == "1"
    other.xenapi.pool.remove_from_other_config(pool, "xo:barrier")
    other.xenapi.session.logout()


def test_task_and_async(session):
    task = session.xenapi.Async.pool.get_all()
    record = session.xenapi.task.get_record(task)
    assert record["status"] == "success"
    assert record["result"].startswith("<value><array><data><value>OpaqueRef:")
    session.xenapi.task.destroy(task)
    own = session.xenapi.task.create("pytest", "a task")
    assert session.xenapi.task.get_status(own) == "pending"
    session.xenapi.task.cancel(own)
    assert session.xenapi.task.get_status(own) == "cancelled"
    session.xenapi.task.destroy(own)


def test_jsonrpc_v2(server):
    login = jsonrpc(server, {"id": 0, "jsonrpc": "2.0", "method": "session.login_with_password",
                             "params": ["root", PASSWORD]})
    assert set(login) == {"jsonrpc", "result", "id"} and login["id"] == 0
    ref = login["result"]
    hosts = jsonrpc(server, {"id": "a", "jsonrpc": "2.0", "method": "host.get_all_records",
                             "params": [ref]})["result"]
    host = next(iter(hosts.values()))
    assert host["API_version_major"] == 2  # a JSON number, not a string
    bad = jsonrpc(server, {"id": 1, "jsonrpc": "2.0", "method": "session.login_with_password",
                           "params": ["root", "wrong"]})
    assert bad == {"jsonrpc": "2.0", "id": 1, "error": {
        "code": 1, "message": "SESSION_AUTHENTICATION_FAILED",
        "data": ["root", "Authentication failure"]}}


def test_jsonrpc_v1(server):
    login = jsonrpc(server, {"id": 5, "method": "session.login_with_password",
                             "params": ["root", PASSWORD]})
    assert login["error"] is None and login["id"] == 5
    failure = jsonrpc(server, {"id": 6, "method": "pool.get_all", "params": ["OpaqueRef:nope"]})
    assert failure == {"result": None, "error": ["SESSION_INVALID", "OpaqueRef:nope"], "id": 6}
    # Sessions work on both endpoints.
    s = XenAPI.Session(server)
    s._session = login["result"]
    assert len(s.xenapi.pool.get_all()) == 1


def test_long_event_wait_keeps_the_connection(server, session):
    # Longer than the hosted server's read poll: the silent client is
    # waiting for an answer, not gone, and its connection stays usable.
    import http.client
    host, port = server[len("http://"):].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)

    def call(method, params):
        body = json.dumps({"id": 1, "jsonrpc": "2.0", "method": method, "params": params})
        connection.request("POST", "/jsonrpc", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.getheader("Connection") == "keep-alive"
        return json.loads(response.read())["result"]

    token = call("event.from", [session.handle, ["pool"], "", 0.0])["token"]
    start = time.monotonic()
    quiet = call("event.from", [session.handle, ["pool"], token, 6.0])
    assert quiet["events"] == [] and time.monotonic() - start >= 5.9
    assert len(call("pool.get_all", [session.handle])) == 1


def test_vm_create_and_destroy(session):
    # What an SDK user sends: memory as strings (XML-RPC ints stop at 2**31).
    record = {"name_label": "pytest vm", "name_description": "", "user_version": "1",
              "is_a_template": False, "memory_static_min": str(256 << 20),
              "memory_dynamic_min": str(256 << 20), "memory_dynamic_max": str(4 << 30),
              "memory_static_max": str(4 << 30), "VCPUs_max": "2", "VCPUs_at_startup": "2",
              "VCPUs_params": {}, "platform": {}, "other_config": {"k": "v"},
              "PV_args": "", "HVM_boot_policy": "BIOS order", "HVM_boot_params": {}}
    vm = session.xenapi.VM.create(record)
    try:
        got = session.xenapi.VM.get_record(vm)
        assert got["power_state"] == "Halted" and got["name_label"] == "pytest vm"
        assert int(got["memory_static_max"]) == 4 << 30
        assert session.xenapi.VM.get_by_name_label("pytest vm") == [vm]
        assert session.xenapi.VM_metrics.get_record(got["metrics"])["uuid"]
        assert vm in session.xenapi.VM.get_all_records()
    finally:
        session.xenapi.VM.destroy(vm)
    assert vm not in session.xenapi.VM.get_all()
    with pytest.raises(XenAPI.Failure) as failure:
        session.xenapi.VM.create(dict(record, VCPUs_at_startup="3"))
    assert failure.value.details == ["INVALID_VALUE", "VCPUs_at_startup", "3"]


def test_vm_power_calls_answer_honestly_without_a_hypervisor(session):
    """Hosted mode runs no guests: VM.start says so (the image, which does,
    has no such boot file); the template and clone are served; power calls
    on a halted VM get xapi's power-state error."""
    x = session.xenapi
    templates = x.VM.get_by_name_label("Debian-style direct boot")
    assert len(templates) == 1
    template = templates[0]
    assert x.VM.get_is_a_template(template) is True
    with pytest.raises(XenAPI.Failure) as failure:
        x.VM.start(template, False, False)
    assert failure.value.details == ["VM_IS_TEMPLATE", template]
    vm = x.VM.clone(template, "pytest direct boot")
    try:
        x.VM.provision(vm)
        x.VM.set_is_a_template(vm, False)
        x.VM.set_PV_kernel(vm, "boot:debian/vmlinuz")
        with pytest.raises(XenAPI.Failure) as failure:
            x.VM.start(vm, False, False)
        if os.environ.get("KEEL_URL"):
            assert failure.value.details[:2] == ["BOOTLOADER_FAILED", vm]
        else:
            assert failure.value.details == ["NOT_IMPLEMENTED", "VM.start"]
        for call in (x.VM.clean_shutdown, x.VM.hard_shutdown, x.VM.pause):
            with pytest.raises(XenAPI.Failure) as failure:
                call(vm)
            assert failure.value.details[0] == "VM_BAD_POWER_STATE"
            assert failure.value.details[1] == vm
            assert failure.value.details[3] == "halted"
        assert x.VM.get_power_state(vm) == "Halted"
    finally:
        x.VM.destroy(vm)


def test_maintenance_mode(session):
    """host.disable stops VM starts (HOST_DISABLED); host.evacuate has
    nothing to move; host.shutdown needs a disabled host. Only hosted mode,
    which cannot power off, is asked to shut down while disabled."""
    x = session.xenapi
    host = x.host.get_all()[0]
    template = x.VM.get_by_name_label("Debian-style direct boot")[0]
    vm = x.VM.clone(template, "pytest maintenance")
    try:
        x.VM.provision(vm)
        x.VM.set_is_a_template(vm, False)
        with pytest.raises(XenAPI.Failure) as failure:
            x.host.shutdown(host)
        assert failure.value.details == ["HOST_NOT_DISABLED"]
        x.host.disable(host)
        assert x.host.get_enabled(host) is False
        try:
            with pytest.raises(XenAPI.Failure) as failure:
                x.VM.start(vm, False, False)
            assert failure.value.details == ["HOST_DISABLED", host]
            x.host.evacuate(host)
            if not os.environ.get("KEEL_URL"):
                with pytest.raises(XenAPI.Failure) as failure:
                    x.host.shutdown(host)
                assert failure.value.details[:2] == ["NOT_IMPLEMENTED", "host.shutdown"]
        finally:
            x.host.enable(host)
        assert x.host.get_enabled(host) is True
    finally:
        x.VM.destroy(vm)
