"""Local SRs (types lvm and ext) on host disks: keel-hosted serves files as
host disks (--host-disk); the SDK probes, creates, fills and reads an SR on
one, and after a restart the SR is plugged again with its VDI and data (the
image's virtio disks are tested by qemu-tests/tests/image/local_sr.rs)."""

import time
import urllib.parse
import urllib.request
import xml.dom.minidom

import pytest
import XenAPI

from conftest import EXTERNAL_URL, PASSWORD, launch_hosted, stop_hosted

pytestmark = pytest.mark.skipif(
    bool(EXTERNAL_URL), reason="starts its own keel-hosted processes")

DISK_BYTES = 128 << 20


def start(state, disks):
    args = ["--root-password", PASSWORD, "--state", state]
    for d in disks:
        args += ["--host-disk", d]
    proc, url, _ = launch_hosted(*args)
    session = XenAPI.Session(url)
    session.xenapi.login_with_password("root", PASSWORD, "2.21", "pytest")
    return proc, session, url


def devlist(x, host):
    try:
        x.SR.probe(host, {}, "lvm", {})
    except XenAPI.Failure as e:
        assert e.details[0] == "SR_BACKEND_FAILURE_90", e.details
        doc = xml.dom.minidom.parseString(e.details[3])
        return [{n.tagName: n.firstChild.data.strip() for n in d.childNodes
                 if n.nodeType == n.ELEMENT_NODE}
                for d in doc.getElementsByTagName("BlockDevice")]
    raise AssertionError("a probe without a device must fail")


def query(s, vdi):
    return urllib.parse.urlencode({"session_id": s._session, "vdi": vdi})


def test_local_sr_survives_a_restart(tmp_path):
    state = tmp_path / "state.img"
    disks = [tmp_path / "data-a", tmp_path / "data-b"]
    for d in disks:
        with open(d, "wb") as f:
            f.truncate(DISK_BYTES)
    data = bytes((i * 13 + i // 4099) % 253 for i in range((2 << 20) + 512))
    proc, s, url = start(state, disks)
    try:
        x = s.xenapi
        host = x.host.get_all()[0]
        found = devlist(x, host)
        assert [d["path"] for d in found] == ["/dev/vda", "/dev/vdb"], found
        assert found[1]["id"] == "/dev/disk/by-id/virtio-data-b", found
        assert int(found[1]["size"]) == DISK_BYTES
        with pytest.raises(XenAPI.Failure) as e:
            x.SR.create(host, {"device": "/dev/vdq"}, "0", "x", "", "lvm", "user", False, {})
        assert e.value.details[0] == "SR_BACKEND_FAILURE_70"
        sr = x.SR.create(host, {"device": found[1]["id"]}, "0", "local", "", "ext", "user",
                         False, {})
        assert x.SR.get_type(sr) == "ext"
        with pytest.raises(XenAPI.Failure) as e:
            x.SR.create(host, {"device": "/dev/vdb"}, "0", "x", "", "lvm", "user", False, {})
        assert e.value.details[0] == "SR_BACKEND_FAILURE_70", "the disk is in use"
        uuid = x.SR.get_uuid(sr)
        assert uuid in x.SR.probe(host, {"device": "/dev/vdb"}, "lvm", {})
        vdi = x.VDI.create({"SR": sr, "name_label": "d", "name_description": "",
                            "virtual_size": str(len(data)), "type": "user",
                            "sharable": False, "read_only": False, "other_config": {}})
        req = urllib.request.Request(f"{url}/import_raw_vdi?{query(s, vdi)}", data=data,
                                     method="PUT")
        with urllib.request.urlopen(req, timeout=120) as r:
            assert r.status == 200
        snap = x.VDI.snapshot(vdi, {})
        assert x.VDI.get_is_a_snapshot(snap) is True
        vdi_uuid = x.VDI.get_uuid(vdi)
    finally:
        stop_hosted(proc)
    # The other disk was never written.
    assert disks[0].read_bytes() == bytes(DISK_BYTES)

    proc, s, url = start(state, disks)
    try:
        x = s.xenapi
        sr = x.SR.get_by_uuid(uuid)
        [pbd] = x.SR.get_PBDs(sr)
        end = time.monotonic() + 30
        while not x.PBD.get_currently_attached(pbd) and time.monotonic() < end:
            time.sleep(0.1)
        assert x.PBD.get_currently_attached(pbd) is True
        vdi = x.VDI.get_by_uuid(vdi_uuid)
        with urllib.request.urlopen(f"{url}/export_raw_vdi?{query(s, vdi)}", timeout=120) as r:
            assert r.read() == data
        # Grown (to whole sectors): the new end reads as zeros.
        x.VDI.resize(vdi, str(len(data) + 1000))
        assert int(x.VDI.get_virtual_size(vdi)) == len(data) + 1024
        with urllib.request.urlopen(f"{url}/export_raw_vdi?{query(s, vdi)}", timeout=120) as r:
            assert r.read() == data + bytes(1024)
        with pytest.raises(XenAPI.Failure) as e:
            x.VDI.resize(vdi, "512")
        assert e.value.details[0] == "SR_BACKEND_FAILURE_79"
        # Emptied and destroyed: the disk holds no SR any more.
        for v in x.SR.get_VDIs(sr):
            x.VDI.destroy(v)
        x.SR.destroy(sr)
        host = x.host.get_all()[0]
        assert "<SRlist/>" in x.SR.probe(host, {"device": "/dev/vdb"}, "lvm", {})
    finally:
        stop_hosted(proc)
