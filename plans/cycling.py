"""Run a protocol: pressure steps on the press, electrochemical steps on the cycler, in one
Bluesky run.

Streams of the run:

* ``samples``: every sample the cycler logged on the instrument (test time, cycle, step,
  voltage, current, capacities, energies, pressure, force, gap), collected in pages
  (:class:`ssb_devices.SampleLog`), so a days-long test costs no RunEngine message per
  sample;
* ``steps``: one event per protocol step: its text, type, why it ended, duration,
  charge/discharge capacity and energy, mean and range of pressure and gap, and any
  interruption;
* ``impedance``: each spectrum, one event per frequency;
* ``primary``: the rig and the ``detectors``, read at the start of the run and of every
  step (or of the ``detector_steps`` chosen), every ``detector_period`` s of experiment
  time and at the end; a detector's exposure may hold the cell at open circuit
  (``open_circuit_reads``): the step is paused for it, the press holding, and resumed
  after;
* ``safe_state``: one reading when the run ends, however it ends, with a note of the state
  the cell was left in;
* ``events``: events the IOC detected and plan-side :class:`~ssb_plans.events.Limit`
  rules found, with the reaction taken (:mod:`ssb_plans.events`);
* ``load_cell_fast``: the load cell's samples at full rate (1 kHz) during the steps asked
  for (``fast_steps``) and for a window after each event the IOC detected.

Interruptions. A pause or a suspension puts the cycler at open circuit (the RunEngine
calls ``Cycler.pause``) while the press goes on holding its pressure; resuming runs the
rest of the interrupted step (time and capacity limits less what was done; voltage and
current limits as written) under the same step index, and the ``steps`` stream notes the
interruption. A pressure hold keeps its end time: time paused counts as holding. A stop or
an abort leaves the cell at open circuit and the press holding the pressure measured then.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
from bluesky.protocols import Readable
from bluesky.utils import MsgGenerator
from ophyd import Component as Cpt
from ophyd import Device, Kind, Signal

from ssb_contract import table as seq_table
from ssb_devices import (
    EVENT_KINDS,
    CyclerStep,
    Rig,
    SequenceRefused,
    StepRejected,
    Termination,
)

from .events import Event, EventWatch, Limit, Reaction, event_stream, handle_events
from .pressure import (
    raise_reasons,
    record,
    start_metadata,
    wait_for_reason,
)
from .protocol import (
    Electro,
    GapHold,
    Impedance,
    PressureStep,
    Protocol,
    ProtocolError,
    Repeat,
    RigLimits,
    check,
    current_of,
    parse,
)
from .results import ResultSignal, ResultStream
from .schedule import Schedule, Shortfalls, honest_run
from .writer import StorageLost

SIGN = {"charge": 1.0, "discharge": -1.0}
HOLD_NOW = 1e-9  # Rig:HoldAt-SP: a time already past holds the clock where it is
DIRECTION = {">": "Rising", "<": "Falling", None: "Auto"}


# --- protocol -> executable steps ----------------------------------------------------------


@dataclass(frozen=True)
class PlannedStep:
    """One step of a protocol as it will run: where it came from and what to do."""

    index: int  # 1-based, in execution order
    cycle: int  # iteration of the outermost Repeat (0 before the first one)
    source: Electro | PressureStep | GapHold | Impedance
    cycler: CyclerStep | None  # None for pressure steps

    @property
    def text(self) -> str:
        return str(self.source)


def _termination(until, capacity: float, line: int) -> Termination:
    q = until.quantity
    if q.kind == "voltage":
        return Termination("Voltage", q.value, DIRECTION[until.op])
    if q.kind in ("current", "c_rate"):
        return Termination("Current", abs(current_of(q, capacity)))
    raise ProtocolError(line, 1, f"cannot end a step on {q}: use a voltage or a current")


def cycler_step(step: Electro | Impedance, capacity: float, i_max: float) -> CyclerStep:
    """The cycler step for a protocol line (capacity in mAh for C-rates, ``i_max`` A the
    channel's limit, used as the current limit of a voltage hold)."""
    if isinstance(step, Impedance):
        return CyclerStep("PEIS", f_start=step.f_start, f_end=step.f_end)
    ends = [Termination("Time", step.duration)] if step.duration is not None else []
    ends += [_termination(u, capacity, step.line) for u in step.until]
    if len(ends) > 3:
        raise ProtocolError(step.line, 1, "a step takes at most three end conditions")
    q, terms = step.amount, tuple(ends)
    if step.action == "rest":
        return CyclerStep("Rest", terminations=terms)
    if q is None:  # the parser gives every step but a rest its amount
        raise ProtocolError(step.line, 1, f"{step.action} needs an amount")
    if step.action == "hold":
        return CyclerStep("CV", current=i_max, voltage=q.value, terminations=terms)
    sign = SIGN[step.action]
    if q.kind in ("current", "c_rate"):
        return CyclerStep("CC", current=sign * current_of(q, capacity), terminations=terms)
    if q.kind == "power":
        return CyclerStep("CP", power=sign * q.value, terminations=terms)
    if step.action == "charge":
        raise ProtocolError(step.line, 1, "a resistance can only discharge the cell")
    return CyclerStep("CR", resistance=q.value, terminations=terms)


def plan_steps(protocol: Protocol, capacity: float, i_max: float) -> list[PlannedStep]:
    """Every step in execution order, with its index, cycle and cycler step."""
    out = []
    for index, cycle, step in seq_table.expand(protocol.steps):
        spec = None
        if not isinstance(step, PressureStep | GapHold):
            spec = cycler_step(step, capacity, i_max)
            spec = CyclerStep(**{**spec.__dict__, "cycle": cycle, "index": index})
        out.append(PlannedStep(index, cycle, step, spec))
    return out


# --- the per-step record ---------------------------------------------------------------


class StepRecord(Device):
    """What a step did (the ``steps`` stream); filled in by the plan, read once per step."""

    step = Cpt(Signal, value=0, kind=Kind.hinted)
    cycle = Cpt(Signal, value=0, kind=Kind.normal)
    text = Cpt(Signal, value="", kind=Kind.normal)
    step_type = Cpt(Signal, value="", kind=Kind.normal)
    reason = Cpt(Signal, value="", kind=Kind.normal)
    start_time = Cpt(ResultSignal, value=0.0, kind=Kind.normal, units="s")
    duration = Cpt(ResultSignal, value=0.0, kind=Kind.normal, units="s")
    charge = Cpt(ResultSignal, value=0.0, kind=Kind.normal, units="mAh")
    discharge = Cpt(ResultSignal, value=0.0, kind=Kind.normal, units="mAh")
    charge_energy = Cpt(ResultSignal, value=0.0, kind=Kind.normal, units="mWh")
    discharge_energy = Cpt(ResultSignal, value=0.0, kind=Kind.normal, units="mWh")
    pressure_mean = Cpt(ResultSignal, value=0.0, kind=Kind.normal, units="MPa")
    pressure_min = Cpt(ResultSignal, value=0.0, kind=Kind.normal, units="MPa")
    pressure_max = Cpt(ResultSignal, value=0.0, kind=Kind.normal, units="MPa")
    gap_mean = Cpt(ResultSignal, value=0.0, kind=Kind.normal, units="um")
    gap_min = Cpt(ResultSignal, value=0.0, kind=Kind.normal, units="um")
    gap_max = Cpt(ResultSignal, value=0.0, kind=Kind.normal, units="um")
    samples = Cpt(Signal, value=0, kind=Kind.normal)
    interruptions = Cpt(Signal, value="", kind=Kind.normal)


COUNTERS = ("charge_capacity", "discharge_capacity", "charge_energy", "discharge_energy")


def _stats(values: np.ndarray) -> tuple[float, float, float]:
    if len(values) == 0:
        return (math.nan, math.nan, math.nan)
    return float(values.mean()), float(values.min()), float(values.max())


def _fill(record: StepRecord, planned: PlannedStep, **values) -> None:
    """Soft signals of the plan's own bookkeeping (no hardware behind them)."""
    values |= {"step": planned.index, "cycle": planned.cycle, "text": planned.text}
    for name, value in values.items():
        getattr(record, name).put(value)


# --- stubs -----------------------------------------------------------------------------


def collect_samples(
    rig: Rig, into: list[dict], spectra: list[dict] | None = None
) -> MsgGenerator[None]:
    """Collect what the instrument logged since the last collect: cycler samples, any new
    spectrum, full-rate load-cell samples."""
    pages = yield from bps.collect(rig.cycler.samples, return_payload=True)
    into.extend(page["data"] for page in pages or [])
    pages = yield from bps.collect(rig.cycler.impedance, return_payload=spectra is not None)
    if spectra is not None:
        spectra.extend(page["data"] for page in pages or [])
    yield from bps.collect(rig.load_cell.fast)


@dataclass
class Acquisition:
    """What a run records besides the protocol, and its bookkeeping while it runs."""

    detectors: Sequence[Readable] = ()
    detector_period: float | None = None  # s of experiment time between detector readings
    poll: float = 0.5  # s of wall time between collects
    watch: EventWatch = field(default_factory=EventWatch)
    fast_steps: Sequence[int] | Literal["all"] = ()  # steps with full-rate load-cell data
    detector_steps: Sequence[int] | Literal["all"] = "all"  # steps whose start is read
    open_circuit_reads: bool = False  # pause a current-carrying step while detectors read
    resume_from: dict[str, int] = field(default_factory=dict)  # flyer name -> first row
    origin: float | None = None  # the rig's clock at the run's start
    kicked_off: bool = False
    spectra: list[dict] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    event_record: ResultStream = field(default_factory=event_stream)
    simulated: bool = False  # the rig's clock can be held (found at the run's start)
    shortfalls: Shortfalls = field(default_factory=Shortfalls)

    def __post_init__(self):
        if self.detector_period is not None and not self.detector_period > 0:
            raise ValueError(
                f"detector_period: expected seconds > 0, got {self.detector_period!r}"
            )
        if self.detectors:
            self.shortfalls.schedule = Schedule(self.detector_period)
        for name in ("fast_steps", "detector_steps"):
            steps = getattr(self, name)
            if isinstance(steps, str) and steps == "all":
                continue
            if isinstance(steps, str) or not all(
                isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in steps
            ):
                raise ValueError(
                    f"{name}: expected step numbers (1, 2, ...) or 'all', got {steps!r}"
                )

    def fast(self, step: int) -> bool:
        return self.fast_steps == "all" or step in self.fast_steps

    def reads_at(self, step: int) -> bool:
        return self.detector_steps == "all" or step in self.detector_steps


def table_step(planned: PlannedStep) -> seq_table.TableStep:
    """One step of the sequencer's table (:mod:`ssb_contract.table`)."""
    source, text = planned.source, planned.text
    if isinstance(source, GapHold):
        return seq_table.HoldGap(text)
    if isinstance(source, PressureStep):
        rate = source.rate if source.action == "ramp" else None
        return seq_table.SetPressure(source.action, source.pressure, rate, source.duration or 0.0,
                                 text)  # fmt: skip
    if planned.cycler is None:  # prepare() gives every step but a pressure step its own
        raise ValueError(f"step {planned.index} ({text}) has no cycler step")
    step = dataclasses.replace(planned.cycler, cycle=0, index=0)  # the table numbers them
    return seq_table.RunCycler(step, text, getattr(source, "period", None))


def sequence_table(
    protocol: Protocol,
    planned: Sequence[PlannedStep],
    fast_steps: Sequence[int] | Literal["all"] = (),
    owner: dict[str, Any] | None = None,
    hold_steps: Sequence[int] | Literal["all"] = (),
) -> str:
    """The protocol as the instrument's sequencer runs it: the planned steps, with
    repeats kept as repeats (a million steps stay a few lines), as JSON; a simulated
    rig's clock holds at the start of ``hold_steps`` until the plan has read there."""
    steps: dict[int, seq_table.TableStep] = {}
    for step in planned:
        steps.setdefault(id(step.source), table_step(step))

    def tree(nodes) -> tuple:
        return tuple(
            seq_table.Repeat(s.count, tree(s.steps)) if isinstance(s, Repeat) else steps[id(s)]
            for s in nodes
        )

    def step_set(chosen: Sequence[int] | Literal["all"]) -> seq_table.StepSet:
        return "all" if chosen == "all" else frozenset(chosen)

    return seq_table.Table(
        tree(protocol.steps), step_set(fast_steps), step_set(hold_steps), owner or {}
    ).to_json()


@dataclass
class Follower:
    """The plan's bookkeeping while it follows the sequence on the instrument."""

    planned: dict[int, PlannedStep]
    next_result: int = 1  # completion number of the next step record to store
    step_seen: int = 0  # the step in progress at the last look
    rows: dict[str, np.ndarray] = field(default_factory=dict)  # samples not yet recorded

    def keep(self, pages: list[dict]) -> None:
        for key in ("test_time", "step", "pressure", "gap"):
            new = [np.asarray(p[key], dtype=float) for p in pages]
            self.rows[key] = np.concatenate([self.rows.get(key, np.empty(0)), *new])

    def rows_of(self, result: dict) -> dict[str, np.ndarray]:
        """The samples logged during a completed step; older ones are let go."""
        t = self.rows.get("test_time", np.empty(0))
        mask = (
            (self.rows.get("step", np.empty(0)) == result["index"])
            & (t >= result["start_time"] - 1e-9)
            & (t <= result["end_time"] + 1e-9)
        )
        out = {k: v[mask] for k, v in self.rows.items()}
        later = t >= result["end_time"] - 1e-9
        self.rows = {k: v[later] for k, v in self.rows.items()}
        return out


def step_summary(result: dict[str, Any], planned: PlannedStep | None, rows) -> dict[str, Any]:
    """A row of the ``steps`` stream from the instrument's record of a step."""
    if planned is not None and planned.cycler is not None:
        step_type = planned.cycler.kind
    else:
        step_type = "Pressure"
    empty = not len(rows.get("test_time", ()))
    p_mean, p_min, p_max = (math.nan,) * 3 if empty else _stats(rows["pressure"])
    g_mean, g_min, g_max = (math.nan,) * 3 if empty else _stats(rows["gap"])
    delta = {k: result[f"end_{k}"] - result[f"start_{k}"] for k in COUNTERS}
    return dict(
        step_type=step_type,
        reason=result["reason"],
        start_time=result["start_time"],
        duration=result["duration"],
        charge=delta["charge_capacity"],
        discharge=delta["discharge_capacity"],
        charge_energy=delta["charge_energy"],
        discharge_energy=delta["discharge_energy"],
        pressure_mean=p_mean,
        pressure_min=p_min,
        pressure_max=p_max,
        gap_mean=g_mean,
        gap_min=g_min,
        gap_max=g_max,
        samples=0 if empty else len(rows["test_time"]),
        interruptions=result["interruptions"],
    )


def record_steps(
    rig: Rig, follow: Follower, completed: int, record_: StepRecord, outcome: Outcome
) -> MsgGenerator[None]:
    """Store the instrument's record of every step completed up to ``completed``."""
    while follow.next_result <= completed:
        results = yield from read_results(rig, follow.next_result)
        if not results:
            return
        for result in results:
            if result["n"] > completed:
                return
            planned = follow.planned.get(result["index"])
            summary = step_summary(result, planned, follow.rows_of(result))
            for name, value in summary.items():
                getattr(record_, name).put(value)
            record_.step.put(result["index"])
            record_.cycle.put(result["cycle"])
            record_.text.put(planned.text if planned else result["text"])
            yield from bps.trigger_and_read([record_], name="steps")
            outcome.steps.append(
                {"step": result["index"], "cycle": result["cycle"], "text": record_.text.get()}
                | summary
            )
            follow.next_result = result["n"] + 1


def read_results(rig: Rig, first: int) -> MsgGenerator[list[dict[str, Any]]]:
    """The step records from completion number ``first`` on (page reads, which change
    nothing on the instrument: other clients read the same records meanwhile)."""
    yield from bps.null()
    return rig.sequencer.read_results(first)


def follow_sequence(
    rig: Rig,
    table: str | None,
    follow: Follower,
    record_: StepRecord,
    acq: Acquisition,
    outcome: Outcome,
) -> MsgGenerator[None]:
    """Start ``table`` on the instrument (or, ``None``, follow the sequence there) and
    follow it to its end: collect samples, handle events, read the detectors at step
    boundaries and every ``detector_period``, store each step's record."""
    group = "ssb-sequence"
    sequence = yield from bps.abs_set(rig.sequencer, table, group=group)
    yield from bps.checkpoint()  # a rewind must not start the sequence twice
    schedule = acq.shortfalls.schedule
    holding = schedule if schedule is not None and schedule.holds else None
    if acq.simulated and holding is None:  # the run's start hold: the sequence runs from it
        yield from bps.abs_set(rig.clock.hold_at, 0)
    hold: Any = None  # the pending put of the plan's hold: done once the clock stands
    while True:
        if holding is not None:  # wake where the next reading is due, or where it holds
            if hold is None or hold.done:
                hold = yield from bps.abs_set(
                    rig.clock.hold_at, holding.hold_target(), group="ssb-hold"
                )
            yield from bps.wait(group="ssb-hold", timeout=acq.poll, error_on_timeout=False)
            done = sequence is None or sequence.done
        else:
            done = yield from bps.wait(group=group, timeout=acq.poll, error_on_timeout=False)
        yield from bps.abs_set(rig.press.heartbeat, 1)  # alive: the deadman, the hold
        completed = int((yield from bps.rd(rig.sequencer.completed, default_value=0)))
        new: list[dict] = []
        yield from collect_samples(rig, new, acq.spectra)  # every sample of those steps
        follow.keep(new)
        yield from handle_events(
            rig, acq.watch, new, acq.event_record, acq.detectors, acq.events, acq.origin
        )
        yield from record_steps(rig, follow, completed, record_, outcome)
        step = int((yield from bps.rd(rig.sequencer.step, default_value=0)))
        now = yield from bps.rd(rig.clock.time, default_value=0.0)
        if step and step != follow.step_seen:  # a boundary: the rig and the detectors
            if schedule is not None and follow.step_seen:
                passed = range(follow.step_seen + 1, step)
                schedule.steps_passed_unread([k for k in passed if acq.reads_at(k)], _names(acq))
            follow.step_seen = step
            if acq.reads_at(step):
                if schedule is not None:
                    schedule.read_at_step(now)
                yield from read_detectors(rig, acq, follow.planned)
        elif schedule is not None and schedule.periodic_due(now):
            schedule.read_periodic(now, _names(acq))
            yield from read_detectors(rig, acq, follow.planned)
        yield from bps.checkpoint()
        if done:
            break
    yield from wait_for_reason(group)  # raises if the IOC went away
    state = yield from bps.rd(rig.sequencer.state, default_value="")
    reason = yield from bps.rd(rig.sequencer.reason, default_value="")
    if state == "Failed":
        raise StepRejected(f"protocol failed on the instrument: {reason}")
    if state != "Done":
        raise SequenceEnded(f"protocol {state.lower()} on the instrument: {reason}")


def _names(acq: Acquisition) -> str:
    return ", ".join(getattr(d, "name", str(d)) for d in acq.detectors)


def read_detectors(
    rig: Rig, acq: Acquisition, planned: dict[int, PlannedStep] | None = None
) -> MsgGenerator[None]:
    """One event of ``primary``: the rig and the detectors, triggered together (an
    exposure takes the detector's time; the rig's values are those at its end). With
    ``open_circuit_reads`` a running sequence is paused for it (circuit open, press
    holding; an impedance sweep is left to finish), so that the frame sees one state of
    charge at rest even if a step would have ended meanwhile, and resumed after."""
    paused = False
    if acq.open_circuit_reads and acq.detectors:
        state = yield from bps.rd(rig.sequencer.state, default_value="")
        index = int((yield from bps.rd(rig.sequencer.step, default_value=0)))
        step = (planned or {}).get(index)
        sweeping = step is not None and step.cycler is not None and step.cycler.kind == "PEIS"
        if state == "Running" and not sweeping:
            paused = yield from sequencer_command(rig, rig.sequencer.pause_cmd, "Paused")
    yield from bps.trigger_and_read([rig, *acq.detectors])
    if paused:
        yield from sequencer_command(rig, rig.sequencer.resume_cmd, "Running")


def sequencer_command(rig: Rig, command: Signal, wanted: str) -> MsgGenerator[bool]:
    """Put 1 to a sequencer command and wait for it; False if the IOC did not take it
    because the sequence had moved on (ended meanwhile), an error if it is silent."""
    group = f"ssb-{command.attr_name}-{uuid.uuid4()}"
    yield from bps.abs_set(command, rig.sequencer.key or 1, group=group)  # the owner's key
    done = yield from bps.wait(group=group, timeout=10.0, error_on_timeout=False)
    if done:
        return True
    state = yield from bps.rd(rig.sequencer.state, default_value="")
    if state in (wanted, "Done", "Aborted", "Failed"):
        return state == wanted
    raise SequenceEnded(f"{command.pvname} not taken by the IOC (sequence {state!r})")


class SequenceEnded(RuntimeError):
    """The sequence on the instrument ended before its last step (a client's stop, an
    event whose action opened the circuit, an IOC restart); the message says why."""


ACTIVE = ("Running", "Paused", "Held")  # a sequence that owns the rig


def check_rig_free(rig: Rig) -> MsgGenerator[None]:
    """Refuse, before anything is written, a rig on which another client's protocol is
    running: who owns it and since when (its owner's run is left alone)."""
    state = yield from bps.rd(rig.sequencer.state, default_value="")
    if state not in ACTIVE:
        return
    reading = yield from bps.read(rig.sequencer.owner)
    text = reading[rig.sequencer.owner.name]["value"] if reading else "{}"
    try:
        owner = json.loads(text or "{}")
    except ValueError:
        owner = {}
    since = owner.get("since")
    when = (
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
        if isinstance(since, int | float)
        else "?"
    )
    raise SequenceRefused(
        f"the rig {rig.prefix} is {state.lower()} another acquisition's protocol: "
        f"{owner.get('plan', 'a plan')} (sequence {str(owner.get('sequence_id', '?'))[:8]}) "
        f"of {owner.get('client') or 'another client'} since {when}; wait for its end, or "
        "follow it with `ssb attach` if its acquisition is gone"
    )


def safe_state(rig: Rig) -> MsgGenerator[None]:
    """Open circuit (a sequence of ours still going on the instrument is aborted), press
    left as it is (holding in Pressure mode), full-rate sampling off, and say so. A
    sequence another client owns is left untouched: only the reading is taken."""
    state = yield from bps.rd(rig.sequencer.state, default_value="")
    owner = int((yield from bps.rd(rig.sequencer.owner_key, default_value=0)))
    ours = owner in (0, rig.sequencer.key)
    if state in ACTIVE and ours:
        yield from bps.mv(rig.sequencer.abort_cmd, rig.sequencer.key or 1)
    if ours or state not in ACTIVE:
        yield from bps.mv(rig.cycler.stop_cmd, 1, rig.load_cell.fast_sampling, "Off")
    yield from bps.trigger_and_read([rig], name="safe_state")


# --- the plan ------------------------------------------------------------------------


@dataclass
class Outcome:
    """What a protocol did, for plans that evaluate it in the same run."""

    steps: list[dict[str, Any]]  # the rows of the ``steps`` stream
    spectra: list[dict[str, list]]  # impedance pages: frequency, z_real, z_imag, ...
    events: list[Event] = field(default_factory=list)  # the rows of the ``events`` stream


def prepare(
    rig: Rig, protocol: Protocol | str, capacity: float | None
) -> tuple[Protocol, list[PlannedStep]]:
    """Parse, check against the rig's limits (read from the IOC) and plan a protocol;
    refuses before anything moves."""
    if isinstance(protocol, str):
        protocol = parse(protocol)
    capacity = planned_capacity(rig, capacity)
    limits = rig_limits(rig, capacity)
    check(protocol, limits)
    return protocol, plan_steps(protocol, capacity, limits.i_max)


def execute(
    rig: Rig,
    protocol: Protocol,
    planned: Sequence[PlannedStep],
    acq: Acquisition | None = None,
    owner: dict[str, Any] | None = None,
    follow: Follower | None = None,
) -> MsgGenerator[Outcome]:
    """Run planned steps on the instrument's sequencer inside an open run (streams as for
    :func:`run_protocol`); the cell is left safe however it ends. With ``follow`` given,
    follow the sequence already on the instrument instead (attaching)."""
    acq = acq or Acquisition()
    record_ = StepRecord(name="step")
    outcome = Outcome([], acq.spectra, acq.events)
    flyers = (rig.cycler.samples, rig.cycler.impedance, rig.load_cell.fast, rig.events.buffer)
    attaching = follow is not None
    follow = follow or Follower({step.index: step for step in planned})

    def ioc_actions(end: bool):
        """The IOC opens the circuit itself on kinds whose reaction is "end"."""
        for kind in EVENT_KINDS:
            stop = end and acq.watch.reaction(kind) == Reaction.END
            action = "OpenCircuit" if stop else "Log"
            yield from bps.mv(getattr(rig.events, f"{kind}_action"), action)

    def body():
        simulated = yield from bps.rd(rig.clock.simulated, default_value="No")
        acq.simulated = simulated == "Yes"
        schedule = acq.shortfalls.schedule
        if acq.simulated:  # no experiment time passes while the run gets going
            yield from bps.mv(rig.clock.hold_at, HOLD_NOW)
            if schedule is not None:
                schedule.holds = True
        yield from ioc_actions(end=True)
        for flyer in flyers:  # from the first row not stored yet (attaching), or from now
            flyer.resume_at = acq.resume_from.get(flyer.name)
            yield from bps.kickoff(flyer, wait=True)
        acq.kicked_off = True
        now = yield from bps.rd(rig.clock.time, default_value=0.0)
        acq.origin = now if acq.origin is None else acq.origin
        if schedule is not None:
            schedule.begin(now)
        yield from record(rig, acq.detectors)  # reading + checkpoint
        holds = acq.detector_steps if acq.detectors and acq.simulated else ()
        table = None
        if not attaching:
            table = sequence_table(protocol, planned, acq.fast_steps, owner, hold_steps=holds)
        yield from follow_sequence(rig, table, follow, record_, acq, outcome)
        yield from bps.trigger_and_read([rig, *acq.detectors])
        yield from bps.complete(rig.cycler.samples, wait=True)
        yield from collect_samples(rig, [], outcome.spectra)

    failures: list[BaseException] = []

    def note(ex):
        failures.append(ex)
        yield from bps.null()

    def cleanup():
        acq.shortfalls.take_losses(flyers)
        if not rig.sequencer.state.connected:
            return  # the IOC is gone: nothing to command or collect (its data stays there)
        if any(isinstance(ex, StorageLost) for ex in failures):  # the recorder's trouble:
            rig.sequencer.let_go()  # the protocol goes on on the instrument, untouched
            if acq.simulated:
                yield from bps.abs_set(rig.clock.hold_at, 0)
            return
        state = yield from bps.rd(rig.sequencer.state, default_value="")
        owner = int((yield from bps.rd(rig.sequencer.owner_key, default_value=0)))
        if state in ACTIVE and owner not in (0, rig.sequencer.key):
            return  # another client's protocol runs there: touch nothing of it
        if acq.simulated:
            yield from bps.abs_set(rig.clock.hold_at, 0)  # the clock runs on its own again
        yield from safe_state(rig)
        yield from ioc_actions(end=False)
        if acq.kicked_off:
            pages: list[dict] = []
            yield from collect_samples(rig, pages, outcome.spectra)
            follow.keep(pages)
            quiet = EventWatch(limits=acq.watch.limits)  # store the last events, no reaction
            yield from handle_events(rig, quiet, pages, acq.event_record, (), acq.events)
            completed = yield from bps.rd(rig.sequencer.completed, default_value=0)
            yield from record_steps(rig, follow, int(completed), record_, outcome)
            acq.shortfalls.take_losses(flyers)

    yield from bpp.contingency_wrapper(body(), except_plan=note, final_plan=cleanup)
    return outcome


def rig_limits(rig: Rig, capacity: float) -> RigLimits:
    """The limits a protocol is checked against, read from the IOC."""
    v_min, v_max = rig.cycler.voltage_sp.limits
    _, i_max = rig.cycler.current_sp.limits
    _, ramp_max = rig.press.ramp_rate.limits
    period_min, period_max = rig.cycler.log_period.limits
    return RigLimits(
        max_pressure=float(rig.press.max_pressure.get()),
        max_ramp_rate=float(ramp_max) or RigLimits.max_ramp_rate,
        v_min=float(v_min),
        v_max=float(v_max),
        i_max=float(i_max),
        capacity_mAh=capacity,
        log_period_min=float(period_min) or RigLimits.log_period_min,
        log_period_max=float(period_max) or RigLimits.log_period_max,
    )


def run_protocol(
    rig: Rig,
    protocol: Protocol | str,
    *,
    capacity: float | None = None,
    detectors: Sequence[Readable] = (),
    detector_period: float | None = None,
    poll: float = 0.5,
    reactions: dict[str, str] | None = None,
    limits: Sequence[Limit] = (),
    fast_steps: Sequence[int] | Literal["all"] = (),
    detector_steps: Sequence[int] | Literal["all"] = "all",
    open_circuit_reads: bool = False,
    md: dict[str, Any] | None = None,
) -> MsgGenerator[str]:
    """Run ``protocol`` (text or :class:`Protocol`) in one run; returns its uid.

    ``capacity`` (mAh) turns C-rates into currents (default: the cycler's
    ``Capacity-SP``, set from the cell file); ``detectors`` are read with the rig at every
    step boundary and every ``detector_period`` s of experiment time; samples are
    collected every ``poll`` s of wall time. ``reactions`` maps event kinds
    (``pressure_spike``, ``pressure_drop``, ``soft_short``, ``resistance_jump`` or a
    ``limits`` rule's kind) to ``log``, ``read``, ``pause`` or ``end``
    (:mod:`ssb_plans.events`); ``fast_steps``: step numbers (1-based, as in the
    ``steps`` stream) or ``"all"``, during which every load-cell sample is stored.
    ``detector_steps``: the steps at whose start the detectors are read (default all);
    ``open_circuit_reads``: pause the sequence while the detectors read, the cell at
    open circuit and the press holding (a diffraction pattern of one state of charge;
    the step resumes after). The protocol is
    checked against the rig's limits before anything moves.
    """
    protocol, planned = prepare(rig, protocol, capacity)
    capacity = planned_capacity(rig, capacity)
    watch = EventWatch(reactions or {}, tuple(limits))
    acq = Acquisition(
        detectors, detector_period, poll, watch, fast_steps, detector_steps=detector_steps,
        open_circuit_reads=open_circuit_reads,
    )  # fmt: skip
    args = {
        "protocol": str(protocol),
        "capacity": capacity,
        "detector_period": detector_period,
        "reactions": {k: watch.reaction(k).value for k in watch.reactions},
        "limits": [repr(limit) for limit in limits],
        "fast_steps": fast_steps if fast_steps == "all" else sorted(fast_steps),
        "detector_steps": detector_steps if detector_steps == "all" else sorted(detector_steps),
        "open_circuit_reads": open_circuit_reads,
    }
    return (yield from protocol_run(rig, "run_protocol", args, protocol, planned, md, acq))


def protocol_run(
    rig: Rig,
    plan_name: str,
    plan_args: dict[str, Any],
    protocol: Protocol,
    planned: Sequence[PlannedStep],
    md: dict[str, Any] | None = None,
    acq: Acquisition | None = None,
    evaluate=None,
    follow: Follower | None = None,
) -> MsgGenerator[str]:
    """One run executing ``planned``; ``evaluate(outcome)``, a plan, may then add its
    own streams (a study's answer) to the same run. Returns the run's uid."""
    acq = acq or Acquisition()
    _md = start_metadata(rig, plan_name, plan_args, md, acq.detectors)
    _md |= {"protocol": str(protocol), "steps_planned": len(planned)}
    if protocol.title:
        _md.setdefault("title", protocol.title)  # the protocol's own heading
    _md.setdefault("sequence_id", str(uuid.uuid4()))  # names the run's table on the IOC

    @raise_reasons
    def inner():
        owner = {"sequence_id": _md["sequence_id"], "plan": plan_name}
        outcome = yield from execute(rig, protocol, planned, acq, owner, follow)
        if evaluate is not None:
            yield from evaluate(outcome)

    if follow is None:  # before a run opens or anything is written: the rig may be another's
        yield from check_rig_free(rig)
    staged = bpp.stage_wrapper(honest_run(inner(), _md, acq.shortfalls), [rig, *acq.detectors])
    return (yield from staged)


def planned_capacity(rig: Rig, capacity: float | None) -> float:
    return float(rig.cycler.capacity.get()) if capacity is None else capacity


__all__ = [
    "Acquisition",
    "Outcome",
    "PlannedStep",
    "StepRecord",
    "cycler_step",
    "execute",
    "plan_steps",
    "prepare",
    "protocol_run",
    "run_protocol",
]
