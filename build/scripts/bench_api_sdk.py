"""The Python side of `cargo xtask bench api`: times calls made through the
official XenAPI SDK (XML-RPC over one keep-alive connection).

Usage: bench_api_sdk.py URL PASSWORD HOST_CALLS RECORDS_CALLS VMS
Prints one JSON object: {"host_get_record": [us, ...], "vm_get_all_records": [us, ...]}.
Exits non-zero when an answer is not what the server holds.
"""

import json
import sys
import time

import XenAPI


def timed(calls, call, check):
    durations = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        result = call()
        durations.append((time.perf_counter_ns() - start) / 1000.0)
        check(result)
    return durations


def main():
    url, password, host_calls, records_calls, vms = sys.argv[1:6]
    session = XenAPI.Session(url)
    session.xenapi.login_with_password("root", password, "2.21", "keel-bench")
    try:
        host = session.xenapi.host.get_all()[0]

        def host_ok(record):
            if record["uuid"] == "" or "software_version" not in record:
                sys.exit("host.get_record returned an incomplete record")

        def records_ok(records):
            if len(records) != int(vms):
                sys.exit(f"VM.get_all_records returned {len(records)} VMs, expected {vms}")

        # Warm up the connection and both code paths.
        timed(10, lambda: session.xenapi.host.get_record(host), host_ok)
        timed(1, session.xenapi.VM.get_all_records, records_ok)
        result = {
            "host_get_record": timed(int(host_calls),
                                     lambda: session.xenapi.host.get_record(host), host_ok),
            "vm_get_all_records": timed(int(records_calls),
                                        session.xenapi.VM.get_all_records, records_ok),
        }
    finally:
        session.xenapi.session.logout()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
