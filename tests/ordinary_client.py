"""An ordinary Channel Access client the project did not write: pyepics over libca.

Run by the tests as a separate process (libca keeps one context per process):
``python tests/ordinary_client.py '[["put", "P:Press:Mode-SP", 1e300], ["get", ...]]'``
prints one JSON result per operation: ``put`` (pyepics' ``caput``, no completion: as a
person types it), ``putw`` (with completion, ``wait=True``), ``get`` (a number or a
string), ``sev`` (the alarm severity and status of a PV).
"""

import json
import sys

import epics

if __name__ == "__main__":
    results = []
    for op, name, *value in json.loads(sys.argv[1]):
        pv = epics.PV(name, connection_timeout=10.0)
        if not pv.wait_for_connection(timeout=10.0):
            results.append({"error": f"{name} did not connect"})
            continue
        if op == "put":
            results.append(pv.put(value[0], wait=False))
        elif op == "putw":
            results.append(pv.put(value[0], wait=True, timeout=value[1] if len(value) > 1 else 5))
        elif op == "get":
            got = pv.get(as_string=pv.type in ("enum", "char", "time_enum", "time_char"),
                         use_monitor=False)  # fmt: skip
            results.append(got.tolist() if hasattr(got, "tolist") else got)
        elif op == "sev":
            pv.get_ctrlvars()
            info = pv.get_timevars()
            results.append([int(info.get("severity", -1)), int(info.get("status", -1))])
    print(json.dumps(results))
