"""The simulation's speed on two source trees, side by side: did a change cost speed?

Runs the scenarios of ``sim_speed.py`` on an earlier tree and on this one, alternately in
fresh processes (each imports its own tree through a folder of links with the import
names, ahead of the editable install), several rounds; reports each tree's medians and
the ratio this / earlier per round, since the machine's load moves both alike.

    git archive <commit> | tar -x -C /tmp/earlier
    python benchmarks/compare_trees.py /tmp/earlier [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

PROBE = """
import json, sys
sys.path.insert(0, {bench!r})
import sim_speed as s
runs = {{
    "hold 100 MPa, C/2 cycling": lambda: s.cycling_hold(True, 4 * 3600.0),
    "hold 100 MPa, every loop period stepped": lambda: s.cycling_hold(False, 20.0),
    "ramps 20<->150 MPa at 2 MPa/s": lambda: s.ramps(1800.0),
    "gap mode, C/2 charge": lambda: s.gap_mode(4 * 3600.0),
}}
import ssb_ioc
print(json.dumps({{"where": ssb_ioc.__file__, **{{k: f() for k, f in runs.items()}}}}))
"""


def link_tree(source: Path, into: Path) -> Path:
    """A folder of links named as Python imports the packages of ``source``."""
    folders = tomllib.loads((source / "pyproject.toml").read_text())["tool"]["setuptools"]
    for name, folder in folders["package-dir"].items():
        (into / name).symlink_to(source / folder, target_is_directory=True)
    return into


def run_on(tree: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(bench=str(HERE))],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    where = Path(result.pop("where"))
    if not str(where).startswith(str(tree)):  # the editable install answered instead
        raise RuntimeError(f"{tree}: ssb_ioc came from {where}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("earlier", type=Path, help="source tree to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        trees: dict[str, Path] = {}
        for name, source in (("earlier", args.earlier.resolve()), ("this", ROOT)):
            folder = Path(tmp, name)
            folder.mkdir()
            trees[name] = link_tree(source, folder)
        results: dict[str, list[dict]] = {name: [] for name in trees}
        for _ in range(args.rounds):
            for name, tree in trees.items():  # alternate: load changes hit both alike
                results[name].append(run_on(tree))
    scenarios = list(results["this"][0])
    print("| scenario | earlier (median x) | this (median x) | this / earlier, per round |")
    print("|---|---:|---:|---|")
    for scenario in scenarios:
        before = [r[scenario] for r in results["earlier"]]
        after = [r[scenario] for r in results["this"]]
        ratios = ", ".join(f"{a / b:.2f}" for a, b in zip(after, before, strict=True))
        print(
            f"| {scenario} | {statistics.median(before):,.0f} | "
            f"{statistics.median(after):,.0f} | {ratios} |"
        )


if __name__ == "__main__":
    main()
