"""A counter the IOC posts at a set rate, to measure Channel Access monitor delivery.

A client subscribes to ``Diag:Counter-RB`` and counts: every increment it missed is an
update the server (or the network) dropped. Off (rate 0) unless a client asks.
"""

from __future__ import annotations

# caproto's `@pv.putter` redefines the name, as a property setter does (mypy knows only
# property's):
# mypy: disable-error-code="no-redef"
import time

from caproto.server import pvproperty

from .pvs import RigPVGroup, limits, refusals, setting


class DiagnosticsGroup(RigPVGroup):
    """Diagnostics (``{prefix}Diag:``).

    Rate-SP      Hz   post Counter-RB this many times a second (0 = off)
    Counter-RB        incremented at Rate-SP (posted in bursts each millisecond)
    """

    last_refusal = refusals("")  # the last refused put: Refusal-RB, RefusalMsg-RB

    rate_sp = setting("Rate-SP", "Hz", 0.0, 1e5, "Counter updates per second (0 = off)", 1)
    counter_rb = pvproperty(
        name="Counter-RB",
        value=0,
        dtype=int,
        read_only=True,
        doc="Counter posted at Rate-SP",
        alarm_group="Counter-RB",
        **limits(0, 2**31 - 1),
    )

    @counter_rb.startup
    async def counter_rb(self, instance, async_lib):
        sleep = async_lib.library.sleep
        count = 0
        while True:
            rate = self.rate_sp.value
            if rate <= 0:
                await sleep(0.05)
                continue
            start, posted = time.monotonic(), 0
            while self.rate_sp.value == rate:
                due = int((time.monotonic() - start) * rate)
                while posted < due:
                    posted += 1
                    count = (count + 1) % (2**31 - 1)
                    await instance.write(count)
                await sleep(0.001)
