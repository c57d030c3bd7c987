"""The load cell, the rig's experiment clock and the composite rig device."""

from __future__ import annotations

import threading

from ophyd import Component as Cpt
from ophyd import Device, EpicsSignal, EpicsSignalRO, Kind
from ophyd.status import DeviceStatus

from .compat import tell_watchers
from .cycler import Cycler
from .events import EventDetection, FastLog
from .press import Press, RigDisconnected
from .refusals import ConfirmedSignal
from .sequencer import Sequencer


class LoadCell(Device):
    """Strain-gauge load cell (kN), built from the rig prefix."""

    force = Cpt(EpicsSignalRO, "LC:Force-RB", kind=Kind.hinted)
    signal = Cpt(EpicsSignalRO, "LC:Signal-RB", kind=Kind.normal)
    overload = Cpt(EpicsSignalRO, "LC:Overload-RB", string=True, kind=Kind.normal)
    capacity = Cpt(EpicsSignalRO, "LC:Capacity-RB", kind=Kind.config)
    sensitivity = Cpt(EpicsSignalRO, "LC:Sensitivity-RB", kind=Kind.config)
    sample_rate = Cpt(EpicsSignalRO, "LC:SampleRate-RB", kind=Kind.config)
    tare_offset = Cpt(EpicsSignalRO, "LC:TareOffset-RB", kind=Kind.config)
    tare_cmd = Cpt(ConfirmedSignal, "LC:Tare-Cmd", refusals="LC:", kind=Kind.omitted)
    fast_sampling = Cpt(EpicsSignal, "LC:Fast-SP", string=True, kind=Kind.config)
    fast_rate = Cpt(EpicsSignal, "LC:FastRate-SP", kind=Kind.config)
    fast_for = Cpt(EpicsSignal, "LC:FastFor-SP", kind=Kind.config)
    fast = Cpt(FastLog, "LC:Fast:")

    def tare(self):
        """Zero the reading (the IOC accepts it only with the press Off and unloaded)."""
        return self.tare_cmd.set(1)


class ClockStatus(DeviceStatus):
    """Done once the rig's clock reads ``target``; progress in s of experiment time."""

    def __init__(self, device, target: float):
        super().__init__(device, call_stop_on_failure=False)
        self.target = target
        self.initial: float | None = None

    def progress(self, now: float) -> None:
        if self.initial is None:
            self.initial = now
        tell_watchers(self, name="experiment time", current=now, initial=self.initial,
                      target=self.target, unit="s")  # fmt: skip


class ClockHold(EpicsSignal):
    """``Rig:HoldAt-SP``: where a simulated rig's clock stands still (0 = nowhere). A put
    completes once the clock stands at a hold. While the RunEngine pauses or suspends,
    time goes on: the hold is released (the plan holds again when it runs again)."""

    def set(self, value, **kwargs) -> DeviceStatus:
        """Put ``value``; the status completes once the clock stands still, and fails if
        the IOC goes away first (its put-completion would never come)."""
        status = DeviceStatus(self, call_stop_on_failure=False)
        lock = threading.Lock()

        def finish(exc: Exception | None = None) -> None:
            with lock:
                if status.done:
                    return
                self.clear_sub(on_meta, event_type="meta")
                if exc is None:
                    status.set_finished()
                else:
                    status.set_exception(exc)

        def on_meta(connected=True, **kw):
            if not connected:
                finish(RigDisconnected(f"{self.name}: lost {self.pvname} while the rig's "
                                       "clock was held; is the IOC running?"))  # fmt: skip

        self.subscribe(on_meta, event_type="meta", run=False)
        if not self.connected:
            on_meta(connected=False)
            return status
        put = super().set(value, **kwargs)
        put.add_callback(lambda st: finish(None if st.success else st.exception()))
        return status

    def pause(self) -> None:
        if self.connected:
            self.put(0.0)


