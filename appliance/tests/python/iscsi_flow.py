"""Drives SR.probe / SR.create / VDI.create with the PyPI XenAPI SDK.

Used by test_iscsi.py (hosted and image, through pytest) and run as a
script by qemu-tests' iscsi_sr.rs with the target's address, port, IQN and
CHAP accounts in the environment (it then prints one JSON object with what
it saw on its last line). Every step asserts what xapi (and Xen
Orchestra's probe flow) expects.
"""

import json
import os
import sys
import time
import xml.dom.minidom

import XenAPI

def failure(call, *args):
    try:
        result = call(*args)
    except XenAPI.Failure as f:
        return f.details
    raise AssertionError(f"expected a failure, got {result!r}")


def texts(doc, tag):
    return [n.firstChild.data.strip() for n in doc.getElementsByTagName(tag) if n.firstChild]


def flow(url, password, target, port, iqn, lun_bytes, chap, mutual, destroy=False):
    """The whole flow; returns what it saw. `destroy` removes the SR at the end."""
    out = {}
    session = XenAPI.Session(url)
    session.xenapi.login_with_password("root", password, "2.21", "iscsi-test")
    x = session.xenapi
    host = x.host.get_all()[0]
    base = {
        "target": target,
        "port": str(port),
        "chapuser": chap[0],
        "chappassword": chap[1],
        "incoming_chapuser": mutual[0],
        "incoming_chappassword": mutual[1],
    }

    # 1. No targetIQN: the target's IQNs, as XO parses them.
    details = failure(x.SR.probe, host, base, "lvmoiscsi", {})
    assert details[0] == "SR_BACKEND_FAILURE_96", details
    assert details[1] == "", details
    doc = xml.dom.minidom.parseString(details[3])
    assert doc.documentElement.tagName == "iscsi-target-iqns", details[3]
    iqns = texts(doc, "TargetIQN")
    assert iqn in iqns, iqns
    out["iqns"] = iqns
    out["iqn_addresses"] = texts(doc, "IPAddress")

    # 2. targetIQN, no SCSIid: the LUNs with their SCSIids.
    config = dict(base, targetIQN=iqn)
    details = failure(x.SR.probe, host, config, "lvmoiscsi", {})
    assert details[0] == "SR_BACKEND_FAILURE_107", details
    doc = xml.dom.minidom.parseString(details[3])
    assert doc.documentElement.tagName == "iscsi-target", details[3]
    luns = doc.getElementsByTagName("LUN")
    assert len(luns) == 1, details[3]
    lun = {n.tagName: n.firstChild.data.strip() for n in luns[0].childNodes if n.nodeType == n.ELEMENT_NODE}
    out["lun"] = lun
    scsi_id = lun["SCSIid"]
    assert lun["LUNid"] == "1", lun
    assert int(lun["size"]) == lun_bytes, lun

    # 3. Complete: an empty LUN holds no SR.
    config["SCSIid"] = scsi_id
    listing = x.SR.probe(host, config, "lvmoiscsi", {})
    assert xml.dom.minidom.parseString(listing).getElementsByTagName("SR") == [], listing

    # A wrong CHAP secret and a target that fails mutual authentication are refused.
    details = failure(x.SR.probe, host, dict(config, chappassword="wrong-secret-123"), "lvmoiscsi", {})
    assert details[0] == "SR_BACKEND_FAILURE_68", details
    out["wrong_secret"] = details
    details = failure(
        x.SR.probe, host, dict(config, incoming_chappassword="not-the-target-secret"), "lvmoiscsi", {}
    )
    assert details[0] == "SR_BACKEND_FAILURE_68", details
    out["mutual_failure"] = details
    # A password held in a secret the client made (xapi's `<key>_secret`).
    secret = x.secret.create({"value": chap[1], "other_config": {}})
    by_secret = {k: v for k, v in config.items() if k != "chappassword"}
    by_secret["chappassword_secret"] = x.secret.get_uuid(secret)
    listing = x.SR.probe(host, by_secret, "lvmoiscsi", {})
    assert xml.dom.minidom.parseString(listing).getElementsByTagName("SR") == [], listing
    x.secret.destroy(secret)
    details = failure(x.SR.probe, host, by_secret, "lvmoiscsi", {})
    assert details[0] == "UUID_INVALID", details
    # An unreachable portal.
    details = failure(x.SR.probe, host, dict(base, port="1"), "lvmoiscsi", {})
    assert details[0] == "SR_BACKEND_FAILURE_141", details

    # SR.create formats our SR on the LUN, creates and plugs the PBD.
    started = time.monotonic()
    sr = x.SR.create(host, config, "0", "iscsi-sr", "test SR", "lvmoiscsi", "user", True, {})
    out["sr_create_s"] = time.monotonic() - started
    record = x.SR.get_record(sr)
    assert record["type"] == "lvmoiscsi" and record["shared"] is True, record
    assert int(record["physical_size"]) > 0, record
    assert len(record["PBDs"]) == 1, record
    pbd = x.PBD.get_record(record["PBDs"][0])
    assert pbd["currently_attached"] is True and pbd["host"] == host, pbd
    assert pbd["device_config"]["SCSIid"] == scsi_id, pbd
    # The CHAP passwords are kept in secrets, not shown in the PBD.
    stored = pbd["device_config"]
    assert "chappassword" not in stored and "incoming_chappassword" not in stored, stored
    for key, want in (("chappassword_secret", chap[1]), ("incoming_chappassword_secret", mutual[1])):
        assert x.secret.get_value(x.secret.get_by_uuid(stored[key])) == want, key
    # New credentials through PBD.set_device_config: kept in new secrets,
    # the old ones destroyed; the PBD still plugs with them.
    x.PBD.unplug(record["PBDs"][0])
    x.PBD.set_device_config(record["PBDs"][0], config)
    again = x.PBD.get_device_config(record["PBDs"][0])
    assert "chappassword" not in again and again["SCSIid"] == scsi_id, again
    left = {r["uuid"] for r in x.secret.get_all_records().values()}
    assert stored["chappassword_secret"] not in left and again["chappassword_secret"] in left
    x.PBD.plug(record["PBDs"][0])
    assert x.PBD.get_currently_attached(record["PBDs"][0]) is True
    stored = again
    out["sr_uuid"] = record["uuid"]
    out["physical_size"] = int(record["physical_size"])
    x.SR.add_to_other_config(sr, "auto-scan", "true")

    # The probe now finds it.
    listing = x.SR.probe(host, config, "lvmoiscsi", {})
    uuids = texts(xml.dom.minidom.parseString(listing), "UUID")
    assert uuids == [record["uuid"]], listing

    # VDIs: created (and one destroyed) on the LUN.
    vdi_record = {
        "SR": sr,
        "name_label": "disk0",
        "name_description": "",
        "virtual_size": str(256 * 1024 * 1024),
        "type": "user",
        "sharable": False,
        "read_only": False,
        "other_config": {},
    }
    vdi = x.VDI.create(vdi_record)
    v = x.VDI.get_record(vdi)
    assert v["SR"] == sr and int(v["virtual_size"]) == 256 * 1024 * 1024, v
    out["vdi_uuid"] = v["uuid"]
    # Two Async calls at once: the appliance runs one SR operation per LUN
    # at a time, so both VDIs land in the journal.
    tasks = [x.Async.VDI.create(dict(vdi_record, name_label=f"scratch{i}")) for i in (1, 2)]
    end = time.monotonic() + 60
    while any(x.task.get_status(t) == "pending" for t in tasks) and time.monotonic() < end:
        time.sleep(0.1)
    scratch = []
    for t in tasks:
        assert x.task.get_status(t) == "success", x.task.get_record(t)
        result = xml.dom.minidom.parseString("<v>" + x.task.get_result(t) + "</v>")
        scratch.append(result.documentElement.getElementsByTagName("value")[0].firstChild.data)
        x.task.destroy(t)
    assert sorted(x.VDI.get_name_label(v) for v in scratch) == ["scratch1", "scratch2"]
    x.SR.scan(sr)
    assert set(x.SR.get_VDIs(sr)) == {vdi, *scratch}, x.SR.get_VDIs(sr)
    # VDI.resize grows a VDI on the LUN.
    x.VDI.resize(scratch[0], str(257 * 1024 * 1024))
    assert int(x.VDI.get_virtual_size(scratch[0])) == 257 * 1024 * 1024
    for v in scratch:
        x.VDI.destroy(v)
    assert set(x.SR.get_VDIs(sr)) == {vdi}, x.SR.get_VDIs(sr)

    # SR.scan agrees with the LUN.
    x.SR.scan(sr)
    assert x.SR.get_VDIs(sr) == [vdi], x.SR.get_VDIs(sr)
    out["virtual_allocation"] = int(x.SR.get_virtual_allocation(sr))
    assert out["virtual_allocation"] == 256 * 1024 * 1024, out
    if destroy:
        x.VDI.destroy(vdi)
        x.SR.destroy(sr)
        assert x.SR.probe(host, config, "lvmoiscsi", {}).count("<UUID>") == 0
        # The PBD's secrets went with it.
        left = {r["uuid"] for r in x.secret.get_all_records().values()}
        assert not left & {stored["chappassword_secret"], stored["incoming_chappassword_secret"]}, left
    session.xenapi.session.logout()
    return out


def main():
    out = flow(
        os.environ["KEEL_URL"],
        os.environ["KEEL_PASSWORD"],
        os.environ["ISCSI_TARGET"],
        os.environ["ISCSI_PORT"],
        os.environ["ISCSI_IQN"],
        int(os.environ["ISCSI_LUN_BYTES"]),
        (os.environ["ISCSI_CHAP_USER"], os.environ["ISCSI_CHAP_SECRET"]),
        (os.environ["ISCSI_MUTUAL_USER"], os.environ["ISCSI_MUTUAL_SECRET"]),
    )
    print(json.dumps(out))


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"assertion failed: {e}", file=sys.stderr)
        raise
