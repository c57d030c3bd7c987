"""Events during a run, and what the plan does about each kind.

Two sources feed one ``events`` stream (time, kind, magnitude, unit, value, step, source,
reaction):

* ``ioc``: what the instrument detected at its own resolution (pressure spikes and
  drops, soft-short voltage drops, resistance jumps; thresholds on ``Evt:*-SP``, see
  :mod:`ssb_ioc.core.events`). After each, the IOC keeps the load cell's samples at full
  rate for ``Evt:Window-SP`` s: the run's ``load_cell_fast`` stream.
* ``plan``: :class:`Limit` rules checked on every sample the run collects, for what a
  scientist wants to watch in their own terms (``Limit("pressure", low=95.0)``).

Reactions, chosen per kind (:class:`EventWatch`): ``log`` (the event row only), ``read``
(also read the rig and the run's detectors into ``primary`` at once), ``pause`` (the
RunEngine pauses: the cycler goes to open circuit, the press keeps holding; ``RE.resume()``
runs the rest of the step), ``end`` (the run ends safely, cycler at open circuit, press
holding, with :class:`EndedOnEvent` saying why). For ``end`` on an IOC event kind the IOC
itself opens the circuit in the simulation step that saw the event
(``Evt:<Kind>Action-SP`` set to ``OpenCircuit`` for the run), without waiting for the
plan. When several events arrive together, the strongest reaction among them is taken
once.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

import bluesky.plan_stubs as bps
import numpy as np
from bluesky.protocols import Readable
from bluesky.utils import MsgGenerator

from ssb_contract.records import EVENT_UNITS
from ssb_devices import EVENT_KINDS, Rig

from .results import ResultStream

SAMPLE_UNITS = {
    "voltage": "V",
    "current": "A",
    "pressure": "MPa",
    "force": "kN",
    "gap": "um",
    "charge_capacity": "mAh",
    "discharge_capacity": "mAh",
}


class Reaction(str, Enum):  # noqa: UP042 - str() of a member stays "Reaction.LOG"
    LOG = "log"
    READ = "read"
    PAUSE = "pause"
    END = "end"


_STRENGTH = [Reaction.LOG, Reaction.READ, Reaction.PAUSE, Reaction.END]


class EndedOnEvent(RuntimeError):
    """The run ended safely because an event's reaction is ``end``."""


@dataclass(frozen=True)
class Event:
    time: float  # s of experiment time
    kind: str
    magnitude: float
    unit: str
    value: float  # the signal at detection (pressure, voltage, ...)
    step: int
    source: str  # "ioc" or "plan"

    def describe(self, origin: float | None = None) -> str:
        """One line; ``origin``: the rig's clock at the run's start (times from there)."""
        when = (
            f"t = {self.time:.1f} s on the rig's clock"
            if origin is None
            else f"t = {(self.time - origin) / 3600:.2f} h into the run"
        )
        return (
            f"{self.kind} of {self.magnitude:.4g} {self.unit} at {when} "
            f"(step {self.step}, {self.source})"
        )


@dataclass
class Limit:
    """A plan-side rule: an event when a collected sample's ``field`` goes below ``low``
    or above ``high``; one event per excursion (re-armed once back inside)."""

    field: str
    low: float | None = None
    high: float | None = None
    kind: str = ""
    _outside: bool = dataclasses.field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.field not in SAMPLE_UNITS:
            raise ValueError(f"Limit on {self.field!r}: expected one of {', '.join(SAMPLE_UNITS)}")
        bounds = [b for b in (self.low, self.high) if b is not None]
        if not bounds or not all(math.isfinite(b) for b in bounds):
            raise ValueError(f"Limit on {self.field!r}: give a finite low and/or high bound")
        if self.low is not None and self.high is not None and not self.low < self.high:
            raise ValueError(f"Limit on {self.field!r}: low {self.low} >= high {self.high}")
        self.kind = self.kind or f"{self.field}_limit"

    def check(self, page: Mapping[str, Sequence[float]]) -> list[Event]:
        values = np.asarray(page[self.field], dtype=float)
        low = -math.inf if self.low is None else self.low
        high = math.inf if self.high is None else self.high
        found = []
        for k, v in enumerate(values):
            outside = not low <= v <= high
            if outside and not self._outside:
                excess = low - v if v < low else v - high
                found.append(
                    Event(
                        float(page["test_time"][k]),
                        self.kind,
                        float(excess),
                        SAMPLE_UNITS[self.field],
                        float(v),
                        int(page["step"][k]),
                        "plan",
                    )
                )
            self._outside = outside
        return found


@dataclass
class EventWatch:
    """Which reaction each event kind gets (default ``log``), and plan-side rules."""

    reactions: Mapping[str, Reaction | str] = field(default_factory=dict)
    limits: Sequence[Limit] = ()

    def __post_init__(self):
        known = set(EVENT_KINDS) | {limit.kind for limit in self.limits}
        unknown = set(self.reactions) - known
        if unknown:
            raise ValueError(
                f"reactions for unknown event kinds {sorted(unknown)}: expected some of "
                f"{sorted(known)}"
            )
        try:
            self.reactions = {k: Reaction(v) for k, v in self.reactions.items()}
        except ValueError as ex:
            raise ValueError(f"{ex}: expected one of log, read, pause, end") from None

    def reaction(self, kind: str) -> Reaction:
        return Reaction(self.reactions.get(kind, Reaction.LOG))  # Reactions since __post_init__


EVENT_STREAM_UNITS = {
    "time": "s",
    "kind": "",
    "magnitude": "",
    "unit": "",
    "value": "",
    "step": "",
    "source": "",
    "reaction": "",
}


def event_stream() -> ResultStream:
    """The ``events`` stream: one event per detected event (magnitude in ``unit``)."""
    return ResultStream("events", EVENT_STREAM_UNITS)


def ioc_events(rig: Rig) -> list[Event]:
    """Events the IOC detected since the last call (after ``kickoff``)."""
    found = []
    for page in rig.events.buffer.read_pages():
        for k in range(len(page["seq"])):
            kind = EVENT_KINDS[int(page["kind"][k])]
            found.append(
                Event(
                    float(page["time"][k]),
                    kind,
                    float(page["magnitude"][k]),
                    EVENT_UNITS[kind],
                    float(page["value"][k]),
                    int(page["step"][k]),
                    "ioc",
                )
            )
    return found


def handle_events(
    rig: Rig,
    watch: EventWatch,
    pages: Sequence[Mapping[str, Sequence[float]]],
    record: ResultStream,
    detectors: Sequence[Readable],
    found: list[Event],
    origin: float | None = None,
) -> MsgGenerator[None]:
    """Gather new events (IOC and ``pages`` of samples), store them, react once
    (``origin``: the rig's clock at the run's start, for the messages)."""
    new = ioc_events(rig)  # CA reads of the IOC's event buffer
    for limit in watch.limits:
        for page in pages:
            new.extend(limit.check(page))
    if not new:
        return
    strongest = max((watch.reaction(e.kind) for e in new), key=_STRENGTH.index)
    for event in sorted(new, key=lambda e: e.time):
        yield from record.emit(**vars(event), reaction=watch.reaction(event.kind).value)
    found.extend(new)
    yield from bps.checkpoint()  # stored: a resume must not store them twice
    if strongest == Reaction.READ:
        yield from bps.trigger_and_read([rig, *detectors])
    elif strongest == Reaction.PAUSE:
        yield from bps.pause()
    elif strongest == Reaction.END:
        first = next(e for e in new if watch.reaction(e.kind) == Reaction.END)
        raise EndedOnEvent(f"ended safely on {first.describe(origin)}")
