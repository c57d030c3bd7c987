"""``ssb``: the demo, protocols, and the catalog from the shell.

ssb demo                 run an accelerated experiment on the simulated rig
ssb demo --operando      the cell in the beam of a simulated diffraction detector
ssb run PROTOCOL_FILE    run a protocol against a running IOC (--cell, --prefix)
ssb runs [--cell-id ID]  list (and search) runs in the catalog
ssb show RUN             a run's metadata and streams (RUN: scan id, uid or -1)
ssb export RUN           write a run as BDF, CSV or Parquet files
ssb report RUN           figures and a Markdown page with the key numbers
ssb lab up|status|down   a lab of several rigs: queues, a PostgreSQL catalog, an overview
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Only what builds the parser: each command imports what it needs when it runs, so
# `ssb --help` answers at once.
from ssb_analysis.catalog import CatalogUnreachable, default_location, is_server
from ssb_analysis.export import FORMATS
from ssb_analysis.runs import SEARCH_KEYS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssb", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    catalog_help = f"catalog directory or Tiled URL (default: {default_location()})"

    demo = sub.add_parser("demo", help="accelerated experiment on the simulated rig")
    demo.add_argument("--catalog", help=catalog_help)
    demo.add_argument(
        "--speed",
        type=float,
        default=None,
        help="simulation speed factor (default 5000; 2000 with --operando)",
    )
    demo.add_argument(
        "--operando",
        action="store_true",
        help="the cell in the beam of a simulated diffraction detector (its own IOC): one "
        "charge and discharge with a pattern every 5 minutes, operando figures",
    )
    demo.add_argument("--cell", default="si-nmc", help="cell preset or file")
    demo.add_argument(
        "--cycles", type=int, default=2, help="cycles at constant pressure (default 2)"
    )

    run = sub.add_parser("run", help="run a protocol file against a running IOC")
    run.add_argument("protocol", help="protocol file (one step per line)")
    run.add_argument("--prefix", default="SSB:", help="the rig's PV prefix (default SSB:)")
    run.add_argument("--cell", help="cell description, TOML or JSON (default: the last one)")
    run.add_argument("--purpose", default="material analysis", help="why (default: %(default)s)")
    run.add_argument("--operator", help="who (default: your user name)")
    run.add_argument("--capacity", type=float, help="mAh for C-rates (default: the cycler's)")
    run.add_argument("--catalog", help=catalog_help)

    attach = sub.add_parser(
        "attach", help="follow the protocol running on a rig whose acquiring process is gone"
    )
    attach.add_argument("--prefix", default="SSB:", help="the rig's PV prefix (default SSB:)")
    attach.add_argument("--catalog", help=catalog_help)

    runs = sub.add_parser("runs", help="list and search runs")
    runs.add_argument("--catalog", help=catalog_help)
    runs.add_argument("--limit", type=int, default=20, help="newest N runs (default 20)")
    for key in SEARCH_KEYS:
        runs.add_argument(f"--{key.replace('_', '-')}", dest=key, help=f"match {key}")

    show = sub.add_parser("show", help="a run's metadata and streams")
    show.add_argument("run", help="scan id, (partial) uid, or -1 for the latest")
    show.add_argument("--catalog", help=catalog_help)

    export = sub.add_parser("export", help="write a run as files")
    export.add_argument("run", help="scan id, (partial) uid, or -1 for the latest")
    export.add_argument("--format", choices=FORMATS, default="bdf", help="default: bdf")
    export.add_argument("--out", default=".", help="directory (default: here)")
    export.add_argument("--catalog", help=catalog_help)

    report = sub.add_parser("report", help="figures and a page of key numbers for a run")
    report.add_argument("run", help="scan id, (partial) uid, or -1 for the latest")
    report.add_argument("--out", default="ssb-reports", help="directory (default: %(default)s)")
    report.add_argument("--catalog", help=catalog_help)

    from ssb_lab.cli import add_parser as add_lab_parser

    add_lab_parser(sub)
    return parser


def _lookup(catalog, ref: str):
    try:
        return catalog[int(ref)]
    except ValueError:
        return catalog[ref]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except CatalogUnreachable as ex:  # from any command that opens a catalog server
        print(f"ssb {args.command}: {ex}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from .demo import run_demo

        if args.speed is None:
            args.speed = 2000.0 if args.operando else 5000.0
        if not 0 < args.speed <= 1e5:
            print(f"ssb demo: --speed must be in (0, 100000], got {args.speed}", file=sys.stderr)
            return 2
        if not 1 <= args.cycles <= 10_000:
            print(f"ssb demo: --cycles must be in 1..10000, got {args.cycles}", file=sys.stderr)
            return 2
        try:
            if args.operando:
                from .operando import run_operando_demo

                return run_operando_demo(speed=args.speed, catalog=args.catalog)
            return run_demo(
                speed=args.speed, catalog=args.catalog, cell=args.cell, cycles=args.cycles
            )
        except KeyboardInterrupt:
            print("ssb demo: interrupted", file=sys.stderr)
            return 130
    if args.command == "run":
        from .run_file import run_file

        return run_file(
            args.protocol,
            prefix=args.prefix,
            catalog=args.catalog,
            cell=args.cell,
            purpose=args.purpose,
            operator=args.operator,
            capacity=args.capacity,
        )
    if args.command == "lab":
        from ssb_lab.cli import run as run_lab

        return run_lab(args)
    if args.command == "attach":
        from .attach import attach_cli

        return attach_cli(args.prefix, args.catalog)
    location = args.catalog or default_location()
    if not is_server(location) and not (Path(location).expanduser() / "catalog.db").exists():
        print(
            f"ssb {args.command}: no catalog at {location} (runs are stored there by "
            "`ssb demo`, `ssb run` or a session; pass --catalog DIR or URL)",
            file=sys.stderr,
        )
        return 1
    from ssb_analysis import runs as run_listing
    from ssb_analysis.catalog import open_catalog

    catalog = open_catalog(location)
    if args.command == "runs":
        criteria = {key: getattr(args, key) for key in run_listing.SEARCH_KEYS}
        found = run_listing.search(catalog, **criteria)
        print(
            run_listing.format_table(run_listing.summarize(run_listing.latest(found, args.limit)))
        )
        return 0
    try:
        run = _lookup(catalog, args.run)
    except (KeyError, ValueError):  # ValueError: a partial uid too short to look up
        print(
            f"ssb {args.command}: no run {args.run!r} in {location}: give a scan id, -1 "
            "for the newest, or a uid (its first 8 characters do); `ssb runs` lists them",
            file=sys.stderr,
        )
        return 1
    run = run_listing.whole(catalog, run)  # an acquisition continued by attach: as one
    if args.command == "report":
        from ssb_analysis.report import write_report

        print(write_report(run, args.out))
        return 0
    if args.command == "export":
        from ssb_analysis.export import ExportError, export_run

        try:
            for path in export_run(run, args.out, args.format):
                print(path)
        except ExportError as ex:
            print(f"ssb export: {ex}", file=sys.stderr)
            return 1
        return 0
    print(run_listing.describe(run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
