"""A long protocol through everything that must not stop it, on an emulated rig.

    sudo python benchmarks/chaos.py [--days 3] [--speed 1000]

``ssb-emulate``'s instruments (rigs/emulated.toml: a Modbus press controller and a BTS
cycler channel) at ``--speed``, ``ssb-ioc --rig`` driving them, and ``ssb run`` acquiring
a ``--days`` long cycling protocol into a catalog on a 40 MB tmpfs (root: it mounts one).
While it runs, in order:

1. a second client (another catalog) tries to start a protocol on the same rig;
2. the press controller stutters (replies slower than the 0.5 s timeout, about 1 s long);
3. the press controller drops off the network for longer than the link timeout (5 s);
4. the catalog's disk fills (the acquisition detaches), then is freed;
5. ``ssb attach`` takes the acquisition up and is killed with SIGKILL mid-protocol;
6. ``ssb attach`` again, to the end.

It prints what each did, then checks that the protocol reached its end on the instrument
and that every sample from the protocol's start to its end is stored exactly once across
the chain of runs. Exit status 1 if not.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from caproto.threading.client import Context  # noqa: E402
from conftest import CA_ENV, RunningIOC  # noqa: E402  (sets the CA environment)

from ssb_analysis.catalog import open_catalog  # noqa: E402
from ssb_analysis.runs import chain_of  # noqa: E402
from ssb_ioc.backends.rigfile import load_rig_file  # noqa: E402
from ssb_ioc.emulate import EmulatorThread  # noqa: E402
from ssb_ioc.launch import rig_file_on_free_ports  # noqa: E402

CELL = (
    'cell_id = "CHAOS-1"\nchemistry = "NMC811 | LPSCl | Si"\narea_cm2 = 0.785\n'
    "capacity_mAh = 2.0\n[layers_um]\ncathode = 60\nseparator = 500\nanode = 40\n"
)


def protocol(days: float) -> str:
    cycles = max(int(days * 24 / 4), 1)  # 2 h charge + 2 h discharge per cycle
    return (
        "# Chaos: cycling under pressure through everything that must not stop it\n"
        "Set pressure to 20 MPa\n"
        f"Repeat {cycles} times:\n"
        "    Charge at 0.3 mA for 2 hours\n"
        "    Discharge at 0.3 mA for 2 hours\n"
    )


class Chaos:
    def __init__(self, ioc: RunningIOC, emulator: EmulatorThread, tmp: Path, catalog: Path):
        self.ioc, self.emulator, self.tmp, self.catalog = ioc, emulator, tmp, catalog
        self.env = {**os.environ, **CA_ENV, "XDG_DATA_HOME": str(tmp / "home")}
        self.start = time.monotonic()

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.start:6.1f} s, t = "
              f"{self.ioc.get('Rig:Time-RB') / 3600:6.2f} h] {text}", flush=True)  # fmt: skip

    def ssb(self, *args: str, catalog: Path | None = None) -> subprocess.Popen:
        command = [sys.executable, "-m", "ssb_plans.cli", *args, "--prefix", self.ioc.prefix,
                   "--catalog", str(catalog or self.catalog)]  # fmt: skip
        return subprocess.Popen(command, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip

    def state(self) -> str:
        return self.ioc.enum("Seq:State-RB")

    def wait(self, predicate, timeout: float, what: str) -> None:
        self.ioc.wait_for(predicate, timeout, what)

    def step_later(self, steps: int, timeout: float = 300) -> None:
        now = self.ioc.get("Seq:Step-RB")
        self.wait(lambda: self.ioc.get("Seq:Step-RB") >= now + steps or self.state() != "Running",
                  timeout, "steps")  # fmt: skip


def runs_in(catalog: Path) -> int:
    stored = open_catalog(catalog)
    try:
        return len(stored)
    finally:
        stored.context.close()


def one_line(process: subprocess.Popen, timeout: float) -> tuple[int, str]:
    out, err = process.communicate(timeout=timeout)
    lines = (out + err).splitlines()
    said = [line for line in lines if line.startswith(("ssb ", "run ended"))]
    return process.returncode, (said[-1] if said else (lines or [""])[-1])


def run(days: float, speed: float, tmp: Path) -> int:
    disk = tmp / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(disk)], check=True)
    (tmp / "cell.toml").write_text(CELL)
    (tmp / "p.txt").write_text(protocol(days))
    (tmp / "other.txt").write_text("Rest for 1 hour\n")
    path = rig_file_on_free_ports(ROOT / "rigs" / "emulated.toml", tmp)
    context = Context()
    try:
        with EmulatorThread(load_rig_file(path), speed=speed, seed=1) as emulator:
            ioc = RunningIOC(context, extra_args=["--rig", path]).start()
            try:
                return chaos(Chaos(ioc, emulator, tmp, disk / "catalog"), days, speed)
            finally:
                ioc.stop()
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def chaos(c: Chaos, days: float, speed: float) -> int:
    ioc, tmp = c.ioc, c.tmp
    c.say(f"ssb run: a {days:g}-day protocol at {speed:g}x, catalog on a 40 MB tmpfs")
    first = c.ssb("run", str(tmp / "p.txt"), "--cell", str(tmp / "cell.toml"))
    c.wait(lambda: ioc.enum("Cyc:Running-RB") == "Yes", 120, "the first charge")
    key = ioc.get("Seq:OwnerKey-RB")

    c.say("1. a second client, another catalog, tries to start a protocol")
    code, said = one_line(c.ssb("run", str(tmp / "other.txt"), "--cell", str(tmp / "cell.toml"),
                                catalog=tmp / "other"), 120)  # fmt: skip
    untouched = c.state() == "Running" and ioc.get("Seq:OwnerKey-RB") == key
    c.say(f"   refused (exit {code}): {said[:150]}; first protocol untouched: {untouched}")

    c.say("2. the press controller stutters (replies later than the 0.5 s timeout)")
    missed = ioc.get("Rig:MissedReplies-RB")
    c.emulator.fault("press", "slow", delay=1.0)
    c.wait(lambda: ioc.get("Rig:MissedReplies-RB") >= missed + 2, 20, "missed replies")
    c.emulator.fault("press", "")
    c.wait(lambda: ioc.enum("Rig:Link-RB") == "OK", 20, "the link back")
    c.say(f"   {ioc.get('Rig:MissedReplies-RB') - missed} replies missed; protocol "
          f"{c.state()}, press {ioc.enum('Press:Mode-RB')}")  # fmt: skip

    c.say("3. the press controller drops off the network for longer than 5 s")
    c.emulator.fault("press", "drop")
    c.wait(lambda: c.state() == "Paused", 30, "the protocol paused")
    c.say(f"   link {ioc.enum('Rig:Link-RB')}, press {ioc.enum('Press:Mode-RB')}, protocol "
          "paused by the IOC")  # fmt: skip
    c.emulator.fault("press", "")
    c.wait(lambda: c.state() == "Running", 60, "the protocol going on")
    c.say(f"   link back: protocol {c.state()}, press {ioc.enum('Press:Mode-RB')}")

    c.say("4. the catalog's disk fills")
    filler = c.catalog.parent / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M"], capture_output=True)
    code, said = one_line(first, 300)
    c.say(f"   ssb run exit {code}: {said[:160]}; protocol {c.state()}")
    filler.unlink()
    c.say("   disk freed")

    c.say("5. ssb attach takes it up; killed with SIGKILL a step after its run opened")
    attach = c.ssb("attach")
    c.wait(lambda: runs_in(c.catalog) == 2, 120, "the continuation's run")
    c.step_later(1)
    attach.send_signal(signal.SIGKILL)
    attach.wait()
    c.say(f"   killed; protocol {c.state()}")

    c.say("6. ssb attach again, to the end")
    code, said = one_line(c.ssb("attach"), 3600)
    c.say(f"   ssb attach exit {code}: {said[:160]}; protocol {c.state()}")
    return verdict(c)


def column(chain: list, stream: str, field: str) -> np.ndarray:
    """One field of a stream across a chain of runs (a run killed early may hold none)."""
    parts = [run[stream].read() for run in chain if stream in run]
    return np.concatenate([p[field].values for p in parts if field in p]).astype(int)


def verdict(c: Chaos) -> int:
    stored = open_catalog(c.catalog)
    chain = chain_of(stored, stored[-1])
    seq = column(chain, "samples", "seq")
    sampled_steps = column(chain, "samples", "step")
    total = int(c.ioc.get("Seq:Steps-RB"))
    done = sorted(set(column(chain, "steps", "step_step").tolist()))
    twice = len(seq) - len(set(seq.tolist()))
    missing = int(seq.max() - seq.min() + 1) - len(set(seq.tolist()))
    ok = (c.state() == "Done" and twice == 0 and missing == 0
          and sampled_steps.max() == total and done == list(range(1, total + 1)))  # fmt: skip
    print(f"\nprotocol on the instrument: {c.state()}; runs in the chain: {len(chain)} "
          f"({', '.join(r.stop['exit_status'] for r in chain)})")  # fmt: skip
    print(f"samples stored: {len(seq):,} (seq {seq.min()}..{seq.max()}), stored twice: "
          f"{twice}, missing: {missing}; steps recorded: {len(done)} of {total}")  # fmt: skip
    print(f"replies missed in all: {c.ioc.get('Rig:MissedReplies-RB')}; wall time "
          f"{time.monotonic() - c.start:.0f} s")  # fmt: skip
    print("PASS" if ok else "FAIL")
    stored.context.close()
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=float, default=3.0)
    parser.add_argument("--speed", type=float, default=1000.0)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("chaos.py mounts a small tmpfs for the catalog: run it as root", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        return run(args.days, args.speed, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
