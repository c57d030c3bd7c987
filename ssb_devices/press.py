"""The press as an ophyd positioner in pressure (MPa).

``Press.set(p)`` puts ``Press:Pressure-SP`` with a completion callback: the IOC completes
the put only when its own settle logic says the pressure has settled, so "done" means
done. What the IOC refuses (NaN, limits, wrong mode, an interlock trip mid-move) fails the
put itself (``ECA_PUTFAIL``), and the status with :class:`PressureRejected` (its ``code``
the contract's kind, its message the IOC's reason); a lost connection fails it with
:class:`RigDisconnected`.
"""

from __future__ import annotations

import math
import numbers
import threading

from ophyd import Component as Cpt
from ophyd import EpicsSignal, EpicsSignalRO, Kind, PVPositionerPC
from ophyd.positioner import PositionerBase
from ophyd.status import MoveStatus
from ophyd.utils import LimitError

from ssb_contract.states import PRESS_MODES

from .compat import drop_done_subscription, finish_move, mark_moving, user_limits
from .refusals import ConfirmedSignal, LastRefusal, PutRefused, put_confirmed

MODES = PRESS_MODES


class PressureRejected(RuntimeError):
    """The IOC refused a pressure setpoint; the message says why, ``code`` (a
    :class:`ssb_contract.refusals.Refusal`, or None for a check made here) which kind."""

    code = None


class RigDisconnected(RuntimeError):
    """The IOC stopped answering while something was waiting on it."""


