"""Resident memory of the IOC and of the acquiring process over an accelerated two-week
experiment through the whole stack; the growth must flatten.

    pip install -e ".[bench]"    # psutil
    python benchmarks/long_run.py [--days 14] [--speed 100000] [--figure docs/figures/long_run.png]

C/2 cycles at 100 MPa for about ``--days`` of experiment time in one ``run_protocol`` run,
every logged sample stored (a sample every ``--log-period`` s and every 5 mV; the bulk
path stores ~2,700 samples/s, which sets the wall time). A thread samples the resident set
size (RSS) of the IOC subprocess and of this process, with the IOC's clock, every 0.5 s of
wall time. Slopes in MB per simulated day over the first and the second half: flattening
= the second much smaller.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import numpy as np
from stack import rig_session


def slope(days: np.ndarray, mb: np.ndarray) -> float:
    return float(np.polyfit(days, mb, 1)[0]) if len(days) > 2 else float("nan")


def main() -> None:
    import psutil

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=14.0)
    parser.add_argument("--speed", type=float, default=100_000.0)
    parser.add_argument("--log-period", type=float, default=60.0, help="s between samples")
    parser.add_argument("--figure", default="docs/figures/long_run.png")
    args = parser.parse_args()
    from ssb_plans.cycling import run_protocol

    cycles = round(args.days * 24 / 4.2)  # a C/2 cycle with its CV tail: ~4.2 h
    protocol = (
        f"Set pressure to 100 MPa\nRepeat {cycles} times:\n"
        "    Charge at C/2 until 4.1 V\n    Discharge at C/2 until 3.0 V\n"
    )
    with rig_session(args.speed) as (ioc, rig, session, _):
        rig.cycler.log_period.put(args.log_period, wait=True)
        server, client = psutil.Process(ioc.process.pid), psutil.Process()
        trace: list[tuple[float, float, float]] = []
        done = threading.Event()

        def sample():
            while not done.wait(0.5):
                t = float(rig.clock.time.get(use_monitor=False))
                trace.append((t, server.memory_info().rss / 1e6, client.memory_info().rss / 1e6))

        sampler = threading.Thread(target=sample, daemon=True)
        t0 = time.perf_counter()
        sampler.start()
        (uid,) = session.RE(run_protocol(rig, protocol))
        done.set()
        sampler.join()
        wall = time.perf_counter() - t0
        samples = len(session.catalog[uid]["samples"].read()["time"])
    t, ioc_mb, client_mb = (np.array(col) for col in zip(*trace, strict=True))
    days = (t - t[0]) / 86400
    half = days >= days[-1] / 2
    print(
        f"{days[-1]:.1f} days of experiment ({cycles} C/2 cycles) in {wall:.0f} s wall, "
        f"{samples:,} samples stored, {len(t)} memory readings"
    )
    print("| process | RSS start (MB) | RSS end (MB) | slope 1st half (MB/day) | 2nd half |")
    print("|---|---:|---:|---:|---:|")
    for name, mb in (("IOC (ssb-ioc)", ioc_mb), ("acquiring (RunEngine + writer)", client_mb)):
        print(
            f"| {name} | {mb[0]:.0f} | {mb[-1]:.0f} | {slope(days[~half], mb[~half]):.2f} | "
            f"{slope(days[half], mb[half]):.2f} |"
        )
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    ax.plot(days, ioc_mb, label="IOC (ssb-ioc)")
    ax.plot(days, client_mb, label="acquiring process")
    ax.set_xlabel("experiment time / days")
    ax.set_ylabel("resident memory / MB")
    ax.set_title(f"{days[-1]:.0f} days of C/2 cycling at {args.speed:g}x, every sample stored")
    ax.legend()
    ax.grid(alpha=0.3)
    Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.figure, dpi=110)
    print(f"\nfigure: {args.figure}")


if __name__ == "__main__":
    main()
