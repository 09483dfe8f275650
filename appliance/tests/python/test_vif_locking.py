"""VIF locking through the official SDK: VIF.create's locking_mode,
ipv4_allowed and ipv6_allowed, the setters and network's default, with
xapi's INVALID_VALUE for bad modes and addresses. (The switch enforcing
them is tested in netstack and the appliance's unit tests.)"""

import pytest
import XenAPI


def failure_of(call, *args):
    with pytest.raises(XenAPI.Failure) as failure:
        call(*args)
    return failure.value.details


def vif_record(vm, network, device, **extra):
    record = {"VM": vm, "network": network, "device": device, "MAC": "", "MTU": "1500",
              "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}}
    record.update(extra)
    return record


def test_vif_locking_records_setters_and_validation(session):
    x = session.xenapi
    network = x.network.create({"name_label": "locking", "name_description": "",
                                "MTU": "1500", "other_config": {}, "tags": []})
    template = x.VM.get_by_name_label("Debian-style direct boot")[0]
    vm = x.VM.clone(template, "locking-test")
    try:
        assert x.network.get_default_locking_mode(network) == "unlocked"
        vif = x.VIF.create(vif_record(vm, network, "0", locking_mode="locked",
                                      ipv4_allowed=["192.0.2.5", "192.0.2.5"],
                                      ipv6_allowed=["2001:DB8::5"]))
        r = x.VIF.get_record(vif)
        assert r["locking_mode"] == "locked"
        assert r["ipv4_allowed"] == ["192.0.2.5"]
        assert r["ipv6_allowed"] == ["2001:db8::5"]
        plain = x.VIF.create(vif_record(vm, network, "1"))
        assert x.VIF.get_locking_mode(plain) == "network_default"
        assert x.VIF.get_ipv4_allowed(plain) == []

        for field, value in [("ipv4_allowed", ["192.0.2.256"]),
                             ("ipv4_allowed", ["192.0.2.0/24"]),
                             ("ipv6_allowed", ["192.0.2.1"]),
                             ("locking_mode", "strict")]:
            details = failure_of(x.VIF.create, vif_record(vm, network, "2", **{field: value}))
            assert details[:2] == ["INVALID_VALUE", field], (field, value, details)

        x.VIF.add_ipv4_allowed(vif, "192.0.2.6")
        x.VIF.remove_ipv4_allowed(vif, "192.0.2.5")
        assert x.VIF.get_ipv4_allowed(vif) == ["192.0.2.6"]
        x.VIF.set_ipv4_allowed(vif, ["198.51.100.1", "198.51.100.2"])
        assert x.VIF.get_ipv4_allowed(vif) == ["198.51.100.1", "198.51.100.2"]
        x.VIF.set_ipv6_allowed(vif, [])
        x.VIF.add_ipv6_allowed(vif, "2001:db8:0:0::9")
        assert x.VIF.get_ipv6_allowed(vif) == ["2001:db8::9"]
        assert failure_of(x.VIF.add_ipv4_allowed, vif, "::1") == \
            ["INVALID_VALUE", "ipv4_allowed", "::1"]
        assert failure_of(x.VIF.set_ipv6_allowed, vif, ["2001:db8::1", "x"]) == \
            ["INVALID_VALUE", "ipv6_allowed", "x"]
        assert x.VIF.get_ipv6_allowed(vif) == ["2001:db8::9"], "a refused set changes nothing"

        for mode in ["disabled", "unlocked", "network_default", "locked"]:
            x.VIF.set_locking_mode(vif, mode)
            assert x.VIF.get_locking_mode(vif) == mode
        assert failure_of(x.VIF.set_locking_mode, vif, "strict")[0] == "INVALID_VALUE"

        x.network.set_default_locking_mode(network, "disabled")
        assert x.network.get_default_locking_mode(network) == "disabled"
        assert failure_of(x.network.set_default_locking_mode, network, "locked")[0] == \
            "INVALID_VALUE"
        assert failure_of(x.VIF.set_locking_mode, "OpaqueRef:NULL", "locked")[0] == \
            "HANDLE_INVALID"
    finally:
        for v in x.VM.get_VIFs(vm):
            x.VIF.destroy(v)
        x.VM.destroy(vm)
        x.network.destroy(network)
