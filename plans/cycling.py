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
* ``primary``: the rig and the ``detectors``, read at step boundaries and every
  ``detector_period`` s of experiment time;
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

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
from bluesky.protocols import Readable
from bluesky.utils import MsgGenerator
from ophyd import Component as Cpt
from ophyd import Device, Kind, Signal

from ssb_devices import EVENT_KINDS, CyclerStep, Rig, Termination

from .events import Event, EventWatch, Limit, Reaction, event_stream, handle_events
from .pressure import (
    at_ramp_rate,
    raise_reasons,
    record,
    regulate,
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

SIGN = {"charge": 1.0, "discharge": -1.0}
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


def _flatten(steps, cycle: list[int], top: bool):
    for step in steps:
        if isinstance(step, Repeat):
            for _ in range(step.count):
                if top:
                    cycle[0] += 1
                yield from _flatten(step.steps, cycle, False)
        else:
            yield cycle[0], step


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
    terms = [Termination("Time", step.duration)] if step.duration is not None else []
    terms += [_termination(u, capacity, step.line) for u in step.until]
    if len(terms) > 3:
        raise ProtocolError(step.line, 1, "a step takes at most three end conditions")
    q, terms = step.amount, tuple(terms)
    if step.action == "rest":
        return CyclerStep("Rest", terminations=terms)
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
    for index, (cycle, step) in enumerate(_flatten(protocol.steps, [0], True), start=1):
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
    fast_steps: Collection[int] | Literal["all"] = ()  # steps with full-rate load-cell data
    next_reading: float = math.inf
    kicked_off: bool = False
    spectra: list[dict] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    event_record: ResultStream = field(default_factory=event_stream)

    def __post_init__(self):
        if self.detector_period is not None and not self.detector_period > 0:
            raise ValueError(
                f"detector_period: expected seconds > 0, got {self.detector_period!r}"
            )
        if self.fast_steps != "all" and not all(
            isinstance(k, int) and k >= 1 for k in self.fast_steps
        ):
            raise ValueError(
                f"fast_steps: expected step numbers (1, 2, ...) or 'all', got {self.fast_steps!r}"
            )

    def fast(self, step: int) -> bool:
        return self.fast_steps == "all" or step in self.fast_steps


def counters(rig: Rig) -> MsgGenerator[dict[str, float]]:
    out = {}
    for name in ("test_time", *COUNTERS):
        out[name] = yield from bps.rd(getattr(rig.cycler, name), default_value=0.0)
    return out


def run_until_done(
    rig: Rig, group: str, pages: list[dict], acq: Acquisition
) -> MsgGenerator[None]:
    """Wait for ``group``, collecting samples and handling events every ``poll`` s
    (wall) and reading the detectors every ``detector_period`` s of experiment time,
    until it is done."""
    while True:
        done = yield from bps.wait(group=group, timeout=acq.poll, error_on_timeout=False)
        new: list[dict] = []
        yield from collect_samples(rig, new, acq.spectra)
        pages.extend(new)
        yield from handle_events(rig, acq.watch, new, acq.event_record, acq.detectors, acq.events)
        if acq.detector_period:
            now = yield from bps.rd(rig.clock.time, default_value=0.0)
            if now >= acq.next_reading:
                yield from bps.trigger_and_read([rig, *acq.detectors])
                acq.next_reading = now + acq.detector_period
        yield from bps.checkpoint()
        if done:
            break
    yield from wait_for_reason(group)  # raises the device's own reason if it failed


def full_rate_sampling(rig: Rig, source) -> MsgGenerator[None]:
    """Every load-cell sample during this step: a cycler step's end is the IOC's own, a
    pressure hold's end is known; other pressure steps end when the plan says so."""
    if isinstance(source, Electro | Impedance):
        yield from bps.mv(rig.load_cell.fast_sampling, "Step")
    elif isinstance(source, PressureStep) and source.action == "hold":
        # the IOC times it on its own clock (settling counts as holding)
        yield from bps.mv(rig.load_cell.fast_sampling, "On")
        yield from bps.mv(rig.load_cell.fast_for, source.duration)
    else:
        yield from bps.mv(rig.load_cell.fast_sampling, "On")


def run_step(
    rig: Rig, planned: PlannedStep, record_: StepRecord, acq: Acquisition
) -> MsgGenerator[dict[str, Any]]:
    """One protocol step, then its event in the ``steps`` stream (also returned)."""
    before = yield from counters(rig)
    pages: list[dict] = []
    source, group = planned.source, f"ssb-step-{planned.index}"
    reason, interruptions, step_type, duration = "", "", "Pressure", None
    wait = (rig, group, pages, acq)
    fast = acq.fast(planned.index)
    if fast:  # the IOC ends full-rate sampling with the step where it knows the end
        yield from full_rate_sampling(rig, source)
    if isinstance(source, GapHold):
        yield from bps.mv(rig.press.mode, "Gap")
        yield from run_until_done(*wait)
        reason = "gap locked"
    elif isinstance(source, PressureStep):
        yield from regulate(rig)
        yield from bps.abs_set(rig.press, source.pressure, group=group)
        if source.action == "ramp":
            yield from at_ramp_rate(rig, source.rate, run_until_done(*wait))
        else:
            yield from run_until_done(*wait)
        reason = "pressure settled"
        if source.action == "hold":
            yield from bps.abs_set(rig.clock, before["test_time"] + source.duration, group=group)
            yield from run_until_done(*wait)
            reason = f"held {source.duration:g} s"
    else:
        step_type = planned.cycler.kind
        period = getattr(source, "period", None)  # "(1 minute period)": this step only
        if period is not None:
            usual = yield from bps.rd(rig.cycler.log_period)
            yield from bps.mv(rig.cycler.log_period, period)
        status = yield from bps.abs_set(rig.cycler, planned.cycler, group=group)
        yield from bps.checkpoint()  # a rewind must not start the step twice
        yield from run_until_done(*wait)
        if period is not None:
            yield from bps.mv(rig.cycler.log_period, usual)
        reason = getattr(status, "reason", "")
        interruptions = "; ".join(getattr(status, "interruptions", []))
        step_time = yield from bps.rd(rig.cycler.step_time, default_value=0.0)
        duration = getattr(status, "time_before_pauses", 0.0) + step_time
    if fast:
        yield from bps.mv(rig.load_cell.fast_sampling, "Off", rig.load_cell.fast_for, 0.0)
    after = yield from counters(rig)
    rows = {k: np.concatenate([p[k] for p in pages]) for k in ("test_time", "pressure", "gap")}
    mask = rows["test_time"] >= before["test_time"] if pages else slice(None)
    p_mean, p_min, p_max = _stats(rows["pressure"][mask]) if pages else (math.nan,) * 3
    g_mean, g_min, g_max = _stats(rows["gap"][mask]) if pages else (math.nan,) * 3
    summary = dict(
        step_type=step_type,
        reason=reason,
        start_time=before["test_time"],
        duration=after["test_time"] - before["test_time"] if duration is None else duration,
        charge=after["charge_capacity"] - before["charge_capacity"],
        discharge=after["discharge_capacity"] - before["discharge_capacity"],
        charge_energy=after["charge_energy"] - before["charge_energy"],
        discharge_energy=after["discharge_energy"] - before["discharge_energy"],
        pressure_mean=p_mean,
        pressure_min=p_min,
        pressure_max=p_max,
        gap_mean=g_mean,
        gap_min=g_min,
        gap_max=g_max,
        samples=int(np.count_nonzero(mask)) if pages else 0,
        interruptions=interruptions,
    )
    _fill(record_, planned, **summary)
    yield from bps.trigger_and_read([record_], name="steps")
    yield from bps.checkpoint()  # a rewind must not repeat the step's record
    return {"step": planned.index, "cycle": planned.cycle, "text": planned.text, **summary}


def safe_state(rig: Rig) -> MsgGenerator[None]:
    """Open circuit, press left as it is (holding in Pressure mode), full-rate sampling
    off, and say so."""
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
    rig: Rig, planned: Sequence[PlannedStep], acq: Acquisition | None = None
) -> MsgGenerator[Outcome]:
    """Run planned steps inside an open run (streams as for :func:`run_protocol`); the
    cell is left safe however it ends."""
    acq = acq or Acquisition()
    record_ = StepRecord(name="step")
    outcome = Outcome([], acq.spectra, acq.events)
    flyers = (rig.cycler.samples, rig.cycler.impedance, rig.load_cell.fast, rig.events.buffer)

    def ioc_actions(end: bool):
        """The IOC opens the circuit itself on kinds whose reaction is "end"."""
        for kind in EVENT_KINDS:
            stop = end and acq.watch.reaction(kind) == Reaction.END
            action = "OpenCircuit" if stop else "Log"
            yield from bps.mv(getattr(rig.events, f"{kind}_action"), action)

    def body():
        yield from ioc_actions(end=True)
        for flyer in flyers:
            yield from bps.kickoff(flyer, wait=True)
        acq.kicked_off = True
        now = yield from bps.rd(rig.clock.time, default_value=0.0)
        acq.next_reading = now + (acq.detector_period or math.inf)
        for step in planned:
            yield from record(rig, acq.detectors)  # reading + checkpoint
            outcome.steps.append((yield from run_step(rig, step, record_, acq)))
        yield from bps.trigger_and_read([rig, *acq.detectors])
        yield from bps.complete(rig.cycler.samples, wait=True)
        yield from collect_samples(rig, [], outcome.spectra)

    def cleanup():
        yield from safe_state(rig)
        yield from ioc_actions(end=False)
        if acq.kicked_off:
            pages: list[dict] = []
            yield from collect_samples(rig, pages, outcome.spectra)
            quiet = EventWatch(limits=acq.watch.limits)  # store the last events, no reaction
            yield from handle_events(rig, quiet, pages, acq.event_record, (), acq.events)

    yield from bpp.finalize_wrapper(body(), cleanup())
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
    fast_steps: Collection[int] | Literal["all"] = (),
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
    ``steps`` stream) or ``"all"``, during which every load-cell sample is stored. The
    protocol is checked against the rig's limits before anything moves.
    """
    protocol, planned = prepare(rig, protocol, capacity)
    capacity = planned_capacity(rig, capacity)
    watch = EventWatch(reactions or {}, tuple(limits))
    acq = Acquisition(detectors, detector_period, poll, watch, fast_steps)
    args = {
        "protocol": str(protocol),
        "capacity": capacity,
        "detector_period": detector_period,
        "reactions": {k: v.value for k, v in watch.reactions.items()},
        "limits": [repr(limit) for limit in limits],
        "fast_steps": fast_steps if fast_steps == "all" else sorted(fast_steps),
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
) -> MsgGenerator[str]:
    """One run executing ``planned``; ``evaluate(outcome)``, a plan, may then add its
    own streams (a study's answer) to the same run. Returns the run's uid."""
    acq = acq or Acquisition()
    _md = start_metadata(rig, plan_name, plan_args, md, acq.detectors)
    _md |= {"protocol": str(protocol), "steps_planned": len(planned)}

    @bpp.stage_decorator([rig, *acq.detectors])
    @bpp.run_decorator(md=_md)
    @raise_reasons
    def inner():
        outcome = yield from execute(rig, planned, acq)
        if evaluate is not None:
            yield from evaluate(outcome)

    return (yield from inner())


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
