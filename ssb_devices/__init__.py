"""ophyd devices for the pressure-controlled ASSB rig served by ``ssb-ioc``.

Every device is built from the rig's PV prefix (``SSB:`` by default)::

    from ssb_devices import Rig
    rig = Rig("SSB:", name="rig")
    rig.wait_for_connection()
    rig.press.regulate().wait()
    rig.press.set(100).wait()
"""

from ssb_contract.records import EVENT_KINDS
from ssb_contract.table import CyclerStep, Termination

from .connection import disconnect, disconnect_at_exit  # first: it picks ophyd's client
from .cycler import (
    Cycler,
    ImpedanceLog,
    SampleLog,
    StepRejected,
    StepStatus,
)
from .diffraction import DetectorFailed, DiffractionDetector
from .events import EventDetection, EventLog, FastLog, FaultInjector
from .press import MODES, Press, PressureRejected, RigDisconnected
from .rig import ExperimentClock, LoadCell, Rig
from .sequencer import Sequencer, SequenceRefused, SequenceStatus

disconnect_at_exit()  # no caproto tracebacks when a process that used the rig ends

__all__ = [
    "EVENT_KINDS",
    "MODES",
    "Cycler",
    "CyclerStep",
    "DetectorFailed",
    "DiffractionDetector",
    "EventDetection",
    "EventLog",
    "ExperimentClock",
    "FastLog",
    "FaultInjector",
    "ImpedanceLog",
    "LoadCell",
    "Press",
    "PressureRejected",
    "Rig",
    "RigDisconnected",
    "SampleLog",
    "SequenceRefused",
    "SequenceStatus",
    "Sequencer",
    "StepRejected",
    "StepStatus",
    "Termination",
    "disconnect",
]
