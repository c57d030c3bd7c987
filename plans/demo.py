"""``ssb demo``: an accelerated pressure experiment on the simulated rig, end to end.

Starts ``ssb-ioc`` on loopback (random prefix, free port), ramps a silicon cell to
100 MPa, holds it there while the cell charges (so it breathes and the loop has work to
do), steps the pressure down, stores the run in the local catalog and reads it back for
the summary. Leaves no process behind, also on Ctrl-C.
"""

from __future__ import annotations

import getpass
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.utils import MsgGenerator

from ssb_devices import Rig
from ssb_ioc.launch import IOCProcess, free_port_pair, loopback_ca_env

from .pressure import at_ramp_rate, hold_recording, move_recording, start_metadata

DEMO_CELL = {
    "cell_id": "demo-si-nmc",
    "chemistry": "NMC811 | Li6PS5Cl | Si-C composite",
    "area_cm2": 0.785,
    "layers_um": {"cathode": 60.0, "separator": 500.0, "anode": 40.0},
    "capacity_mAh": 2.0,
    "preset": "si-nmc",
}


def demo_experiment(
    rig: Rig,
    *,
    peak: float = 100.0,
    ramp_rate: float = 1.0,
    hold: float = 3600.0,
    steps: Sequence[float] = (75.0, 50.0, 25.0),
    step_hold: float = 600.0,
    current: float = 1e-3,
    interval: float = 60.0,
    md: dict[str, Any] | None = None,
) -> MsgGenerator[str]:
    """One run: ramp to ``peak`` MPa at ``ramp_rate`` MPa/s, hold ``hold`` s while the
    cell charges at ``current`` A, then step down through ``steps`` holding ``step_hold``
    s at each; recording every ``interval`` s of experiment time."""
    args = {
        "peak": peak,
        "ramp_rate": ramp_rate,
        "hold": hold,
        "steps": list(steps),
        "step_hold": step_hold,
        "current": current,
        "interval": interval,
    }
    _md = start_metadata(rig, "demo_experiment", args, md)

    @bpp.stage_decorator([rig])
    @bpp.run_decorator(md=_md)
    def inner():
        def experiment():
            yield from move_recording(rig, peak, interval)
            yield from bps.mv(rig.current, current)
            yield from hold_recording(rig, hold, interval)
            for pressure in steps:
                yield from move_recording(rig, pressure, interval)
                yield from hold_recording(rig, step_hold, interval)

        def leave_safe():  # cell at rest; the press keeps holding whatever it holds
            yield from bps.mv(rig.current, 0.0)

        yield from bpp.finalize_wrapper(at_ramp_rate(rig, ramp_rate, experiment()), leave_safe())

    return (yield from inner())


class Progress:
    """One status line per event: share of the planned experiment time done, pressure,
    gap and voltage. Redraws in place on a terminal, prints every 10 % otherwise."""

    def __init__(self, planned: float, stream=sys.stderr):
        self.planned, self.stream = planned, stream
        self.tty = stream.isatty()
        self.t0: float | None = None
        self.shown = -1

    def __call__(self, name: str, doc: dict) -> None:
        if name != "event":
            return
        data = doc["data"]
        t = data["rig_clock_time"]
        self.t0 = t if self.t0 is None else self.t0
        done = min((t - self.t0) / self.planned, 1.0)
        bar = "#" * int(done * 30)
        line = (
            f"[{bar:<30s}] {done:4.0%}  t={(t - self.t0) / 3600:5.2f} h  "
            f"P={data['rig_press_readback']:7.2f} MPa  gap={data['rig_press_gap']:7.2f} um"
            f"  V={data['rig_voltage']:.3f} V"
        )
        if self.tty:
            self.stream.write("\r" + line)
        elif int(done * 10) > self.shown:
            self.shown = int(done * 10)
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")


def summary(run, peak: float) -> str:
    """Key numbers, computed from the run as stored in the catalog."""
    ds = run.primary.read()
    t = ds["rig_clock_time"].values
    p = ds["rig_press_readback"].values
    gap = ds["rig_press_gap"].values
    target = ds["rig_press_setpoint"].values
    held = (ds["rig_current"].values > 0) & (abs(target - peak) < 1e-9)  # hold at peak
    lines = [f"  {len(t)} readings over {(t[-1] - t[0]) / 3600:.2f} h of experiment time"]
    if held.any():
        err = p[held] - peak
        lines.append(
            f"  hold at {peak:g} MPa while charging: pressure error "
            f"{math.sqrt((err**2).mean()):.3f} MPa RMS, "
            f"{abs(err).max():.3f} MPa peak"
        )
        lines.append(
            f"  the cell breathed: gap grew {gap[held].max() - gap[held].min():.2f} um "
            "at constant pressure"
        )
    return "\n".join(lines)


def run_demo(
    *, speed: float = 600.0, catalog: str | None = None, cell: str = "si-nmc", hold: float = 3600.0
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
        planned = 100.0 + hold + 3 * 600.0 + 60.0
        progress = Progress(planned)
        token = session.RE.subscribe(progress)
        try:
            (uid,) = session.RE(demo_experiment(rig, hold=hold))
        except RunEngineInterrupted:
            progress.close()
            # A user's abort is not an error: keep bluesky from printing a traceback.
            logging.getLogger("bluesky").setLevel(logging.CRITICAL)
            session.RE.abort(reason="interrupted by the user (Ctrl-C)")
            print(
                "ssb demo: interrupted; the run was closed as aborted, its data kept",
                file=sys.stderr,
            )
            return 130
        finally:
            session.RE.unsubscribe(token)
        progress.close()
        run = session.catalog[uid]
        print(
            f"ssb demo: run {uid} (scan {run.start['scan_id']}) stored, "
            f"exit status {run.stop['exit_status']}"
        )
        print(summary(run, peak=100.0))
        rig.destroy()
    print(f"ssb demo: done in {time.monotonic() - wall0:.1f} s wall time. Read it back:")
    print(f"  ssb show {uid[:8]} --catalog {session.location}")
    print(
        '  python -c "from ssb_analysis.catalog import open_catalog; '
        f"print(open_catalog('{session.location}')['{uid[:8]}'].primary.read())\""
    )
    return 0
