"""The simulated rig: a cell in a press with a load cell, on its own clock, with interlocks.

This is the backend behind the IOC's process variables. Commands are validated here, so
that every front end (Channel Access, tests, a future real driver) refuses the same bad
input with the same message: :class:`RigError`, and the state is left unchanged.

Safety: over-pressure (measured pressure above ``over_pressure``) and load-cell overload
(reading above capacity) **release** the press: the mode goes to ``OFF``, the piston
retracts and the force falls to zero. We release rather than hold because holding a
fixed gap still lets a swelling cell push the pressure further up. The trip latches until
:meth:`Rig.reset_interlock` is called with the condition cleared; while latched, only
``OFF`` is accepted as a mode.
"""

from __future__ import annotations

import math
from collections import deque
from pathlib import Path

import numpy as np

from ssb_contract.records import EVENT_KINDS, FAST_FIELDS
from ssb_contract.refusals import Refusal, Refused, refusal_of

from .cell import Cell
from .cycler import Cycler, CyclerError, SafetyLimits, SampleBuffer, Step, StepKind
from .events import EventDetector
from .loadcell import LoadCell
from .params import RigParams
from .press import Mode, Press
from .sequencer import Sequencer

FAST_BUFFER = 200_000  # full-rate rows held for bulk reads: 200 s at 1 kHz
PRE_TRIGGER = 5  # cell steps kept, to lead an event's full-rate window


class RigError(Refused):
    """A command the rig refuses; the message says why and what to do instead."""


