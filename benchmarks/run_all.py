"""Run every benchmark of issue 6, one after another, and keep their output.

    pip install -e ".[test,bench]"
    python benchmarks/run_all.py [--out docs/benchmark-output.txt]

Regulation, IOC comparison (and put latency without TCP_NODELAY on the rig's own
monitors), data path (with the 1,000,000-sample run), simulation speed, the 10-cycle
protocol through the whole stack, and the two-week memory run; figures go to
``docs/figures/``. About 12 minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
BENCHMARKS = [
    ["regulation.py"],
    ["ioc_compare.py"],
    ["put_latency.py"],
    ["data_path.py", "--million"],
    ["sim_speed.py", "--rounds", "3"],
    ["full_stack.py"],
    ["long_run.py"],
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/benchmark-output.txt")
    args = parser.parse_args()
    failed = 0
    with open(args.out, "w") as out:
        start = time.monotonic()
        for bench in BENCHMARKS:
            command = [sys.executable, str(HERE / bench[0]), *bench[1:]]
            banner = f"\n$ python benchmarks/{' '.join(bench)}\n"
            print(banner, flush=True)
            out.write(banner)
            t0 = time.monotonic()
            result = subprocess.run(command, capture_output=True, text=True)
            out.write(result.stdout)
            print(result.stdout, flush=True)
            if result.returncode:
                failed += 1
                print(result.stderr[-3000:], file=sys.stderr)
                out.write(f"FAILED ({result.returncode}):\n{result.stderr[-3000:]}\n")
            note = f"({time.monotonic() - t0:.0f} s)\n"
            print(note)
            out.write(note)
        total = f"\nall benchmarks: {time.monotonic() - start:.0f} s wall\n"
        print(total)
        out.write(total)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
