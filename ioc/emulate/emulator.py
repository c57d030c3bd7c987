"""``ssb-emulate RIG.toml``: serve a rig file's instruments over their wire protocols.

The physics is the simulation's (:class:`~ssb_ioc.sim.Rig`, from the cell file the rig file
names), run on the wall clock times ``speed``. Its clock is what a ``clock`` register
reports, so that an IOC reading it keeps the emulated rig's experiment time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import threading

from ..backends.rigfile import RigFile, RigFileError, load_rig_file
from ..lifeline import watch_lifeline
from ..sim import CellFileError, Rig, load_cell_file
from .bts import BtsServer
from .modbus import Amplifier, Drive, EmulatedDevice, PressController

PHYSICS_PERIOD = 0.01  # s of wall time between advances of the simulation


class Emulator:
    """Every instrument of a rig file, served on its host and port."""

    def __init__(self, rig: RigFile, speed: float | None = None, seed: int | None = None):
        self.rigfile = rig
        self.speed = float(speed if speed is not None else rig.emulator.get("speed", 1.0))
        self.sim = Rig(load_cell_file(rig.cell), seed=seed)
        self.sim.tare()  # instruments arrive zeroed, as after commissioning
        press = Drive if rig.press.topology == "ioc" else PressController
        self.devices: dict[str, EmulatedDevice | BtsServer] = {"press": press(rig.press, self.sim)}
        if rig.load_cell is not None:
            self.devices["load_cell"] = Amplifier(rig.load_cell, self.sim)
        if rig.cycler is not None:
            self.devices["cycler"] = BtsServer(rig.cycler, self.sim)
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        for device in self.devices.values():
            await device.start()
        self._task = asyncio.create_task(self._physics())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for device in self.devices.values():
            await device.stop()

    async def _physics(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(PHYSICS_PERIOD)
            now = loop.time()
            self.sim.advance((now - last) * self.speed)
            last = now
            drive = self.devices["press"]
            if isinstance(drive, Drive):
                drive.watchdog(now)

    async def serve(self) -> None:
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()


class EmulatorThread:
    """An :class:`Emulator` on its own event loop in a thread (tests, benchmarks, demos).

    ``fault(role, kind, ...)`` starts or clears a fault on one instrument from any thread.
    """

    def __init__(self, rig: RigFile, speed: float | None = None, seed: int | None = None):
        self.emulator = Emulator(rig, speed, seed)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def _run(self, coroutine, timeout: float = 10.0):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def start(self) -> EmulatorThread:
        self._thread.start()
        self._run(self.emulator.start())
        return self

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run(self.emulator.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5.0)
        if not self._thread.is_alive():
            self.loop.close()

    def fault(self, role: str, kind: str = "", **options) -> None:
        self._run(self.emulator.devices[role].set_fault(kind, **options))

    def call(self, function):
        """Run ``function()`` on the emulator's loop (the simulation is not thread-safe)."""

        async def run():
            return function()

        return self._run(run())

    def __enter__(self) -> EmulatorThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


log = logging.getLogger("ssb_ioc.emulate")


def _logging() -> None:
    """Libraries log to stderr with time and level; the emulator's own events go to stdout
    as ``ssb-emulate: ...`` lines (its console)."""
    logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter("ssb-emulate: %(message)s"))
    log.addHandler(console)
    log.setLevel(logging.INFO)
    log.propagate = False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ssb-emulate",
        description="Serve a rig file's instruments on their hosts and ports, backed by the "
        "simulated rig: the press controller or drive and the load-cell amplifier over "
        "Modbus TCP, and the Neware BTS cycler channel over its TCP protocol.",
    )
    parser.add_argument("rig", help="rig file (TOML), e.g. rigs/emulated.toml")
    parser.add_argument("--speed", type=float, default=None, help="clock speed factor")
    parser.add_argument("--seed", type=int, default=None, help="random seed")
    parser.add_argument(
        "--lifeline",
        action="store_true",
        help="exit when stdin closes (set by a parent process that starts the emulator)",
    )
    args = parser.parse_args(argv)
    _logging()
    try:
        rig = load_rig_file(args.rig)
        emulator = Emulator(rig, args.speed, args.seed)
    except (RigFileError, CellFileError) as ex:
        print(f"ssb-emulate: {ex}", file=sys.stderr)
        return 2
    if not 0 < emulator.speed <= 1e4:
        print(f"ssb-emulate: speed must be in (0, 10000], got {emulator.speed}", file=sys.stderr)
        return 2

    async def run() -> None:
        if args.lifeline:
            task = asyncio.current_task()
            assert task is not None  # asyncio.run runs us in a task
            watch_lifeline(task)
        await emulator.start()
        where = ", ".join(
            f"{role} ({type(d).__name__}) on {d.address}" for role, d in emulator.devices.items()
        )
        log.info("serving %s, speed x%g", where, emulator.speed)
        try:
            await asyncio.Event().wait()
        finally:
            await emulator.stop()

    try:
        asyncio.run(run())
    except OSError as ex:
        print(f"ssb-emulate: {ex}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
