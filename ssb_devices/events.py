"""The IOC's event detection and its full-rate load-cell samples, as ophyd devices.

The IOC detects events as it runs (pressure spikes and drops, soft-short voltage drops,
resistance jumps), keeps them in a buffer and turns full-rate load-cell sampling on for
a window after each. :class:`EventLog` and :class:`FastLog` read those buffers in bulk.
"""

from __future__ import annotations

from ophyd import Component as Cpt
from ophyd import Device, EpicsSignal, EpicsSignalRO, Kind
from ophyd.status import Status

from ssb_contract.records import EVENT, FAST

from .buffers import RowLog
from .refusals import ConfirmedSignal


class EventLog(RowLog):
    """Events detected on the instrument (rows of time, kind index, magnitude, value)."""

    record = EVENT
    stream = "ioc_events"


class FastLog(RowLog):
    """Every load-cell sample (up to the loop rate, 1 kHz) while full-rate sampling is on
    (``LC:Fast-SP``, or the window after an event): stream ``load_cell_fast``."""

    record = FAST
    stream = "load_cell_fast"


class EventDetection(Device):
    """Thresholds of the IOC's event detection (``Evt:``), what the IOC itself does on
    each kind (``Log`` or ``OpenCircuit``), and its event buffer."""

    enable = Cpt(EpicsSignal, "Evt:Enable-SP", string=True, kind=Kind.config)
    pressure_threshold = Cpt(EpicsSignal, "Evt:PressureThresh-SP", kind=Kind.config)
    voltage_drop_threshold = Cpt(EpicsSignal, "Evt:VoltageDropThresh-SP", kind=Kind.config)
    resistance_threshold = Cpt(EpicsSignal, "Evt:ResistanceThresh-SP", kind=Kind.config)
    window = Cpt(EpicsSignal, "Evt:Window-SP", kind=Kind.config)
    pressure_spike_action = Cpt(
        EpicsSignal, "Evt:PressureSpikeAction-SP", string=True, kind=Kind.config
    )
    pressure_drop_action = Cpt(
        EpicsSignal, "Evt:PressureDropAction-SP", string=True, kind=Kind.config
    )
    soft_short_action = Cpt(EpicsSignal, "Evt:SoftShortAction-SP", string=True, kind=Kind.config)
    resistance_jump_action = Cpt(
        EpicsSignal, "Evt:ResistanceJumpAction-SP", string=True, kind=Kind.config
    )
    count = Cpt(EpicsSignalRO, "Evt:Count-RB", kind=Kind.omitted)
    last = Cpt(EpicsSignalRO, "Evt:Last-RB", string=True, kind=Kind.omitted)
    buffer = Cpt(EventLog, "Evt:Buf:")


class FaultInjector(Device):
    """The simulated rig's fault injection (``Rig:Fault*``), kept apart from :class:`Rig`
    because real hardware has no such PVs.

    >>> faults = FaultInjector("SSB:", name="faults")
    >>> faults.inject("PressureSpike", 2.0, at=3600.0).wait()  # 2 um, at t = 1 h
    """

    fault_type = Cpt(EpicsSignal, "Rig:FaultType-SP", string=True, kind=Kind.config)
    size = Cpt(EpicsSignal, "Rig:FaultSize-SP", kind=Kind.config)
    at = Cpt(EpicsSignal, "Rig:FaultAt-SP", kind=Kind.config)
    inject_cmd = Cpt(ConfirmedSignal, "Rig:InjectFault-Cmd", refusals="Rig:", kind=Kind.omitted)
    message = Cpt(EpicsSignalRO, "Rig:Msg-RB", string=True, kind=Kind.omitted)

    def inject(self, kind: str, size: float = 0.0, at: float = 0.0) -> Status:
        """``kind``: SoftShort, PressureSpike or ContactLoss; ``size`` 0 = the default;
        ``at``: experiment time (0 = now). The IOC refuses bad values (see ``message``)."""
        for signal, value in ((self.fault_type, kind), (self.size, size), (self.at, at)):
            signal.put(value, wait=True)
        return self.inject_cmd.set(1)
