"""A pythonSoftIOC (EPICS base) process serving PVs equivalent to the ones
``ioc_compare.py`` exercises on the project's IOC, for a side-by-side comparison.

    python benchmarks/softioc_server.py PREFIX

Serves ``PREFIX`` + ``Press:Pressure-RB`` (ai, read), ``Press:KP-SP`` (ao, put with
callback), ``Diag:Rate-SP`` (ao) and ``Diag:Counter-RB`` (longin) posted at Rate-SP
with the same burst-per-millisecond loop as the project's ``Diag:`` group. Prints
``ready`` once serving; stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
import time


def main() -> None:
    from softioc import asyncio_dispatcher, builder, softioc

    prefix = sys.argv[1].rstrip(":")
    dispatcher = asyncio_dispatcher.AsyncioDispatcher()
    builder.SetDeviceName(prefix)
    builder.aIn("Press:Pressure-RB", initial_value=100.0, EGU="MPa", PREC=3)
    builder.aOut("Press:KP-SP", initial_value=19.0, always_update=True, EGU="um/s/MPa")
    rate = builder.aOut("Diag:Rate-SP", initial_value=0.0, always_update=True, EGU="Hz")
    counter = builder.longIn("Diag:Counter-RB", initial_value=0)
    builder.LoadDatabase()
    softioc.iocInit(dispatcher)

    async def post():
        count = 0
        while True:
            wanted = rate.get()
            if wanted <= 0:
                await asyncio.sleep(0.05)
                continue
            start, posted = time.monotonic(), 0
            while rate.get() == wanted:
                due = int((time.monotonic() - start) * wanted)
                while posted < due:
                    posted += 1
                    count = (count + 1) % (2**31 - 1)
                    counter.set(count)
                await asyncio.sleep(0.001)

    dispatcher(post)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("softioc: ready", flush=True)
    stop.wait()


if __name__ == "__main__":
    main()
