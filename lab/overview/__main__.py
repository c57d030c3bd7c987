"""``python -m ssb_lab.overview --dir LAB``: serve the overview page of a running lab
(``ssb lab up`` starts it; the lab's ``lab.json`` says where every rig is)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ssb_lab.overview", description=__doc__)
    parser.add_argument("--dir", required=True, help="the lab directory")
    args = parser.parse_args(argv)
    from ..stack import layout_of, read_state

    directory = Path(args.dir).resolve()
    state = read_state(directory)
    if state is None:
        print(f"no lab in {directory}", file=sys.stderr)
        return 1
    layout = layout_of(directory, state)
    rigs = layout.all_rigs()
    # Every rig's IOC is on a port of its own: search them all, on loopback only.
    os.environ.update(
        EPICS_CA_ADDR_LIST=" ".join(f"127.0.0.1:{rig.ca_port}" for rig in rigs),
        EPICS_CA_AUTO_ADDR_LIST="NO",
    )
    import matplotlib
    import uvicorn

    matplotlib.use("Agg")
    from .app import Figures, build_app
    from .monitor import LabMonitor

    monitor = LabMonitor(rigs, directory)
    figures = Figures(
        layout.tiled_uri, os.environ.get("SSB_CATALOG_API_KEY"), directory / "overview-cache"
    )
    try:
        uvicorn.run(
            build_app(monitor, figures),
            host="127.0.0.1",
            port=layout.overview_port,
            log_level="warning",
        )
    finally:
        monitor.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
