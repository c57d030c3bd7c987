"""The press as the control sees it: mode, target, the ramped working setpoint, settling
and the loop's gains. The simulated press (:class:`ssb_ioc.sim.press.Press`) adds its
mechanics below this; a driven press (:class:`ssb_ioc.backends.hardware.DrivenPress`)
adds the readbacks of an instrument.

Modes: ``OFF`` parks the piston (no force), ``GAP`` locks it (pressure follows the cell),
``PRESSURE`` regulates the measured pressure towards a working setpoint that ramps to the
target at ``ramp_rate`` MPa/s (0 = step).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from enum import IntEnum

from ..params import RigParams
from .epid import Epid


class Mode(IntEnum):
    OFF = 0
    PRESSURE = 1
    GAP = 2


class PressControl(ABC):
    """Mode, target and setpoint ramp, settle state and loop of a press; its clock and
    its measured pressure come from below (:attr:`time`, :attr:`pressure`)."""

    def __init__(self, params: RigParams):
        c = params.controller
        self.params = params
        self.area_mm2 = params.cell.area * 100.0
        self.period = c.period
        self.pid = Epid(kp=c.kp, ki=c.ki, kd=c.kd, drvh=c.drvh, drvl=c.drvl)
        self.mode = Mode.OFF
        self.target = 0.0  # MPa, where the user asked to go
        self.setpoint = 0.0  # MPa, working (ramped) setpoint fed to the loop
        self.ramp_rate = params.limits.ramp_rate
        self.pressure = 0.0  # MPa, last measured
        self.settle_tolerance = params.limits.settle_tolerance
        self.settle_time = params.limits.settle_time
        self.settled = False
        self._in_tolerance_since: float | None = None

    @property
    @abstractmethod
    def time(self) -> float:
        """Experiment time (s) of the press's clock."""

    @property
    @abstractmethod
    def gap(self) -> float:
        """Distance between the platens (um)."""

    @property
    @abstractmethod
    def platen_position(self) -> float:
        """Platen travel from first contact with the unswollen stack (um, + = closing)."""

    @property
    def ramping(self) -> bool:
        return self.mode == Mode.PRESSURE and self.setpoint != self.target

    # --- commands (the rig's control has validated them) -----------------------------
    def set_mode(self, mode: Mode) -> None:
        mode = Mode(mode)
        if mode == self.mode:
            return
        self.mode = mode
        self._in_tolerance_since = None
        self.settled = False
        self._mode_changed()
        if mode == Mode.PRESSURE:
            # Hold what is there now; switching the loop on is bumpless.
            self.target = self.setpoint = max(self.pressure, 0.0)
            self.pid.oval = 0.0
            self.pid.set_feedback(True)
        else:
            self.pid.set_feedback(False)
            self.pid.oval = 0.0

    def _mode_changed(self) -> None:  # noqa: B027 (a hook)
        """What the mechanics below do when the mode changes (nothing here)."""

    def set_target(self, pressure: float) -> None:
        if pressure != self.target:
            self._in_tolerance_since = None
            self.settled = False
        self.target = pressure
        if self.ramp_rate <= 0:
            self.setpoint = pressure

    def set_ramp_rate(self, rate: float) -> None:
        self.ramp_rate = rate
        if rate <= 0:
            self.setpoint = self.target

    def stop(self) -> None:
        """Hold the pressure measured now; ends any ramp."""
        if self.mode == Mode.PRESSURE:
            self.set_target(max(self.pressure, 0.0))
            self.setpoint = self.target

    # --- the ramp and the settle state, on the press's clock ---------------------------
    def _update_settle(self) -> None:
        """Settled = not ramping and the measured pressure within tolerance of the target
        for the settle time (experiment time)."""
        in_tolerance = (
            self.mode == Mode.PRESSURE
            and not self.ramping
            and abs(self.pressure - self.target) <= self.settle_tolerance
        )
        if not in_tolerance:
            self._in_tolerance_since = None
            self.settled = False
            return
        if self._in_tolerance_since is None:
            self._in_tolerance_since = self.time
        self.settled = self.time - self._in_tolerance_since >= self.settle_time - 1e-9

    def _advance_setpoint(self, dt: float) -> None:
        if self.setpoint == self.target:
            return
        step = self.ramp_rate * dt
        if self.ramp_rate <= 0 or abs(self.target - self.setpoint) <= step:
            self.setpoint = self.target
        else:
            self.setpoint += math.copysign(step, self.target - self.setpoint)
