"""Soak: a two-week protocol at high speed, the acquiring process killed with SIGKILL at
random moments and reattached each time, the IOC killed and restarted once: every sample
stored exactly once, no run left unclosed, memory flat.

    pip install -e ".[bench]"    # psutil, matplotlib
    python benchmarks/soak.py [--days 14] [--speed 10000] [--kills 6] [--seed 1]
                              [--figure docs/figures/soak.png]

The protocol runs on the IOC's sequencer; an acquiring process (``run_protocol``, then
``attach`` after each kill) follows it into a local catalog. The IOC keeps its sample
buffer in files and autosaves its settings and the sequence, so the restart holds the
sequence (press Off, cell at open circuit) until the next attach resumes it. At the end
the chain of linked runs is checked: sequence numbers contiguous and unique, every run
closed (each lost one with the reason), the biggest gap in experiment time between
stored samples. Resident memory of the IOC and of each acquiring process is sampled
every 0.5 s of wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HEARTBEAT = 1.0  # s: the acquiring process's heartbeat (orphaned after ~4 s)


def protocol_for(days: float) -> str:
    """C/2 cycles of at most 5 hours (time-limited steps: the length is known)."""
    cycles = max(1, round(days * 24 / 5.0))
    return (
        f"Set pressure to 80 MPa\nRepeat {cycles} times:\n"
        "    Charge at C/2 for 2 hours or until 4.1 V\n    Rest for 30 minutes\n"
        "    Discharge at C/2 for 2 hours or until 3.0 V\n    Rest for 30 minutes\n"
    )


def child(catalog: str, prefix: str, mode: str, protocol: str = "") -> None:
    """An acquiring process: ``run`` the protocol or ``attach`` to it."""
    from ssb_devices import Rig
    from ssb_plans import attach, start_session
    from ssb_plans.cycling import run_protocol
    from ssb_plans.demo import DEMO_CELL

    session = start_session(catalog, progress=False, heartbeat=HEARTBEAT)
    session.describe_experiment(cell=DEMO_CELL, purpose="failure mechanism", operator="soak")
    rig = Rig(prefix, name="rig")
    rig.wait_for_connection(timeout=20)
    session.RE.subscribe(lambda name, doc: print("acquiring", flush=True), "start")
    plan = run_protocol(rig, Path(protocol).read_text()) if mode == "run" else attach(rig)
    session.RE(plan)
    session.close()
    rig.destroy()


class Soak:
    def __init__(self, args, directory: Path):
        from ssb_ioc.launch import IOCProcess, free_port_pair, loopback_ca_env

        self.args, self.dir = args, directory
        self.env = loopback_ca_env(free_port_pair())
        os.environ.update(self.env)
        self.catalog = str(directory / "catalog")
        self.make_ioc = lambda prefix=None: IOCProcess(
            prefix, env=self.env, speed=args.speed, seed=0, autosave=directory / "autosave"
        )
        self.ioc = self.make_ioc().start()
        self.prefix = self.ioc.prefix
        self.proc: subprocess.Popen | None = None
        self.trace: list[tuple[float, float, float, float]] = []  # wall, t, IOC MB, client MB
        self.kills: list[tuple[float, str]] = []  # wall, what
        self.done = threading.Event()
        self.t0 = time.monotonic()

    def acquire(self, mode: str, protocol: str = "") -> None:
        os.environ["SSB_CATALOG"] = self.catalog
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "child", self.catalog, self.prefix, mode, protocol],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **self.env, "SSB_CATALOG": self.catalog},
        )
        line = self.proc.stdout.readline()
        if "acquiring" not in line:
            raise RuntimeError(f"acquisition did not start: {self.proc.stderr.read()}")

    def kill_client(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.kills.append((time.monotonic() - self.t0, "client"))

    def wait_orphaned(self) -> None:
        from ssb_analysis.catalog import open_catalog
        from ssb_analysis.runs import status

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            catalog = open_catalog(self.catalog)
            try:
                if status(catalog[-1]) != "running":
                    return
            finally:
                catalog.context.close()
            self.done.wait(0.5)  # a readiness poll of the catalog
        raise RuntimeError("the killed run never looked orphaned")

    def sample(self) -> None:
        import psutil
        from caproto.threading.client import Context

        context = Context()
        while not self.done.wait(0.5):
            try:
                (pv,) = context.get_pvs(self.prefix + "Rig:Time-RB", timeout=1)
                t = float(pv.read(timeout=1).data[0])
                ioc = psutil.Process(self.ioc.process.pid).memory_info().rss / 1e6
                client = psutil.Process(self.proc.pid).memory_info().rss / 1e6
            except Exception:  # between processes: no point
                continue
            self.trace.append((time.monotonic() - self.t0, t, ioc, client))
        context.disconnect()

    def sequence_state(self) -> str:
        from caproto import ChannelType
        from caproto.threading.client import Context

        context = Context()
        try:
            (pv,) = context.get_pvs(self.prefix + "Seq:State-RB", timeout=2)
            return pv.read(data_type=ChannelType.STRING, timeout=5).data[0].decode()
        finally:
            context.disconnect()

    def run(self) -> dict:
        args, rng = self.args, random.Random(self.args.seed)
        protocol = self.dir / "protocol.txt"
        protocol.write_text(protocol_for(args.days))
        sampler = threading.Thread(target=self.sample, daemon=True)
        sampler.start()
        self.acquire("run", str(protocol))
        restart_after = rng.randrange(1, args.kills)  # the IOC restart comes after this kill
        for k in range(args.kills):
            self.done.wait(rng.uniform(2.0, args.wall / (args.kills + 1)))
            if self.proc.poll() is not None:
                break  # the protocol ended before this kill
            self.kill_client()
            print(f"soak: killed the acquiring process ({k + 1}/{args.kills})", flush=True)
            self.wait_orphaned()
            if k + 1 == restart_after:
                self.ioc.process.kill()  # SIGKILL the IOC too, with nobody attached
                self.ioc.stop()
                self.kills.append((time.monotonic() - self.t0, "IOC"))
                self.ioc = self.make_ioc(self.prefix).start()
                print(f"soak: IOC killed and restarted: sequence {self.sequence_state()}")
            self.acquire("attach")
        code = self.proc.wait(timeout=3600)
        self.done.set()
        sampler.join()
        self.ioc.stop()
        if code != 0:
            raise RuntimeError(f"the last acquisition failed: {self.proc.stderr.read()}")
        return self.check()

    def check(self) -> dict:
        from ssb_analysis.catalog import open_catalog
        from ssb_analysis.runs import chain_of, stop_document

        catalog = open_catalog(self.catalog)
        runs = chain_of(catalog, catalog[-1])
        seqs, times = [], []
        for run in runs:
            if "samples" in run:
                data = run["samples"].read()
                if "seq" in data:
                    seqs.append(data["seq"].values)
                    times.append(data["test_time"].values)
        seq, t = np.concatenate(seqs), np.concatenate(times)
        for k, run_seqs in enumerate(seqs):
            print(f"run {k}: seq {run_seqs.min()}..{run_seqs.max()} ({len(run_seqs)})")
        stops = [stop_document(run) for run in runs]
        result = {
            "runs": len(runs),
            "samples": len(seq),
            "unique": len(np.unique(seq)) == len(seq),
            "contiguous": bool(np.all(np.diff(np.sort(seq)) == 1)),
            "unclosed": sum(s is None for s in stops),
            "statuses": [s.get("exit_status") for s in stops if s],
            "days": float((t.max() - t.min()) / 86400),
            "max_gap_s": float(np.diff(np.sort(t)).max()),
            "kills": self.kills,
        }
        catalog.context.close()
        return result


def figure(soak: Soak, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trace = np.asarray(soak.trace)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    top.plot(trace[:, 0], trace[:, 1] / 86400, color="tab:blue")
    top.set_ylabel("experiment time / days")
    bottom.plot(trace[:, 0], trace[:, 2], label="IOC", color="tab:red")
    bottom.plot(trace[:, 0], trace[:, 3], ".", ms=2, label="acquiring process", color="tab:green")
    bottom.set_ylabel("resident memory / MB")
    bottom.set_xlabel("wall time / s")
    for axis in (top, bottom):
        for when, what in soak.kills:
            axis.axvline(when, color="k" if what == "client" else "tab:red", lw=0.8, ls="--")
    bottom.legend(loc="center right")
    top.set_title("Soak: SIGKILL of the client (black) and of the IOC (red), reattached")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=14.0)
    parser.add_argument("--speed", type=float, default=10_000.0)
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--wall", type=float, default=0.0, help="s of wall time to spread over")
    parser.add_argument("--figure", default="docs/figures/soak.png")
    parser.add_argument("--keep", help="keep the catalog and autosave files under this directory")
    args = parser.parse_args()
    args.wall = args.wall or args.days * 86400 / args.speed * 0.8
    keep = contextlib.nullcontext(tempfile.mkdtemp(dir=args.keep)) if args.keep else None
    with keep or tempfile.TemporaryDirectory() as tmp:
        soak = Soak(args, Path(tmp))
        try:
            result = soak.run()
        finally:
            if soak.proc is not None and soak.proc.poll() is None:
                soak.proc.send_signal(signal.SIGTERM)
            soak.ioc.stop()
        for key, value in result.items():
            print(f"{key}: {value}")
        ioc_mb = np.asarray(soak.trace)[:, 2]
        half = len(ioc_mb) // 2
        first, second = ioc_mb[:half].max(), ioc_mb[half:].max()
        print(f"IOC RSS: largest {first:.0f} MB in the first half, {second:.0f} MB in the second")
        if args.figure:
            figure(soak, args.figure)
            print(f"figure: {args.figure}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child(*sys.argv[2:])
    else:
        main()
