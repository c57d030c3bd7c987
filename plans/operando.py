"""``ssb demo --operando``: the pressed cell cycling in the beam of a diffraction detector.

Starts the simulated rig (``ssb-ioc``) and, in its own process as at a beamline, the
simulated strip detector whose sample is the rig's cell (``ssb-ioc --xrd``). One charge
and discharge at a constant 100 MPa, with a pattern every few minutes of experiment time
and at every step's start, the cell held at open circuit during each exposure; one run in
the local catalog. The operando figures and the lattice fitted per frame are made from the
catalog alone (``ssb report`` makes the same for any run that holds frames).
"""

from __future__ import annotations

import getpass
import os
import sys
import time

import numpy as np

from ssb_analysis import diffraction
from ssb_analysis.report import write_report
from ssb_devices import DiffractionDetector, Rig
from ssb_ioc.launch import DetectorProcess, IOCProcess, free_port_pair, loopback_ca_env

from .cycling import run_protocol
from .demo import DEMO_CELL, reports_dir
from .progress import ProtocolProgress

OPERANDO_PROTOCOL = """\
# Si | LPSCl | NMC811 in the beam: one charge and discharge at constant stack pressure
Set pressure to 100 MPa
Charge at C/2 until 4.1 V
Rest for 10 minutes
Discharge at C/2 until 3.0 V
"""
PATTERN_EVERY = 300.0  # s of experiment time between patterns
EXPOSURE = 60.0  # s of experiment time per pattern


def run_operando_demo(*, speed: float = 2000.0, catalog: str | None = None) -> int:
    """Run the operando demo; returns a process exit code."""
    from bluesky.utils import RunEngineInterrupted

    from .session import run_uid, start_session

    wall0 = time.monotonic()
    port = free_port_pair()
    env = loopback_ca_env(port)
    os.environ.update(env)
    print(f"ssb demo --operando: the rig (x{speed:g}) and a diffraction detector on "
          f"Channel Access, 127.0.0.1:{port} and :{port + 2}", flush=True)  # fmt: skip
    with (
        IOCProcess(env=env, speed=speed, seed=0) as rig_ioc,
        DetectorProcess(rig_ioc.prefix, port, seed=0) as detector_ioc,
    ):
        print(f"ssb demo --operando: IOC pid {rig_ioc.pid}, detector pid "
              f"{detector_ioc.pid}, prefixes {rig_ioc.prefix} and "
              f"{detector_ioc.prefix}", flush=True)  # fmt: skip
        session = start_session(catalog, progress=False)
        print(f"ssb demo --operando: catalog {session.location}", flush=True)
        session.describe_experiment(
            cell=DEMO_CELL, purpose="material analysis", operator=getpass.getuser() or "demo"
        )
        rig = Rig(rig_ioc.prefix, name="rig")
        xrd = DiffractionDetector(detector_ioc.prefix, name="xrd")
        rig.wait_for_connection(timeout=10)
        xrd.wait_for_connection(timeout=10)
        rig.load_cell.tare().wait(10)
        xrd.acquire_time.set(EXPOSURE).wait(10)
        token = session.RE.subscribe(ProtocolProgress())
        try:
            uid = run_uid(
                session.RE(
                    run_protocol(
                        rig,
                        OPERANDO_PROTOCOL,
                        detectors=[xrd],
                        detector_period=PATTERN_EVERY,
                        open_circuit_reads=True,
                        poll=0.1,  # s of wall time: 200 s of experiment time at x2000
                        md={"demo": "operando diffraction"},
                    )
                )
            )
        except RunEngineInterrupted:
            session.RE.abort(reason="interrupted by the user (Ctrl-C)")
            print("ssb demo --operando: interrupted; the run closed as aborted, its frames "
                  "kept", file=sys.stderr)  # fmt: skip
            return 130
        finally:
            session.RE.unsubscribe(token)
        run = session.catalog[uid]
        print(summary(run))
        page = write_report(run, reports_dir(session.location))
        print(f"ssb demo --operando: report {page} (operando.png, lattice.png)")
        rig.destroy()
        xrd.destroy()
    print(f"ssb demo --operando: done in {time.monotonic() - wall0:.1f} s wall time")
    return 0


def summary(run) -> str:
    """What the frames say, from the catalog."""
    fr = diffraction.frames_of(run)
    fit = diffraction.lattice(fr)
    top, charged = int(np.nanargmax(fit.c)), int(np.nanargmax(fr.charge))
    return "\n".join([
        f"  run {run.start['uid'][:8]}: {len(fr.counts)} patterns of {fr.exposure:g} s "
        f"({fr.detector}, {len(fr.two_theta)} strips, λ = {fr.wavelength:g} Å), "
        f"exit status {run.stop['exit_status']}",
        f"  c: {fit.c[0]:.4f} ± {fit.c_sigma[0]:.4f} Å at the start, largest "
        f"{fit.c[top]:.4f} Å after {fr.charge[top]:.2f} mAh, {fit.c[charged]:.4f} Å "
        f"at the top of charge ({np.nanmax(fr.charge):.2f} mAh), {fit.c[-1]:.4f} Å at the end",
        f"  a: {np.nanmax(fit.a):.4f} to {np.nanmin(fit.a):.4f} Å",
    ])  # fmt: skip
