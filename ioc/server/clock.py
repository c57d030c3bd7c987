"""A client's hold of the simulated clock, as a lease (``Rig:HoldAt-SP``).

A client that coordinates other instruments holds the clock where it must act; a hold
nobody renews lapses (``HOLD_LEASE`` s of wall time after the clock reached it or a
client last renewed it), so the experiment outlives a coordinator that is gone. A put of
a hold completes once the clock stands there (or the hold is gone).
"""

from __future__ import annotations

import asyncio
import time

from ssb_ioc.core.ports import RigBackend

HOLD_LEASE = 10.0  # s of wall time a clock hold lasts without a client renewing it


class HoldLease:
    """The lease on the backend's clock hold, and the puts waiting for the clock."""

    def __init__(self) -> None:
        self._seen: float | None = None  # the backend's hold at the last look
        self._renewed = time.monotonic()
        self._held_since: float | None = None  # wall time the clock came to its hold
        self._waiting: list[asyncio.Future[None]] = []

    def renew(self, now: float) -> None:
        self._renewed = now

    def check(self, rig: RigBackend, now: float) -> str:
        """Release a hold nobody renewed; says so ("" when nothing was released)."""
        if rig.hold_at != self._seen:  # set by a client or by the sequencer
            self._seen = rig.hold_at
            self._renewed = now
        if not rig.held:
            self._held_since = None
            return ""
        if self._held_since is None:
            self._held_since = now
        if now - max(self._renewed, self._held_since) <= HOLD_LEASE:
            return ""
        rig.hold_clock(None)
        self._seen = self._held_since = None
        return (
            f"clock hold at t = {rig.time:.1f} s released: no client renewed it for "
            f"{HOLD_LEASE:g} s of wall time; the experiment goes on"
        )

    async def reached(self) -> None:
        """Wait until the clock stands at its hold (or the hold is gone)."""
        waiting = asyncio.get_running_loop().create_future()
        self._waiting.append(waiting)
        await waiting

    def resolve(self, rig: RigBackend) -> None:
        """Complete the waiting puts once the clock stands (or no hold is left)."""
        if self._waiting and (rig.held or rig.hold_at is None):
            for waiting in self._waiting:
                if not waiting.done():
                    waiting.set_result(None)
            self._waiting.clear()
