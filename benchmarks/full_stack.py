"""A 10-cycle C/5 protocol (about 100 simulated hours) through the whole stack: the IOC
subprocess, Channel Access, ophyd, the RunEngine and the catalog; wall time against the
experiment time, against the simulation alone (``sim_speed.py``'s figure).

    python benchmarks/full_stack.py [--rounds 2] [--speed 100000]

Every logged sample (every 10 s and every 5 mV) is stored; the run is read back to count
them. Rounds run one after another on fresh IOCs; medians and spread.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from ssb_ioc.launch import IOCProcess, free_port_pair, loopback_ca_env

PROTOCOL = """\
Set pressure to 100 MPa
Repeat 10 times:
    Charge at C/5 until 4.1 V
    Rest for 10 minutes
    Discharge at C/5 until 3.0 V
    Rest for 10 minutes
"""


def one_round(speed: float) -> dict[str, float]:
    env = loopback_ca_env(free_port_pair())
    os.environ.update(env)
    from ssb_devices import Rig
    from ssb_plans import start_session
    from ssb_plans.cycling import run_protocol
    from ssb_plans.demo import DEMO_CELL

    with IOCProcess(env=env, speed=speed, seed=0) as ioc, tempfile.TemporaryDirectory() as tmp:
        rig = Rig(ioc.prefix, name="rig")
        rig.wait_for_connection(timeout=10)
        session = start_session(os.path.join(tmp, "catalog"), progress=False)
        session.describe_experiment(cell=DEMO_CELL, purpose="material analysis", operator="bench")
        t0 = time.perf_counter()
        (uid,) = session.RE(run_protocol(rig, PROTOCOL))
        wall = time.perf_counter() - t0
        run = session.catalog[uid]
        steps = run["steps"].read()
        hours = float(steps["step_duration"].values.sum()) / 3600
        samples = len(run["samples"].read()["time"])
        session.close()
        rig.destroy()
    return {"wall": wall, "hours": hours, "samples": samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--speed", type=float, default=100_000.0, help="IOC speed factor")
    args = parser.parse_args()
    rounds = []
    for k in range(args.rounds):
        r = one_round(args.speed)
        rounds.append(r)
        print(
            f"round {k + 1}: {r['hours']:.1f} h of experiment in {r['wall']:.1f} s wall "
            f"({r['hours'] * 3600 / r['wall']:,.0f}x), {r['samples']:,} samples stored"
        )
    walls = [r["wall"] for r in rounds]
    speeds = [r["hours"] * 3600 / r["wall"] for r in rounds]
    print(
        f"\n10 cycles at C/5, {statistics.median(r['hours'] for r in rounds):.1f} h: wall "
        f"{statistics.median(walls):.1f} s (min {min(walls):.1f}, max {max(walls):.1f}); "
        f"{statistics.median(speeds):,.0f}x real time through the whole stack; target < 120 s"
    )


if __name__ == "__main__":
    main()
