"""A battery-cycler channel as the rig's control sees it, as a commercial cycler runs one.

The channel's steps, terminations, safety limits, counters and logged samples are here;
what drives the cell is below: the simulated channel
(:class:`ssb_ioc.sim.cycler.Cycler`) computes the current over the simulated cell, a
driven channel (:class:`ssb_ioc.backends.channel.BtsChannel`) follows a real one.

Conventions (BioLogic/Arbin/Maccor-like):

* Current in A, **positive on charge**; capacities in mAh, energies in mWh, counted
  separately for charge and discharge, per step and cumulative.
* A step is ``REST`` (open circuit), ``CC`` (constant current), ``CV`` (constant voltage
  with a current limit), ``CCCV`` (constant current until the voltage reaches the CV
  voltage, then constant voltage), ``CP`` (constant power), ``CR`` (discharge through a
  constant resistance) or ``PEIS`` (an impedance sweep at open circuit, from the cell's
  equivalent circuit at the present pressure); CP and CR are held to the channel's
  current limit. Up to three
  terminations; the first one met ends the step and its reason is kept: voltage
  (direction follows the step unless given: charge rising, discharge falling), current
  magnitude (falls below), step time, step capacity.
* Safety limits are checked on every simulation step whatever any client does: the
  voltage window, the current magnitude, and the press interlock. A violation puts the
  channel at open circuit, latches the reason, and refuses new steps until reset.
* Samples are logged on the instrument every ``log_period`` s of test time, on a voltage
  change of ``log_dv``, and at every step end, into a buffer that clients read in bulk
  by sequence number, so that nothing taken while no client reads is lost.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Protocol

import numpy as np

from ssb_contract.records import SAMPLE, SPECTRA_KEPT
from ssb_contract.refusals import Refusal, Refused
from ssb_contract.table import CyclerStep

MAH = 3.6  # coulombs per mAh


class MeasuredCell(Protocol):
    """The cell as the channel knows it: its terminal voltage and the current through it."""

    voltage: float
    current: float

    def open_circuit(self) -> None: ...


class StepKind(Enum):
    REST = "rest"
    CC = "cc"
    CV = "cv"
    CCCV = "cccv"
    CP = "cp"  # constant power (W, + = charge)
    CR = "cr"  # constant load resistance (Ohm): a discharge
    PEIS = "peis"  # impedance sweep at open circuit (small signal)


class Limit(Enum):
    VOLTAGE = "voltage"  # V
    CURRENT = "current"  # A, magnitude falling below
    TIME = "time"  # s of step time
    CAPACITY = "capacity"  # mAh passed in the step


@dataclass(frozen=True)
class Termination:
    limit: Limit
    value: float
    rising: bool | None = None  # voltage only: None = follow the step's direction

    def describe(self) -> str:
        unit = {Limit.VOLTAGE: "V", Limit.CURRENT: "A", Limit.TIME: "s", Limit.CAPACITY: "mAh"}[
            self.limit
        ]
        return f"{self.limit.value} {self.value:g} {unit}"


@dataclass(frozen=True)
class Step:
    kind: StepKind
    current: float = 0.0  # A: CC/CCCV current (signed); CV current limit (magnitude)
    voltage: float = 0.0  # V for CV and CCCV (0: not given)
    power: float = 0.0  # W for CP (signed, + = charge; 0: not given)
    resistance: float = 0.0  # Ohm for CR (0: not given)
    terminations: tuple[Termination, ...] = ()
    f_start: float = 1e6  # Hz, PEIS: first frequency
    f_end: float = 0.1  # Hz, PEIS: last frequency
    points_per_decade: int = 10  # PEIS


_RISING = {"Auto": None, "Rising": True, "Falling": False}


def step_of(spec: CyclerStep) -> Step:
    """The channel's step for a step as the contract writes it (a table's, a client's)."""
    terms = tuple(
        Termination(
            Limit(t.limit.lower()),
            t.value,
            _RISING[t.direction] if t.limit == "Voltage" else None,
        )
        for t in spec.terminations
    )
    return Step(
        StepKind(spec.kind.lower()),
        current=spec.current,
        voltage=spec.voltage,
        power=spec.power,
        resistance=spec.resistance,
        terminations=terms,
        f_start=spec.f_start,
        f_end=spec.f_end,
        points_per_decade=spec.points_per_decade,
    )


