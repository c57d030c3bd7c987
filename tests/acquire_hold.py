"""Acquire a very long pressure hold into a catalog until killed.

Run by tests/test_catalog_live.py as a separate process:
``python tests/acquire_hold.py CATALOG MD_DIR PREFIX [HEARTBEAT_S]``.
"""

import sys

from ssb_devices import Rig
from ssb_plans import hold_pressure, start_session
from ssb_plans.demo import DEMO_CELL

CELL = {**DEMO_CELL, "cell_id": "LIVE-1"}

if __name__ == "__main__":
    catalog, md_dir, prefix = sys.argv[1:4]
    heartbeat = float(sys.argv[4]) if len(sys.argv) > 4 else 10.0
    session = start_session(
        catalog, md_dir=md_dir, progress=False, context_managers=[], heartbeat=heartbeat
    )
    session.describe_experiment(cell=CELL, purpose="failure mechanism", operator="tester")
    rig = Rig(prefix, name="rig")
    rig.wait_for_connection(timeout=10)
    print("acquiring", flush=True)
    session.RE(hold_pressure(rig, 1e7, pressure=30.0, interval=5.0))
