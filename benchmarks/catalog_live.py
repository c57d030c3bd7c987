"""How soon a second process sees a running experiment's data, and how much a SIGKILL of
the acquiring process loses.

    python benchmarks/catalog_live.py [--trials 3]

Per trial: an IOC at 100x, a separate process acquiring a pressure hold (a reading every
5 s of experiment time = 20 readings/s) into a fresh local catalog; this process polls the
catalog and reports (now - newest stored reading), then SIGKILLs the writer and reports
(kill time - newest stored reading).
"""

from __future__ import annotations

import argparse
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ssb_analysis.catalog import open_catalog
from ssb_ioc.launch import IOCProcess, free_port_pair, loopback_ca_env

ACQUIRE = Path(__file__).resolve().parents[1] / "tests" / "acquire_hold.py"


def newest(catalog_dir: Path) -> float | None:
    try:
        run = open_catalog(catalog_dir)[-1]
        return float(run.primary.read()["time"].values.max())
    except Exception:  # not written yet, or the writer holds the SQLite lock
        return None


def trial(env: dict, samples: int) -> tuple[list[float], float]:
    with IOCProcess(env=env, speed=100) as ioc, tempfile.TemporaryDirectory() as tmp:
        catalog_dir = Path(tmp) / "catalog"
        open_catalog(catalog_dir)
        writer = subprocess.Popen(
            [sys.executable, str(ACQUIRE), str(catalog_dir), str(Path(tmp) / "md"), ioc.prefix],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            select.select([writer.stdout], [], [], 60)
            writer.stdout.readline()
            lags = []
            while len(lags) < samples:
                t = newest(catalog_dir)
                if t is not None:
                    lags.append(time.time() - t)
            killed = time.time()
            writer.kill()
            writer.wait()
        finally:
            if writer.poll() is None:
                writer.kill()
            writer.stdout.close()
        return lags, killed - newest(catalog_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args()
    env = loopback_ca_env(free_port_pair())
    os.environ.update(env)
    lags, losses = [], []
    for _ in range(args.trials):
        lag, loss = trial(env, args.samples)
        lags += lag
        losses.append(loss)
    print("| measure | median (s) | max (s) | n |")
    print("|---|---:|---:|---:|")
    print(
        f"| reader lag: now - newest stored reading, while running | "
        f"{statistics.median(lags):.2f} | {max(lags):.2f} | {len(lags)} |"
    )
    print(
        f"| data lost by SIGKILL: kill time - newest stored reading | "
        f"{statistics.median(losses):.2f} | {max(losses):.2f} | {len(losses)} |"
    )


if __name__ == "__main__":
    main()