EIS_MIN_POINT_TIME = 0.1  # s per frequency point (settling, averaging)
EIS_PERIODS = 2  # periods measured at each frequency
EIS_MAX_POINTS = 200


def sweep_frequencies(f_start: float, f_end: float, points_per_decade: int) -> np.ndarray:
    """Log-spaced frequencies (Hz) from ``f_start`` to ``f_end``, both included."""
    decades = abs(math.log10(f_end / f_start))
    n = max(2, round(decades * points_per_decade) + 1)
    return np.geomspace(f_start, f_end, n)


def sweep_duration(frequencies: np.ndarray) -> float:
    """Seconds a sweep takes: a few periods, at least a minimum, at each frequency."""
    return float(np.maximum(EIS_PERIODS / frequencies, EIS_MIN_POINT_TIME).sum())


@dataclass(frozen=True)
class Spectrum:
    """One measured impedance spectrum."""

    frequency: np.ndarray  # Hz
    impedance: np.ndarray  # complex ohm
    pressure: float  # MPa, at the end of the sweep
    test_time: float  # s, when it ended
    count: int  # spectra measured so far on this channel


@dataclass(frozen=True)
class SafetyLimits:
    v_min: float = 2.0
    v_max: float = 4.5
    i_max: float = 0.02  # A


class CyclerError(Refused):
    """A step the channel refuses; the message names the problem."""


SAMPLE_FIELDS = SAMPLE.fields


@dataclass
class Counters:
    test_time: float = 0.0
    step_time: float = 0.0
    cycle: int = 0
    step: int = 0
    step_charge: float = 0.0  # mAh
    step_discharge: float = 0.0
    charge_capacity: float = 0.0  # cumulative mAh
    discharge_capacity: float = 0.0
    charge_energy: float = 0.0  # cumulative mWh
    discharge_energy: float = 0.0


@dataclass
class SampleBuffer:
    """Ring buffer of rows (sequence number first), read by sequence number."""

    size: int = 100_000
    width: int = len(SAMPLE_FIELDS)
    data: np.ndarray = field(init=False)
    next_seq: int = 0  # sequence number the next row gets

    def __post_init__(self):
        self.data = np.zeros((self.size, self.width))
        self.data.fill(0.0)  # touch every page now: memory stays flat as the ring fills

    def append(self, row: list[float]) -> None:
        self.data[self.next_seq % self.size] = [self.next_seq, *row]
        self.next_seq += 1

    def keep(self, path: Path) -> str:
        """Back the ring with the file ``path``, as an instrument keeps its data in its own
        storage: rows logged before a restart (or a crash) are there again and numbering
        goes on after them. A file of another size is set aside (``.old``). Says what it
        found."""
        shape, empty = (self.size, self.width), float("nan")
        if path.exists() and path.stat().st_size == self.size * self.width * 8:
            data = np.memmap(path, dtype=np.float64, mode="r+", shape=shape)
            seqs = np.asarray(data[:, 0])
            held = seqs[~np.isnan(seqs)]
            self.next_seq = int(held.max()) + 1 if len(held) else 0
            found = f"{len(held)} rows kept, next seq {self.next_seq}"
        else:
            if path.exists():
                path.replace(path.with_suffix(".old"))
            data = np.memmap(path, dtype=np.float64, mode="w+", shape=shape)
            data[:] = empty  # an unwritten row has no sequence number
            self.next_seq, found = 0, "new"
        self.data = data
        return found

    def last(self) -> np.ndarray | None:
        """The newest row, if any."""
        return self.data[(self.next_seq - 1) % self.size].copy() if self.next_seq else None

    @property
    def oldest_seq(self) -> int:
        return max(0, self.next_seq - self.size)

    def since(self, seq: int, limit: int | None = None) -> np.ndarray:
        """Samples with sequence numbers >= ``seq`` still held (oldest first)."""
        start = max(seq, self.oldest_seq)
        stop = self.next_seq if limit is None else min(self.next_seq, start + limit)
        idx = np.arange(start, stop) % self.size
        return self.data[idx].copy()


