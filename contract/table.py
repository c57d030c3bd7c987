"""The protocol table: what a client uploads to the instrument's sequencer
(``Seq:Table-SP``), as typed records with one JSON form and one expansion.

The plan builds a :class:`Table` from the protocol and sends :meth:`Table.to_json`; the
IOC takes it with :meth:`Table.from_json` (which refuses a malformed table with the path
of the first bad entry, ``steps[2].step.current: ...``) and checks it against the rig's
limits. Both number steps with :func:`expand`: steps from 1 in execution order, the cycle
counting iterations of the outermost repeats (0 before the first one). Repeats stay
repeats, so a protocol of a million steps is a few lines.

The JSON form (version 1)::

    {"version": 1, "steps": [...], "fast_steps": [3, 4] | "all",
     "hold_steps": [...] | "all", "owner": {...}}

a step is ``{"repeat": n, "steps": [...]}``, ``{"do": "cycler", "step": {"kind": "cc",
"current": A, "voltage": V, "power": W, "resistance": Ohm, "terminations": [["time", 600,
"Auto"], ...], "f_start": Hz, "f_end": Hz, "points_per_decade": n}}``, ``{"do":
"pressure", "action": "set" | "ramp" | "hold", "pressure": MPa, "rate": MPa/s,
"duration": s}`` or ``{"do": "gap"}``; any step may carry ``"text"`` and ``"period"``
(s between logged samples during that step only).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

from .refusals import Refusal, Refused
from .states import DIRECTIONS, LIMITS, STEP_KINDS

TABLE_VERSION = 1
MAX_STEPS = 1_000_000  # steps once repeats are unrolled (a 1,000-cycle test has ~10,000)
MAX_DEPTH = 10  # nested repeats
MAX_TERMINATIONS = 3  # end conditions of one cycler step
PRESSURE_ACTIONS: tuple[str, ...] = ("set", "ramp", "hold")
TEXT_LENGTH = 200  # characters of a step's text kept

T = TypeVar("T")


class TableError(Refused):
    """A table, or a step of one, that is not well formed; the message names the entry."""


# --- the records ----------------------------------------------------------------------


@dataclass(frozen=True)
class Termination:
    """End the step when ``limit`` (Voltage V, Current A, Time s, Capacity mAh) reaches
    ``value``; ``direction`` (voltage only) Auto follows the step."""

    limit: str
    value: float
    direction: str = "Auto"

    def __post_init__(self) -> None:
        if self.limit not in LIMITS:
            raise TableError(f"termination {self.limit!r}: expected one of {LIMITS}")
        if self.direction not in DIRECTIONS:
            raise TableError(f"direction {self.direction!r}: expected one of {DIRECTIONS}")


@dataclass(frozen=True)
class CyclerStep:
    """One step for a cycler channel (A, V, W, Ohm, Hz; + = charge)."""

    kind: str
    current: float = 0.0  # CC/CCCV current; the current limit of CV
    voltage: float = 0.0  # CV/CCCV
    power: float = 0.0  # CP
    resistance: float = 0.0  # CR
    terminations: tuple[Termination, ...] = ()
    f_start: float = 1e6  # PEIS
    f_end: float = 0.1
    points_per_decade: int = 10
    cycle: int = 0  # recorded with the samples of a step started by hand
    index: int = 0  # step index recorded with the samples; 0 = the next one

    def __post_init__(self) -> None:
        if self.kind not in STEP_KINDS:
            raise TableError(f"step kind {self.kind!r}: expected one of {STEP_KINDS}")
        if len(self.terminations) > MAX_TERMINATIONS:
            raise TableError(f"a step takes at most {MAX_TERMINATIONS} terminations")

    def remaining(self, step_time: float, capacity: float) -> CyclerStep:
        """The rest of this step after ``step_time`` s and ``capacity`` mAh were done."""
        terms = []
        for t in self.terminations:
            if t.limit == "Time":
                t = dataclasses.replace(t, value=max(t.value - step_time, 1e-3))
            elif t.limit == "Capacity":
                t = dataclasses.replace(t, value=max(t.value - capacity, 1e-6))
            terms.append(t)
        return dataclasses.replace(self, terminations=tuple(terms))


@dataclass(frozen=True)
class RunCycler:
    """Run a cycler step to its end."""

    do: ClassVar[Literal["cycler"]] = "cycler"
    step: CyclerStep
    text: str = ""
    period: float | None = None  # s between logged samples during this step only


@dataclass(frozen=True)
class SetPressure:
    """Set, ramp to or hold a pressure: set and ramp end when the press has settled."""

    do: ClassVar[Literal["pressure"]] = "pressure"
    action: str  # one of PRESSURE_ACTIONS
    pressure: float  # MPa
    rate: float | None = None  # MPa/s, ramps
    duration: float = 0.0  # s, holds
    text: str = ""
    period: float | None = None

    def __post_init__(self) -> None:
        if self.action not in PRESSURE_ACTIONS:
            raise TableError(f"action {self.action!r} is not one of {', '.join(PRESSURE_ACTIONS)}")


@dataclass(frozen=True)
class HoldGap:
    """Lock the press where it stands (gap control); ends at once."""

    do: ClassVar[Literal["gap"]] = "gap"
    text: str = ""
    period: float | None = None


TableStep = RunCycler | SetPressure | HoldGap


@dataclass(frozen=True)
class Repeat:
    """``steps`` run ``count`` times; the protocol's own repeat derives from it."""

    count: int
    steps: tuple[Any, ...]