def _finite(name: str, value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise RigError(f"{name}: {value!r} is not a number") from None
    if not math.isfinite(value):
        raise RigError(f"{name}: {value} is not a finite number")
    return value


class Rig:
    """Cell + press + load cell stepped on the simulated clock: the control and safety of
    the rig over its physics (a :class:`~ssb_ioc.backends.interface.RigBackend`)."""

    keeps_own_time = False  # the IOC advances the simulation at its speed factor
    link = "OK"  # its instruments' links: a simulation always answers

    def __init__(self, params: RigParams, seed: int | None = None):
        self.params = params
        self.rng = np.random.default_rng(seed)
        self.cell = Cell(params)
        self.load_cell = LoadCell(params.load_cell, self.rng)
        self.press = Press(params, self.load_cell)
        cyc = params.cycler
        self.cycler = Cycler(
            self.cell,
            SafetyLimits(cyc.v_min, cyc.v_max, cyc.i_max),
            log_period=cyc.log_period,
            log_dv=cyc.log_dv,
            buffer_size=int(cyc.buffer_size),
        )
        self.over_pressure = params.limits.over_pressure
        self.max_setpoint = params.limits.max_setpoint
        self.interlock: str = ""  # reason of the latched trip, "" when clear
        self._residual = 0.0
        self.press.pressure = self.load_cell.report(0.0) / self.press.area_mm2
        self.events = EventDetector()
        self.fast = SampleBuffer(FAST_BUFFER, width=len(FAST_FIELDS))  # load cell, full rate
        self.fast_mode = "off"  # "on", or "step": while the running cycler step runs
        self.fast_until = math.inf  # experiment time at which "on" ends by itself
        self.fast_decimation = 1  # record every N-th loop period
        self.event_window = 2.0  # s of full-rate samples kept after each event
        self._fast_until = -math.inf
        self._held: float | None = None  # setpoint the loop holds, for pressure events
        self._last_block: tuple[int, float] | None = None  # cycler changes, current
        self._recent: deque[list[float]] = deque(maxlen=PRE_TRIGGER)  # rows at cell steps
        self._faults: list[tuple[float, str, float]] = []  # scheduled: (time, kind, size)
        self.event_actions = dict.fromkeys(EVENT_KINDS, "log")  # or "open_circuit"
        self._events_acted = 0  # events whose action was taken
        self.sequencer = Sequencer(self)  # the protocol, run on the instrument
        self.news: list[str] = []  # what the IOC should tell its clients (Rig:Msg-RB)
        self.hold_at: float | None = None  # the clock stops here (see hold_clock)
        self.missed_replies = 0  # a simulation always answers

    # --- clock ----------------------------------------------------------------------
    @property
    def time(self) -> float:
        """Experiment time (s) on the simulated clock."""
        return self.press.time

    def keep_buffers(self, directory: Path, stem: str) -> list[str]:
        """Back the sample, event and full-rate buffers with files in ``directory``: a
        restarted IOC serves what it logged before, numbered on, and the cycler's
        counters go on from its newest sample. Says what it found per buffer."""
        directory.mkdir(parents=True, exist_ok=True)
        buffers = {"samples": self.cycler.buffer, "events": self.events.buffer, "fast": self.fast}
        found = [
            f"{name} {buf.keep(directory / f'{stem}.{name}.f64')}" for name, buf in buffers.items()
        ]
        self.cycler.resume_counters()
        return found

    def resume_clock(self, at: float) -> None:
        """Start the clock at ``at`` s (a restarted IOC goes on from where it stopped)."""
        self.press.steps = round(_finite("clock", at) / self.press.period)

    def stale_pvs(self) -> dict[str, tuple[str, float]]:
        """Nothing of a simulation is ever out of reach."""
        return {}

    # --- holding the clock --------------------------------------------------------------
    def hold_clock(self, at: float | None) -> None:
        """Stop the clock at experiment time ``at`` (at once if it has passed) until the
        hold is moved or released (``None``). At a high speed factor a client's round trip
        is minutes of experiment time; a client that coordinates other instruments (a
        detector's schedule, an exposure at open circuit) holds the clock where it must
        act, so the rig does exactly what it would do at speed 1. Simulation only."""
        if at is None:
            self.hold_at = None
            return
        at = _finite("clock hold", at)
        if at < 0:
            raise RigError(f"clock hold at {at:g} s: expected a time >= 0", code=Refusal.LIMIT)
        self.hold_at = max(at, self.time)

    @property
    def held(self) -> bool:
        """The clock stands at its hold."""
        return self.hold_at is not None and self.time >= self.hold_at - self.press.period / 2

    async def exchange(self) -> None:  # pragma: no cover - the simulation is advanced
        raise RigError(
            "the simulation runs on its own clock: call advance(dt)", code=Refusal.UNSUPPORTED
        )

    def advance(self, dt: float, stop=None) -> float:
        """Simulate ``dt`` seconds of experiment time; returns the time simulated, less
        if the clock came to its hold or ``stop()`` (asked after every cell step) said so."""
        begin = self.time
        period = self.press.period
        total = self._residual + dt
        n = math.floor(total / period + 1e-9)
        self._residual = total - n * period
        if self.hold_at is not None:  # time stops at the hold: what is beyond is not owed
            room = max(0, math.floor((self.hold_at - self.time) / period + 0.5))
            if room < n:
                n, self._residual = room, 0.0
        cell_block = max(1, round(self.params.simulation.cell_step / period))
        while n > 0:
            m = min(n, cell_block)
            # do not step past a time termination or the end of a pressure hold
            limit = min(self.cycler.max_step(), self.sequencer.max_step())
            self._inject_due_faults()
            if self._faults:  # nor past a scheduled fault
                limit = min(limit, max(self._faults[0][0] - self.time, period))
            if limit < m * period:
                m = max(1, math.ceil(limit / period - 1e-9))
            h = m * period
            before = self.cell.swelling
            current = self.cycler.command(self.press.true_pressure)
            v_before = self.cell.voltage
            self.cell.step(h, current, self.press.true_pressure)
            self._check_voltage(v_before, current, self.time)  # the jump shows from here
            self.press.swelling = before
            self.press.swelling_rate = (self.cell.swelling - before) / h
            self.load_cell.advance(h)
            self._check_pressure(self._measured_now())  # a step in thickness peaks now
            self._act_on_events()
            self._set_fast_sampling()
            self.press.run(m, self._supervise)
            self.cycler.account(
                h,
                current,
                self.press.pressure,
                self.load_cell.force / 1e3,
                self.press.gap,
                self.interlock,
            )
            self.sequencer.poll()  # the next step starts in this same simulation step
            self._recent.append(self._row())
            n -= m
            if self.held or (stop is not None and n > 0 and stop()):
                self._residual = 0.0  # held, or a reader is behind: the rest is not owed
                break
        return self.time - begin

    # --- events and full-rate samples ---------------------------------------------------
    def _check_voltage(self, before: float, current: float, time: float) -> None:
        cyc = self.cycler
        steady = cyc.steady_current
        block = (cyc.starts_and_ends, current)  # a step started or ended: a new baseline
        if steady and block == self._last_block:
            self.events.check_voltage(time, before, self.cell.voltage, current, cyc.counters.step)
        self._last_block = block if steady else None

    def _check_pressure(self, pressure: float) -> None:
        press = self.press
        if press.mode != Mode.PRESSURE or press.ramping or self.interlock:
            self._held = None
        elif press.settled:
            self._held = press.target
        elif self._held != press.target:
            self._held = None
        self.events.check_pressure(
            self.time,
            pressure,
            self._held,
            press.mode == Mode.GAP and not self.interlock,
            self.cycler.counters.step,
        )

    def _measured_now(self) -> float:
        """What the load cell reads for the force now (its bias included, no new noise
        draw): comparable with the loop's measured pressure."""
        return (self.press.true_force + self.load_cell.bias) / self.press.area_mm2

    def _supervise(self) -> None:
        self._check_interlocks()
        self._check_pressure(self.press.pressure)
        self._act_on_events()
        self._set_fast_sampling()

    def _act_on_events(self) -> None:
        """Open the cell's circuit at once on an event whose action says so (the press
        holds on): the safe state does not wait for a client."""
        buffer = self.events.buffer
        if buffer.next_seq == self._events_acted:
            return
        for row in buffer.since(self._events_acted):
            kind = EVENT_KINDS[int(row[2])]
            if self.event_actions[kind] == "open_circuit" and self.cycler.running:
                self.cycler.stop(f"stopped on event: {kind} at rig time {row[1]:.1f} s")
        self._events_acted = buffer.next_seq

    def set_event_action(self, kind: str, action: str) -> None:
        """What the rig itself does on an event of ``kind``: ``log`` or ``open_circuit``."""
        if kind not in self.event_actions:
            raise RigError(f"event kind {kind!r}: expected one of {', '.join(EVENT_KINDS)}")
        if action not in ("log", "open_circuit"):
            raise RigError(f"event action {action!r}: expected log or open_circuit")
        self.event_actions[kind] = action

    def _set_fast_sampling(self) -> None:
        self._fast_until = max(self._fast_until, self.events.latest + self.event_window)
        mode, now = self.fast_mode, self.time
        on = (
            (mode == "on" and now < self.fast_until)
            or (mode == "step" and self.cycler.running)
            or now < self._fast_until
        )
        if on != (self.press.on_period is not None):
            if on and now < self._fast_until:  # an event: lead with the last cell steps
                for row in self._recent:
                    if row[0] < now - 1e-9:
                        self.fast.append(row)
            self.press.on_period = self._record_fast if on else None
            self.press.allow_linear = not on

    def _row(self) -> list[float]:
        press = self.press
        force = self.load_cell.force / 1e3
        return [press.time, press.pressure, force, press.gap, self.cell.voltage, self.cell.current]

    def _record_fast(self) -> None:
        if self.press.steps % self.fast_decimation == 0:
            self.fast.append(self._row())

    def set_fast_sampling(
        self, mode: str | bool, rate: float | None = None, duration: float | None = None
    ) -> None:
        """Store every load-cell sample (at ``rate`` Hz, up to the loop rate): ``"on"``
        (for ``duration`` s of experiment time from now, if given and > 0), ``"step"``
        (while the running cycler step runs) or ``"off"``. Full-rate data costs wall
        time: the clock slows to it."""
        mode = {True: "on", False: "off"}.get(mode, mode)
        if mode not in ("off", "on", "step"):
            raise RigError(f"full-rate sampling {mode!r}: expected off, on or step")
        top = 1.0 / self.press.period
        decimation = self.fast_decimation
        if rate is not None:
            rate = _finite("full-rate sampling rate", rate)
            if not 0 < rate <= top:
                raise RigError(
                    f"sampling rate {rate:g} Hz: expected 0 < rate <= {top:g} Hz",
                    code=Refusal.LIMIT,
                )
            decimation = max(1, round(top / rate))
        if duration is not None:
            duration = _finite("full-rate sampling duration", duration)
            if duration < 0:
                raise RigError(
                    f"full-rate sampling for {duration:g} s: expected >= 0", code=Refusal.LIMIT
                )
        self.fast_mode, self.fast_decimation = mode, decimation
        if duration is not None:
            self.fast_until = self.time + duration if duration > 0 else math.inf

    def set_event_thresholds(self, **values: float) -> None:
        """Change the detection thresholds (``pressure`` MPa, ``voltage_drop`` V,
        ``resistance`` ohm) or ``window`` (s of full-rate samples after an event)."""
        checked = {}
        for name, value in values.items():
            value = _finite(f"event threshold {name}", value)
            if not value > 0:
                raise RigError(
                    f"event threshold {name} = {value:g}: expected > 0", code=Refusal.LIMIT
                )
            checked[name] = value
        unknown = set(checked) - {"pressure", "voltage_drop", "resistance", "window"}
        if unknown:
            raise RigError(f"unknown event thresholds: {', '.join(sorted(unknown))}")
        if "window" in checked:
            self.event_window = checked.pop("window")
        for name, value in checked.items():
            setattr(self.events.thresholds, name, value)

    # --- safety ---------------------------------------------------------------------
    def _check_interlocks(self) -> None:
        if self.interlock:
            return
        pressure = self.press.pressure
        if pressure > self.over_pressure:
            self._trip(f"over-pressure: {pressure:.1f} MPa > limit {self.over_pressure:g} MPa")
        elif self.load_cell.overloaded:
            force = self.load_cell.force / 1e3
            self._trip(
                f"load cell overload: {force:.2f} kN > capacity "
                f"{self.load_cell.capacity / 1e3:g} kN"
            )

    def _trip(self, reason: str) -> None:
        self.interlock = reason
        self.press.set_mode(Mode.OFF)

    def reset_interlock(self) -> None:
        if not self.interlock:
            return
        if self.press.pressure > self.over_pressure or self.load_cell.overloaded:
            raise RigError(
                f"cannot reset interlock: condition persists ({self.interlock})",
                code=Refusal.STATE,
            )
        self.interlock = ""

    # --- commands (validated; state unchanged on error) -------------------------------
    @staticmethod
    def parse_mode(mode: int | str) -> Mode:
        try:
            return Mode[mode.upper()] if isinstance(mode, str) else Mode(int(mode))
        except (KeyError, ValueError):
            names = ", ".join(m.name.title() for m in Mode)
            raise RigError(f"mode: {mode!r} is not one of {names}") from None

    def set_mode(self, mode: int | str) -> None:
        mode = self.parse_mode(mode)
        if self.interlock and mode != Mode.OFF:
            raise RigError(
                f"interlock tripped ({self.interlock}); reset it before {mode.name}",
                code=Refusal.INTERLOCK,
            )
        if mode == Mode.PRESSURE:
            pid = self.press.pid
            self._check_loop(pid.kp, pid.ki, pid.drvl, pid.drvh)
        self.press.set_mode(mode)

    def set_pressure(self, pressure: float) -> None:
        pressure = _finite("pressure setpoint", pressure)
        if self.press.mode != Mode.PRESSURE:
            raise RigError(
                f"pressure setpoint refused: press is in {self.press.mode.name.title()} mode; "
                "set Mode to Pressure first",
                code=Refusal.STATE,
            )
        if not 0 <= pressure <= self.max_setpoint:
            raise RigError(
                f"pressure setpoint {pressure:g} MPa outside 0..{self.max_setpoint:g} MPa",
                code=Refusal.LIMIT,
            )
        self.press.set_target(pressure)

    def set_ramp_rate(self, rate: float) -> None:
        rate = _finite("ramp rate", rate)
        top = self.params.limits.max_ramp_rate
        if not 0 <= rate <= top:
            raise RigError(
                f"ramp rate {rate:g} MPa/s outside 0..{top:g} MPa/s (0 = step)", code=Refusal.LIMIT
            )
        self.press.set_ramp_rate(rate)

    def set_over_pressure(self, limit: float) -> None:
        limit = _finite("over-pressure limit", limit)
        capacity_mpa = self.load_cell.capacity / self.press.area_mm2
        if not self.max_setpoint < limit <= capacity_mpa:
            raise RigError(
                f"over-pressure limit {limit:g} MPa outside {self.max_setpoint:g}.."
                f"{capacity_mpa:.1f} MPa (above the setpoint limit, within the load cell)",
                code=Refusal.LIMIT,
            )
        self.over_pressure = limit
        self._check_interlocks()

    def set_max_setpoint(self, limit: float) -> None:
        limit = _finite("setpoint limit", limit)
        if not 0 < limit < self.over_pressure:
            raise RigError(
                f"setpoint limit {limit:g} MPa outside 0..{self.over_pressure:g} MPa "
                "(must stay below the over-pressure interlock)",
                code=Refusal.LIMIT,
            )
        if self.press.mode == Mode.PRESSURE and self.press.target > limit:
            raise RigError(
                f"setpoint limit {limit:g} MPa is below the present target "
                f"{self.press.target:g} MPa; lower the pressure first",
                code=Refusal.STATE,
            )
        self.max_setpoint = limit

    def set_gains(
        self, kp: float | None = None, ki: float | None = None, kd: float | None = None
    ) -> None:
        pid = self.press.pid
        new = {}
        for name, value in (("kp", kp), ("ki", ki), ("kd", kd)):
            if value is not None:
                value = _finite(name.upper(), value)
                if value < 0:
                    raise RigError(
                        f"{name.upper()}: {value:g} must not be negative", code=Refusal.LIMIT
                    )
                new[name] = value
        gains = {"kp": pid.kp, "ki": pid.ki} | new
        if self.press.mode == Mode.PRESSURE:
            self._check_loop(gains["kp"], gains["ki"], pid.drvl, pid.drvh)
        for name, value in new.items():
            setattr(pid, name, value)

    def set_output_limits(self, drvl: float | None = None, drvh: float | None = None) -> None:
        pid, top = self.press.pid, self.params.press.max_speed
        lo = pid.drvl if drvl is None else _finite("DRVL", drvl)
        hi = pid.drvh if drvh is None else _finite("DRVH", drvh)
        if not -top <= lo < hi <= top:
            raise RigError(
                f"output limits DRVL={lo:g}, DRVH={hi:g} um/s: need "
                f"-{top:g} <= DRVL < DRVH <= {top:g}",
                code=Refusal.LIMIT,
            )
        if self.press.mode == Mode.PRESSURE:
            self._check_loop(pid.kp, pid.ki, lo, hi)
        pid.drvl, pid.drvh = lo, hi

    @staticmethod
    def _check_loop(kp: float, ki: float, drvl: float, drvh: float) -> None:
        """A loop that holds pressure must act (a gain) and reach the setpoint from both
        sides: close the valve (DRVH > 0) and open it (DRVL < 0)."""
        if kp == 0 and ki == 0:
            raise RigError(
                "KP = KI = 0 while the loop holds pressure: it would never act on a new "
                "setpoint; give one of them a value (or leave Pressure mode first)",
                code=Refusal.STATE,
            )
        if not drvl < 0 < drvh:
            raise RigError(
                f"output limits DRVL={drvl:g}, DRVH={drvh:g} um/s while the loop holds "
                "pressure: it needs DRVH > 0 to press and DRVL < 0 to relieve, or it drifts "
                "off its setpoint (leave Pressure mode first to park them)",
                code=Refusal.STATE,
            )

    def set_settle(self, tolerance: float | None = None, time: float | None = None) -> None:
        press = self.press
        tol = (
            press.settle_tolerance if tolerance is None else _finite("settle tolerance", tolerance)
        )
        hold = press.settle_time if time is None else _finite("settle time", time)
        if tol <= 0 or hold < 0:
            raise RigError(
                "settle tolerance must be > 0 MPa and settle time >= 0 s", code=Refusal.LIMIT
            )
        press.settle_tolerance, press.settle_time = tol, hold

    @property
    def current(self) -> float:
        """A through the cell now, + = charge."""
        return self.cell.current

    def check_manual(self, what: str) -> None:
        """Refuse a manual cycler command while a sequence owns the channel."""
        seq = self.sequencer
        if seq.state in ("Running", "Paused", "Held"):
            raise RigError(
                f"{what} refused: a protocol sequence is {seq.state.lower()} on this "
                f"channel, {seq.owner_text()}; its owner aborts it (Seq:Abort-Cmd), a "
                "person forces an end with Seq:ForceAbort-Cmd",
                code=Refusal.OWNED,
            )

    def set_current(self, current: float) -> None:
        """Manual constant current (no terminations; 0 = rest) on the cycler channel."""
        current = _finite("cell current", current)
        self.check_manual("cell current")
        if current == 0:
            self.cycler.stop("manual rest")
            return
        try:
            self.cycler.start(Step(StepKind.CC, current=current))
        except CyclerError as ex:
            raise RigError(f"cell current refused: {ex}", code=refusal_of(ex)) from None

    def stop(self) -> None:
        self.press.stop()

    def deadman(self, action: str, floor: float) -> str:
        """No client has been heard for too long: ``"hold"`` the pressure measured now or
        ``"ramp_down"`` to ``floor`` MPa (at the ramp rate, 1 MPa/s if it is a step);
        a press not regulating pressure is left as it is. Says what it did."""
        if self.press.mode != Mode.PRESSURE:
            return f"press in {self.press.mode.name.title()} mode, left as it is"
        if action == "hold":
            self.stop()
            return f"holding {self.press.target:.2f} MPa"
        floor = min(_finite("deadman floor", floor), self.press.target)  # never up
        if self.press.ramp_rate <= 0:
            self.set_ramp_rate(1.0)
        self.set_pressure(floor)
        return f"ramping down to {floor:g} MPa at {self.press.ramp_rate:g} MPa/s"

    def inject_fault(self, kind: str, size: float = 0.0, at: float | None = None) -> str:
        """Make a failure happen now (or at experiment time ``at``), so that detection
        can be tested and shown: ``soft_short`` adds ``size`` S (default 1e-4) of
        separator conductance, ``pressure_spike`` adds ``size`` um (default 2) of stack
        thickness at once, ``contact_loss`` loses ``size`` (default 0.3) of the interface
        to voids that creep can close again. Returns what was (or will be) done."""
        size = _finite("fault size", size)
        defaults = {"soft_short": 1e-4, "pressure_spike": 2.0, "contact_loss": 0.3}
        if kind not in defaults:
            raise RigError(f"fault {kind!r}: expected one of {', '.join(defaults)}")
        if size < 0:
            raise RigError(
                f"fault size {size:g}: expected >= 0 (0 = the default)", code=Refusal.LIMIT
            )
        size = size or defaults[kind]
        if kind == "contact_loss" and not size < 1:
            raise RigError(
                f"contact loss {size:g}: expected a fraction below 1", code=Refusal.LIMIT
            )
        if at is not None and _finite("fault time", at) > self.time:
            self._faults.append((at, kind, size))
            self._faults.sort()
            return f"{kind.replace('_', ' ')} of {size:g} scheduled at t = {at:g} s"
        state = self.cell.state
        if kind == "soft_short":
            state.short_conductance += size
            return f"soft short of {size:g} S injected"
        if kind == "pressure_spike":
            state.extra_swelling += size
            return f"stack thickness step of {size:g} um injected"
        state.void_recoverable += size
        return f"loss of {size:.0%} of the interface contact injected"

    def _inject_due_faults(self) -> None:
        while self._faults and self._faults[0][0] <= self.time + 1e-9:
            _, kind, size = self._faults.pop(0)
            self.inject_fault(kind, size)

    def tare(self) -> None:
        if self.press.mode != Mode.OFF:
            raise RigError(
                "tare refused: set Mode to Off first (tare only an unloaded cell)",
                code=Refusal.STATE,
            )
        if abs(self.load_cell.force) > 0.02 * self.load_cell.capacity:
            raise RigError(
                f"tare refused: reading {self.load_cell.force:.0f} N is above 2 % of capacity; "
                "unload the press first",
                code=Refusal.STATE,
            )
        self.load_cell.tare()
        self.press.pressure = self.load_cell.force / self.press.area_mm2