class ExperimentClock(Device):
    """The rig's clock: experiment time in seconds, owned by the IOC.

    ``set(t)`` does not change the time: its status completes once the rig's clock has
    reached ``t`` (so ``bps.abs_set(rig.clock, t, wait=True)`` waits on experiment time,
    whatever the speed factor). Waits resolve to the IOC's update period times the
    speed factor. A simulated rig's clock can also be held at a time (``hold_at``), so
    that a plan acts exactly there whatever the speed factor.
    """

    time = Cpt(EpicsSignalRO, "Rig:Time-RB", kind=Kind.normal, auto_monitor=True)
    speed = Cpt(EpicsSignal, "Rig:Speed-SP", kind=Kind.config)
    actual_speed = Cpt(EpicsSignalRO, "Rig:ActualSpeed-RB", kind=Kind.omitted)
    # simulation only: hold the clock at a time (0 = none); the put completes once it
    # stands still there (or at a hold of the sequencer's). Lapses after 10 s of wall time
    # unless put again or a heartbeat (Press:Heartbeat-Cmd) renews it.
    hold_at = Cpt(ClockHold, "Rig:HoldAt-SP", kind=Kind.omitted, put_complete=True)
    held = Cpt(EpicsSignalRO, "Rig:Held-RB", string=True, kind=Kind.omitted)
    simulated = Cpt(EpicsSignalRO, "Rig:Simulated-RB", string=True, kind=Kind.config)

    def set(self, target: float) -> ClockStatus:
        status = ClockStatus(self, target)
        lock = threading.Lock()

        def finish(exc: Exception | None = None) -> None:
            with lock:
                if status.done:
                    return
                self.time.clear_sub(on_time)
                self.time.clear_sub(on_meta)
                if exc is None:
                    status.set_finished()
                else:
                    status.set_exception(exc)

        def on_time(value=None, **kwargs):
            if value is not None and value >= target:
                finish()
            elif value is not None:
                status.progress(value)

        def on_meta(connected=True, **kwargs):
            if not connected:
                finish(
                    RigDisconnected(
                        f"{self.name}: lost {self.time.pvname} while waiting "
                        f"for experiment time {target:g} s; is the IOC running?"
                    )
                )

        self.time.subscribe(on_meta, event_type="meta", run=False)
        self.time.subscribe(on_time, run=True)
        if not self.time.connected:  # lost before we subscribed: no meta event will come
            on_meta(connected=False)
        return status


class Rig(Device):
    """The pressure-controlled ASSB rig: press, load cell, cycler, the protocol sequencer,
    event detection, clock, interlock.

    >>> rig = Rig("SSB:", name="rig")
    >>> rig.wait_for_connection()
    """

    press = Cpt(Press, "")
    load_cell = Cpt(LoadCell, "")
    cycler = Cpt(Cycler, "")
    sequencer = Cpt(Sequencer, "")
    events = Cpt(EventDetection, "")
    clock = Cpt(ExperimentClock, "")
    voltage = Cpt(EpicsSignalRO, "Rig:CellVoltage-RB", kind=Kind.normal)
    current = Cpt(EpicsSignal, "Rig:CellCurrent-SP", kind=Kind.normal)
    interlock = Cpt(EpicsSignalRO, "Rig:Interlock-RB", string=True, kind=Kind.normal)
    area = Cpt(EpicsSignalRO, "Rig:Area-RB", kind=Kind.config)
    cell = Cpt(EpicsSignalRO, "Rig:Cell-RB", string=True, kind=Kind.config)
    status_text = Cpt(EpicsSignalRO, "Rig:Status-RB", string=True, kind=Kind.omitted)
    message = Cpt(EpicsSignalRO, "Rig:Msg-RB", string=True, kind=Kind.omitted)
    interlock_reason = Cpt(EpicsSignalRO, "Rig:InterlockReason-RB", string=True, kind=Kind.omitted)
    link = Cpt(EpicsSignalRO, "Rig:Link-RB", string=True, kind=Kind.omitted)  # OK/Silent/Lost
    missed_replies = Cpt(EpicsSignalRO, "Rig:MissedReplies-RB", kind=Kind.omitted)
    interlock_reset_cmd = Cpt(
        ConfirmedSignal, "Rig:InterlockReset-Cmd", refusals="Rig:", kind=Kind.omitted
    )

    def reset_interlock(self):
        """Clear a latched trip once its condition is gone (the IOC checks)."""
        return self.interlock_reset_cmd.set(1)
