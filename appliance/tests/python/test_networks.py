"""The host's network layout through the XenAPI: keel-hosted started with a
host config that declares a LACP bond, a tagged management VLAN and VLAN
networks shows the PIF, Bond, VLAN and network objects xapi would, with
their cross references, read with the PyPI XenAPI SDK."""


import pytest
import XenAPI

from conftest import EXTERNAL_URL, PASSWORD, launch_hosted, stop_hosted

# The image's layout is checked by qemu-tests' bond test.
pytestmark = pytest.mark.skipif(
    bool(EXTERNAL_URL), reason="starts its own keel-hosted with a bonded host config")

CONFIG = """
hostname = "bonded"
[[bond]]
name = "bond0"
members = ["eth0", "eth1"]
mode = "lacp"
hashing = "tcpudp_ports"
lacp_rate = "slow"
[management]
interface = "bond0"
vlan = 5
mode = "dhcp"
[[network]]
name = "storage"
purpose = "storage"
interface = "bond0"
vlan = 20
mtu = 9000
mode = "static"
address = "198.51.100.10/24"
[[network]]
name = "migration"
purpose = "migration"
interface = "bond0"
vlan = 30
mode = "dhcp"
[[network]]
name = "backup"
purpose = "storage"
interface = "eth2"
mode = "dhcp"
[[network]]
name = "backup2"
purpose = "migration"
interface = "eth3"
mode = "dhcp"
"""

NULL = "OpaqueRef:NULL"


def start(config_path, state_path):
    proc, url, _ = launch_hosted("--root-password", PASSWORD, "--host-config", config_path,
                                 "--state", state_path)
    return proc, url


def layout(url):
    s = XenAPI.Session(url)
    s.xenapi.login_with_password("root", PASSWORD, "2.21", "pytest")
    try:
        x = s.xenapi
        return {
            "host": x.host.get_all_records(),
            "PIF": x.PIF.get_all_records(),
            "network": x.network.get_all_records(),
            "Bond": x.Bond.get_all_records(),
            "VLAN": x.VLAN.get_all_records(),
        }
    finally:
        s.xenapi.session.logout()


@pytest.fixture()
def bonded(tmp_path):
    config = tmp_path / "host.toml"
    config.write_text(CONFIG)
    state = tmp_path / "state.db"
    proc, url = start(config, state)
    try:
        yield url, config, state, proc
    finally:
        stop_hosted(proc)


def by_device(pifs):
    return {(p["device"], int(p["VLAN"])): (ref, p) for ref, p in pifs.items()}


def test_bond_vlans_and_pifs(bonded):
    url = bonded[0]
    objects = layout(url)
    pifs = by_device(objects["PIF"])
    assert sorted(pifs) == [("bond0", -1), ("bond0", 5), ("bond0", 20), ("bond0", 30),
                            ("eth0", -1), ("eth1", -1), ("eth2", -1), ("eth3", -1)]
    (host_ref, host), = objects["host"].items()
    assert sorted(host["PIFs"]) == sorted(objects["PIF"])
    for ref, pif in objects["PIF"].items():
        assert pif["host"] == host_ref
        network = objects["network"][pif["network"]]
        assert network["PIFs"] == [ref]
        assert network["MTU"] == pif["MTU"]

    # One PIF per NIC; eth2 carries nothing brought up.
    for nic in ["eth0", "eth1", "eth2"]:
        _, pif = pifs[(nic, -1)]
        assert pif["physical"] is True
        assert pif["management"] is False
    assert pifs[("eth2", -1)][1]["currently_attached"] is False
    assert pifs[("eth2", -1)][1]["MTU"] == "1500"
    assert objects["network"][pifs[("eth2", -1)][1]["network"]]["bridge"] == "xenbr2"

    # The bond: master PIF bond0, members eth0 and eth1, LACP properties.
    (bond_ref, bond), = objects["Bond"].items()
    master_ref, master = pifs[("bond0", -1)]
    assert bond["master"] == master_ref
    assert sorted(bond["slaves"]) == sorted([pifs[("eth0", -1)][0], pifs[("eth1", -1)][0]])
    assert bond["primary_slave"] == pifs[("eth0", -1)][0]
    assert bond["mode"] == "lacp"
    assert bond["properties"] == {"hashing_algorithm": "tcpudp_ports", "lacp-time": "slow"}
    assert master["physical"] is False
    assert master["bond_master_of"] == [bond_ref]
    assert master["bond_slave_of"] == NULL
    assert master["MTU"] == "9000"
    for nic in ["eth0", "eth1"]:
        _, pif = pifs[(nic, -1)]
        assert pif["bond_slave_of"] == bond_ref
        assert pif["bond_master_of"] == []
        assert pif["MTU"] == "9000"

    # A VLAN object, PIF and network per tagged network, on the bond.
    vlans = {int(v["tag"]): (ref, v) for ref, v in objects["VLAN"].items()}
    assert sorted(vlans) == [5, 20, 30]
    assert sorted(master["VLAN_slave_of"]) == sorted(ref for ref, _ in vlans.values())
    assert master["VLAN_master_of"] == NULL
    for tag, (ref, vlan) in vlans.items():
        pif_ref, pif = pifs[("bond0", tag)]
        assert vlan["tagged_PIF"] == master_ref
        assert vlan["untagged_PIF"] == pif_ref
        assert pif["VLAN_master_of"] == ref
        assert pif["VLAN_slave_of"] == []
        assert pif["physical"] is False
        assert pif["MAC"] == master["MAC"]

    # Management is the VLAN 5 PIF, addressed as the host.
    management = [p for p in objects["PIF"].values() if p["management"]]
    assert management == [pifs[("bond0", 5)][1]]
    assert management[0]["IP"] == host["address"] == "127.0.0.1"

    _, storage = pifs[("bond0", 20)]
    assert storage["MTU"] == "9000"
    assert storage["ip_configuration_mode"] == "Static"
    assert storage["IP"] == "198.51.100.10"
    assert storage["netmask"] == "255.255.255.0"
    assert objects["network"][storage["network"]]["name_label"] == "storage"
    _, migration = pifs[("bond0", 30)]
    assert migration["MTU"] == "1500"
    assert migration["ip_configuration_mode"] == "DHCP"
    assert objects["network"][migration["network"]]["name_label"] == "migration"


