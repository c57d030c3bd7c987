"""Acquire a protocol into a catalog, or attach to the one running on the instrument.

Run by tests/test_attach.py as a separate process (to be killed with SIGKILL):
``python tests/acquire_protocol.py CATALOG MD_DIR PREFIX HEARTBEAT_S (run FILE | scan |
attach)``: ``scan`` is a pressure-impedance scan at 20, 40, 60 and 80 MPa.
Prints ``acquiring`` once its run has started.
"""

import sys
from pathlib import Path

from ssb_devices import Rig
from ssb_plans import start_session
from ssb_plans.attach import attach
from ssb_plans.cycling import run_protocol
from ssb_plans.demo import DEMO_CELL
from ssb_plans.studies import pressure_impedance_scan

CELL = {**DEMO_CELL, "cell_id": "ATTACH-1"}

if __name__ == "__main__":
    catalog, md_dir, prefix, heartbeat, mode = sys.argv[1:6]
    session = start_session(
        catalog, md_dir=md_dir, progress=False, context_managers=[], heartbeat=float(heartbeat)
    )
    session.describe_experiment(cell=CELL, purpose="failure mechanism", operator="tester")
    rig = Rig(prefix, name="rig")
    rig.wait_for_connection(timeout=10)
    session.RE.subscribe(lambda name, doc: print("acquiring", flush=True), "start")
    if mode == "run":
        plan = run_protocol(rig, Path(sys.argv[6]).read_text())
    elif mode == "scan":
        plan = pressure_impedance_scan(rig, [20.0, 40.0, 60.0, 80.0], settle=120.0)
    else:
        plan = attach(rig, session.catalog)
    session.RE(plan)
    session.close()
    rig.destroy()
