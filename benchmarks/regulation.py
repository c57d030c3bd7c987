"""Pressure regulation of the default loop while a silicon cell breathes, against a
constant-gap fixture in the same simulation.

    python benchmarks/regulation.py

Error = true stack pressure - setpoint, with the load cell tared first. Two samplings:
every second of a full C-rate charge + discharge (the default integration), and every
loop period (1 ms) over 60 s of charge (every period stepped, the reference).
"""

from __future__ import annotations

import math

import numpy as np

from ssb_ioc.sim import Rig, load_cell_file

SETPOINT = 100.0


def rig_at(mode: str, seed: int = 0) -> Rig:
    rig = Rig(load_cell_file("si-nmc"), seed=seed)
    rig.tare()
    rig.set_mode("Pressure")
    rig.set_pressure(SETPOINT)
    rig.advance(5.0)
    if mode == "Gap":
        rig.set_mode("Gap")
    return rig


def full_cycle(mode: str, c_rate: float) -> np.ndarray:
    rig = rig_at(mode)
    current = c_rate * rig.params.cell.capacity * 1e-3
    pressures = []
    for sign in (1.0, -1.0):
        rig.set_current(sign * current)
        for _ in range(int(3600 / c_rate)):
            rig.advance(1.0)
            pressures.append(rig.press.true_pressure)
    return np.array(pressures)


def every_period(c_rate: float, seconds: float = 60.0) -> np.ndarray:
    rig = rig_at("Pressure")
    rig.press.allow_linear = False
    rig.set_current(c_rate * rig.params.cell.capacity * 1e-3)
    out = []
    for _ in range(int(seconds * 1000)):
        rig.advance(0.001)
        out.append(rig.press.true_pressure)
    return np.array(out)


def main() -> None:
    print(
        "| C-rate | loop RMS error (% of SP) | loop peak error (%) | "
        "loop RMS, every 1 ms (%) | gap fixture swing (MPa) | swing / loop peak |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for c_rate in (0.5, 1.0):
        loop = full_cycle("Pressure", c_rate) - SETPOINT
        gap = full_cycle("Gap", c_rate)
        fine = every_period(c_rate) - SETPOINT
        rms = math.sqrt(np.mean(loop**2)) / SETPOINT * 100
        peak = np.max(np.abs(loop)) / SETPOINT * 100
        rms_fine = math.sqrt(np.mean(fine**2)) / SETPOINT * 100
        swing = gap.max() - gap.min()
        ratio = swing / (peak * SETPOINT / 100)
        print(
            f"| {c_rate:g}C | {rms:.3f} | {peak:.3f} | {rms_fine:.3f} | {swing:.2f} | "
            f"{ratio:,.0f} |"
        )


if __name__ == "__main__":
    main()
