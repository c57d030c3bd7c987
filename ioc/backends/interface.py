"""The boundary between the IOC's PV layer and whatever serves the rig.

Layers, top to bottom: the PV groups (names, units, alarms, messages, access rules) ->
:class:`RigBackend`, the rig's control and safety (command validation, the setpoint ramp,
settling, interlocks, event detection, the sequencer, the logged samples) -> one object
per instrument, with the readings and commands below -> an implementation: the
simulation's physics (:class:`ssb_ioc.sim.Rig`), or drivers over wire protocols
(:class:`ssb_ioc.backends.hardware.HardwareRig`: Modbus TCP press and load cell, a BTS
cycler channel, the wall's or an instrument's clock).

The PV layer imports nothing below this module: it asks these questions only, so a new
driver is a new implementation, not a change to the PVs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..sim.cycler import Cycler, SampleBuffer
    from ..sim.events import EventDetector
    from ..sim.loadcell import LoadCell
    from ..sim.params import RigParams
    from ..sim.press import Press
    from ..sim.sequencer import Sequencer


class MeasuredCell(Protocol):
    """What the rig knows of the cell: its terminal voltage and the current through it."""

    voltage: float
    current: float


@runtime_checkable
class RigBackend(Protocol):
    """What the PV layer asks of a rig, simulated or on instruments."""

    # --- the instruments, as the control sees them ------------------------------------------
    params: RigParams  # the cell's area and the rig's limits (from the cell file)
    press: Press  # mode, target and ramped setpoint, settling, loop gains; readbacks
    load_cell: LoadCell  # force, bridge signal, tare
    cycler: Cycler  # the channel: the running step, its counters and the sample buffer
    cell: MeasuredCell
    fast: SampleBuffer  # the load cell at full rate around events
    fast_mode: str
    event_window: float
    events: EventDetector
    sequencer: Sequencer
    interlock: str  # why the interlock is tripped ("" when it is not)
    link: str  # OK | Silent | Lost: the instruments' links (a simulation: always OK)
    missed_replies: int  # scans in which an instrument did not answer
    news: list[str]  # what the IOC should tell its clients, once each
    max_setpoint: float
    over_pressure: float

    @property
    def keeps_own_time(self) -> bool:
        """True for instruments (the IOC scans them at its own rate and their clock is
        experiment time); False for the simulation, which the IOC advances at its speed."""

    @property
    def time(self) -> float:
        """Experiment time, s."""

    # --- one scan ---------------------------------------------------------------------------
    def advance(self, dt: float) -> None:
        """Simulation only: run ``dt`` s of experiment time."""

    async def exchange(self) -> None:
        """Instruments only: read every instrument, run control and safety, write outputs."""

    def stale_pvs(self) -> dict[str, tuple[str, float]]:
        """Readbacks whose instrument does not answer: PV name (no prefix) -> (why, time of
        the last good value). Served with an INVALID/COMM alarm, never as fresh."""

    def resume_clock(self, at: float) -> None: ...

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
    def set_current(self, current: float) -> None: ...
    def check_manual(self, what: str) -> None: ...
    def stop(self) -> None: ...
    def tare(self) -> None: ...
    def reset_interlock(self) -> None: ...
    def deadman(self, action: str, floor: float) -> str: ...
    def inject_fault(self, kind: str, size: float = 0.0, at: float | None = None) -> str: ...
