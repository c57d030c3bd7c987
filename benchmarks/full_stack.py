"""A 10-cycle C/5 protocol (about 100 simulated hours) through the whole stack: the IOC
subprocess, Channel Access, ophyd, the RunEngine and the catalog; wall time against the
experiment time, against the simulation alone (``sim_speed.py``'s figure).

    python benchmarks/full_stack.py [--rounds 2] [--speed 100000]

Every logged sample (every 10 s and every 5 mV) is stored; the run is read back to count
them. Rounds run one after another on fresh IOCs; medians and spread.
"""

from __future__ import annotations

import argparse
import statistics
import time

from stack import rig_session

PROTOCOL = """\
Set pressure to 100 MPa
Repeat 10 times:
    Charge at C/5 until 4.1 V
    Rest for 10 minutes
    Discharge at C/5 until 3.0 V
    Rest for 10 minutes
"""


def one_round(speed: float, figure: str | None) -> dict[str, float]:
    from ssb_analysis.figures import cycling_figure, save
    from ssb_plans.cycling import run_protocol

    with rig_session(speed) as (_, rig, session, _):
        t0 = time.perf_counter()
        (uid,) = session.RE(run_protocol(rig, PROTOCOL))
        wall = time.perf_counter() - t0
        run = session.catalog[uid]
        hours = float(run["steps"].read()["step_duration"].values.sum()) / 3600
        samples = len(run["samples"].read()["time"])
        if figure:  # the run as stored, from the catalog
            title = f"10 cycles at C/5 through the whole stack: {wall:.0f} s of wall time"
            save(cycling_figure([run], ["si-nmc, 100 MPa"], title=title), figure)
    return {"wall": wall, "hours": hours, "samples": samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--speed", type=float, default=100_000.0, help="IOC speed factor")
    parser.add_argument("--figure", default="docs/figures/full_stack.png")
    args = parser.parse_args()
    rounds = []
    for k in range(args.rounds):
        r = one_round(args.speed, args.figure if k == 0 else None)
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
    print(f"\nfigure: {args.figure}")


if __name__ == "__main__":
    main()
