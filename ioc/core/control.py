"""The rig's control and safety, whatever serves the instruments below it.

Commands are validated here, so that every front end (Channel Access, tests, a sequence)
refuses the same bad input with the same message: :class:`RigError`, the state left
unchanged. Here too: the interlocks, event detection and the actions taken on events,
full-rate sampling, the sequencer and the logged samples. What is below is reached
through ports: a press (:class:`~ssb_ioc.core.press.PressControl`), a load cell
(:class:`~ssb_ioc.core.loadcell.ForceReading`), a cycler channel
(:class:`~ssb_ioc.core.channel.Channel`) and the cell it measures, and the clock
(:attr:`RigControl.time`). The simulation (:class:`ssb_ioc.sim.Rig`) and the drivers
(:class:`ssb_ioc.backends.HardwareRig`) each fill them in and add one way to run a scan:
``advance(dt)`` on a simulated clock, ``exchange()`` with instruments on their own.

Safety: over-pressure (measured pressure above ``over_pressure``) and load-cell overload
(reading above capacity) **release** the press: the mode goes to ``OFF``, the piston
retracts and the force falls to zero. We release rather than hold because holding a
fixed gap still lets a swelling cell push the pressure further up. The trip latches until
:meth:`RigControl.reset_interlock` is called with the condition cleared; while latched,
only ``OFF`` is accepted as a mode.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from pathlib import Path

from ssb_contract.records import EVENT_KINDS, FAST_FIELDS
from ssb_contract.refusals import Refusal, refusal_of

from ..params import RigParams
from .channel import Channel, CyclerError, MeasuredCell, SampleBuffer, Step, StepKind
from .errors import RigError, finite
from .events import EventDetector
from .loadcell import ForceReading
from .press import Mode, PressControl
from .sequencer import Sequencer

__all__ = ["FAST_BUFFER", "RigControl", "RigError"]

FAST_BUFFER = 200_000  # full-rate rows held for bulk reads: 200 s at 1 kHz


class RigControl(ABC):
    """The control and safety of one rig over its press, load cell and cycler channel."""

    keeps_own_time = False  # True: instruments on their own clock, scanned by exchange()
    hold_at: float | None = None  # a clock hold (simulation only)

    def __init__(
        self,
        params: RigParams,
        press: PressControl,
        load_cell: ForceReading,
        cycler: Channel,
        cell: MeasuredCell,
    ):
        self.params = params
        self.press = press
        self.load_cell = load_cell
        self.cycler = cycler
        self.cell = cell
        self.over_pressure = params.limits.over_pressure
        self.max_setpoint = params.limits.max_setpoint
        self.interlock: str = ""  # reason of the latched trip, "" when clear
        self.events = EventDetector()
        self.fast = SampleBuffer(FAST_BUFFER, width=len(FAST_FIELDS))  # load cell, full rate
        self.fast_mode = "off"  # "on", or "step": while the running cycler step runs
        self.fast_on = False  # full-rate samples are being recorded
        self.fast_until = math.inf  # experiment time at which "on" ends by itself
        self.fast_decimation = 1  # record every N-th loop period
        self.event_window = 2.0  # s of full-rate samples kept after each event
        self._fast_until = -math.inf
        self._held: float | None = None  # setpoint the loop holds, for pressure events
        self._last_block: tuple[int, float] | None = None  # cycler changes, current
        self.event_actions = dict.fromkeys(EVENT_KINDS, "log")  # or "open_circuit"
        self._events_acted = 0  # events whose action was taken
        self.sequencer = Sequencer(self)  # the protocol, run on the instrument
        self.news: list[str] = []  # what the IOC should tell its clients (Rig:Msg-RB)
        self.missed_replies = 0  # scans in which an instrument did not answer

    # --- clock ----------------------------------------------------------------------
    @property
    def time(self) -> float:
        """Experiment time (s): the press's clock."""
        return self.press.time

    @abstractmethod
    def resume_clock(self, at: float) -> None:
        """Start the clock at ``at`` s (a restarted IOC goes on from where it stopped)."""

    @property
    def state_of_charge(self) -> float:
        """The cell's state of charge, where it is known (a simulation's); else NaN."""
        return math.nan

    @property
    def link(self) -> str:
        """The instruments' links: OK | Silent | Lost (a simulation always answers)."""
        return "OK"

    @property
    def held(self) -> bool:
        """The clock stands at a hold (only a simulated clock can be held)."""
        return False

    def hold_clock(self, at: float | None) -> None:
        """Stop the clock at experiment time ``at`` (``None``: release). Only a simulated
        clock can be held; instruments keep their own time."""
        if at is not None:
            raise RigError(
                "clock hold refused: real instruments keep their own time (a hold is the "
                "simulation's way to keep a schedule at a high speed factor)",
                code=Refusal.UNSUPPORTED,
            )

    def inject_fault(self, kind: str, size: float = 0.0, at: float | None = None) -> str:
        """Make a failure of the cell happen (the simulation's; see its docstring)."""
        raise RigError(
            "fault injection acts on the simulated cell; this rig is hardware (faults of "
            "emulated instruments are made in ssb-emulate)",
            code=Refusal.UNSUPPORTED,
        )

    # --- settings the PV layer changes through the control ---------------------------
    def set_log_period(self, period: float) -> None:
        """Log a sample every ``period`` s of test time (the PV layer checked the range)."""
        self.cycler.log_period = finite("log period", period)

    def set_event_detection(self, on: bool) -> None:
        """Detect events (or not): the thresholds stay as they are."""
        self.events.thresholds.enabled = bool(on)

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

    def stale_readings(self) -> dict[str, tuple[str, float]]:
        """Readings (:data:`~ssb_ioc.core.ports.READINGS`) whose instrument does not
        answer: name -> (why, time of the last good value). None, unless a backend says."""
        return {}

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
        if on != self.fast_on:
            self.fast_on = on
            self._fast_sampling_changed(on, event=on and now < self._fast_until)

    def _fast_sampling_changed(self, on: bool, event: bool) -> None:  # noqa: B027 (a hook)
        """Full-rate sampling starts (an ``event`` leads it) or stops: the backend records
        every load-cell reading into :attr:`fast` while it is on."""

    def _row(self) -> list[float]:
        press = self.press
        force = self.load_cell.force / 1e3
        return [press.time, press.pressure, force, press.gap, self.cell.voltage, self.cell.current]

    def set_fast_sampling(
        self, mode: str | bool, rate: float | None = None, duration: float | None = None
    ) -> None:
        """Store every load-cell sample (at ``rate`` Hz, up to the loop rate): ``"on"``
        (for ``duration`` s of experiment time from now, if given and > 0), ``"step"``
        (while the running cycler step runs) or ``"off"``. Full-rate data costs wall
        time: the clock slows to it."""
        if isinstance(mode, bool):
            mode = "on" if mode else "off"
        if mode not in ("off", "on", "step"):
            raise RigError(f"full-rate sampling {mode!r}: expected off, on or step")
        top = 1.0 / self.press.period
        decimation = self.fast_decimation
        if rate is not None:
            rate = finite("full-rate sampling rate", rate)
            if not 0 < rate <= top:
                raise RigError(
                    f"sampling rate {rate:g} Hz: expected 0 < rate <= {top:g} Hz",
                    code=Refusal.LIMIT,
                )
            decimation = max(1, round(top / rate))
        if duration is not None:
            duration = finite("full-rate sampling duration", duration)
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
            value = finite(f"event threshold {name}", value)
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
        pressure = finite("pressure setpoint", pressure)
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
        rate = finite("ramp rate", rate)
        top = self.params.limits.max_ramp_rate
        if not 0 <= rate <= top:
            raise RigError(
                f"ramp rate {rate:g} MPa/s outside 0..{top:g} MPa/s (0 = step)", code=Refusal.LIMIT
            )
        self.press.set_ramp_rate(rate)

    def set_over_pressure(self, limit: float) -> None:
        limit = finite("over-pressure limit", limit)
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
        limit = finite("setpoint limit", limit)
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
                value = finite(name.upper(), value)
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
        lo = pid.drvl if drvl is None else finite("DRVL", drvl)
        hi = pid.drvh if drvh is None else finite("DRVH", drvh)
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
            press.settle_tolerance if tolerance is None else finite("settle tolerance", tolerance)
        )
        hold = press.settle_time if time is None else finite("settle time", time)
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
        current = finite("cell current", current)
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
        floor = min(finite("deadman floor", floor), self.press.target)  # never up
        if self.press.ramp_rate <= 0:
            self.set_ramp_rate(1.0)
        self.set_pressure(floor)
        return f"ramping down to {floor:g} MPa at {self.press.ramp_rate:g} MPa/s"

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