# --- numbering: the one expansion both sides use -------------------------------------


def size(steps: Sequence[Any]) -> int:
    """Steps once repeats are unrolled, counted without unrolling."""
    return sum(s.count * size(s.steps) if isinstance(s, Repeat) else 1 for s in steps)


def expand(steps: Sequence[Any], first: int = 1) -> Iterator[tuple[int, int, Any]]:
    """(index, cycle, step) in execution order from step ``first`` on; repeats wholly
    before ``first`` are skipped without being unrolled."""
    counter = [0, 0]  # index, cycle

    def walk(nodes: Sequence[Any], top: bool) -> Iterator[tuple[int, int, Any]]:
        for node in nodes:
            if isinstance(node, Repeat):
                span = size(node.steps)
                for _ in range(node.count):
                    if top:
                        counter[1] += 1
                    if counter[0] + span < first:
                        counter[0] += span
                        continue
                    yield from walk(node.steps, False)
            else:
                counter[0] += 1
                if counter[0] >= first:
                    yield counter[0], counter[1], node

    return walk(steps, True)


# --- the table ------------------------------------------------------------------------

StepSet = frozenset[int] | str  # step numbers, or "all"


@dataclass(frozen=True)
class Table:
    """The protocol as the sequencer runs it."""

    steps: tuple[TableStep | Repeat, ...]
    fast_steps: StepSet = frozenset()  # steps with full-rate load-cell data
    hold_steps: StepSet = frozenset()  # steps whose start holds a simulated clock
    owner: dict[str, Any] = field(default_factory=dict)  # who uploaded it, for attaching
    version: int = TABLE_VERSION

    @property
    def total(self) -> int:
        return size(self.steps)

    def expand(self, first: int = 1) -> Iterator[tuple[int, int, TableStep]]:
        return expand(self.steps, first)

    def walk(self) -> Iterator[tuple[str, TableStep]]:
        """(path, step) of each step as written, repeats not unrolled."""

        def nodes(where: str, steps: Sequence[Any]) -> Iterator[tuple[str, TableStep]]:
            for k, node in enumerate(steps):
                if isinstance(node, Repeat):
                    yield from nodes(f"{where}[{k}].steps", node.steps)
                else:
                    yield f"{where}[{k}]", node

        return nodes("steps", self.steps)

    def fast(self, index: int) -> bool:
        return self.fast_steps == "all" or index in self.fast_steps

    def holds(self, index: int) -> bool:
        return self.hold_steps == "all" or index in self.hold_steps

    def to_json(self) -> str:
        def sorted_set(steps: StepSet) -> Any:
            return steps if steps == "all" else sorted(steps)

        doc = {
            "version": self.version,
            "steps": [_node_json(s) for s in self.steps],
            "fast_steps": sorted_set(self.fast_steps),
            "owner": self.owner,
            "hold_steps": sorted_set(self.hold_steps),
        }
        return json.dumps(doc)

    @classmethod
    def from_json(cls, source: str | bytes) -> Table:
        """The table in ``source``; :class:`TableError` names the first bad entry."""
        if isinstance(source, bytes):
            try:
                source = source.decode()
            except UnicodeDecodeError as ex:
                raise TableError(f"table: not UTF-8 text (byte {ex.start})") from None
        try:
            doc = json.loads(source)
        except (json.JSONDecodeError, RecursionError) as ex:
            raise TableError(f"table: not JSON: {ex}") from None
        if not isinstance(doc, dict):
            raise TableError("table: expected a JSON object with 'steps'")
        if doc.get("version") != TABLE_VERSION:
            raise TableError(f"table: version {doc.get('version')!r}, expected {TABLE_VERSION}")
        steps = _nodes_of("steps", doc.get("steps"), 0)
        total = size(steps)
        if total > MAX_STEPS:
            raise TableError(
                f"table: {total} steps once repeats are unrolled; at most {MAX_STEPS}",
                code=Refusal.LIMIT,
            )
        owner = doc.get("owner", {})
        if not isinstance(owner, dict):
            raise TableError(f"owner: expected an object, got {owner!r}")
        fast = _step_set("fast_steps", doc.get("fast_steps", []))
        holds = _step_set("hold_steps", doc.get("hold_steps", []))
        return cls(steps, fast, holds, owner)


# --- JSON, one entry at a time --------------------------------------------------------

_KINDS = {kind.lower(): kind for kind in STEP_KINDS}
_LIMITS = {limit.lower(): limit for limit in LIMITS}


