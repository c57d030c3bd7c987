"""Pause a plan while the stack pressure is out of band."""

from __future__ import annotations

import math

from bluesky.suspenders import SuspenderBase


class SuspendOutsidePressureBand(SuspenderBase):
    """Suspend while ``signal`` is outside ``[low, high]``; resume once it is back inside
    the narrower ``[low + hysteresis, high - hysteresis]``, so that a pressure hovering
    at a band edge does not pause and resume the plan over and over.

    >>> RE.install_suspender(SuspendOutsidePressureBand(rig.press.readback, 95, 105,
    ...                                                 hysteresis=1))
    """

    def __init__(self, signal, low: float, high: float, *, hysteresis: float = 0.0, **kwargs):
        for name, value in (("low", low), ("high", high), ("hysteresis", hysteresis)):
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{name}: expected a finite number, got {value!r}")
        if hysteresis < 0 or low + hysteresis >= high - hysteresis:
            raise ValueError(
                f"band {low:g}..{high:g} MPa with hysteresis {hysteresis:g} "
                "leaves no resume band (need low + h < high - h, h >= 0)"
            )
        self.low, self.high, self.hysteresis = low, high, hysteresis
        self._last = math.nan
        super().__init__(signal, **kwargs)

    def _should_suspend(self, value) -> bool:
        self._last = value
        return not self.low <= value <= self.high

    def _should_resume(self, value) -> bool:
        self._last = value
        return self.low + self.hysteresis <= value <= self.high - self.hysteresis

    def _get_justification(self) -> str:
        if not self.tripped:
            return ""
        return (
            f"pressure {self._last:.3f} outside {self.low:g}..{self.high:g} MPa; "
            f"resuming once within {self.low + self.hysteresis:g}.."
            f"{self.high - self.hysteresis:g} MPa"
        )
