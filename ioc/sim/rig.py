"""The simulated rig: a cell in a press with a load cell, on its own clock.

The rig's control and safety are :class:`~ssb_ioc.core.control.RigControl`'s; this
module gives them physics to act on (:class:`~ssb_ioc.sim.cell.Cell`, the press's
mechanics, a noisy load cell, a channel over the simulated cell) and a clock that the IOC
advances at its speed factor (:meth:`Rig.advance`), which a client may hold
(:meth:`Rig.hold_clock`), and failures to inject (:meth:`Rig.inject_fault`).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from ssb_contract.refusals import Refusal

from ..core.control import FAST_BUFFER, RigControl
from ..core.errors import RigError, finite
from ..params import RigParams
from .cell import Cell
from .cycler import Cycler, SafetyLimits
from .loadcell import LoadCell
from .press import Press

__all__ = ["FAST_BUFFER", "Rig", "RigError"]

PRE_TRIGGER = 5  # cell steps kept, to lead an event's full-rate window


class Rig(RigControl):
    """Cell + press + load cell stepped on the simulated clock, under the rig's control
    (a :class:`~ssb_ioc.core.ports.RigBackend`)."""

    keeps_own_time = False  # the IOC advances the simulation at its speed factor
    press: Press
    load_cell: LoadCell
    cycler: Cycler
    cell: Cell

    def __init__(self, params: RigParams, seed: int | None = None):
        self.rng = np.random.default_rng(seed)
        cell = Cell(params)
        load_cell = LoadCell(params.load_cell, self.rng)
        press = Press(params, load_cell)
        cyc = params.cycler
        cycler = Cycler(
            cell,
            SafetyLimits(cyc.v_min, cyc.v_max, cyc.i_max),
            log_period=cyc.log_period,
            log_dv=cyc.log_dv,
            buffer_size=int(cyc.buffer_size),
        )
        super().__init__(params, press, load_cell, cycler, cell)
        self._residual = 0.0
        self.press.pressure = self.load_cell.report(0.0) / self.press.area_mm2
        self._recent: deque[list[float]] = deque(maxlen=PRE_TRIGGER)  # rows at cell steps
        self._faults: list[tuple[float, str, float]] = []  # scheduled: (time, kind, size)
        self.hold_at: float | None = None  # the clock stops here (see hold_clock)

    @property
    def state_of_charge(self) -> float:
        return self.cell.soc

    # --- clock ----------------------------------------------------------------------
    def resume_clock(self, at: float) -> None:
        self.press.steps = round(finite("clock", at) / self.press.period)

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
        at = finite("clock hold", at)
        if at < 0:
            raise RigError(f"clock hold at {at:g} s: expected a time >= 0", code=Refusal.LIMIT)
        self.hold_at = max(at, self.time)

    @property
    def held(self) -> bool:
        """The clock stands at its hold."""
        return self.hold_at is not None and self.time >= self.hold_at - self.press.period / 2

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

    # --- full-rate samples ------------------------------------------------------------
    def _measured_now(self) -> float:
        """What the load cell reads for the force now (its bias included, no new noise
        draw): comparable with the loop's measured pressure."""
        return (self.press.true_force + self.load_cell.bias) / self.press.area_mm2

    def _supervise(self) -> None:
        self._check_interlocks()
        self._check_pressure(self.press.pressure)
        self._act_on_events()
        self._set_fast_sampling()

    def _fast_sampling_changed(self, on: bool, event: bool) -> None:
        if on and event:  # an event: lead with the last cell steps
            now = self.time
            for row in self._recent:
                if row[0] < now - 1e-9:
                    self.fast.append(row)
        self.press.on_period = self._record_fast if on else None
        self.press.allow_linear = not on

    def _record_fast(self) -> None:
        if self.press.steps % self.fast_decimation == 0:
            self.fast.append(self._row())

    # --- failures of the cell ----------------------------------------------------------
    def inject_fault(self, kind: str, size: float = 0.0, at: float | None = None) -> str:
        """Make a failure happen now (or at experiment time ``at``), so that detection
        can be tested and shown: ``soft_short`` adds ``size`` S (default 1e-4) of
        separator conductance, ``pressure_spike`` adds ``size`` um (default 2) of stack
        thickness at once, ``contact_loss`` loses ``size`` (default 0.3) of the interface
        to voids that creep can close again. Returns what was (or will be) done."""
        size = finite("fault size", size)
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
        if at is not None and finite("fault time", at) > self.time:
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
