"""An ISO library (an `iso` SR) on a real tgtd (started by test_iscsi's
fixture, killed by its pid): an ISO built with xorriso is uploaded whole,
listed read-only, read back identical and attached as a read-only CD."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import xml.dom.minidom

import XenAPI

from conftest import PASSWORD
from test_iscsi import CHAP, IQN, MUTUAL, tgtd  # noqa: F401 (the fixture)
from test_raw_vdi import MIB, get, pattern, put, url_for, wait_task

XORRISO_TIMEOUT = 60


def failure(call, *args):
    try:
        call(*args)
    except XenAPI.Failure as e:
        return e.details
    raise AssertionError(f"{call} must fail")


def build_iso(tmp):
    """A real ISO 9660 image of a few MiB of a pattern (xorriso), or the
    pattern itself padded to 2048-byte sectors where xorriso is missing."""
    payload = pattern(3 * MIB + 1000, seed=5)
    if shutil.which("xorriso") is None:
        return payload + bytes(-len(payload) % 2048)
    tree = os.path.join(tmp, "tree")
    os.makedirs(tree)
    with open(os.path.join(tree, "payload.bin"), "wb") as f:
        f.write(payload)
    out = os.path.join(tmp, "test.iso")
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-V", "KEELTEST", "-o", out, tree],
                   check=True, capture_output=True, timeout=XORRISO_TIMEOUT)
    with open(out, "rb") as f:
        return f.read()


def new_iso(x, sr, name, size):
    return x.VDI.create({
        "SR": sr, "name_label": name, "name_description": "", "virtual_size": str(size),
        "type": "user", "sharable": False, "read_only": True, "other_config": {},
    })


def test_iso_library_upload_list_export_and_cd(server, tgtd):  # noqa: F811
    address = os.environ.get("KEEL_ISCSI_ADDRESS", "127.0.0.1")
    session = XenAPI.Session(server)
    session.xenapi.login_with_password("root", PASSWORD, "2.21", "iso-library-test")
    x = session.xenapi
    sid = session._session
    host = x.host.get_all()[0]
    config = {
        "target": address, "port": str(tgtd), "targetIQN": IQN,
        "chapuser": CHAP[0], "chappassword": CHAP[1],
        "incoming_chapuser": MUTUAL[0], "incoming_chappassword": MUTUAL[1],
    }
    details = failure(x.SR.probe, host, config, "iso", {})
    doc = xml.dom.minidom.parseString(details[3])
    config["SCSIid"] = doc.getElementsByTagName("SCSIid")[0].firstChild.data.strip()
    sr = x.SR.create(host, config, "0", "isos", "ISO library", "iso", "iso", True, {})
    record = x.SR.get_record(sr)
    assert (record["type"], record["content_type"]) == ("iso", "iso"), record
    sr_uuid = record["uuid"]
    assert sr_uuid in x.SR.probe(host, config, "iso", {})

    with tempfile.TemporaryDirectory(prefix="keel-pytest-iso-") as tmp:
        image = build_iso(tmp)
    vdi = new_iso(x, sr, "test.iso", len(image))
    assert x.VDI.get_read_only(vdi) is False
    # An ISO is uploaded whole: a shorter body is refused.
    status, body = put(url_for(server, "/import_raw_vdi", session_id=sid, vdi=vdi),
                       image[:-4096])
    assert status == 400 and b"INVALID_VALUE" in body, body
    task = x.task.create("iso", "")
    started = time.monotonic()
    status, body = put(url_for(server, "/import_raw_vdi", session_id=sid, vdi=vdi,
                               task_id=task), image)
    elapsed = time.monotonic() - started
    assert status == 200, body
    assert wait_task(x, task)["status"] == "success"
    print(f"FIGURE iso upload {len(image)} bytes in {elapsed:.2f} s")
    record = x.VDI.get_record(vdi)
    assert record["read_only"] is True and record["is_a_snapshot"] is False, record
    assert record["name_label"] == "test.iso" and int(record["virtual_size"]) == len(image)
    status, body = put(url_for(server, "/import_raw_vdi", session_id=sid, vdi=vdi), image)
    assert status == 409 and b"VDI_READ_ONLY" in body, body

    # Listed by a scan (forget + introduce + plug too), read back identical.
    x.SR.scan(sr)
    assert x.SR.get_VDIs(sr) == [vdi]
    status, body = get(url_for(server, "/export_raw_vdi", session_id=sid, vdi=vdi))
    assert status == 200 and body == image
    x.SR.forget(sr)
    sr = x.SR.introduce(sr_uuid, "isos", "", "iso", "iso", True, {})
    pbd = x.PBD.create({"host": host, "SR": sr, "device_config": config})
    x.PBD.plug(pbd)
    vdis = x.SR.get_VDIs(sr)
    assert len(vdis) == 1, vdis
    vdi = vdis[0]
    record = x.VDI.get_record(vdi)
    assert (record["name_label"], record["read_only"]) == ("test.iso", True), record
    assert record["is_a_snapshot"] is False

    # A second ISO of the same name is refused; no copies of ISOs.
    details = failure(new_iso, x, sr, "test.iso", 2048)
    assert details[:2] == ["INVALID_VALUE", "name_label"], details
    assert failure(x.VDI.clone, vdi, {})[0] == "SR_OPERATION_NOT_SUPPORTED"

    # A cut upload leaves no half ISO: the VDI goes, the name is free.
    cut_vdi = new_iso(x, sr, "cut.iso", 2 * MIB)
    task = x.task.create("cut", "")
    target = urllib.parse.urlparse(url_for(server, "/import_raw_vdi", session_id=sid,
                                           vdi=cut_vdi, task_id=task))
    cut = socket.create_connection((target.hostname, target.port), timeout=30)
    cut.sendall(f"PUT {target.path}?{target.query} HTTP/1.1\r\nHost: h\r\n"
                f"Content-Length: {2 * MIB}\r\n\r\n".encode() + pattern(MIB + 17, seed=3))
    time.sleep(0.5)
    cut.close()
    assert wait_task(x, task)["status"] == "failure"
    end = time.monotonic() + 60
    while cut_vdi in x.SR.get_VDIs(sr) and time.monotonic() < end:
        time.sleep(0.1)
    assert x.SR.get_VDIs(sr) == [vdi]
    x.SR.scan(sr)
    assert x.SR.get_VDIs(sr) == [vdi]
    again = new_iso(x, sr, "cut.iso", 2048)
    x.VDI.destroy(again)

    # A CD drive: read-only, of a finished ISO.
    template = x.VM.get_by_name_label("Debian-style direct boot")[0]
    vm = x.VM.clone(template, "iso-vm")
    cd = {"VM": vm, "VDI": vdi, "userdevice": "3", "bootable": False, "mode": "RW",
          "type": "CD", "empty": False, "other_config": {}, "qos_algorithm_type": "",
          "qos_algorithm_params": {}}
    assert failure(x.VBD.create, cd)[0] == "VBD_CDS_MUST_BE_READONLY"
    vbd = x.VBD.create(dict(cd, mode="RO"))
    record = x.VBD.get_record(vbd)
    assert (record["type"], record["mode"], record["VDI"]) == ("CD", "RO", vdi), record
    assert vbd in x.VM.get_VBDs(vm)
    assert vbd in x.VDI.get_VBDs(vdi)

    # Media: eject, then insert again (the VM is halted); only a CD drive
    # has media, and an empty drive has none to eject.
    assert failure(x.VBD.insert, vbd, vdi) == ["VBD_NOT_EMPTY", vbd]
    x.VBD.eject(vbd)
    record = x.VBD.get_record(vbd)
    assert (record["empty"], record["VDI"]) == (True, "OpaqueRef:NULL"), record
    assert vbd not in x.VDI.get_VBDs(vdi)
    assert failure(x.VBD.eject, vbd) == ["VBD_IS_EMPTY", vbd]
    x.VBD.insert(vbd, vdi)
    assert x.VBD.get_VDI(vbd) == vdi and x.VBD.get_empty(vbd) is False
    x.VBD.destroy(vbd)
    # An empty drive from the start; a disk cannot be empty.
    empty = x.VBD.create(dict(cd, mode="RO", empty=True, VDI="OpaqueRef:NULL"))
    assert x.VBD.get_empty(empty) is True
    x.VBD.insert(empty, vdi)
    assert x.VBD.get_VDI(empty) == vdi
    x.VBD.destroy(empty)
    assert failure(x.VBD.create, dict(cd, type="Disk", empty=True))[0] == "VBD_NOT_REMOVABLE_MEDIA"
    x.VM.destroy(vm)
    x.VDI.destroy(vdi)
    x.SR.destroy(sr)
    session.xenapi.session.logout()

