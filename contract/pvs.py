"""The PVs of a rig IOC as both sides name them: the suffix after the IOC's prefix, the
type of its value, its units, and whether a client writes it (settings and commands).

The IOC's PV groups declare these PVs; the client devices name them. tests/test_contract.py
fails when the IOC serves a PV not listed here or serves one differently (type, units,
access), and when a device names a PV not listed or writes one that is read-only. The
choices of the enum PVs both sides compare against are in :mod:`ssb_contract.states` and
:mod:`ssb_contract.refusals`; the fields of the page PVs in :mod:`ssb_contract.records`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from .paging import PAGES, page_name

FLOAT = "float"  # a number (double)
INT = "int"  # a whole number (long); commands are written 1
ENUM = "enum"  # one of named choices
TEXT = "text"  # a string (char array: long text, JSON)
ARRAY = "array"  # an array of doubles (a page of rows)


@dataclass(frozen=True)
class PV:
    kind: str
    units: str = ""
    writable: bool = False


def _pages(ring: str, kind: str) -> dict[str, PV]:
    """The page PVs of a ring (``Cyc:Buf:Page0-RB`` ...): see :mod:`ssb_contract.paging`;
    an array's elements are of the record's fields, each in its own unit ("mixed")."""
    units = "mixed" if kind == ARRAY else ""
    return {f"{ring}{page_name(k)}": PV(kind, units) for k in range(PAGES)}


RIG_PVS: Mapping[str, PV] = MappingProxyType(
    {
        "Rig:Refusal-RB": PV(ENUM),
        "Rig:RefusalMsg-RB": PV(TEXT),
        "Press:Refusal-RB": PV(ENUM),
        "Press:RefusalMsg-RB": PV(TEXT),
        "Press:Pressure-SP": PV(FLOAT, "MPa", writable=True),
        "Press:Pressure-RB": PV(FLOAT, "MPa"),
        "Press:PressureDemand-RB": PV(FLOAT, "MPa"),
        "Press:Force-RB": PV(FLOAT, "kN"),
        "Press:Position-RB": PV(FLOAT, "um"),
        "Press:Gap-RB": PV(FLOAT, "um"),
        "Press:Mode-SP": PV(ENUM, writable=True),
        "Press:Mode-RB": PV(ENUM),
        "Press:RampRate-SP": PV(FLOAT, "MPa/s", writable=True),
        "Press:MaxPressure-SP": PV(FLOAT, "MPa", writable=True),
        "Press:OverPressure-SP": PV(FLOAT, "MPa", writable=True),
        "Press:KP-SP": PV(FLOAT, "um/s/MPa", writable=True),
        "Press:KI-SP": PV(FLOAT, "1/s", writable=True),
        "Press:KD-SP": PV(FLOAT, "s", writable=True),
        "Press:DRVH-SP": PV(FLOAT, "um/s", writable=True),
        "Press:DRVL-SP": PV(FLOAT, "um/s", writable=True),
        "Press:Output-RB": PV(FLOAT, "um/s"),
        "Press:Error-RB": PV(FLOAT, "MPa"),
        "Press:SettleTol-SP": PV(FLOAT, "MPa", writable=True),
        "Press:SettleTime-SP": PV(FLOAT, "s", writable=True),
        "Press:Settled-RB": PV(ENUM),
        "Press:Stop-Cmd": PV(INT, writable=True),
        "Press:Deadman-SP": PV(FLOAT, "s", writable=True),
        "Press:DeadmanAction-SP": PV(ENUM, writable=True),
        "Press:DeadmanFloor-SP": PV(FLOAT, "MPa", writable=True),
        "Press:Heartbeat-Cmd": PV(INT, writable=True),
        "Press:Deadman-RB": PV(ENUM),
        "Press:DevMinor-SP": PV(FLOAT, "MPa", writable=True),
        "Press:DevMajor-SP": PV(FLOAT, "MPa", writable=True),
        "LC:Refusal-RB": PV(ENUM),
        "LC:RefusalMsg-RB": PV(TEXT),
        "LC:Fast:NextSeq-RB": PV(INT),
        "LC:Fast:OldestSeq-RB": PV(INT),
        "LC:Fast:Kept-RB": PV(INT),
        "LC:Fast:Keep-SP": PV(FLOAT, "1", writable=True),
        **_pages("LC:Fast:", ARRAY),
        "LC:Fast-SP": PV(ENUM, writable=True),
        "LC:FastRate-SP": PV(FLOAT, "Hz", writable=True),
        "LC:FastFor-SP": PV(FLOAT, "s", writable=True),
        "LC:Force-RB": PV(FLOAT, "kN"),
        "LC:Signal-RB": PV(FLOAT, "mV/V"),
        "LC:Capacity-RB": PV(FLOAT, "kN"),
        "LC:Sensitivity-RB": PV(FLOAT, "mV/V"),
        "LC:SampleRate-RB": PV(FLOAT, "Hz"),
        "LC:TareOffset-RB": PV(FLOAT, "kN"),
        "LC:Overload-RB": PV(ENUM),
        "LC:Tare-Cmd": PV(INT, writable=True),
        "Cyc:Refusal-RB": PV(ENUM),
        "Cyc:RefusalMsg-RB": PV(TEXT),
        "Cyc:StepType-SP": PV(ENUM, writable=True),
        "Cyc:Current-SP": PV(FLOAT, "A", writable=True),
        "Cyc:Voltage-SP": PV(FLOAT, "V", writable=True),
        "Cyc:Power-SP": PV(FLOAT, "W", writable=True),
        "Cyc:Resistance-SP": PV(FLOAT, "Ohm", writable=True),
        "Cyc:Term1Type-SP": PV(ENUM, writable=True),
        "Cyc:Term1Value-SP": PV(FLOAT, "by type", writable=True),
        "Cyc:Term1Dir-SP": PV(ENUM, writable=True),
        "Cyc:Term2Type-SP": PV(ENUM, writable=True),
        "Cyc:Term2Value-SP": PV(FLOAT, "by type", writable=True),
        "Cyc:Term2Dir-SP": PV(ENUM, writable=True),
        "Cyc:Term3Type-SP": PV(ENUM, writable=True),
        "Cyc:Term3Value-SP": PV(FLOAT, "by type", writable=True),
        "Cyc:Term3Dir-SP": PV(ENUM, writable=True),
        "Cyc:Cycle-SP": PV(FLOAT, "1", writable=True),
        "Cyc:Capacity-SP": PV(FLOAT, "mAh", writable=True),
        "Cyc:LogPeriod-SP": PV(FLOAT, "s", writable=True),
        "Cyc:Step-SP": PV(FLOAT, "1", writable=True),
        "Cyc:EIS:FStart-SP": PV(FLOAT, "Hz", writable=True),
        "Cyc:EIS:FEnd-SP": PV(FLOAT, "Hz", writable=True),
        "Cyc:EIS:PointsPerDecade-SP": PV(FLOAT, "1/decade", writable=True),
        "Cyc:EIS:Count-RB": PV(INT),
        "Cyc:EIS:Pressure-RB": PV(FLOAT, "MPa"),
        "Cyc:EIS:TestTime-RB": PV(FLOAT, "s"),
        "Cyc:EIS:Freq-RB": PV(ARRAY, "Hz"),
        "Cyc:EIS:ZRe-RB": PV(ARRAY, "Ohm"),
        "Cyc:EIS:ZIm-RB": PV(ARRAY, "Ohm"),
        **_pages("Cyc:EIS:", ARRAY),
        "Cyc:Start-Cmd": PV(INT, writable=True),
        "Cyc:Stop-Cmd": PV(INT, writable=True),
        "Cyc:Reset-Cmd": PV(INT, writable=True),
        "Cyc:Running-RB": PV(ENUM),
        "Cyc:Reason-RB": PV(TEXT),
        "Cyc:Tripped-RB": PV(ENUM),
        "Cyc:TripReason-RB": PV(TEXT),
        "Cyc:Voltage-RB": PV(FLOAT, "V"),
        "Cyc:Current-RB": PV(FLOAT, "A"),
        "Cyc:TestTime-RB": PV(FLOAT, "s"),
        "Cyc:StepTime-RB": PV(FLOAT, "s"),
        "Cyc:CycleIndex-RB": PV(INT),
        "Cyc:StepIndex-RB": PV(INT),
        "Cyc:StepCharge-RB": PV(FLOAT, "mAh"),
        "Cyc:StepDischarge-RB": PV(FLOAT, "mAh"),
        "Cyc:ChargeCapacity-RB": PV(FLOAT, "mAh"),
        "Cyc:DischargeCapacity-RB": PV(FLOAT, "mAh"),
        "Cyc:ChargeEnergy-RB": PV(FLOAT, "mWh"),
        "Cyc:DischargeEnergy-RB": PV(FLOAT, "mWh"),
        "Cyc:Buf:NextSeq-RB": PV(INT),
        "Cyc:Buf:OldestSeq-RB": PV(INT),
        "Cyc:Buf:Kept-RB": PV(INT),
        "Cyc:Buf:Keep-SP": PV(FLOAT, "1", writable=True),
        **_pages("Cyc:Buf:", ARRAY),
        "Seq:Refusal-RB": PV(ENUM),
        "Seq:RefusalMsg-RB": PV(TEXT),
        "Seq:Table-SP": PV(TEXT, writable=True),
        "Seq:Owner-RB": PV(TEXT),
        "Seq:StartAt-SP": PV(FLOAT, "1", writable=True),
        "Seq:Start-Cmd": PV(INT, writable=True),
        "Seq:Pause-Cmd": PV(INT, writable=True),
        "Seq:Resume-Cmd": PV(INT, writable=True),
        "Seq:Abort-Cmd": PV(INT, writable=True),
        "Seq:ForceAbort-Cmd": PV(INT, writable=True),
        "Seq:OwnerKey-RB": PV(INT),
        "Seq:State-RB": PV(ENUM),
        "Seq:Reason-RB": PV(TEXT),
        "Seq:Steps-RB": PV(INT),
        "Seq:Step-RB": PV(INT),
        "Seq:Cycle-RB": PV(INT),
        "Seq:StepText-RB": PV(TEXT),
        "Seq:Completed-RB": PV(INT),
        **_pages("Seq:Results:", TEXT),
        "Evt:Refusal-RB": PV(ENUM),
        "Evt:RefusalMsg-RB": PV(TEXT),
        "Evt:Buf:NextSeq-RB": PV(INT),
        "Evt:Buf:OldestSeq-RB": PV(INT),
        "Evt:Buf:Kept-RB": PV(INT),
        "Evt:Buf:Keep-SP": PV(FLOAT, "1", writable=True),
        **_pages("Evt:Buf:", ARRAY),
        "Evt:Enable-SP": PV(ENUM, writable=True),
        "Evt:PressureThresh-SP": PV(FLOAT, "MPa", writable=True),
        "Evt:VoltageDropThresh-SP": PV(FLOAT, "V", writable=True),
        "Evt:ResistanceThresh-SP": PV(FLOAT, "Ohm", writable=True),
        "Evt:Window-SP": PV(FLOAT, "s", writable=True),
        "Evt:PressureSpikeAction-SP": PV(ENUM, writable=True),
        "Evt:PressureDropAction-SP": PV(ENUM, writable=True),
        "Evt:SoftShortAction-SP": PV(ENUM, writable=True),
        "Evt:ResistanceJumpAction-SP": PV(ENUM, writable=True),
        "Evt:Count-RB": PV(INT),
        "Evt:Last-RB": PV(TEXT),
        "Diag:Refusal-RB": PV(ENUM),
        "Diag:RefusalMsg-RB": PV(TEXT),
        "Diag:Rate-SP": PV(FLOAT, "Hz", writable=True),
        "Diag:Counter-RB": PV(INT),
        "Rig:Time-RB": PV(FLOAT, "s"),
        "Rig:Speed-SP": PV(FLOAT, "x", writable=True),
        "Rig:ActualSpeed-RB": PV(FLOAT, "x"),
        "Rig:Area-RB": PV(FLOAT, "cm^2"),
        "Rig:Cell-RB": PV(TEXT),
        "Rig:CellVoltage-RB": PV(FLOAT, "V"),
        "Rig:CellSOC-RB": PV(FLOAT, "1"),
        "Rig:CellCurrent-SP": PV(FLOAT, "A", writable=True),
        "Rig:Status-RB": PV(TEXT),
        "Rig:Msg-RB": PV(TEXT),
        "Rig:Interlock-RB": PV(ENUM),
        "Rig:InterlockReason-RB": PV(TEXT),
        "Rig:Link-RB": PV(ENUM),
        "Rig:MissedReplies-RB": PV(INT),
        "Rig:Beat-RB": PV(INT),
        "Rig:InterlockReset-Cmd": PV(INT, writable=True),
        "Rig:HoldAt-SP": PV(FLOAT, "s", writable=True),
        "Rig:Override-Cmd": PV(INT, writable=True),
        "Rig:Override-RB": PV(ENUM),
        "Rig:Held-RB": PV(ENUM),
        "Rig:Simulated-RB": PV(ENUM),
        "Rig:FaultType-SP": PV(ENUM, writable=True),
        "Rig:FaultSize-SP": PV(FLOAT, "S", writable=True),
        "Rig:FaultAt-SP": PV(FLOAT, "s", writable=True),
        "Rig:InjectFault-Cmd": PV(INT, writable=True),
    }
)
