"""Wall time from launching ``ssb-ioc`` to its PVs being live, and to a clean SIGTERM exit.

python benchmarks/startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

from ssb_ioc.launch import IOCProcess, free_port_pair, loopback_ca_env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    env = loopback_ca_env(free_port_pair())
    ready, stopped = [], []
    for _ in range(args.runs):
        ioc = IOCProcess(env=env)
        t0 = time.perf_counter()
        ioc.start()
        ready.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        code = ioc.stop()
        stopped.append(time.perf_counter() - t0)
        assert code == 0, ioc.stderr
    print("| step | median (s) | min | max |")
    print("|---|---:|---:|---:|")
    for name, values in (("launch to ready", ready), ("SIGTERM to exit 0", stopped)):
        print(
            f"| {name} | {statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f} |"
        )


if __name__ == "__main__":
    main()