def test_layout_keeps_its_identity_across_restarts(bonded):
    url, config, state, proc = bonded
    before = layout(url)
    stop_hosted(proc)
    proc, url = start(config, state)
    try:
        after = layout(url)
    finally:
        stop_hosted(proc)
    for cls in ["PIF", "network", "Bond", "VLAN"]:
        assert sorted(before[cls]) == sorted(after[cls]), cls
        assert {r: o["uuid"] for r, o in before[cls].items()} == \
            {r: o["uuid"] for r, o in after[cls].items()}, cls


def test_bond_and_vlan_requests_are_checked_as_xapi_does(bonded):
    url = bonded[0]
    s = XenAPI.Session(url)
    s.xenapi.login_with_password("root", PASSWORD, "2.21", "pytest")
    x = s.xenapi
    try:
        pifs = by_device(x.PIF.get_all_records())
        eth0, eth2, eth3 = (pifs[(d, -1)][0] for d in ["eth0", "eth2", "eth3"])
        bond0, _ = pifs[("bond0", -1)]
        storage, _ = pifs[("bond0", 20)]
        network = x.PIF.get_network(eth2)

        def details(call, *args):
            with pytest.raises(XenAPI.Failure) as failure:
                call(*args)
            return failure.value.details

        assert details(x.Bond.create, network, [eth0, eth2], "", "lacp") == [
            "PIF_ALREADY_BONDED", eth0]
        # Two spare NICs: the switch has one uplink, bond0 (management).
        refused = details(x.Bond.create, network, [eth2, eth3], "", "lacp")
        assert refused[:2] == ["VALUE_NOT_SUPPORTED", "members"]
        assert "carrying management (bond0)" in refused[3]
        assert details(x.VLAN.create, bond0, "20", network) == ["PIF_VLAN_EXISTS", "bond0"]
        assert details(x.pool.create_VLAN_from_PIF, bond0, network, "30") == [
            "PIF_VLAN_EXISTS", "bond0"]
        assert details(x.VLAN.create, storage, "40", network) == ["PIF_IS_VLAN", storage]
        assert details(x.VLAN.create, bond0, "-1", network) == ["VLAN_TAG_INVALID", "-1"]
        assert details(x.VLAN.create, bond0, "40", network) == [
            "NETWORK_ALREADY_CONNECTED", network, eth2]
        fresh = x.network.create({"name_label": "vlan40", "name_description": "",
                                  "MTU": "1500", "other_config": {}})
        try:
            # Only the management uplink carries VLANs; the hosted service
            # has no switch to carry one on.
            assert details(x.pool.create_VLAN_from_PIF, eth2, fresh, "40")[:2] == [
                "VALUE_NOT_SUPPORTED", "tagged_PIF"]
            assert details(x.VLAN.create, bond0, "40", fresh) == [
                "NOT_IMPLEMENTED", "VLAN.create"]
            # pool.create_VLAN names the PIF by its device, on this host.
            assert details(x.pool.create_VLAN, "eth2", fresh, "40")[:2] == [
                "VALUE_NOT_SUPPORTED", "tagged_PIF"]
            assert details(x.pool.create_VLAN, "bond0", fresh, "40") == [
                "NOT_IMPLEMENTED", "VLAN.create"]
            assert details(x.pool.create_VLAN, "eth9", fresh, "40") == [
                "INVALID_VALUE", "device", "eth9"]
        finally:
            x.network.destroy(fresh)
    finally:
        x.session.logout()
