"""``ssb-ioc``: serve the simulated ASSB rig over Channel Access."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys

from .backends import HardwareRig, RigFileError, load_rig_file
from .backends.check import run_check
from .lifeline import watch_lifeline
from .server import RigContext, RigIOC
from .server.access import AccessFileError, AccessRules, load_access_file
from .server.autosave import AutosaveFile, default_directory, identity
from .server.context import beacon_addresses, is_loopback
from .server.detector import DetectorIOC
from .sim import CellFileError, Rig, load_cell_file, preset_names

log = logging.getLogger("ssb_ioc")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ssb-ioc",
        description=(RigIOC.__doc__ or "").split("\n")[0],
        epilog="PVs:\n" + (RigIOC.__doc__ or "").split("\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--prefix", default="SSB:", help="PV prefix (default: SSB:)")
    parser.add_argument(
        "--cell",
        default="si-nmc",
        help=f"cell file (TOML) or preset: {', '.join(preset_names())} (default: si-nmc)",
    )
    parser.add_argument(
        "--rig",
        metavar="RIG.toml",
        help="serve real (or emulated) instruments from a rig file instead of the simulation "
        "(see rigs/example-lab.toml); its cell file gives the area and the limits",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="with --rig: read every mapped register once, print a table, write nothing, exit",
    )
    parser.add_argument(
        "--speed", type=float, default=1.0, help="clock speed factor, 1 = real time (default: 1)"
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed (reproducible runs)")
    parser.add_argument(
        "--interfaces",
        nargs="+",
        default=["127.0.0.1"],
        help="interfaces to serve on (default: 127.0.0.1, loopback only); any other needs "
        "--access or --allow-anyone",
    )
    parser.add_argument(
        "--access",
        metavar="FILE",
        help="access rules (TOML, [[rule]] tables: users, hosts, groups, access); first "
        "match wins, no match is read-only",
    )
    parser.add_argument(
        "--allow-anyone",
        action="store_true",
        help="serve a non-loopback interface without --access: anyone who reaches it may "
        "write (set pressures, start steps)",
    )
    parser.add_argument(
        "--autosave",
        metavar="DIR",
        default=None,
        help="save settings and the clock here on change, restore them at start "
        "(default: $SSB_AUTOSAVE or ~/.local/share/ssb-bluesky/autosave)",
    )
    parser.add_argument(
        "--no-autosave", action="store_true", help="neither restore nor save settings"
    )
    parser.add_argument(
        "--xrd",
        action="store_true",
        help="serve a simulated diffraction detector (areaDetector names, cam1: and image1:) "
        "instead of a rig; its sample is the cell of the rig given by --sample",
    )
    parser.add_argument(
        "--sample",
        metavar="PREFIX",
        default="SSB:",
        help="with --xrd: PV prefix of the rig whose cell is in the beam (default: SSB:); "
        "found through EPICS_CA_ADDR_LIST like any PV",
    )
    parser.add_argument("--list-pvs", action="store_true", help="print the PV names at startup")
    parser.add_argument("--no-tcp-nodelay", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--lifeline",
        action="store_true",
        help="exit when stdin closes (set by a parent process that starts the IOC)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log caproto at INFO")
    return parser


async def serve(
    ioc: RigIOC | DetectorIOC, interfaces: list[str], nodelay: bool = True, lifeline: bool = False
) -> None:
    """Run the server until cancelled, SIGINT or SIGTERM (or, with ``lifeline``, until
    stdin closes: the process that started us is gone); then shut down cleanly."""
    context = RigContext(ioc.pvdb, interfaces, nodelay=nodelay)
    task = asyncio.current_task()
    assert task is not None  # asyncio.run runs us in a task
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    if lifeline:
        watch_lifeline(task)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await context.run()
    finally:
        ioc.save()  # the clock and the settings as they were at the end


def _exposure_refusal(
    interfaces: list[str], rules: AccessRules | None, allow_anyone: bool
) -> str | None:
    """Why serving ``interfaces`` this way is refused (None: it is not)."""
    exposed = [i for i in interfaces if not is_loopback(i)]
    if not exposed or rules is not None or allow_anyone:
        return None
    return (
        f"refusing to serve {', '.join(exposed)} without access rules: anyone who reaches "
        "it could set the pressure or start a step. Give --access FILE (see --help), or "
        "--allow-anyone if that is really meant, or serve loopback only."
    )


def _logging(verbose: bool) -> None:
    """Libraries log to stderr with time and level; the IOC's own events (``ssb_ioc``:
    ready, autosave, an instrument's news) go to stdout as ``ssb-ioc: ...`` lines, the
    console an operator (or procServ) watches."""
    logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    events = logging.getLogger("ssb_ioc")
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter("ssb-ioc: %(message)s"))
    events.addHandler(console)
    events.setLevel(logging.DEBUG if verbose else logging.INFO)
    events.propagate = False
    logging.getLogger("caproto").setLevel(logging.INFO if verbose else logging.WARNING)
    # caproto logs a client's failed request with a traceback; the IOC answers refusals
    # itself (ECA_PUTFAIL) and says why on the refusal PVs and Rig:Msg-RB.
    logging.getLogger("caproto.circ").setLevel(logging.CRITICAL)
    # Beacons to a host without a CA repeater fail harmlessly; do not flood the log.
    logging.getLogger("caproto.ctx").addFilter(
        lambda record: "Failed to send beacon" not in record.getMessage()
    )


def serve_detector(args: argparse.Namespace) -> int:
    """``ssb-ioc --xrd``: the simulated diffraction detector, in its own process.

    Two servers on one host cannot share a UDP search port, so unless told otherwise
    (``EPICS_CA_SERVER_PORT``, ``EPICS_CA_ADDR_LIST``) the detector serves on 5066 and finds
    its sample, the rig, on 127.0.0.1:5064 (``ssb-ioc``'s default)."""
    _logging(args.verbose)
    if "EPICS_CA_SERVER_PORT" not in os.environ:
        os.environ.update(
            EPICS_CA_SERVER_PORT="5066",
            EPICS_CA_ADDR_LIST=os.environ.get("EPICS_CA_ADDR_LIST", "127.0.0.1:5064"),
            EPICS_CA_AUTO_ADDR_LIST="NO",
        )
    ioc = DetectorIOC(prefix=args.prefix, sample=args.sample, seed=args.seed)
    if args.list_pvs:
        print("\n".join(ioc.pvdb), flush=True)
    log.info(
        "serving a diffraction detector, %d PVs with prefix %r on %s:%s; sample: the rig %r "
        "(found through %s)", len(ioc.pvdb), args.prefix, ", ".join(args.interfaces),
        os.environ["EPICS_CA_SERVER_PORT"], args.sample, os.environ.get("EPICS_CA_ADDR_LIST"),
    )  # fmt: skip
    asyncio.run(serve(ioc, args.interfaces, not args.no_tcp_nodelay, args.lifeline))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    refusal = _exposure_refusal(args.interfaces, None, args.allow_anyone)
    if args.xrd:
        if refusal:  # a detector has no access rules of its own: loopback or --allow-anyone
            print(f"ssb-ioc: {refusal}", file=sys.stderr)
            return 2
        return serve_detector(args)
    if not 0 < args.speed <= 1e5:
        print(f"ssb-ioc: --speed must be in (0, 100000], got {args.speed}", file=sys.stderr)
        return 2
    rig_file = None
    if args.check and not args.rig:
        print("ssb-ioc: --check needs --rig RIG.toml", file=sys.stderr)
        return 2
    if args.rig:
        try:
            rig_file = load_rig_file(args.rig)
        except RigFileError as ex:
            print(f"ssb-ioc: rig file refused: {ex}", file=sys.stderr)
            return 2
        if args.check:
            report, ok = run_check(rig_file)
            print(report, flush=True)
            return 0 if ok else 1
        args.cell = rig_file.cell
    try:
        params = load_cell_file(args.cell)
    except CellFileError as ex:
        print(f"ssb-ioc: cell file refused: {ex}", file=sys.stderr)
        return 2
    try:
        rules = load_access_file(args.access) if args.access else None
    except AccessFileError as ex:
        print(f"ssb-ioc: access file refused: {ex}", file=sys.stderr)
        return 2
    refusal = _exposure_refusal(args.interfaces, rules, args.allow_anyone)
    if refusal:
        print(f"ssb-ioc: {refusal}", file=sys.stderr)
        return 2
    _logging(args.verbose)
    os.environ.setdefault("EPICS_CAS_INTF_ADDR_LIST", " ".join(args.interfaces))
    if "EPICS_CAS_BEACON_ADDR_LIST" not in os.environ:  # beacons only where we serve
        os.environ["EPICS_CAS_BEACON_ADDR_LIST"] = " ".join(beacon_addresses(args.interfaces))
        os.environ["EPICS_CAS_AUTO_BEACON_ADDR_LIST"] = "NO"
    rig = Rig(params, seed=args.seed) if rig_file is None else HardwareRig(params, rig_file)
    autosave = None
    if not args.no_autosave:
        autosave = AutosaveFile(
            args.autosave or default_directory(),
            args.prefix,
            identity(args.cell, args.rig if rig_file is not None else None),
        )
        try:
            autosave.lock()
            kept = rig.keep_buffers(autosave.directory, autosave.stem)
        except ValueError as ex:
            print(f"ssb-ioc: {ex}", file=sys.stderr)
            return 2
        except OSError as ex:
            print(f"ssb-ioc: cannot keep buffers in {autosave.directory}: {ex}", file=sys.stderr)
            return 2
        log.info("autosave %s: buffers %s", autosave.path, "; ".join(kept))
        for other in autosave.older_files():
            log.warning("autosave: %s was saved for another rig or cell (or before saves "
                        "named theirs): left as it is, not restored", other)  # fmt: skip
    ioc = RigIOC(
        prefix=args.prefix,
        backend=rig,
        speed=args.speed,
        source=args.cell if rig_file is None else f"{rig_file.name} ({args.rig})",
        access_rules=rules,
        autosave=autosave,
    )
    if args.list_pvs:
        print("\n".join(ioc.pvdb), flush=True)
    log.info(
        "serving %d PVs with prefix %r on %s, cell %s, %s", len(ioc.pvdb), args.prefix,
        ", ".join(args.interfaces), params.cell.name,
        f"speed x{args.speed:g}" if rig_file is None else f"rig {rig_file.name}",
    )  # fmt: skip
    asyncio.run(
        serve(ioc, args.interfaces, nodelay=not args.no_tcp_nodelay, lifeline=args.lifeline)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