def _node_json(node: TableStep | Repeat) -> dict[str, Any]:
    if isinstance(node, Repeat):
        return {"repeat": node.count, "steps": [_node_json(s) for s in node.steps]}
    out: dict[str, Any] = {"text": node.text, "do": node.do}
    if isinstance(node, RunCycler):
        out["step"] = _step_json(node.step)
    elif isinstance(node, SetPressure):
        out |= {
            "action": node.action,
            "pressure": node.pressure,
            "rate": node.rate,
            "duration": node.duration,
        }
    if node.period is not None:
        out["period"] = node.period
    return out


def _step_json(step: CyclerStep) -> dict[str, Any]:
    return {
        "kind": step.kind.lower(),
        "current": step.current,
        "voltage": step.voltage,
        "power": step.power,
        "resistance": step.resistance,
        "terminations": [[t.limit.lower(), t.value, t.direction] for t in step.terminations],
        "f_start": step.f_start,
        "f_end": step.f_end,
        "points_per_decade": step.points_per_decade,
    }


def _number(where: str, value: Any, low: float = -math.inf, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TableError(f"{where}: expected a number, got {value!r}")
    if not (math.isfinite(value) and low <= value <= high):
        raise TableError(f"{where}: {value!r} outside {low:g}..{high:g}", code=Refusal.LIMIT)
    return float(value)


def _nodes_of(where: str, nodes: Any, depth: int) -> tuple[TableStep | Repeat, ...]:
    if not isinstance(nodes, list) or not nodes:
        raise TableError(f"{where}: expected a non-empty list of steps")
    return tuple(_node_of(f"{where}[{k}]", node, depth) for k, node in enumerate(nodes))


def _node_of(where: str, node: Any, depth: int) -> TableStep | Repeat:
    if not isinstance(node, dict):
        raise TableError(f"{where}: expected an object, got {type(node).__name__}")
    if "repeat" in node:
        count = node["repeat"]
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise TableError(f"{where}.repeat: expected a whole number >= 1, got {count!r}")
        if depth >= MAX_DEPTH:
            raise TableError(f"{where}: repeats nested deeper than {MAX_DEPTH}")
        return Repeat(count, _nodes_of(f"{where}.steps", node.get("steps"), depth + 1))
    text, do = str(node.get("text", ""))[:TEXT_LENGTH], node.get("do")
    period = node.get("period")
    if period is not None:
        period = _number(f"{where}.period", period, 0.01, 86400.0)
    if do == "cycler":
        return RunCycler(_step_of(f"{where}.step", node.get("step")), text, period)
    if do == "pressure":
        action = node.get("action")
        if action not in PRESSURE_ACTIONS:
            raise TableError(f"{where}.action: {action!r} is not one of set, ramp, hold")
        pressure = _number(f"{where}.pressure", node.get("pressure"), 0.0)
        rate = _number(f"{where}.rate", node.get("rate"), 0.0) if action == "ramp" else None
        duration = 0.0
        if action == "hold":
            duration = _number(f"{where}.duration", node.get("duration"), 0.0, 1e9)
        return SetPressure(action, pressure, rate, duration, text, period)
    if do == "gap":
        return HoldGap(text, period)
    raise TableError(f"{where}.do: {do!r} is not one of cycler, pressure, gap")


def _step_of(where: str, spec: Any) -> CyclerStep:
    if not isinstance(spec, dict):
        raise TableError(f"{where}: expected an object, got {spec!r}")
    kind = _KINDS.get(str(spec.get("kind", "")).lower())
    if kind is None:
        raise TableError(f"{where}.kind: {spec.get('kind')!r} is not one of {list(_KINDS)}")
    raw_terms = spec.get("terminations", ())
    if not isinstance(raw_terms, list | tuple) or len(raw_terms) > MAX_TERMINATIONS:
        raise TableError(f"{where}.terminations: expected at most {MAX_TERMINATIONS} entries")
    terms = []
    for k, term in enumerate(raw_terms):
        if not (isinstance(term, list | tuple) and len(term) == 3):
            raise TableError(f"{where}.terminations[{k}]: expected [limit, value, direction]")
        limit, value, direction = term
        name = _LIMITS.get(str(limit).lower())
        if name is None:
            raise TableError(f"{where}.terminations[{k}]: unknown limit {limit!r}")
        if direction not in DIRECTIONS:
            raise TableError(f"{where}.terminations[{k}]: direction {direction!r}")
        value = _number(f"{where}.terminations[{k}]", value, 0.0)
        terms.append(Termination(name, value, direction))
    numbers: dict[str, Any] = {}
    for name in ("current", "voltage", "power", "resistance", "f_start", "f_end"):
        if spec.get(name) is not None:
            numbers[name] = _number(f"{where}.{name}", spec[name])
    ppd = spec.get("points_per_decade", 10)
    if not isinstance(ppd, int) or isinstance(ppd, bool):
        raise TableError(f"{where}.points_per_decade: expected a whole number, got {ppd!r}")
    return CyclerStep(kind, terminations=tuple(terms), points_per_decade=ppd, **numbers)


def _step_set(key: str, steps: Any) -> StepSet:
    if steps == "all":
        return "all"
    if not isinstance(steps, list) or not all(
        isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in steps
    ):
        raise TableError(f"{key}: expected step numbers or 'all', got {steps!r}")
    return frozenset(steps)
