"""Pressure regulation through the instrument paths against the simulation served directly,
and the IOC's CPU per rig at 1x, side by side in one run.

    pip install -e ".[bench]"     # psutil, matplotlib
    python benchmarks/instruments.py [--hold 30] [--figure docs/figures/instruments.png]

Three rigs at 1x, one after the other, each from a client's point of view (caproto's
client, monitoring Press:Pressure-RB):

- ``simulation``: ``ssb-ioc --cell si-nmc`` (the press's own 1 kHz loop, simulated in the
  IOC);
- ``modbus-controller``: ``ssb-emulate rigs/emulated.toml`` + ``ssb-ioc --rig``: the
  controller closes the loop (the same simulated 1 kHz loop, behind Modbus TCP); the
  IOC writes the setpoint; the BTS cycler is followed too;
- ``modbus-ioc-loop``: ``rigs/emulated-ioc-loop.toml``: the IOC closes the loop at its
  20 Hz scan over Modbus (valve command to the drive, force from the amplifier).

For each: a step from 20 to 40 MPa (ramp rate 0): time to put-completion (settled: within
0.2 MPa for 1 s), overshoot; then ``--hold`` s at 40 MPa: RMS and peak error of the
measured pressure, and the CPU of the IOC (and of the emulator) per wall second, with a
1 mA charge running where there is a cycler.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import CA_ENV, RunningIOC, start_ioc  # noqa: E402  (sets the CA environment)

from ssb_ioc.launch import EmulatorProcess, rig_file_on_free_ports  # noqa: E402

PATHS = {
    "simulation": None,
    "modbus-controller": "emulated.toml",
    "modbus-ioc-loop": "emulated-ioc-loop.toml",
}


class Trace:
    """Pressure-RB as the client sees it: (wall time, MPa)."""

    def __init__(self, pv):
        self.points: list[tuple[float, float]] = []
        self._lock = threading.Lock()
        self.sub = pv.subscribe(data_type="time")
        self.sub.add_callback(self._on)

    def _on(self, sub, response):
        with self._lock:
            self.points.append((time.time(), float(response.data[0])))

    def between(self, start: float, end: float) -> np.ndarray:
        with self._lock:
            data = np.array(self.points)
        return data[(data[:, 0] >= start) & (data[:, 0] <= end)]


def cpu(process: psutil.Process | None) -> float:
    if process is None:
        return 0.0
    times = process.cpu_times()
    return times.user + times.system


def measure(name: str, template: str | None, context, hold: float, tmp: Path) -> dict:
    emulator = None
    if template is None:
        ioc = start_ioc(context, speed=1.0)
    else:
        path = rig_file_on_free_ports(ROOT / "rigs" / template, tmp / name)
        emulator = EmulatorProcess(path, speed=1.0).start()
        ioc = RunningIOC(context, extra_args=["--rig", path]).start()
    try:
        trace = Trace(ioc.pv("Press:Pressure-RB"))
        ioc.put("Press:RampRate-SP", 0.0)
        ioc.put("Press:Mode-SP", "Pressure")
        ioc.put("Press:Pressure-SP", 20.0, timeout=60)
        started = time.time()
        ioc.put("Press:Pressure-SP", 40.0, timeout=60)
        settled = time.time() - started
        if template != "emulated-ioc-loop.toml":
            ioc.put("Rig:CellCurrent-SP", 1e-3)  # the cycler followed while holding
        step = trace.between(started, time.time())
        procs = [psutil.Process(ioc.process.pid)]
        procs.append(psutil.Process(emulator.process.pid) if emulator else None)
        before, wall = [cpu(p) for p in procs], time.monotonic()
        held_from = time.time()
        deadline = time.monotonic() + hold
        while time.monotonic() < deadline:
            ioc.get("Rig:Time-RB")  # a client polling as a plan does, every 0.5 s
            time.sleep(0.5)
        wall = time.monotonic() - wall
        load = [(cpu(p) - b) / wall * 100 for p, b in zip(procs, before, strict=True)]
        error = trace.between(held_from, time.time())[:, 1] - 40.0
        return {
            "name": name,
            "settle_s": settled,
            "overshoot": float(step[:, 1].max() - 40.0) if len(step) else float("nan"),
            "rms": float(np.sqrt(np.mean(error**2))),
            "peak": float(np.abs(error).max()),
            "ioc_cpu": load[0],
            "emulator_cpu": load[1],
            "step": step - [started, 0.0],
            "rss_mb": procs[0].memory_info().rss / 1e6,
        }
    finally:
        ioc.stop()
        if emulator is not None:
            emulator.stop()


def figure(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2), constrained_layout=True)
    for r in results:
        label = f"{r['name']} (settled {r['settle_s']:.1f} s)"
        ax.plot(r["step"][:, 0], r["step"][:, 1], label=label)
    ax.axhline(40.0, color="0.6", lw=0.8, ls="--")
    ax.set_xlabel("time since the 20 -> 40 MPa step was put (s, wall clock at 1x)")
    ax.set_ylabel("Press:Pressure-RB (MPa)")
    ax.set_title("A pressure step through each path, as a client sees it")
    ax.legend(frameon=False)
    fig.savefig(path, dpi=130)
    print(f"figure: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hold", type=float, default=30.0, help="s held at 40 MPa")
    parser.add_argument("--figure", type=Path, default=None)
    parser.add_argument("--only", nargs="+", choices=list(PATHS), help="measure these paths")
    args = parser.parse_args()
    from caproto.threading.client import Context

    context = Context()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, template in PATHS.items():
            if args.only and name not in args.only:
                continue
            (Path(tmp) / name).mkdir()
            results.append(measure(name, template, context, args.hold, Path(tmp)))
            r = results[-1]
            print(f"{name}: settled in {r['settle_s']:.2f} s", flush=True)
    print(f"\nCA on port {CA_ENV['EPICS_CA_SERVER_PORT']}; 1x; hold {args.hold:g} s at 40 MPa")
    print(
        "| path | step 20->40 MPa settled (s) | overshoot (MPa) | hold RMS error (MPa) "
        "| hold peak error (MPa) | IOC CPU (% of a core) | emulator CPU | IOC RSS (MB) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    base = results[0]
    for r in results:
        print(
            f"| {r['name']} | {r['settle_s']:.2f} ({r['settle_s'] / base['settle_s']:.2f}x) "
            f"| {r['overshoot']:.2f} | {r['rms']:.3f} | {r['peak']:.3f} "
            f"| {r['ioc_cpu']:.1f} ({r['ioc_cpu'] / base['ioc_cpu']:.2f}x) "
            f"| {r['emulator_cpu']:.1f} | {r['rss_mb']:.0f} |"
        )
    if args.figure:
        figure(results, args.figure)
    context.disconnect()


if __name__ == "__main__":
    main()
