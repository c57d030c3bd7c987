"""An ordinary Channel Access client the project did not write: pyepics over libca.

Run by the tests as a separate process (libca keeps one context per process):
``python tests/ordinary_client.py '[["put", "P:Press:Mode-SP", 1e300], ["get", ...]]'``
prints one JSON result per operation: ``put`` (pyepics' ``caput``, no completion: as a
person types it), ``putw`` (with completion, ``wait=True``), ``putcb`` (a number put
with completion through libca itself, answering the status libca hands the put
callback, which pyepics' own ``put`` drops), ``get`` (a number or a string), ``sev``
(the alarm severity and status of a PV).
"""

import ctypes
import json
import sys
import time

import epics


def put_callback_status(pv, value: float, timeout: float = 5.0) -> dict:
    """``ca_array_put_callback`` of one DBR_DOUBLE; the status the IOC answered."""
    answered = {}

    def on_put(args):
        answered["status"] = int(args.status)

    callback = epics.dbr.make_callback(on_put, epics.dbr.event_handler_args)
    data = (ctypes.c_double * 1)(float(value))
    sent = epics.ca.libca.ca_array_put_callback(epics.dbr.DOUBLE, 1, pv.chid, data, callback, None)
    if sent != 1:  # refused by libca before it was sent (no write access)
        return {"status": sent, "message": epics.ca.message(sent)}
    epics.ca.flush_io()
    deadline = time.monotonic() + timeout
    while "status" not in answered and time.monotonic() < deadline:
        epics.ca.poll(evt=0.01)
    if "status" not in answered:
        return {"status": None, "message": f"no answer within {timeout} s"}
    return {"status": answered["status"], "message": epics.ca.message(answered["status"])}


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
        elif op == "putcb":
            results.append(put_callback_status(pv, value[0]))
        elif op == "get":
            got = pv.get(as_string=pv.type in ("enum", "char", "time_enum", "time_char"),
                         use_monitor=False)  # fmt: skip
            results.append(got.tolist() if hasattr(got, "tolist") else got)
        elif op == "sev":
            pv.get_ctrlvars()
            info = pv.get_timevars()
            results.append([int(info.get("severity", -1)), int(info.get("status", -1))])
    print(json.dumps(results))
