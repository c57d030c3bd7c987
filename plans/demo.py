"""``ssb demo``: a silicon cell cycled under pressure on the simulated rig, end to end.

Starts ``ssb-ioc`` on loopback (random prefix, free port) and runs three protocols, each
one Bluesky run stored in the local catalog: the cell cycled at a constant 100 MPa (the
press holds the pressure while the stack breathes), the same cell in a fixed gap (the
pressure swings instead), and a failure watch: a charge during which the simulation
injects a pressure spike and a soft short; the IOC detects both, the plan reads the rig
at the spike and ends the run safely at the short. The summary, a figure and reports are
made from the catalog. Leaves no process behind, also on Ctrl-C.
"""

from __future__ import annotations

import getpass
import logging
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

from ssb_analysis.catalog import is_server
from ssb_analysis.figures import cycling_figure, samples, save
from ssb_analysis.report import write_report
from ssb_devices import FaultInjector, Rig
from ssb_ioc.launch import IOCProcess, free_port_pair, loopback_ca_env

from .cycling import run_protocol
from .events import EndedOnEvent
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


FAILURE_WATCH_PROTOCOL = """\
# failure watch: a charge at 100 MPa while the simulation injects faults
Set pressure to 100 MPa
Charge at C/2 for 1 hour
Rest for 10 minutes
"""
FAILURE_REACTIONS = {"pressure_spike": "read", "soft_short": "end"}


class FaultSchedule:
    """A RunEngine callback: once the charge (step 2) of the failure watch logs its first
    samples, schedule a 2 um stack-thickness step 15 minutes (experiment time) later and a
    soft short at 30 minutes, on the IOC's clock. Puts go from a thread: callbacks run on
    the RunEngine's loop."""

    def __init__(self, prefix: str):
        self.faults = FaultInjector(prefix, name="faults")
        self.faults.wait_for_connection(timeout=10)
        self.done = False

    def __call__(self, name: str, doc: dict) -> None:
        if self.done or name != "event_page" or 2 not in doc["data"].get("step", []):
            return
        self.done = True
        start = max(doc["data"]["test_time"])
        threading.Thread(target=self._schedule, args=(start,), daemon=True).start()

    def _schedule(self, start: float) -> None:
        self.faults.inject("PressureSpike", 2.0, at=start + 900.0).wait(10)
        self.faults.inject("SoftShort", 1e-4, at=start + 1800.0).wait(10)


def events_summary(run) -> str:
    from ssb_analysis.figures import events
    from ssb_analysis.timebase import hours_since_start

    ev = events(run)
    lines = [
        f"  failure watch: {ev['kind'][k]} of {ev['magnitude'][k]:.3g} {ev['unit'][k]} at "
        f"t = {hours_since_start(run, ev['time'][k]):.2f} h into the run, detected by the "
        f"{ev['source'][k]}, reaction "
        f"{ev['reaction'][k]}"
        for k in range(len(ev.get("time", [])))
    ]
    return "\n".join(lines) or "  failure watch: no event detected"


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

    from .session import run_uid, start_session

    wall0 = time.monotonic()
    env = loopback_ca_env(free_port_pair())
    os.environ.update(env)  # this process's CA client talks to our IOC only
    print(
        f"ssb demo: starting the simulated rig (cell {cell}, x{speed:g} real time, "
        f"Channel Access on 127.0.0.1:{env['EPICS_CA_SERVER_PORT']})",
        flush=True,
    )
    with IOCProcess(env=env, cell=cell, speed=speed, seed=0) as ioc:
        print(f"ssb demo: IOC pid {ioc.pid}, PV prefix {ioc.prefix}", flush=True)
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
                uid = run_uid(session.RE(run_protocol(rig, protocol, md={"demo": title})))
                uids.append(uid)
            title = "failure watch (faults injected)"
            print(f"ssb demo: {title}", file=sys.stderr, flush=True)
            watch = run_protocol(
                rig,
                FAILURE_WATCH_PROTOCOL,
                reactions=FAILURE_REACTIONS,
                poll=0.05,  # collect often: the faults are scheduled from the samples
                md={"demo": title},
            )
            faults = session.RE.subscribe(FaultSchedule(ioc.prefix))
            bluesky_log = logging.getLogger("bluesky")
            level, bluesky_log.level = bluesky_log.level, logging.CRITICAL  # expected end
            try:
                session.RE(watch)
            except EndedOnEvent as ex:
                print(f"ssb demo: {ex} (as asked: soft_short -> end)", file=sys.stderr)
            finally:
                bluesky_log.setLevel(level)
                session.RE.unsubscribe(faults)
            uids.append(session.catalog[-1].start["uid"])
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
        print(summary(*runs[:2]))
        print(events_summary(runs[2]))
        figure = save(
            cycling_figure(
                runs[:2],
                ["constant 100 MPa", "fixed gap"],
                title=f"{DEMO_CELL['chemistry']}: constant pressure vs fixed gap",
            ),
            reports_dir(session.location) / f"demo-{uids[0][:8]}.png",
        )
        print(f"ssb demo: figure {figure}")
        for run in runs:  # constant pressure, fixed gap, failure watch
            print(f"ssb demo: report {write_report(run, reports_dir(session.location))}")
        rig.destroy()
    print(f"ssb demo: done in {time.monotonic() - wall0:.1f} s wall time. Read it back:")
    print(f"  ssb show {uids[0][:8]} --catalog {session.location}")
    print(f"  ssb export {uids[0][:8]} --format bdf --catalog {session.location}")
    return 0
