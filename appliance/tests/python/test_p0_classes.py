"""The P0 classes without a subsystem behind them yet (VBD, VIF, PBD, Bond,
VLAN, console) are served generically; their constructors and actions check
their arguments, then answer NOT_IMPLEMENTED. message is real."""

import datetime
import xmlrpc.client

import pytest
import XenAPI

NULL = "OpaqueRef:NULL"


def failure_of(call, *args):
    with pytest.raises(XenAPI.Failure) as failure:
        call(*args)
    return failure.value.details


@pytest.mark.parametrize("cls", ["VBD", "VIF", "PBD", "console"])
def test_listed_and_empty_until_a_subsystem_makes_them(session, cls):
    api = getattr(session.xenapi, cls)
    assert api.get_all() == []
    assert api.get_all_records() == {}
    assert failure_of(api.get_by_uuid, "00000000-0000-4000-8000-000000000000") == [
        "UUID_INVALID", cls, "00000000-0000-4000-8000-000000000000"]
    assert failure_of(api.get_record, NULL) == ["HANDLE_INVALID", cls, NULL]


def test_methods_are_listed(server):
    methods = set(xmlrpc.client.ServerProxy(server + "/").system.listMethods())
    for name in ["VBD.get_all_records", "VBD.plug", "VBD.set_mode", "VIF.create",
                 "PBD.plug", "Bond.create", "Bond.set_property", "VLAN.create",
                 "console.get_location", "message.get_since", "message.create",
                 "pool.create_VLAN_from_PIF"]:
        assert name in methods, name


def test_constructors_check_arguments_first(session):
    x = session.xenapi
    assert failure_of(x.VBD.plug, NULL) == ["HANDLE_INVALID", "VBD", NULL]
    assert failure_of(x.VIF.unplug, NULL) == ["HANDLE_INVALID", "VIF", NULL]
    assert failure_of(x.PBD.plug, NULL) == ["HANDLE_INVALID", "PBD", NULL]
    assert failure_of(x.Bond.destroy, NULL) == ["HANDLE_INVALID", "Bond", NULL]
    assert failure_of(x.VLAN.destroy, NULL) == ["HANDLE_INVALID", "VLAN", NULL]
    assert failure_of(x.VBD.create, {"VM": NULL, "VDI": NULL, "userdevice": "0",
                                     "bootable": True, "mode": "RW", "type": "Disk",
                                     "empty": False, "other_config": {},
                                     "qos_algorithm_type": "",
                                     "qos_algorithm_params": {}}) == [
        "HANDLE_INVALID", "VM", NULL]
    assert failure_of(x.VIF.create, {"device": "0", "network": NULL, "VM": NULL,
                                     "MAC": "", "MTU": "1500", "other_config": {},
                                     "qos_algorithm_type": "",
                                     "qos_algorithm_params": {}}) == [
        "HANDLE_INVALID", "VM", NULL]
    pif = x.PIF.get_all()[0]
    network = x.PIF.get_network(pif)
    # XO's bond and VLAN paths: 4 arguments, MAC "".
    assert failure_of(x.Bond.create, network, [pif], "", "lacp") == [
        "PIF_BOND_NEEDS_MORE_MEMBERS"]
    assert failure_of(x.Bond.create, NULL, [pif], "", "lacp")[:2] == [
        "HANDLE_INVALID", "network"]
    assert failure_of(x.Bond.create, network, [pif, NULL], "", "lacp") == [
        "HANDLE_INVALID", "PIF", NULL]
    assert failure_of(x.Bond.create, network, [pif], "", "round-robin") == [
        "INVALID_VALUE", "mode", "round-robin"]
    # The PIF's own network already has it (checked before anything else).
    assert failure_of(x.VLAN.create, pif, "10", network) == [
        "NETWORK_ALREADY_CONNECTED", network, pif]
    assert failure_of(x.pool.create_VLAN_from_PIF, pif, network, "10") == [
        "NETWORK_ALREADY_CONNECTED", network, pif]
    assert failure_of(x.pool.create_VLAN_from_PIF, NULL, network, "10") == [
        "HANDLE_INVALID", "PIF", NULL]
    assert failure_of(x.VLAN.create, pif, "4095", network) == ["VLAN_TAG_INVALID", "4095"]


def test_messages_are_real(session):
    x = session.xenapi
    host = x.host.get_all()[0]
    host_uuid = x.host.get_uuid(host)
    before = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=2)
    since = before.strftime("%Y%m%dT%H:%M:%SZ")
    ref = x.message.create("PYTEST_ALERT", "3", "Host", host_uuid, "body text")
    try:
        record = x.message.get_record(ref)
        assert record["name"] == "PYTEST_ALERT"
        assert record["priority"] == "3"
        assert record["cls"] == "Host"
        assert record["obj_uuid"] == host_uuid
        assert record["body"] == "body text"
        assert ref in x.message.get_all_records()
        assert ref in x.message.get_since(since)
        assert ref not in x.message.get_since("29990101T00:00:00Z")
        assert x.message.get_by_uuid(record["uuid"]) == ref
    finally:
        x.message.destroy(ref)
    assert ref not in x.message.get_all_records()
    assert failure_of(x.message.create, "X", "1", "VM",
                      "00000000-0000-4000-8000-000000000000", "") == [
        "UUID_INVALID", "VM", "00000000-0000-4000-8000-000000000000"]
