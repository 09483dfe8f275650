"""VM.clone and VM.copy of a VM whose disks are on an lvmoiscsi SR on a
real tgtd (started by test_iscsi's fixture, killed by its pid): the
clone's disks are copy-on-write clones that read the original's data and
are written independently; its VBDs and VIFs are copies."""

import os
import re

from conftest import PASSWORD
from test_iscsi import tgtd  # noqa: F401 (the fixture)
from test_raw_vdi import MIB, get, make_sr, new_vdi, pattern, put, url_for, wait_task

import XenAPI


def export(server, sid, vdi):
    status, body = get(url_for(server, "/export_raw_vdi", session_id=sid, vdi=vdi))
    assert status == 200, body
    return body


def disks_of(x, vm):
    """userdevice -> (VBD record, VDI ref) of the VM's VBDs."""
    out = {}
    for vbd in x.VM.get_VBDs(vm):
        r = x.VBD.get_record(vbd)
        out[r["userdevice"]] = (r, r["VDI"])
    return out


def test_vm_clone_and_copy_of_a_vm_with_disks_on_an_iscsi_sr(server, tgtd):  # noqa: F811
    address = os.environ.get("KEEL_ISCSI_ADDRESS", "127.0.0.1")
    session = XenAPI.Session(server)
    session.xenapi.login_with_password("root", PASSWORD, "2.21", "vm-clone-test")
    x = session.xenapi
    sid = session._session
    host = x.host.get_all()[0]
    sr = make_sr(x, host, address, tgtd)

    # A VM from the template with two disks holding data and a NIC.
    template = x.VM.get_by_name_label("Debian-style direct boot")[0]
    vm = x.VM.clone(template, "clone-source")
    x.VM.set_is_a_template(vm, False)
    contents = {"0": pattern(2 * MIB + 511, seed=11), "1": pattern(MIB, seed=12)}
    originals = {}
    for device, size, mode in (("0", 8 * MIB, "RW"), ("1", 4 * MIB, "RO")):
        vdi = new_vdi(x, sr, f"disk{device}", size)
        status, body = put(url_for(server, "/import_raw_vdi", session_id=sid, vdi=vdi),
                           contents[device])
        assert status == 200, body
        x.VBD.create({
            "VM": vm, "VDI": vdi, "userdevice": device, "bootable": device == "0",
            "mode": mode, "type": "Disk", "empty": False, "other_config": {"n": device},
            "qos_algorithm_type": "", "qos_algorithm_params": {},
        })
        originals[device] = vdi
    network = x.network.get_all()[0]
    x.VIF.create({"VM": vm, "network": network, "device": "0", "MAC": "", "MTU": "1500",
                  "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}})
    vdis_before = set(x.VDI.get_all())
    # VIF.move on a halted VM: the VIF is on the new network (at next start).
    [vif] = x.VM.get_VIFs(vm)
    other = x.network.create({"name_label": "moved", "name_description": "", "MTU": "1500",
                              "other_config": {}})
    x.VIF.move(vif, other)
    assert x.VIF.get_network(vif) == other and x.network.get_VIFs(other) == [vif]
    assert vif not in x.network.get_VIFs(network)
    x.VIF.move(vif, network)
    assert x.VIF.get_network(vif) == network and x.network.get_VIFs(other) == []
    x.network.destroy(other)
    # The device numbers a new disk or NIC may take.
    assert x.VM.get_allowed_VBD_devices(vm) == [str(n) for n in range(2, 16)]
    assert x.VM.get_allowed_VIF_devices(vm) == [str(n) for n in range(1, 7)]

    clone = x.VM.clone(vm, "clone-1")
    record = x.VM.get_record(clone)
    assert record["name_label"] == "clone-1" and record["power_state"] == "Halted", record
    disks = disks_of(x, clone)
    assert sorted(disks) == ["0", "1"]
    for device, (vbd, vdi) in disks.items():
        assert vdi != originals[device]
        assert vbd["mode"] == ("RW" if device == "0" else "RO"), vbd
        assert vbd["bootable"] is (device == "0"), vbd
        assert vbd["other_config"] == {"n": device}, vbd
        assert vbd["currently_attached"] is False
        v = x.VDI.get_record(vdi)
        assert v["SR"] == sr and v["name_label"] == f"disk{device}", v
        assert v["virtual_size"] == x.VDI.get_virtual_size(originals[device])
        body = export(server, sid, vdi)
        assert body[:len(contents[device])] == contents[device]
    assert set(x.VDI.get_all()) - vdis_before == {vdi for _, vdi in disks.values()}
    [vif] = x.VM.get_VIFs(clone)
    [source_vif] = x.VM.get_VIFs(vm)
    mac = x.VIF.get_MAC(vif)
    assert re.fullmatch(r"00:16:3e:[0-7][0-9a-f](:[0-9a-f]{2}){2}", mac), mac
    assert mac != x.VIF.get_MAC(source_vif)
    assert x.VIF.get_network(vif) == network and vif in x.network.get_VIFs(network)

    # Copy-on-write: a write to the clone's disk leaves the original's.
    change = pattern(70000, seed=99)
    status, body = put(url_for(server, "/import_raw_vdi", session_id=sid, vdi=disks["0"][1]),
                       change)
    assert status == 200, body
    assert export(server, sid, disks["0"][1])[:len(change)] == change
    assert export(server, sid, originals["0"])[:len(contents["0"])] == contents["0"]

    # Async.VM.clone through a task, VM.copy within the SR.
    task = x.Async.VM.clone(vm, "clone-2")
    result = wait_task(x, task)
    assert result["status"] == "success", result
    by_task = re.sub(r"</?value>", "", result["result"])
    assert x.VM.get_name_label(by_task) == "clone-2"
    copy = x.VM.copy(vm, "copy-1", sr)
    assert export(server, sid, disks_of(x, copy)["1"][1])[:MIB] == contents["1"]

    # Everything goes again: VM.destroy takes the VBDs and VIFs, the VDIs
    # are destroyed one by one, then the SR.
    vdis = set()
    for v in (clone, by_task, copy, vm):
        vdis |= {vdi for _, vdi in disks_of(x, v).values()}
        x.VM.destroy(v)
    for vdi in vdis:
        x.VDI.destroy(vdi)
    assert x.SR.get_VDIs(sr) == []
    x.SR.destroy(sr)
    session.xenapi.session.logout()
