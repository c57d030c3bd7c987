"""Samples per second stored in the catalog: run_protocol's bulk collection (flyer pages)
against a per-sample ``trigger_and_read`` loop recording the same signals, same run of
this script, alternating; and the time to read back the largest run.

    python benchmarks/data_path.py [--rounds 3] [--seconds 5] [--speed 3000]

Bulk: C/5 charges and discharges filling ``--seconds`` of wall time, with the cycler
logging every simulation step (1 s of experiment time) at ``--speed`` (so the instrument
produces ~speed samples/s, more than the path stores: the buffer holds the backlog);
stored samples / wall time of the run, until the last sample is in the catalog. Naive:
for the same wall time, ``trigger_and_read`` of
the cycler's and the press's readbacks (the same 14 quantities) in a loop; stored events
/ wall time. Both into the same local catalog, each round alternating which goes first.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp

from ssb_ioc.launch import IOCProcess, free_port_pair, loopback_ca_env

NAIVE_SIGNALS = (
    "cycler.test_time",
    "cycler.step_time",
    "cycler.cycle_index",
    "cycler.step_index",
    "cycler.voltage",
    "cycler.current",
    "cycler.charge_capacity",
    "cycler.discharge_capacity",
    "cycler.charge_energy",
    "cycler.discharge_energy",
    "press.readback",
    "press.force",
    "press.gap",
)


def naive(rig, seconds: float, md: dict):
    """One event per reading of the same quantities, as fast as the RunEngine goes."""
    signals = []
    for path in NAIVE_SIGNALS:
        obj = rig
        for part in path.split("."):
            obj = getattr(obj, part)
        signals.append(obj)

    @bpp.run_decorator(md=md)
    def inner():
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            yield from bps.trigger_and_read(signals)

    return (yield from inner())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="wall time per run")
    parser.add_argument("--speed", type=float, default=3000.0)
    args = parser.parse_args()

    env = loopback_ca_env(free_port_pair())
    os.environ.update(env)
    from ssb_devices import Rig
    from ssb_plans import start_session
    from ssb_plans.cycling import run_protocol
    from ssb_plans.demo import DEMO_CELL

    with (
        IOCProcess(env=env, speed=args.speed, seed=0) as ioc,
        tempfile.TemporaryDirectory() as tmp,
    ):
        rig = Rig(ioc.prefix, name="rig")
        rig.wait_for_connection(timeout=10)
        session = start_session(os.path.join(tmp, "catalog"), progress=False)
        session.describe_experiment(cell=DEMO_CELL, purpose="material analysis", operator="bench")
        RE = session.RE
        rig.cycler.log_period.put(0.01, wait=True)  # every simulation step (1 s)
        RE(run_protocol(rig, "Set pressure to 100 MPa\n"))
        # 2 h at C/5 each way (0.8 mAh of the 2 mAh cell), as many as fill --seconds
        repeats = max(1, round(args.seconds * args.speed / (4 * 3600)))
        protocol = (
            f"Repeat {repeats} times:\n"
            "    Charge at C/5 for 2 hours\n    Discharge at C/5 for 2 hours\n"
        )
        bulk, per_sample, biggest = [], [], None
        for k in range(args.rounds):
            order = ["bulk", "naive"] if k % 2 == 0 else ["naive", "bulk"]
            for which in order:
                t0 = time.perf_counter()
                if which == "bulk":
                    (uid,) = RE(run_protocol(rig, protocol))
                else:
                    (uid,) = RE(naive(rig, args.seconds, {"plan_name": "naive"}))
                wall = time.perf_counter() - t0
                run = session.catalog[uid]
                stream = "samples" if which == "bulk" else "primary"
                n = len(run[stream].read()["time"])
                (bulk if which == "bulk" else per_sample).append(n / wall)
                if which == "bulk":
                    biggest = (uid, n)
                print(
                    f"round {k + 1} {which:5s}: {n:7d} stored in {wall:5.1f} s = {n / wall:8.0f}/s"
                )
        t0 = time.perf_counter()
        data = session.catalog[biggest[0]]["samples"].read()
        read_back = time.perf_counter() - t0
        session.close()
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(tmp) for f in fs)
        ratios = [b / n for b, n in zip(bulk, per_sample, strict=True)]
        print()
        print(
            f"bulk (run_protocol) samples/s: median {statistics.median(bulk):.0f} "
            f"(min {min(bulk):.0f}, max {max(bulk):.0f})"
        )
        print(
            f"per-sample trigger_and_read events/s: median {statistics.median(per_sample):.0f} "
            f"(min {min(per_sample):.0f}, max {max(per_sample):.0f})"
        )
        print(
            f"ratio bulk / per-sample: median {statistics.median(ratios):.1f}x "
            f"(min {min(ratios):.1f}x, max {max(ratios):.1f}x)"
        )
        print(
            f"read back {len(data['time'])} samples x {len(data.data_vars)} fields in "
            f"{read_back:.2f} s; catalog on disk {size / 1e6:.1f} MB for all runs"
        )
        rig.destroy()


if __name__ == "__main__":
    main()
