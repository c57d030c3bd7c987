"""Values a plan computes, stored as Bluesky streams with their units."""

from __future__ import annotations

import bluesky.plan_stubs as bps
from bluesky.utils import MsgGenerator
from ophyd import Kind, Signal


class ResultSignal(Signal):
    """A soft signal for values the plan computes, with units in its description."""

    def __init__(self, *args, units: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.units = units

    def describe(self):
        desc = super().describe()
        if self.units:
            desc[self.name]["units"] = self.units
        return desc


class ResultStream:
    """A stream of values the plan computes (the same soft signals for every event)."""

    def __init__(self, stream: str, units: dict[str, str]):
        self.stream = stream
        self.signals = {
            key: ResultSignal(name=f"{stream}_{key}", value=0.0, kind=Kind.hinted, units=unit)
            for key, unit in units.items()
        }

    def emit(self, **values: float | str) -> MsgGenerator[None]:
        """One event with ``values`` (every field of the stream)."""
        for key, signal in self.signals.items():
            signal.put(values[key])
        yield from bps.trigger_and_read(list(self.signals.values()), name=self.stream)
