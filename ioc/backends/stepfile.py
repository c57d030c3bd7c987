"""Neware BTS step files: one of our cycler steps as the XML a BTS channel runs, and back.

The layout is Neware's (``<root><config type="Step File">``, ``<Step_Info Num>``,
``<StepN Step_ID Step_Type>`` with ``<Limit><Main>`` values) and so are the units: current
in mA, voltage in 0.1 mV, time in ms, capacity in mA*s. Step types used: 1 CC charge,
2 CC discharge, 3 CV (a hold at a voltage), 4 rest, 7 CCCV charge, 6 end (1, 2, 4, 6 and
7 as in public BTS step files; check 3 against your BTS version). What is not mapped
(constant power or resistance, an impedance sweep, a CCCV discharge) is refused with the
reason, before anything is sent.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

from ssb_contract.refusals import Refusal

from ..core.channel import CyclerError, Limit, SafetyLimits, Step, StepKind, Termination

CC_CHARGE, CC_DISCHARGE, CV, REST, END, CCCV_CHARGE = 1, 2, 3, 4, 6, 7
TENTH_MV = 1e4  # 0.1 mV per V
MAX_BYTES = 100_000  # a one-step file is well under a page


def step_type(step: Step) -> int:
    """The Neware step type of ``step``; CyclerError if BTS cannot run it here."""
    if step.kind == StepKind.REST:
        return REST
    if step.kind == StepKind.CC:
        return CC_CHARGE if step.current > 0 else CC_DISCHARGE
    if step.kind == StepKind.CCCV and step.current > 0:
        return CCCV_CHARGE
    if step.kind == StepKind.CV:
        return CV
    what = {
        StepKind.CCCV: "a CCCV discharge",
        StepKind.CP: "constant power",
        StepKind.CR: "constant resistance",
        StepKind.PEIS: "an impedance sweep (BTS channels have no impedance analyser)",
    }[step.kind]
    raise CyclerError(
        f"{what} is not mapped to a Neware BTS step; use CC, CV, CCCV charge, rest",
        code=Refusal.UNSUPPORTED,
    )


def _value(parent: ET.Element, tag: str, value: float) -> None:
    ET.SubElement(parent, tag, Value=f"{value:.10g}")


def step_file(step: Step, log_period: float, limits: SafetyLimits) -> str:
    """The step file for ``step`` followed by an End step."""
    kind = step_type(step)
    root = ET.Element("root")
    config = ET.SubElement(root, "config", type="Step File", version="17")
    whole = ET.SubElement(config, "Whole_Prt")
    volt = ET.SubElement(ET.SubElement(ET.SubElement(whole, "Protect"), "Main"), "Volt")
    _value(volt, "Upper", limits.v_max * TENTH_MV)
    _value(volt, "Lower", limits.v_min * TENTH_MV)
    record = ET.SubElement(ET.SubElement(whole, "Record"), "Main")
    _value(record, "Time", log_period * 1e3)
    info = ET.SubElement(config, "Step_Info", Num="2")
    first = ET.SubElement(info, "Step1", Step_ID="1", Step_Type=str(kind))
    main = ET.SubElement(ET.SubElement(first, "Limit"), "Main")
    if kind != REST:
        _value(main, "Curr", abs(step.current) * 1e3)
    if kind in (CCCV_CHARGE, CV):
        _value(main, "Volt", step.voltage * TENTH_MV)
    for t in step.terminations:
        if t.limit == Limit.TIME:
            _value(main, "Time", t.value * 1e3)
        elif t.limit == Limit.VOLTAGE:
            _value(main, "Stop_Volt", t.value * TENTH_MV)
        elif t.limit == Limit.CURRENT:
            _value(main, "Stop_Curr", abs(t.value) * 1e3)
        elif t.limit == Limit.CAPACITY:
            _value(main, "Cap", t.value * 3600.0)
    ET.SubElement(info, "Step2", Step_ID="2", Step_Type=str(END))
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")


def read_step_file(text: str) -> tuple[Step, float]:
    """The first step of a step file and its logging period (s); ValueError if malformed."""
    if len(text) > MAX_BYTES:
        raise ValueError(f"step file of {len(text)} bytes: too large")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as ex:
        raise ValueError(f"step file is not XML: {ex}") from None
    first = root.find("config/Step_Info/Step1")
    if first is None:
        raise ValueError("step file has no Step_Info/Step1")
    values = {e.tag: float(e.get("Value", "nan")) for e in first.iterfind("Limit/Main/*")}
    if any(not math.isfinite(v) for v in values.values()):
        raise ValueError("step file has a value that is not a number")
    record = root.find("config/Whole_Prt/Record/Main/Time")
    period = float(record.get("Value", "10000")) / 1e3 if record is not None else 10.0
    kind = int(first.get("Step_Type", "0"))
    sign = -1.0 if kind == CC_DISCHARGE else 1.0
    current = sign * values.get("Curr", 0.0) / 1e3
    terms = []
    if "Time" in values:
        terms.append(Termination(Limit.TIME, values["Time"] / 1e3))
    if "Stop_Volt" in values:
        terms.append(Termination(Limit.VOLTAGE, values["Stop_Volt"] / TENTH_MV))
    if "Stop_Curr" in values:
        terms.append(Termination(Limit.CURRENT, values["Stop_Curr"] / 1e3))
    if "Cap" in values:
        terms.append(Termination(Limit.CAPACITY, values["Cap"] / 3600.0))
    if kind == REST:
        return Step(StepKind.REST, terminations=tuple(terms)), period
    if kind in (CC_CHARGE, CC_DISCHARGE):
        return Step(StepKind.CC, current=current, terminations=tuple(terms)), period
    if kind in (CCCV_CHARGE, CV):
        voltage = values.get("Volt", math.nan) / TENTH_MV
        shape = StepKind.CCCV if kind == CCCV_CHARGE else StepKind.CV
        return Step(shape, current, voltage, terminations=tuple(terms)), period
    raise ValueError(f"step type {kind} is not one this channel runs")
