"""Samples per second stored in the catalog: run_protocol's bulk collection (flyer pages)
against a per-sample ``trigger_and_read`` loop recording the same signals, same run of
this script, alternating; and the time to read back the largest run.

    python benchmarks/data_path.py [--rounds 3] [--seconds 5] [--speed 3000] [--million]

Bulk: C/5 charges and discharges filling ``--seconds`` of wall time, with the cycler
logging every simulation step (1 s of experiment time) at ``--speed`` (so the instrument
produces ~speed samples/s, more than the path stores: the buffer holds the backlog);
stored samples / wall time of the run, until the last sample is in the catalog. Naive:
for the same wall time, ``trigger_and_read`` of
the cycler's and the press's readbacks (the same 14 quantities) in a loop; stored events
/ wall time. Both into the same local catalog, each round alternating which goes first.

``--million``: a run whose ``samples`` stream holds 1,000,000 samples (1 s apart: 100,000
simulated from the cell cycling at C/5, repeated later in time, with the descriptor
``run_protocol`` writes) is written through the session's catalog writer in pages of
10,000 (documents composed with event-model without the per-item schema check that is
the bulk path's ceiling, see above); then the time to read the stream back, and the
run's size on disk.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from stack import rig_session

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


SIMULATED = 100_000  # samples simulated for the million-sample run, then repeated


def million_sample_run(session, directory: str, n: int = 1_000_000) -> None:
    """Write an ``n``-sample run through the catalog writer; time reading it back."""
    import numpy as np
    from event_model import compose_run

    from ssb_devices.cycler import INTEGER_FIELDS, SAMPLE_FIELDS
    from ssb_ioc.core.channel import Step, StepKind
    from ssb_ioc.sim import Rig, load_cell_file

    rig = Rig(load_cell_file("si-nmc"), seed=0)
    rig.set_mode("Pressure")
    rig.set_pressure(100.0)
    rig.advance(5.0)
    rig.cycler.log_period, rig.cycler.log_dv = 1.0, 0.0
    units = {"test_time": "s", "step_time": "s", "voltage": "V", "current": "A"}
    units |= {"pressure": "MPa", "force": "kN", "gap": "um"}
    keys = {
        f: {
            "source": f"PV:SIM:Cyc:Buf:{f}",
            "dtype": "integer" if f in INTEGER_FIELDS else "number",
            "shape": [],
            "units": units.get(f, "mAh" if "capacity" in f else "mWh" if "energy" in f else ""),
        }
        for f in SAMPLE_FIELDS
    }
    before = _size(directory)
    run = compose_run(metadata={"plan_name": "million_samples", "purpose": "benchmark"})
    writer = session.writer
    writer("start", run.start_doc)
    samples = run.compose_descriptor(name="samples", data_keys=keys)
    writer("descriptor", samples.descriptor_doc)
    t0, sign, cursor, simulated = time.perf_counter(), 1.0, rig.cycler.buffer.next_seq, []
    while sum(len(r) for r in simulated) < SIMULATED:
        rig.cycler.start(Step(StepKind.CC, current=sign * 4e-4))  # C/5, turned at 8,000 s
        rig.advance(8000.0)
        sign = -sign
        simulated.append(rig.cycler.buffer.since(cursor))
        cursor = rig.cycler.buffer.next_seq
    block = np.concatenate(simulated)[:SIMULATED]
    span = block[-1, 1] - block[0, 1] + 1.0
    written = 0
    while written < n:  # the simulated block again and again, later in time
        rows = block[: n - written].copy()
        rows[:, 0] = np.arange(written, written + len(rows))  # seq
        rows[:, 1] += span * (written // SIMULATED)  # test_time
        for page in np.array_split(rows, max(1, len(rows) // 10_000)):
            now = time.time()
            data = {f: page[:, i].tolist() for i, f in enumerate(SAMPLE_FIELDS)}
            for f in INTEGER_FIELDS:
                data[f] = [int(v) for v in data[f]]
            writer(
                "event_page",
                samples.compose_event_page(
                    data=data,
                    timestamps={f: [now] * len(page) for f in data},
                    seq_num=list(range(written + 1, written + len(page) + 1)),
                    time=[now] * len(page),
                    validate=False,  # schema-checked by construction; see the docstring
                ),
            )
            written += len(page)
    writer("stop", run.compose_stop())
    writer.flush()
    write_time = time.perf_counter() - t0
    t0 = time.perf_counter()
    data = session.catalog[run.start_doc["uid"]]["samples"].read()
    read_back = time.perf_counter() - t0
    size = _size(directory) - before
    print(
        f"million: {len(data['time']):,} samples x {len(data.data_vars)} fields written in "
        f"{write_time:.1f} s (simulating 100,000 included), read back in {read_back:.2f} s; "
        f"{size / 1e6:.1f} MB on disk ({size / len(data['time']):.0f} bytes/sample)"
    )


def _size(directory: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(directory) for f in fs)


def figure(bulk: list[float], per_sample: list[float], path: str) -> None:
    from pathlib import Path

    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.5), layout="constrained")
    ax = fig.subplots()
    names = ["run_protocol\n(flyer pages)", "trigger_and_read\nper sample"]
    values = [statistics.median(bulk), statistics.median(per_sample)]
    ax.barh(names, values, color=["tab:green", "tab:gray"])
    for k, runs in enumerate((bulk, per_sample)):
        ax.plot(runs, [k] * len(runs), "k.", label="rounds" if k == 0 else None)
    ax.set_xscale("log")
    ax.set_xlabel("samples stored in the catalog per wall second")
    ax.set_title(f"bulk / per-sample: {values[0] / values[1]:.0f}x")
    ax.invert_yaxis()
    ax.legend()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"figure: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="wall time per run")
    parser.add_argument("--speed", type=float, default=3000.0)
    parser.add_argument("--million", action="store_true", help="also a 1,000,000-sample run")
    parser.add_argument("--figure", default="docs/figures/data_path.png")
    args = parser.parse_args()

    from ssb_plans.cycling import run_protocol

    with rig_session(args.speed) as (_, rig, session, tmp):
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
        figure(bulk, per_sample, args.figure)
        if args.million:
            million_sample_run(session, tmp)
        size = _size(tmp)
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


if __name__ == "__main__":
    main()
