"""Simulation speed of the whole rig: simulated seconds per wall second (speed factor).

Scenarios run alternately in one process, several rounds; we report medians and the
spread, and the ratio of the default integration to stepping every loop period.

    python benchmarks/sim_speed.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

from ssb_ioc.sim import Rig, load_cell_file

TICK = 500.0  # s of experiment time per IOC scan at 10,000x (50 ms scans)


def held_rig(allow_linear: bool, pressure: float = 100.0) -> Rig:
    rig = Rig(load_cell_file("si-nmc"), seed=0)
    rig.set_mode("Pressure")
    rig.set_pressure(pressure)
    rig.advance(5.0)
    rig.press.allow_linear = allow_linear
    return rig


def cycling_hold(allow_linear: bool, seconds: float, pressure: float = 100.0) -> float:
    """Hold a pressure while the silicon cell charges/discharges at C/2 (current flips
    hourly)."""
    rig = held_rig(allow_linear, pressure)
    step = TICK if allow_linear else 1.0
    t0 = time.perf_counter()
    done = 0.0
    while done < seconds:
        rig.set_current(1e-3 if (done // 3600) % 2 == 0 else -1e-3)
        rig.advance(step)
        done += step
    return seconds / (time.perf_counter() - t0)


def ramps(seconds: float) -> float:
    """Ramp 20 <-> 150 MPa at 2 MPa/s back and forth while cycling."""
    rig = held_rig(True)
    rig.set_ramp_rate(2.0)
    rig.set_current(1e-3)
    t0 = time.perf_counter()
    done, up = 0.0, True
    while done < seconds:
        if rig.press.settled:
            rig.set_pressure(150.0 if up else 20.0)
            up = not up
        rig.advance(10.0)
        done += 10.0
    return seconds / (time.perf_counter() - t0)


def gap_mode(seconds: float) -> float:
    rig = held_rig(True)
    rig.set_mode("Gap")
    rig.set_current(1e-3)
    t0 = time.perf_counter()
    for _ in range(int(seconds / TICK)):
        rig.advance(TICK)
    return seconds / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--figure", default="docs/figures/sim_speed.png")
    args = parser.parse_args()
    scenarios = {
        "hold 100 MPa, C/2 cycling (default)": lambda: cycling_hold(True, 4 * 3600.0),
        "hold 100 MPa, C/2 cycling, every loop period stepped": lambda: cycling_hold(False, 20.0),
        "hold 5 MPa, C/2 cycling (default)": lambda: cycling_hold(True, 4 * 3600.0, 5.0),
        "ramps 20<->150 MPa at 2 MPa/s (default)": lambda: ramps(1800.0),
        "gap mode, C/2 charge (default)": lambda: gap_mode(4 * 3600.0),
    }
    results: dict[str, list[float]] = {name: [] for name in scenarios}
    for _ in range(args.rounds):
        for name, run in scenarios.items():  # alternate, so load changes hit all alike
            results[name].append(run())
    print("| scenario | speed factor (median) | min | max |")
    print("|---|---:|---:|---:|")
    for name, values in results.items():
        print(
            f"| {name} | {statistics.median(values):,.0f} | {min(values):,.0f} | "
            f"{max(values):,.0f} |"
        )
    ratio = [
        a / b
        for a, b in zip(
            results["hold 100 MPa, C/2 cycling (default)"],
            results["hold 100 MPa, C/2 cycling, every loop period stepped"],
            strict=True,
        )
    ]
    print(
        f"\ndefault / every-period ratio: median {statistics.median(ratio):,.0f}x "
        f"(min {min(ratio):,.0f}x, max {max(ratio):,.0f}x)"
    )
    figure(results, args.figure)


def figure(results: dict[str, list[float]], path: str) -> None:
    from pathlib import Path

    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4), layout="constrained")
    ax = fig.subplots()
    names = list(results)
    ax.barh(names, [statistics.median(v) for v in results.values()], color="tab:blue")
    ax.errorbar(
        [statistics.median(v) for v in results.values()],
        names,
        xerr=[
            [statistics.median(v) - min(v) for v in results.values()],
            [max(v) - statistics.median(v) for v in results.values()],
        ],
        fmt="none",
        color="k",
    )
    ax.axvline(10_000, color="k", ls=":", label="10,000x")
    ax.set_xscale("log")
    ax.set_xlabel("simulated seconds per wall second (whole rig, one core)")
    ax.invert_yaxis()
    ax.legend()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"\nfigure: {path}")


if __name__ == "__main__":
    main()
