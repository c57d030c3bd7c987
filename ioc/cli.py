"""``ssb-ioc``: serve the simulated ASSB rig over Channel Access."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys

from .server import NoDelayContext, RigIOC
from .sim import CellFileError, Rig, load_cell_file, preset_names


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ssb-ioc",
        description=RigIOC.__doc__.split("\n")[0],
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
        "--speed", type=float, default=1.0, help="clock speed factor, 1 = real time (default: 1)"
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed (reproducible runs)")
    parser.add_argument(
        "--interfaces",
        nargs="+",
        default=["127.0.0.1"],
        help="interfaces to serve on (default: 127.0.0.1, loopback only)",
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
    ioc: RigIOC, interfaces: list[str], nodelay: bool = True, lifeline: bool = False
) -> None:
    """Run the server until cancelled, SIGINT or SIGTERM (or, with ``lifeline``, until
    stdin closes: the process that started us is gone); then shut down cleanly."""
    from caproto.asyncio.server import Context

    context = (NoDelayContext if nodelay else Context)(ioc.pvdb, interfaces)
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    if lifeline:

        def on_stdin() -> None:
            if not os.read(sys.stdin.fileno(), 4096):  # EOF: our parent has gone
                loop.remove_reader(sys.stdin.fileno())
                task.cancel()

        loop.add_reader(sys.stdin.fileno(), on_stdin)
    with contextlib.suppress(asyncio.CancelledError):
        await context.run()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not 0 < args.speed <= 1e5:
        print(f"ssb-ioc: --speed must be in (0, 100000], got {args.speed}", file=sys.stderr)
        return 2
    try:
        params = load_cell_file(args.cell)
    except CellFileError as ex:
        print(f"ssb-ioc: cell file refused: {ex}", file=sys.stderr)
        return 2
    logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    logging.getLogger("caproto").setLevel(logging.INFO if args.verbose else logging.WARNING)
    # caproto logs every refused put with a traceback; the reason is on Rig:Msg-RB.
    logging.getLogger("caproto.circ").setLevel(logging.CRITICAL)
    # Beacons to a host without a CA repeater fail harmlessly; do not flood the log.
    logging.getLogger("caproto.ctx").addFilter(
        lambda record: "Failed to send beacon" not in record.getMessage()
    )
    os.environ.setdefault("EPICS_CAS_INTF_ADDR_LIST", " ".join(args.interfaces))
    ioc = RigIOC(
        prefix=args.prefix,
        backend=Rig(params, seed=args.seed),
        speed=args.speed,
        source=args.cell,
    )
    if args.list_pvs:
        print("\n".join(ioc.pvdb), flush=True)
    print(
        f"ssb-ioc: serving {len(ioc.pvdb)} PVs with prefix {args.prefix!r} on "
        f"{', '.join(args.interfaces)}, cell {params.cell.name}, speed x{args.speed:g}",
        flush=True,
    )
    asyncio.run(
        serve(ioc, args.interfaces, nodelay=not args.no_tcp_nodelay, lifeline=args.lifeline)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
