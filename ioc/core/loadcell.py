"""The load cell as the control sees it: the reading, its tare and its capacity.

A simulated bridge (:class:`ssb_ioc.sim.loadcell.LoadCell`) and an amplifier read over a
wire both fill in :attr:`ForceReading.force`; the interlock and the tare act on it alike.
"""

from __future__ import annotations

import math


class ForceReading:
    """The last force reading (N, after tare) of a load cell of ``capacity`` kN."""

    kept: tuple[str, ...] = ("tare_offset",)  # what an IOC's restart must not forget

    def __init__(self, capacity_kn: float) -> None:
        self.capacity = capacity_kn * 1e3  # N
        self.tare_offset = 0.0  # N subtracted by tare
        self.force = 0.0  # N, last reported reading (after tare)
        self.signal = 0.0  # mV/V, last bridge output

    @property
    def overloaded(self) -> bool:
        return abs(self.force) > self.capacity

    def kept_state(self) -> dict[str, float]:
        """What a restarted IOC restores (:attr:`kept`), N."""
        return {name: float(getattr(self, name)) for name in self.kept}

    def restore_state(self, state: dict[str, float]) -> None:
        """Take back what :meth:`kept_state` gave (finite numbers of :attr:`kept` only)."""
        for name in self.kept:
            value = state.get(name)
            if isinstance(value, int | float) and math.isfinite(value):
                setattr(self, name, float(value))

    def tare(self) -> None:
        """Zero the reading at the present load."""
        self.tare_offset += self.force
        self.force = 0.0
