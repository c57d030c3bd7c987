"""``ssb demo``: a silicon cell cycled under pressure on the simulated rig, end to end.

Starts ``ssb-ioc`` on loopback (random prefix, free port) and runs two protocols, each
one Bluesky run stored in the local catalog: the cell cycled at a constant 100 MPa (the
press holds the pressure while the stack breathes), then the same cell in a fixed gap
(the pressure swings instead). The summary and a figure are made from the catalog. Leaves
no process behind, also on Ctrl-C.
"""

from __future__ import annotations

import getpass
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

from ssb_analysis.catalog import is_server
from ssb_analysis.figures import cycling_figure, samples, save
from ssb_analysis.report import write_report
from ssb_devices import Rig
from ssb_ioc.launch import IOCProcess, free_port_pair, loopback_ca_env

from .cycling import run_protocol
from .progress import ProtocolProgress

DEMO_CELL = {
    "cell_id": "demo-si-nmc",
    "chemistry": "NMC811 | Li6PS5Cl | Si-C composite",
    "area_cm2": 0.785,
    "layers_um": {"cathode": 60.0, "separator": 500.0, "anode": 40.0},
    "capacity_mAh": 2.0,
    "preset": "si-nmc",
}


def constant_pressure_protocol(cycles: int) -> str:
    return f"""\
# Si | LPSCl | NMC811 cycled at constant stack pressure
Set pressure to 100 MPa
Repeat {cycles} times:
    Charge at C/2 until 4.1 V
    Hold at 4.1 V until C/20
    Rest for 10 minutes
    Discharge at C/2 until 3.0 V
Measure impedance from 100 kHz to 100 mHz
"""


FIXED_GAP_PROTOCOL = """\
# the same cell in a fixed gap: the pressure follows the stack
Set pressure to 100 MPa
Hold gap
Charge at C/2 until 4.1 V
Hold at 4.1 V until C/20
Discharge at C/2 until 3.0 V
Set pressure to 100 MPa
"""


def reports_dir(location: str) -> Path:
    """Beside a local catalog; in the working directory for a Tiled server."""
    return Path("ssb-reports") if is_server(location) else Path(location) / "reports"


def summary(constant, fixed_gap) -> str:
    """Key numbers, computed from the runs as stored in the catalog."""
    steps = constant["steps"].read()
    lines = []
    for cycle in sorted(set(int(c) for c in steps["step_cycle"].values) - {0}):
        mask = steps["step_cycle"].values == cycle
        charged = steps["step_charge"].values[mask].sum()
        discharged = steps["step_discharge"].values[mask].sum()
        lines.append(
            f"  cycle {cycle}: charged {charged:.3f} mAh, discharged {discharged:.3f} mAh, "
            f"coulombic efficiency {discharged / charged:.1%}"
        )
    a = samples(constant)
    cycling = a["cycle"] >= 1
    err = a["pressure"][cycling] - 100.0
    breathing = np.ptp(a["gap"][cycling])
    lines.append(
        f"  at constant 100 MPa: pressure error {np.sqrt((err**2).mean()):.3f} MPa RMS, "
        f"{np.abs(err).max():.3f} MPa peak, while the stack breathed {breathing:.1f} um"
    )
    b = samples(fixed_gap)
    electro = (b["step"] >= 3) & (b["step"] <= 5)
    swing = np.ptp(b["pressure"][electro])
    lines.append(
        f"  in a fixed gap: the pressure swung {swing:.1f} MPa "
        f"({b['pressure'][electro].min():.1f} to {b['pressure'][electro].max():.1f} MPa), "
        f"{swing / max(np.abs(err).max(), 1e-9):.0f}x the constant-pressure peak error"
    )
    eis = constant["impedance"].read()
    if len(eis["frequency"]):
        z = eis["z_real"].values
        lines.append(
            f"  impedance at {eis['spectrum_pressure'].values[0]:.0f} MPa: "
            f"{z[0]:.1f} ohm (bulk) to {z[-1]:.1f} ohm (bulk + interface + polarisation)"
        )
    return "\n".join(lines)


def run_demo(
    *, speed: float = 5000.0, catalog: str | None = None, cell: str = "si-nmc", cycles: int = 2
) -> int:
    """Run the demo; returns a process exit code."""
    from bluesky.utils import RunEngineInterrupted

    from .session import start_session

    wall0 = time.monotonic()
    env = loopback_ca_env(free_port_pair())
    os.environ.update(env)  # this process's CA client talks to our IOC only
    print(
        f"ssb demo: starting the simulated rig (cell {cell}, x{speed:g} real time, "
        f"Channel Access on 127.0.0.1:{env['EPICS_CA_SERVER_PORT']})",
        flush=True,
    )
    with IOCProcess(env=env, cell=cell, speed=speed, seed=0) as ioc:
        print(f"ssb demo: IOC pid {ioc.process.pid}, PV prefix {ioc.prefix}", flush=True)
        session = start_session(catalog, progress=False)
        print(f"ssb demo: catalog {session.location}", flush=True)
        session.describe_experiment(
            cell={**DEMO_CELL, "preset": cell},
            purpose="material analysis",
            operator=getpass.getuser() or "demo",
        )
        rig = Rig(ioc.prefix, name="rig")
        rig.wait_for_connection(timeout=10)
        rig.load_cell.tare().wait(10)  # press is Off at start: zero the load cell
        token = session.RE.subscribe(ProtocolProgress())
        uids = []
        try:
            for title, protocol in [
                (
                    f"{cycles} cycle{'s' * (cycles != 1)} at constant 100 MPa",
                    constant_pressure_protocol(cycles),
                ),
                ("one cycle in a fixed gap", FIXED_GAP_PROTOCOL),
            ]:
                print(f"ssb demo: {title}", file=sys.stderr, flush=True)
                (uid,) = session.RE(run_protocol(rig, protocol, md={"demo": title}))
                uids.append(uid)
        except RunEngineInterrupted:
            # A user's abort is not an error: keep bluesky from printing a traceback.
            logging.getLogger("bluesky").setLevel(logging.CRITICAL)
            session.RE.abort(reason="interrupted by the user (Ctrl-C)")
            print(
                "ssb demo: interrupted; the cell was left at open circuit and the run "
                "closed as aborted, its data kept",
                file=sys.stderr,
            )
            return 130
        finally:
            session.RE.unsubscribe(token)
        runs = [session.catalog[uid] for uid in uids]
        for run in runs:
            print(
                f"ssb demo: run {run.start['uid'][:8]} (scan {run.start['scan_id']}, "
                f"{run.start['demo']}) stored, exit status {run.stop['exit_status']}"
            )
        print(summary(*runs))
        figure = save(
            cycling_figure(
                runs,
                ["constant 100 MPa", "fixed gap"],
                title=f"{DEMO_CELL['chemistry']}: constant pressure vs fixed gap",
            ),
            reports_dir(session.location) / f"demo-{uids[0][:8]}.png",
        )
        print(f"ssb demo: figure {figure}")
        print(f"ssb demo: report {write_report(runs[0], reports_dir(session.location))}")
        rig.destroy()
    print(f"ssb demo: done in {time.monotonic() - wall0:.1f} s wall time. Read it back:")
    print(f"  ssb show {uids[0][:8]} --catalog {session.location}")
    print(f"  ssb export {uids[0][:8]} --format bdf --catalog {session.location}")
    return 0