class Press(PVPositionerPC):
    """Servo-hydraulic press holding a stack pressure (MPa), built from the rig prefix.

    >>> press = Press("SSB:", name="press")
    >>> press.mode.set("Pressure").wait()
    >>> press.set(100).wait()          # returns once the IOC says the pressure settled
    """

    setpoint = Cpt(EpicsSignal, "Press:Pressure-SP", kind=Kind.normal, auto_monitor=False)
    # Read fresh from the IOC (not a cached monitor value), so that a reading taken
    # right after a completed move shows the settled pressure.
    readback = Cpt(EpicsSignalRO, "Press:Pressure-RB", kind=Kind.hinted, auto_monitor=False)
    stop_signal = Cpt(EpicsSignal, "Press:Stop-Cmd", kind=Kind.omitted)
    stop_value = 1

    demand = Cpt(EpicsSignalRO, "Press:PressureDemand-RB", kind=Kind.normal)
    force = Cpt(EpicsSignalRO, "Press:Force-RB", kind=Kind.normal)
    gap = Cpt(EpicsSignalRO, "Press:Gap-RB", kind=Kind.normal)
    position_um = Cpt(EpicsSignalRO, "Press:Position-RB", kind=Kind.omitted)
    settled = Cpt(EpicsSignalRO, "Press:Settled-RB", kind=Kind.omitted, string=True)
    output = Cpt(EpicsSignalRO, "Press:Output-RB", kind=Kind.omitted)
    error = Cpt(EpicsSignalRO, "Press:Error-RB", kind=Kind.omitted)

    mode = Cpt(
        ConfirmedSignal,
        "Press:Mode-RB",
        write_pv="Press:Mode-SP",
        refusals="Press:",
        string=True,
        kind=Kind.config,
    )
    ramp_rate = Cpt(ConfirmedSignal, "Press:RampRate-SP", refusals="Press:", kind=Kind.config)
    max_pressure = Cpt(EpicsSignal, "Press:MaxPressure-SP", kind=Kind.config)
    over_pressure = Cpt(EpicsSignal, "Press:OverPressure-SP", kind=Kind.config)
    kp = Cpt(EpicsSignal, "Press:KP-SP", kind=Kind.config)
    ki = Cpt(EpicsSignal, "Press:KI-SP", kind=Kind.config)
    kd = Cpt(EpicsSignal, "Press:KD-SP", kind=Kind.config)
    drvh = Cpt(EpicsSignal, "Press:DRVH-SP", kind=Kind.config)
    drvl = Cpt(EpicsSignal, "Press:DRVL-SP", kind=Kind.config)
    settle_tolerance = Cpt(EpicsSignal, "Press:SettleTol-SP", kind=Kind.config)
    settle_time = Cpt(EpicsSignal, "Press:SettleTime-SP", kind=Kind.config)
    # the deadman: without a heartbeat for `deadman` s of wall time, the IOC holds or ramps
    # down to `deadman_floor` (`deadman_action`); 0 = off
    deadman = Cpt(EpicsSignal, "Press:Deadman-SP", kind=Kind.config)
    deadman_action = Cpt(EpicsSignal, "Press:DeadmanAction-SP", string=True, kind=Kind.config)
    deadman_floor = Cpt(EpicsSignal, "Press:DeadmanFloor-SP", kind=Kind.config)
    deadman_state = Cpt(EpicsSignalRO, "Press:Deadman-RB", string=True, kind=Kind.omitted)
    heartbeat = Cpt(EpicsSignal, "Press:Heartbeat-Cmd", kind=Kind.omitted, put_complete=True)

    refusals = Cpt(LastRefusal, "Press:", kind=Kind.omitted)

    def __init__(self, prefix: str = "", *, name: str, egu: str = "MPa", **kwargs):
        super().__init__(prefix, name=name, egu=egu, **kwargs)
        self._lock = threading.Lock()
        self._pending: MoveStatus | None = None
        self.readback.subscribe(self._on_connection, event_type="meta", run=False)

    @property
    def limits(self) -> tuple[float, float]:
        """(0, MaxPressure-SP): read live, since the limit can change on the IOC."""
        given = user_limits(self)
        return given if given is not None else (0.0, float(self.max_pressure.get()))

    # --- checks a scientist gets before anything is sent ---------------------------
    def check_value(self, pos) -> None:
        """Refuse what the IOC would refuse, with the reason (used by check_limits)."""
        if isinstance(pos, bool) or not isinstance(pos, numbers.Real):
            raise ValueError(f"{self.name}: pressure setpoint {pos!r} is not a number")
        pos = float(pos)
        if not math.isfinite(pos):
            raise ValueError(f"{self.name}: pressure setpoint {pos} is not a finite number")
        low, high = self.limits
        if low != high and not low <= pos <= high:
            raise LimitError(
                f"{self.name}: {pos:g} MPa is outside the IOC's limits {low:g}..{high:g} MPa"
            )

    def move(self, position, wait: bool = True, timeout: float | None = None, moved_cb=None):
        """Move to ``position`` MPa; the status completes when the pressure has settled."""
        mode = self.mode.get()
        if mode != "Pressure":
            raise PressureRejected(
                f"{self.name}: the press is in {mode} mode; set {self.name}.mode to "
                "'Pressure' first (or use ssb_plans.set_pressure)"
            )
        with self._lock:
            self._pending = None
        status = super().move(position, wait=False, timeout=timeout, moved_cb=moved_cb)
        with self._lock:
            if not status.done:
                self._pending = status
        if wait:
            status.wait()
        return status

    def _setup_move(self, position) -> None:
        """PVPositionerPC's move, with the put's answer: done, or refused with the reason."""
        mark_moving(self)  # until the IOC answers
        put = put_confirmed(self.setpoint, position, refusals=self.refusals, timeout=None)
        put.add_callback(self._on_answer)

    def _on_answer(self, put) -> None:
        ex = put.exception()
        if ex is None:
            finish_move(self, success=True)
            return
        rejected = PressureRejected(f"{self.name}: IOC refused the move: {ex}")
        rejected.code = getattr(ex, "code", None)
        self._fail_pending(rejected if isinstance(ex, PutRefused) else ex)

    # --- failure paths ------------------------------------------------------------
    def _fail_pending(self, exc: Exception) -> None:
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is None or pending.done:
            return
        drop_done_subscription(self)  # the status is finished here, with the reason
        finish_move(self, success=False)
        pending.set_exception(exc)

    def _on_connection(self, connected: bool = True, **kwargs) -> None:
        if not connected:
            self._fail_pending(
                RigDisconnected(
                    f"{self.name}: lost the connection to {self.readback.pvname} during a move; "
                    "is the IOC running?"
                )
            )

    def _done_moving(self, **kwargs) -> None:
        with self._lock:
            self._pending = None
        super()._done_moving(**kwargs)

    def stop(self, *, success: bool = False) -> None:
        """Hold the pressure measured now (the IOC completes pending moves)."""
        if self.stop_signal.connected:
            super().stop(success=success)
        else:  # the IOC is gone: nothing to tell it, but end our own move bookkeeping
            PositionerBase.stop(self, success=success)

    # --- names a scientist would guess ---------------------------------------------
    def hold_gap(self) -> MoveStatus:
        """Lock the piston where it is; the pressure then follows the cell."""
        return self.mode.set("Gap")

    def release(self):
        """Switch the press off: the piston retracts and the force goes to zero."""
        return self.mode.set("Off")

    def regulate(self):
        """Hold the pressure measured now with the feedback loop (mode Pressure)."""
        return self.mode.set("Pressure")
