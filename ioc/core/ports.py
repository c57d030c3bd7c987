"""The boundary between the IOC's PV layer and whatever serves the rig.

Layers, top to bottom: the PV groups (names, units, alarms, messages, access rules) ->
:class:`RigBackend`: the rig's control and safety (:mod:`ssb_ioc.core`: command
validation, the setpoint ramp, settling, interlocks, event detection, the sequencer, the
logged samples) over its ports (a press, a load cell, a cycler channel and its cell, a
clock) -> an implementation of the ports: the simulation's physics
(:class:`ssb_ioc.sim.Rig`), or drivers over wire protocols
(:class:`ssb_ioc.backends.hardware.HardwareRig`: Modbus TCP press and load cell, a BTS
cycler channel, the wall's or an instrument's clock).

The PV layer imports :mod:`ssb_ioc.core` and the contract only: it asks these questions,
so a new driver is a new implementation of the ports, not a change to the PVs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..params import RigParams
    from .channel import Channel, MeasuredCell, SampleBuffer
    from .events import EventDetector
    from .loadcell import ForceReading
    from .press import PressControl
    from .sequencer import Sequencer


# What the ports measure, by name: a backend says which of them are stale; the PV layer
# knows which PVs show each.
READINGS = (
    "press.pressure", "press.force", "press.position", "press.gap", "press.settled",
    "press.error", "press.output", "load_cell.force", "load_cell.signal",
    "load_cell.overload", "cell.voltage", "cell.current", "channel.capacities",
)  # fmt: skip


@runtime_checkable
class RigBackend(Protocol):
    """What the PV layer asks of a rig, simulated or on instruments."""

    # --- the instruments, as the control sees them ------------------------------------------
    # (read-only here: a backend may give a narrower type, as the simulation's Press)
    @property
    def params(self) -> RigParams:
        """The cell's area and the rig's limits (from the cell file)."""

    @property
    def press(self) -> PressControl:
        """Mode, target and ramped setpoint, settling, loop gains; readbacks."""

    @property
    def load_cell(self) -> ForceReading:
        """Force, bridge signal, tare."""

    @property
    def cycler(self) -> Channel:
        """The channel: the running step, its counters and the sample buffer."""

    @property
    def cell(self) -> MeasuredCell: ...
    @property
    def fast(self) -> SampleBuffer:
        """The load cell at full rate around events."""

    @property
    def fast_mode(self) -> str: ...
    @property
    def event_window(self) -> float: ...
    @property
    def events(self) -> EventDetector: ...
    @property
    def sequencer(self) -> Sequencer: ...
    @property
    def interlock(self) -> str:
        """Why the interlock is tripped ("" when it is not)."""

    @property
    def link(self) -> str:
        """OK | Silent | Lost: the instruments' links (a simulation: always OK)."""

    @property
    def missed_replies(self) -> int:
        """Scans in which an instrument did not answer."""

    @property
    def news(self) -> list[str]:
        """What the IOC should tell its clients, once each."""

    @property
    def max_setpoint(self) -> float: ...
    @property
    def over_pressure(self) -> float: ...

    @property
    def state_of_charge(self) -> float:
        """The cell's state of charge where the backend knows it (NaN where not)."""

    @property
    def keeps_own_time(self) -> bool:
        """True for instruments (the IOC scans them at its own rate and their clock is
        experiment time); False for the simulation, which the IOC advances at its speed."""

    @property
    def time(self) -> float:
        """Experiment time, s."""

    def stale_readings(self) -> dict[str, tuple[str, float]]:
        """Readings whose instrument does not answer: a name of :data:`READINGS` -> (why,
        time of the last good value). Their PVs are served with an INVALID/COMM alarm,
        never as fresh."""

    def resume_clock(self, at: float) -> None: ...

    # --- a client's hold of a simulated clock -----------------------------------------------
    @property
    def hold_at(self) -> float | None: ...

    @property
    def held(self) -> bool: ...
    def hold_clock(self, at: float | None) -> None: ...

    # --- commands: each validates and raises RigError with the reason ---------------------
    def set_pressure(self, pressure: float) -> None: ...
    def set_mode(self, mode: int | str) -> None: ...
    def set_ramp_rate(self, rate: float) -> None: ...
    def set_max_setpoint(self, limit: float) -> None: ...
    def set_over_pressure(self, limit: float) -> None: ...
    def set_gains(self, kp: float | None = None, ki: float | None = None,
                  kd: float | None = None) -> None: ...  # fmt: skip
    def set_output_limits(self, drvl: float | None = None, drvh: float | None = None) -> None: ...
    def set_settle(self, tolerance: float | None = None, time: float | None = None) -> None: ...
    def set_fast_sampling(self, mode: str | bool, rate: float | None = None,
                          duration: float | None = None) -> None: ...  # fmt: skip
    def set_event_thresholds(self, **values: float) -> None: ...
    def set_event_action(self, kind: str, action: str) -> None: ...
    def set_event_detection(self, on: bool) -> None: ...
    def set_log_period(self, period: float) -> None: ...
    def set_current(self, current: float) -> None: ...
    def check_manual(self, what: str) -> None: ...
    def stop(self) -> None: ...
    def tare(self) -> None: ...
    def reset_interlock(self) -> None: ...
    def deadman(self, action: str, floor: float) -> str: ...
    def inject_fault(self, kind: str, size: float = 0.0, at: float | None = None) -> str: ...


@runtime_checkable
class SimulatedBackend(RigBackend, Protocol):
    """A rig on a simulated clock that the IOC advances at its speed factor."""

    def advance(self, dt: float, stop: Callable[[], bool] | None = None) -> float:
        """Run up to ``dt`` s of experiment time, less at a clock hold or when ``stop()``
        says so; returns the time run."""


@runtime_checkable
class InstrumentBackend(RigBackend, Protocol):
    """A rig of instruments on their own clock, which the IOC scans at its own rate."""

    async def exchange(self) -> None:
        """Read every instrument, run control and safety, write the outputs."""
