"""Pressure regulation of the default loop while a silicon cell breathes, against a
constant-gap fixture and spring fixtures in the same simulation.

    python benchmarks/regulation.py [--seeds 3] [--figure docs/figures/regulation.png]

A si-nmc cell (2 mAh, Si swells ~15 um on a full charge) is charged and discharged at C/2
and at 1C, starting from 100 MPa, held by: the constant-pressure loop (the IOC's
default), a locked piston (constant gap: a plain clamp), or a locked piston acting through
a spring (a spring-loaded fixture; ``--springs`` in N/um, softer = less swing). Error =
true stack pressure - 100 MPa, every second of experiment time, load cell tared first;
for the loop also every loop period (1 ms) over 60 s of charge (every period stepped,
the reference integration). Each fixture runs with each seed (load-cell noise), in turn;
medians and spread over the seeds.
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

import numpy as np

from ssb_ioc.sim import Rig, load_cell_file

SETPOINT = 100.0


def rig_at(fixture: str, spring: float | None, seed: int) -> Rig:
    rig = Rig(load_cell_file("si-nmc"), seed=seed)
    rig.tare()
    rig.set_mode("Pressure")
    rig.set_pressure(SETPOINT)
    rig.advance(5.0)
    if fixture != "loop":
        rig.set_mode("Gap")
        rig.press.set_spring(spring)
    return rig


def full_cycle(fixture: str, spring: float | None, c_rate: float, seed: int) -> np.ndarray:
    rig = rig_at(fixture, spring, seed)
    current = c_rate * rig.params.cell.capacity * 1e-3
    pressures = []
    for sign in (1.0, -1.0):
        rig.set_current(sign * current)
        for _ in range(int(3600 / c_rate)):
            rig.advance(1.0)
            pressures.append(rig.press.true_pressure)
    return np.array(pressures)


def every_period(c_rate: float, seed: int, seconds: float = 60.0) -> np.ndarray:
    rig = rig_at("loop", None, seed)
    rig.press.allow_linear = False
    rig.set_current(c_rate * rig.params.cell.capacity * 1e-3)
    out = []
    for _ in range(int(seconds * 1000)):
        rig.advance(0.001)
        out.append(rig.press.true_pressure)
    return np.array(out)


def spread(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}..{max(values):{fmt}})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--springs", type=float, nargs="*", default=[50.0, 10.0])
    parser.add_argument("--figure", default="docs/figures/regulation.png")
    args = parser.parse_args()
    fixtures = [("loop", None), ("gap", None)] + [("spring", k) for k in args.springs]
    traces = {}
    print(
        "| C-rate | fixture | RMS error (% of SP) | peak error (% of SP) | swing (MPa) | "
        "fixture swing / loop peak |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for c_rate in (0.5, 1.0):
        results: dict[str, dict[str, list[float]]] = {}
        for seed in range(args.seeds):  # fixtures in turn, seed by seed
            for fixture, spring in fixtures:
                name = fixture if spring is None else f"spring {spring:g} N/um"
                p = full_cycle(fixture, spring, c_rate, seed)
                error = p - SETPOINT
                r = results.setdefault(name, {"rms": [], "peak": [], "swing": []})
                r["rms"].append(math.sqrt(np.mean(error**2)) / SETPOINT * 100)
                r["peak"].append(np.max(np.abs(error)) / SETPOINT * 100)
                r["swing"].append(float(p.max() - p.min()))
                if seed == 0 and c_rate == 0.5:
                    traces[name] = p
        loop_peaks = np.array(results["loop"]["peak"]) * SETPOINT / 100
        for name, r in results.items():
            ratio = (
                "" if name == "loop" else spread(list(np.array(r["swing"]) / loop_peaks), ",.0f")
            )
            print(
                f"| {c_rate:g}C | {name} | {spread(r['rms'], '.3f')} | "
                f"{spread(r['peak'], '.3f')} | {spread(r['swing'], '.2f')} | {ratio} |"
            )
        fine = [every_period(c_rate, seed) - SETPOINT for seed in range(args.seeds)]
        rms_fine = [math.sqrt(np.mean(f**2)) / SETPOINT * 100 for f in fine]
        peak_fine = [np.max(np.abs(f)) / SETPOINT * 100 for f in fine]
        print(
            f"| {c_rate:g}C | loop, every 1 ms over 60 s | {spread(rms_fine, '.3f')} | "
            f"{spread(peak_fine, '.3f')} | | |"
        )
    figure(traces, args.figure)


def figure(traces: dict[str, np.ndarray], path: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 5), layout="constrained")
    ax = fig.subplots()
    for name, p in traces.items():
        ax.plot(np.arange(len(p)) / 3600, p, label=name)
    ax.axhline(SETPOINT, color="k", lw=0.8, ls=":")
    ax.set_xlabel("experiment time / h (C/2 charge, then discharge)")
    ax.set_ylabel("stack pressure / MPa")
    ax.set_title("si-nmc held at 100 MPa: the loop against a clamp and spring fixtures")
    ax.legend()
    ax.grid(alpha=0.3)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"\nfigure: {path}")


if __name__ == "__main__":
    main()