class Channel:
    """A cycler channel: its step, counters, safety trip and sample buffer."""

    def __init__(
        self,
        cell: MeasuredCell,
        limits: SafetyLimits | None = None,
        *,
        log_period: float = 10.0,
        log_dv: float = 0.0,
        buffer_size: int = 100_000,
    ):
        self.cell = cell
        self.limits = limits or SafetyLimits()
        self.log_period = log_period
        self.log_dv = log_dv
        self.buffer = SampleBuffer(buffer_size)
        self.counters = Counters()
        self.step: Step = Step(StepKind.REST)
        self.running = False  # a step is executing (REST included)
        self.reason = ""  # why the last step ended
        self.tripped = ""  # latched safety reason
        self._cv_phase = False
        self.starts_and_ends = 0  # counts step starts and ends (commands may fall between)
        self.end_seq = 0  # sequence number after the sample that ended the last step
        self._last_log_time = -math.inf
        self._last_log_v = math.nan
        self._sweep: np.ndarray | None = None  # PEIS frequencies while sweeping
        self._sweep_time = 0.0
        self._pressure = 0.0
        self._mechanics = (0.0, 0.0, 0.0)  # pressure, force, gap at the last account()
        self.spectrum: Spectrum | None = None
        self.spectra: deque[Spectrum] = deque(maxlen=SPECTRA_KEPT)  # for bulk reads

    # --- commands -----------------------------------------------------------------------
    def start(self, step: Step, *, cycle: int | None = None, index: int | None = None) -> None:
        """Begin ``step`` now (validated; refused while a safety trip is latched)."""
        if self.tripped:
            raise CyclerError(
                f"safety trip latched ({self.tripped}); reset it first", code=Refusal.INTERLOCK
            )
        self.validate(step)
        c = self.counters
        if cycle is not None:
            c.cycle = cycle
        c.step = c.step + 1 if index is None else index
        c.step_time = c.step_charge = c.step_discharge = 0.0
        self.step, self.running, self.reason = step, True, ""
        self.starts_and_ends += 1
        self._cv_phase = step.kind == StepKind.CV
        self._sweep = None
        if step.kind == StepKind.PEIS:
            self._sweep = sweep_frequencies(step.f_start, step.f_end, step.points_per_decade)
            self._sweep_time = sweep_duration(self._sweep)

    def resume_counters(self) -> None:
        """Go on from the newest logged sample (after a restart): test time, cycle, step
        and the cumulative capacities and energies, so that the record stays monotonic."""
        row = self.buffer.last()
        if row is None:
            return
        c, field_of = self.counters, dict(zip(SAMPLE_FIELDS, row, strict=True))
        c.test_time = float(field_of["test_time"])
        c.cycle, c.step = int(field_of["cycle"]), int(field_of["step"])
        for name in ("charge_capacity", "discharge_capacity", "charge_energy", "discharge_energy"):
            setattr(c, name, float(field_of[name]))
        self._last_log_time = c.test_time

    def stop(self, reason: str = "stopped") -> None:
        """End the step now; the channel rests at open circuit."""
        if self.running:
            self._end(reason)
        self.step = Step(StepKind.REST)

    def reset(self) -> None:
        """Clear a latched safety trip (the condition is checked again next step)."""
        self.tripped = ""

    def validate(self, step: Step) -> None:
        """Refuse a step this channel cannot run (:class:`CyclerError` says why)."""
        lim = self.limits
        if len(step.terminations) > 3:
            raise CyclerError("a step takes at most three terminations")
        if not math.isfinite(step.current) or abs(step.current) > lim.i_max:
            raise CyclerError(
                f"current {step.current:g} A outside +-{lim.i_max:g} A", code=Refusal.LIMIT
            )
        for term in step.terminations:  # at a safety limit the trip would come first
            if term.limit == Limit.VOLTAGE and not lim.v_min < term.value < lim.v_max:
                raise CyclerError(
                    f"until {term.value:g} V: the safety limits are {lim.v_min:g} and "
                    f"{lim.v_max:g} V, which trip the step and end the protocol; end it "
                    "inside them",
                    code=Refusal.LIMIT,
                )
        if step.kind in (StepKind.CV, StepKind.CCCV):
            v = step.voltage
            if not math.isfinite(v) or not lim.v_min <= v <= lim.v_max:
                raise CyclerError(
                    f"voltage {v:g} V outside {lim.v_min:g}..{lim.v_max:g} V", code=Refusal.LIMIT
                )
            if step.current == 0:
                raise CyclerError(f"{step.kind.value} needs a non-zero current (limit)")
        if step.kind == StepKind.PEIS:
            for f in (step.f_start, step.f_end):
                if not (math.isfinite(f) and 1e-3 <= f <= 1e7):
                    raise CyclerError(
                        f"impedance frequency {f:g} Hz outside 1 mHz..10 MHz", code=Refusal.LIMIT
                    )
            if step.f_start == step.f_end:
                raise CyclerError("impedance sweep needs two different frequencies")
            if not 1 <= step.points_per_decade <= 50:
                raise CyclerError(
                    f"impedance sweep: {step.points_per_decade} points per decade outside 1..50",
                    code=Refusal.LIMIT,
                )
            n = len(sweep_frequencies(step.f_start, step.f_end, step.points_per_decade))
            if n > EIS_MAX_POINTS:
                raise CyclerError(
                    f"impedance sweep of {n} points; at most {EIS_MAX_POINTS}", code=Refusal.LIMIT
                )
        if step.kind == StepKind.CC and step.current == 0:
            raise CyclerError("constant current of 0 A: use a rest step")
        if step.kind == StepKind.CP and (not math.isfinite(step.power) or step.power == 0):
            raise CyclerError(f"constant power needs a finite, non-zero power, got {step.power}")
        if step.kind == StepKind.CR and (
            not math.isfinite(step.resistance) or step.resistance <= 0
        ):
            raise CyclerError(
                f"constant resistance needs a resistance > 0 Ohm, got {step.resistance}"
            )
        for t in step.terminations:
            if not math.isfinite(t.value) or t.value < 0:
                raise CyclerError(f"termination {t.describe()}: needs a finite value >= 0")

    @property
    def steady_current(self) -> bool:
        """The current stays as commanded (open circuit, rest, CC, the CC part of a CC-CV,
        an impedance sweep): the voltage may only drift, so a jump is an event."""
        steady = (StepKind.REST, StepKind.CC, StepKind.CCCV, StepKind.PEIS)
        return not self.running or (self.step.kind in steady and not self._cv_phase)

    def max_step(self) -> float:
        """Longest simulation step (s) that cannot overshoot a time termination."""
        if self._sweep is not None and self.running:
            return max(self._sweep_time - self.counters.step_time, 1e-3)
        for t in self.step.terminations:
            if t.limit == Limit.TIME and self.running:
                return max(t.value - self.counters.step_time, 1e-3)
        return math.inf

    # --- bookkeeping after each scan of a channel the IOC follows ---------------------------
    def account(
        self,
        dt: float,
        current: float,
        pressure: float,
        force: float,
        gap: float,
        interlock: str = "",
    ) -> None:
        """Count what ``dt`` s at ``current`` A passed, log, check safety and terminations
        (a channel whose steps the IOC drives; a cycler that runs its own steps reports
        them instead)."""
        c, v = self.counters, self.cell.voltage
        c.test_time += dt
        charge = current * dt / MAH  # mAh, signed
        if charge > 0:
            c.step_charge += charge
            c.charge_capacity += charge
            c.charge_energy += charge * v
        elif charge < 0:
            c.step_discharge -= charge
            c.discharge_capacity -= charge
            c.discharge_energy -= charge * v
        if self.running:
            c.step_time += dt
        row = (pressure, force, gap)
        self._pressure, self._mechanics = pressure, row
        safety = self._safety(v, current, interlock)
        if safety and not self.tripped:
            self.tripped = safety
            if self.running:
                self._end(f"safety: {safety}", row)
            return
        if self.running:
            if (
                self.step.kind == StepKind.CCCV
                and not self._cv_phase
                and self._crossed(v, self.step.voltage, self.step.current > 0)
            ):
                self._cv_phase = True
            reason = self._terminated(v, current)
            if reason:
                self._end(reason, row)
                return
        due = c.test_time - self._last_log_time >= self.log_period - 1e-9
        moved = self.log_dv > 0 and abs(v - self._last_log_v) >= self.log_dv
        if due or moved or math.isnan(self._last_log_v):
            self._log(current, row)

    # --- the rules of a step the IOC follows ------------------------------------------
    def _safety(self, v: float, current: float, interlock: str) -> str:
        lim = self.limits
        if interlock:
            return f"press interlock ({interlock})"
        if not lim.v_min <= v <= lim.v_max:
            return f"voltage {v:.3f} V outside {lim.v_min:g}..{lim.v_max:g} V"
        if abs(current) > lim.i_max * (1 + 1e-9):
            return f"current {current:g} A beyond {lim.i_max:g} A"
        return ""

    @staticmethod
    def _crossed(v: float, target: float, rising: bool) -> bool:
        return v >= target if rising else v <= target

    def _direction(self) -> bool:
        """True if the step charges (voltage rises)."""
        step = self.step
        if step.kind == StepKind.CV:
            return step.voltage >= self._rest_voltage()
        if step.kind == StepKind.CP:
            return step.power > 0
        if step.kind == StepKind.CR:
            return False
        return step.current >= 0

    def _terminated(self, v: float, current: float) -> str:
        c = self.counters
        if self._sweep is not None and c.step_time >= self._sweep_time - 1e-9:
            self._measure_spectrum()
            return f"impedance sweep done ({len(self._sweep)} points)"
        for t in self.step.terminations:
            if t.limit == Limit.VOLTAGE:
                rising = self._direction() if t.rising is None else t.rising
                if self._crossed(v, t.value, rising):
                    return f"voltage {'>=' if rising else '<='} {t.value:g} V"
            elif t.limit == Limit.CURRENT:
                if abs(current) <= t.value and (c.step_time > 0):
                    return f"current <= {t.value:g} A"
            elif t.limit == Limit.TIME:
                if c.step_time >= t.value - 1e-9:
                    return f"time {t.value:g} s"
            elif t.limit == Limit.CAPACITY and max(c.step_charge, c.step_discharge) >= t.value:
                return f"capacity {t.value:g} mAh"
        return ""

    def _rest_voltage(self) -> float:
        """The cell's voltage at rest (the terminal voltage, unless the channel knows
        better): a CV step above it charges."""
        return self.cell.voltage

    def _measure_spectrum(self) -> None:
        """Measure the impedance over the finished sweep (a channel that runs sweeps)."""
        raise NotImplementedError(f"{type(self).__name__} does not measure impedance")

    def _end(self, reason: str, row: tuple[float, float, float] | None = None) -> None:
        """End the step; its last sample carries the latest mechanics (a client's stop
        comes between simulation steps)."""
        row = self._mechanics if row is None else row
        self.running, self.reason = False, reason
        self.starts_and_ends += 1
        self._sweep = None
        self._log(self.cell.current, row)
        self.end_seq = self.buffer.next_seq  # samples from here on come after the step
        self.step = Step(StepKind.REST)
        self.cell.open_circuit()  # at once: the ohmic drop goes with the current

    def _log(self, current: float, row: tuple[float, float, float]) -> None:
        c, v = self.counters, self.cell.voltage
        self.buffer.append(
            [
                c.test_time,
                c.step_time,
                c.cycle,
                c.step,
                v,
                current,
                c.charge_capacity,
                c.discharge_capacity,
                c.charge_energy,
                c.discharge_energy,
                *row,
            ]
        )
        self._last_log_time, self._last_log_v = c.test_time, v
