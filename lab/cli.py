"""``ssb lab up | status | down``: a lab of several rigs on this machine."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .layout import DEFAULT_BASE_PORT, MAX_RIGS, default_directory


def add_parser(sub) -> None:
    """The ``lab`` command and its three verbs, under ``ssb``."""
    lab = sub.add_parser(
        "lab",
        help="start, show or stop a lab of several rigs (IOCs, queues, catalog, overview)",
        description=__doc__,
    )
    verbs = lab.add_subparsers(dest="verb", required=True)
    where = {"help": f"the lab's directory (default: $SSB_LAB or {default_directory()})"}
    up = verbs.add_parser("up", help="start a lab; returns once every part answers")
    up.add_argument("--dir", **where)
    up.add_argument("--rigs", type=int, default=2, help=f"rigs, 1..{MAX_RIGS} (default 2)")
    up.add_argument(
        "--base-port",
        type=int,
        default=DEFAULT_BASE_PORT,
        help=f"first of the lab's ports (default {DEFAULT_BASE_PORT}): PostgreSQL B, Redis B+1, "
        "Tiled B+2, overview B+3, rig i from B+10i",
    )
    up.add_argument("--speed", type=float, default=1.0, help="simulated clock (default 1x)")
    up.add_argument("--cell", default="si-nmc", help="cell preset or file of every rig")
    up.add_argument(
        "--emulate",
        metavar="RIG.toml",
        help="serve each rig's instruments with ssb-emulate behind their wire protocols "
        "(rigs/emulated.toml), driven by ssb-ioc --rig, instead of the simulation",
    )
    status = verbs.add_parser("status", help="each part, its address and whether it runs")
    status.add_argument("--dir", **where)
    down = verbs.add_parser("down", help="stop every part the lab started, nothing else")
    down.add_argument("--dir", **where)


def run(args: argparse.Namespace) -> int:
    from .stack import LabError, down, format_status, status, up

    directory = Path(args.dir) if args.dir else default_directory()
    try:
        if args.verb == "up":
            if not 0 < args.speed <= 1e5:
                raise LabError(f"--speed must be in (0, 100000], got {args.speed}")
            layout = up(
                directory,
                args.rigs,
                base_port=args.base_port,
                speed=args.speed,
                cell=args.cell,
                emulate=Path(args.emulate) if args.emulate else None,
            )
            print(
                f"lab up in {layout.directory}: overview {layout.overview_uri}, "
                f"keys in {layout.keys}; `ssb lab down` stops it"
            )
            return 0
        if args.verb == "status":
            rows = status(directory)
            print(format_status(rows))
            return 0 if all(r.running for r in rows) else 3
        stopped = down(directory)
        print(f"lab in {directory}: {stopped} parts stopped")
        return 0
    except (LabError, ValueError, OSError, RuntimeError) as ex:
        print(f"ssb lab {args.verb}: {ex}", file=sys.stderr)
        return 1
