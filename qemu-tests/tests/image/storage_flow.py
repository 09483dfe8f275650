"""Storage steps the image tests' SDK flows share: xapi's lvmoiscsi SR on the
tgtd LUN the test started (named by the ISCSI_* environment variables), a
VDI filled through PUT /import_raw_vdi, and a Debian VM booting from a VDI
(waited for until its guest powers off); and the flows' login."""

import os
import time
import urllib.parse
import urllib.request
import xml.dom.minidom

import XenAPI


def login(label):
    """A session on KEEL_URL logged in as root with KEEL_PASSWORD (the
    originator `label`); (session, url)."""
    url = os.environ["KEEL_URL"]
    session = XenAPI.Session(url)
    session.xenapi.login_with_password("root", os.environ["KEEL_PASSWORD"], "2.21", label)
    return session, url


def _target_config():
    """device_config for the test's target with mutual CHAP, no SCSIid yet."""
    env = os.environ
    return {"target": env.get("ISCSI_TARGET", "10.0.2.2"), "port": env["ISCSI_PORT"],
            "targetIQN": env["ISCSI_IQN"],
            "chapuser": env["ISCSI_CHAP_USER"], "chappassword": env["ISCSI_CHAP_SECRET"],
            "incoming_chapuser": env["ISCSI_MUTUAL_USER"],
            "incoming_chappassword": env["ISCSI_MUTUAL_SECRET"]}


def _probed_luns(x, host, config, sr_type):
    """SR.probe without a SCSIid must fail listing the LUNs: their
    (LUNid, SCSIid) pairs in the order of the answer."""
    try:
        x.SR.probe(host, config, sr_type, {})
        raise AssertionError("probe without SCSIid must fail")
    except XenAPI.Failure as e:
        doc = xml.dom.minidom.parseString(e.details[3])
        text = lambda lun, tag: lun.getElementsByTagName(tag)[0].firstChild.data.strip()
        return [(text(lun, "LUNid"), text(lun, "SCSIid"))
                for lun in doc.getElementsByTagName("LUN")]


def iscsi_sr(x, host, name):
    """SR.probe without the SCSIid (its answer lists the LUN), then SR.create
    with mutual CHAP on the first LUN; returns the SR."""
    config = _target_config()
    config["SCSIid"] = _probed_luns(x, host, config, "lvmoiscsi")[0][1]
    return x.SR.create(host, config, "0", name, "", "lvmoiscsi", "user", True, {})


def iso_library(x, host, name):
    """An ISO library (SR type iso) on the target's second LUN, probed as
    iscsi_sr probes; returns the SR."""
    config = _target_config()
    config["SCSIid"] = dict(_probed_luns(x, host, config, "iso"))["2"]
    return x.SR.create(host, config, "0", name, "", "iso", "iso", True, {})


def imported_vdi(session, url, sr, name, data, timeout=200):
    """A VDI of len(data) bytes in `sr` holding `data` (the import bounded
    by `timeout` s); (vdi, its query string for /import_raw_vdi and
    /export_raw_vdi)."""
    x = session.xenapi
    vdi = x.VDI.create({"SR": sr, "name_label": name, "name_description": "",
                        "virtual_size": str(len(data)), "type": "user", "sharable": False,
                        "read_only": False, "other_config": {}})
    q = urllib.parse.urlencode({"session_id": session._session, "vdi": vdi})
    req = urllib.request.Request(f"{url}/import_raw_vdi?{q}", data=data, method="PUT")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        assert r.status == 200, r.status
    return vdi, q


def debian_vm(x, name, vdi, memory=256 << 20):
    """A VM cloned from the template that boots the Debian peer kernel
    (boot:debian/vmlinuz and initrd, console on ttyS0) with `vdi` as its
    bootable read-write disk (userdevice 0); (vm, its VBD)."""
    template = x.VM.get_by_name_label("Debian-style direct boot")[0]
    vm = x.VM.clone(template, name)
    x.VM.provision(vm)
    x.VM.set_is_a_template(vm, False)
    x.VM.set_PV_kernel(vm, "boot:debian/vmlinuz")
    x.VM.set_PV_ramdisk(vm, "boot:debian/initrd")
    x.VM.set_PV_args(vm, "console=ttyS0")
    size = str(memory)
    x.VM.set_memory_limits(vm, size, size, size, size)
    vbd = x.VBD.create({"VM": vm, "VDI": vdi, "userdevice": "0", "bootable": True,
                        "mode": "RW", "type": "Disk", "empty": False, "other_config": {}})
    return vm, vbd


def wait_halted(x, vm, timeout, what="the guest"):
    """Polls `vm`'s power state until its guest has powered off (Halted),
    `timeout` s at most; asserts it did."""
    end = time.monotonic() + timeout
    while x.VM.get_power_state(vm) != "Halted" and time.monotonic() < end:
        time.sleep(0.5)
    assert x.VM.get_power_state(vm) == "Halted", f"{what} did not power off"
