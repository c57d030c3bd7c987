"""Event detection where the signals are: sudden changes the smooth physics does not make.

The rig calls the detector as it simulates, so events are caught at the simulation's own
resolution whether or not a client is connected, and kept in a buffer read by sequence
number (like the cycler's samples).

Kinds (magnitude and its unit):

* ``pressure_spike`` / ``pressure_drop`` (MPa): the measured pressure leaves the held
  setpoint by more than ``pressure`` MPa (pressure mode, once settled at that setpoint);
  in gap mode, a change of more than ``pressure`` MPa within ``jump_window`` s of
  experiment time (the slow breathing of a cycling cell moves it far less), whatever the
  rate of the checks: a simulation step or an instrument's scan. Re-armed once back within
  half the threshold.
* ``soft_short`` (V): the voltage falls by more than ``voltage_drop`` within one cell
  step while resting or charging at constant current, where it cannot fall.
* ``resistance_jump`` (ohm): the apparent resistance ``dV / I`` grows by more than
  ``resistance`` within one cell step at a constant non-zero current (on charge the
  voltage jumps up, on discharge down). A soft short during a discharge looks the same
  and is reported as this kind.

Steps that change the current on their own (CV, CP, CR, impedance) and the first cell
step after any change of step are not checked for voltage events.

After an event the rig stores the load cell's samples at full rate (every loop period)
for a window, led by its readings at the last few cell steps (1 s apart) before it.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from ssb_contract.records import EVENT_FIELDS, EVENT_KINDS

from .channel import SampleBuffer

EVENT_BUFFER = 10_000  # events held for bulk reads


@dataclass
class Thresholds:
    """What counts as an event (defaults well above noise and normal cycling)."""

    pressure: float = 1.0  # MPa off the held setpoint, or a jump in a fixed gap
    jump_window: float = 2.0  # s of experiment time a jump in a fixed gap happens within
    voltage_drop: float = 0.010  # V within one cell step where the voltage cannot fall
    resistance: float = 5.0  # ohm of apparent resistance gained within one cell step
    enabled: bool = True


class EventDetector:
    """Checks the rig's signals; appends ``(time, kind index, magnitude, value, step)``
    rows to :attr:`buffer` (``value``: the pressure or voltage at detection)."""

    def __init__(self, thresholds: Thresholds | None = None, buffer_size: int = EVENT_BUFFER):
        self.thresholds = thresholds or Thresholds()
        self.buffer = SampleBuffer(buffer_size, width=len(EVENT_FIELDS))
        self._armed = {"pressure_spike": True, "pressure_drop": True}
        self._recent: deque[tuple[float, float]] = deque()  # gap mode: (time, pressure)
        self._last_seen: tuple[float, float] | None = None  # the last check, any mode
        self.latest = -math.inf  # time of the latest event (s)

    def _record(self, time: float, kind: str, magnitude: float, value: float, step: int):
        self.buffer.append([time, EVENT_KINDS.index(kind), magnitude, value, step])
        self.latest = max(self.latest, time)

    def check_pressure(
        self, time: float, pressure: float, held: float | None, gap_mode: bool, step: int
    ) -> None:
        """``held``: the setpoint the loop holds (None while moving or off);
        ``gap_mode``: the piston is locked, compare with the previous check."""
        limit = self.thresholds.pressure
        if gap_mode and math.isfinite(pressure):
            recent, since = self._recent, time - self.thresholds.jump_window
            if not recent and self._last_seen is not None:
                recent.append(self._last_seen)  # locked at what was measured just before
            while len(recent) > 1 and recent[1][0] <= since:
                recent.popleft()  # keep one check from before the window: the reference
            reference = recent[0][1] if recent else None
            recent.append((time, pressure))
        else:
            reference = held if not gap_mode else None
            self._recent.clear()
        if math.isfinite(pressure):
            self._last_seen = (time, pressure)
        if reference is None or not self.thresholds.enabled:
            self._armed = dict.fromkeys(self._armed, True)
            return
        error = pressure - reference
        for kind, excess in (("pressure_spike", error), ("pressure_drop", -error)):
            if self._armed[kind] and excess > limit:
                self._record(time, kind, abs(error), pressure, step)
                self._armed[kind] = False
            elif excess < limit / 2:
                self._armed[kind] = True

    def check_voltage(
        self, time: float, before: float, after: float, current: float, step: int
    ) -> None:
        """A cell step at a constant ``current`` (A, + = charge) moved the voltage from
        ``before`` to ``after``; the caller skips steps whose current varies."""
        if not self.thresholds.enabled or not (math.isfinite(before) and math.isfinite(after)):
            return
        change = after - before
        if current >= 0 and -change > self.thresholds.voltage_drop:
            self._record(time, "soft_short", -change, after, step)
        elif current != 0 and change / current > self.thresholds.resistance:
            self._record(time, "resistance_jump", change / current, after, step)
