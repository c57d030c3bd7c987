"""The cycler channel's PVs (``{prefix}Cyc:``): define a step, start it, read it back.

A client writes the step's settings (type, current, voltage, power, resistance, up to
three terminations), then puts ``Start-Cmd`` with a callback: the put completes when the
step terminates (its reason on ``Reason-RB``) and fails if a safety trip ends it. Samples
logged on the instrument are read in bulk from the ``Buf:Page<k>-RB`` pages
(:mod:`ssb_contract.paging`). An impedance step (``PEIS``) sweeps
``EIS:FStart-SP`` to ``EIS:FEnd-SP`` at open circuit; its spectrum lands in the
``EIS:*-RB`` arrays and ``EIS:Count-RB`` counts the spectra measured.
"""

from __future__ import annotations

# caproto's `@pv.putter` redefines the name, as a property setter does (mypy knows only
# property's):
# mypy: disable-error-code="no-redef"
import asyncio

import numpy as np
from caproto import AlarmSeverity, AlarmStatus
from caproto.server import SubGroup

from ssb_contract.paging import Paging
from ssb_contract.records import SAMPLE
from ssb_contract.refusals import Refusal, refusal_of
from ssb_contract.states import DIRECTIONS as CONTRACT_DIRECTIONS
from ssb_contract.states import LIMITS, NO_LIMIT, STEP_KINDS
from ssb_contract.table import CyclerStep, TableError, Termination
from ssb_ioc.core.channel import EIS_MAX_POINTS, SPECTRA_KEPT, CyclerError, step_of
from ssb_ioc.core.errors import RigError
from ssb_ioc.params import MAX_SAMPLES

from .buffers import RowBufferGroup, row_pages
from .pages import pages
from .pvs import (
    RigPVGroup,
    array,
    choice,
    command,
    counter,
    publish,
    reading,
    refusals,
    setting,
    text,
)

SPECTRUM_WIDTH = 4 + 3 * EIS_MAX_POINTS  # floats of one spectrum's record
STEP_TYPES = list(STEP_KINDS)
TERM_TYPES = [NO_LIMIT, *LIMITS]
DIRECTIONS = list(CONTRACT_DIRECTIONS)


class SampleRows(RowBufferGroup):
    """The channel's logged samples (``Cyc:Buf:``)."""

    fields = SAMPLE.fields
    pages = row_pages(MAX_SAMPLES, SAMPLE.width)

    def buffer(self):
        return self.rig.cycler.buffer


# a termination value's units follow its type; unused (None), it says so
TERM_UNITS = {"None": "by type", "Voltage": "V", "Current": "A", "Time": "s", "Capacity": "mAh"}


def _term_type(slot: int):
    """TermNType-SP; its choice sets the units of TermNValue-SP (they follow the type)."""

    async def put(group, instance, value):
        value_pv = getattr(group, f"term{slot}_value")
        await value_pv.write_metadata(units=TERM_UNITS[value])
        return value

    return choice(f"Term{slot}Type-SP", TERM_TYPES, f"Termination {slot}", put=put)


def _termination(kind: str, value: float, direction: str) -> Termination | None:
    return None if kind == NO_LIMIT else Termination(kind, float(value), direction)


class CyclerGroup(RigPVGroup):
    """Battery cycler channel (``{prefix}Cyc:``); current positive on charge.

    StepType-SP        Rest | CC | CV | CCCV | CP | CR | PEIS
    Current-SP    A    CC/CCCV current, CV current limit
    Voltage-SP    V    CV/CCCV voltage
    Power-SP      W    CP power;  Resistance-SP Ohm: CR load
    Capacity-SP   mAh  the cell's nominal capacity, for C-rates (from the cell file)
    LogPeriod-SP  s    log a sample every this much test time (and on a voltage change)
    Step-SP            step index recorded with the step (0 = the next one)
    EIS:FStart-SP, EIS:FEnd-SP Hz, EIS:PointsPerDecade-SP: the PEIS sweep
    EIS:Count-RB, EIS:Pressure-RB MPa, EIS:TestTime-RB s; EIS:Freq-RB Hz, EIS:ZRe-RB and
                       EIS:ZIm-RB Ohm: the last spectrum
    EIS:Page0-RB .. EIS:Page31-RB  the kept spectra by number, in pages
                       (ssb_contract.paging); each: number, pressure MPa, test time s,
                       points, Hz..., Re Ohm..., Im Ohm...
    TermN{Type,Value,Dir}-SP  up to three terminations (Voltage V, Current A, Time s,
                       Capacity mAh: the value's units follow the type; Dir
                       Auto/Rising/Falling for voltage)
    Cycle-SP           cycle index recorded with the step
    Start-Cmd          start the step; put-completion = the step has ended
    Stop-Cmd, Reset-Cmd  end the step (open circuit); clear a safety trip
    Running-RB, Reason-RB, Tripped-RB, TripReason-RB
    Voltage-RB, Current-RB, TestTime-RB, StepTime-RB, CycleIndex-RB, StepIndex-RB,
    StepCharge-RB, StepDischarge-RB, ChargeCapacity-RB, DischargeCapacity-RB (mAh),
    ChargeEnergy-RB, DischargeEnergy-RB (mWh)
    Buf:NextSeq-RB, Buf:OldestSeq-RB, Buf:Kept-RB, Buf:Page0-RB .. Buf:Page31-RB
                       logged samples in pages (ssb_contract.paging), fields as
                       ssb_contract.records.SAMPLE
    Buf:Keep-SP        the oldest sample the reader still needs: the simulation slows
                       rather than overwrite it (put it again within 10 s of wall time)
    """

    last_refusal = refusals("")  # the last refused put: Refusal-RB, RefusalMsg-RB

    step_type = choice("StepType-SP", STEP_TYPES, "Type of the next step")
    current_sp = setting("Current-SP", "A", -1.0, 1.0, "Step current (+ = charge)", 6)
    voltage_sp = setting("Voltage-SP", "V", 0.0, 10.0, "Step voltage (CV, CCCV)", 4)
    power_sp = setting("Power-SP", "W", -10.0, 10.0, "Step power (CP, + = charge)", 6)
    resistance_sp = setting("Resistance-SP", "Ohm", 0.0, 1e7, "Load resistance (CR)", 2)
    term1_type = _term_type(1)
    term1_value = setting("Term1Value-SP", "by type", 0.0, 1e9, "Termination 1 value", 6)
    term1_dir = choice("Term1Dir-SP", DIRECTIONS, "Termination 1 voltage direction")
    term2_type = _term_type(2)
    term2_value = setting("Term2Value-SP", "by type", 0.0, 1e9, "Termination 2 value", 6)
    term2_dir = choice("Term2Dir-SP", DIRECTIONS, "Termination 2 voltage direction")
    term3_type = _term_type(3)
    term3_value = setting("Term3Value-SP", "by type", 0.0, 1e9, "Termination 3 value", 6)
    term3_dir = choice("Term3Dir-SP", DIRECTIONS, "Termination 3 voltage direction")
    cycle_sp = setting("Cycle-SP", "1", 0.0, 1e9, "Cycle index for the step", 0)
    capacity_sp = setting(
        "Capacity-SP",
        "mAh",
        1e-6,
        1e5,
        "Nominal capacity for C-rates",
        4,
    )
    log_period_sp = setting(
        "LogPeriod-SP",
        "s",
        0.01,
        86400.0,
        "Log a sample every this much test time",
        2,
        apply=lambda rig, v: rig.set_log_period(v),
    )
    step_sp = setting("Step-SP", "1", 0.0, 1e9, "Step index for the step (0 = next)", 0)
    eis_f_start = setting("EIS:FStart-SP", "Hz", 1e-3, 1e7, "Impedance sweep start", 4)
    eis_f_end = setting("EIS:FEnd-SP", "Hz", 1e-3, 1e7, "Impedance sweep end", 4)
    eis_ppd = setting(
        "EIS:PointsPerDecade-SP", "1/decade", 1.0, 50.0, "Sweep points per decade", 0
    )
    eis_count = counter("EIS:Count-RB", "Spectra measured")
    eis_pressure = reading("EIS:Pressure-RB", "MPa", 0.0, 1e4, "Pressure of the spectrum", 2)
    eis_time = reading("EIS:TestTime-RB", "s", 0.0, 1e12, "Test time of the spectrum", 1)
    eis_freq = array("EIS:Freq-RB", "Hz", "Last spectrum: frequency", EIS_MAX_POINTS)
    eis_z_re = array("EIS:ZRe-RB", "Ohm", "Last spectrum: Re Z", EIS_MAX_POINTS)
    eis_z_im = array("EIS:ZIm-RB", "Ohm", "Last spectrum: Im Z", EIS_MAX_POINTS)
    eis_pages = pages(
        SPECTRA_KEPT,
        SPECTRUM_WIDTH,
        "spectra by number: number, MPa, s, points, then Hz, Re, Im",
        prefix="EIS:",
        method="spectra_page",
    )
    start_cmd = command("Start-Cmd", "Start the step; completes when it ends")
    stop_cmd = command("Stop-Cmd", "End the step: open circuit")
    reset_cmd = command("Reset-Cmd", "Clear a latched safety trip")

    running_rb = choice("Running-RB", ["No", "Yes"], "A step is running", read_only=True)
    reason_rb = text("Reason-RB", "Why the last step ended")
    tripped_rb = choice("Tripped-RB", ["OK", "Tripped"], "Safety trip latched", read_only=True)
    trip_reason_rb = text("TripReason-RB", "Why the channel tripped")
    voltage_rb = reading("Voltage-RB", "V", -10.0, 10.0, "Cell voltage", 4)
    current_rb = reading("Current-RB", "A", -1.0, 1.0, "Cell current", 6)
    test_time_rb = reading("TestTime-RB", "s", 0.0, 1e12, "Test time", 1)
    step_time_rb = reading("StepTime-RB", "s", 0.0, 1e12, "Step time", 1)
    cycle_rb = counter("CycleIndex-RB", "Cycle index")
    step_rb = counter("StepIndex-RB", "Step index")
    step_charge_rb = reading("StepCharge-RB", "mAh", 0.0, 1e9, "Step charge capacity", 5)
    step_discharge_rb = reading("StepDischarge-RB", "mAh", 0.0, 1e9, "Step discharge capacity", 5)
    charge_rb = reading("ChargeCapacity-RB", "mAh", 0.0, 1e9, "Charge capacity", 5)
    discharge_rb = reading("DischargeCapacity-RB", "mAh", 0.0, 1e9, "Discharge capacity", 5)
    charge_energy_rb = reading("ChargeEnergy-RB", "mWh", 0.0, 1e9, "Charge energy", 5)
    discharge_energy_rb = reading("DischargeEnergy-RB", "mWh", 0.0, 1e9, "Discharge energy", 5)

    buf = SubGroup(SampleRows, prefix="Buf:")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._ends: list[asyncio.Future] = []
        self._spectrum_published = 0

    def _step(self) -> CyclerStep:
        """The step the settings PVs describe, as the contract writes a step (the
        sequencer's table holds the same records)."""
        terms = tuple(
            t
            for t in (
                _termination(self.term1_type.value, self.term1_value.value, self.term1_dir.value),
                _termination(self.term2_type.value, self.term2_value.value, self.term2_dir.value),
                _termination(self.term3_type.value, self.term3_value.value, self.term3_dir.value),
            )
            if t is not None
        )
        return CyclerStep(
            self.step_type.value,
            current=self.current_sp.value,
            voltage=self.voltage_sp.value,
            power=self.power_sp.value,
            resistance=self.resistance_sp.value,
            terminations=terms,
            f_start=self.eis_f_start.value,
            f_end=self.eis_f_end.value,
            points_per_decade=int(self.eis_ppd.value),
            cycle=int(self.cycle_sp.value),
            index=int(self.step_sp.value),
        )

    @start_cmd.putter
    async def start_cmd(self, instance, value):
        if not value:
            return 0
        self.rig.check_manual("step")
        try:
            step = self._step()
            self.rig.cycler.start(step_of(step), cycle=step.cycle, index=step.index or None)
        except (CyclerError, TableError) as ex:
            raise RigError(f"step refused: {ex}", code=refusal_of(ex)) from None
        await self.update()
        end = asyncio.get_running_loop().create_future()
        self._ends.append(end)
        await end
        return 0

    @stop_cmd.putter
    async def stop_cmd(self, instance, value):
        if value:
            self.rig.check_manual("Cyc:Stop-Cmd")
            self.rig.cycler.stop("stopped by a client")
            await self.update()
        return 0

    @reset_cmd.putter
    async def reset_cmd(self, instance, value):
        if value:
            self.rig.cycler.reset()
            await self.update()
        return 0

    def spectra_page(self, index: int) -> np.ndarray:
        """Page PV ``index`` of the kept spectra, numbered from 1 (their ``EIS:Count-RB``)."""
        spectra = self.rig.cycler.spectra
        latest = spectra[-1].count if spectra else 0
        page, numbers = Paging(SPECTRA_KEPT).held(index, latest + 1)
        records = [
            [float(s.count), s.pressure, s.test_time, float(len(s.frequency)),
             *s.frequency, *s.impedance.real, *s.impedance.imag]
            for s in spectra
            if s.count in numbers
        ]  # fmt: skip
        return np.array([float(page), float(len(records)), *(x for r in records for x in r)])

    async def update(self) -> None:
        """Publish the channel's state; complete or fail pending Start-Cmd puts."""
        cyc = self.rig.cycler
        c = cyc.counters
        values = {
            self.running_rb: "Yes" if cyc.running else "No",
            self.reason_rb: cyc.reason,
            self.trip_reason_rb: cyc.tripped,
            self.voltage_rb: self.rig.cell.voltage,
            self.current_rb: self.rig.cell.current,
            self.test_time_rb: c.test_time,
            self.step_time_rb: c.step_time,
            self.cycle_rb: c.cycle,
            self.step_rb: c.step,
            self.step_charge_rb: c.step_charge,
            self.step_discharge_rb: c.step_discharge,
            self.charge_rb: c.charge_capacity,
            self.discharge_rb: c.discharge_capacity,
            self.charge_energy_rb: c.charge_energy,
            self.discharge_energy_rb: c.discharge_energy,
        }
        for pv, value in values.items():
            await publish(pv, value)
        await self.buf.update()
        spectrum = cyc.spectrum
        if spectrum is not None and spectrum.count != self._spectrum_published:
            await self.eis_freq.write(spectrum.frequency)
            await self.eis_z_re.write(spectrum.impedance.real)
            await self.eis_z_im.write(spectrum.impedance.imag)
            await self.eis_pressure.write(spectrum.pressure)
            await self.eis_time.write(spectrum.test_time)
            await self.eis_count.write(spectrum.count)  # last: the spectrum is whole
            self._spectrum_published = spectrum.count
        tripped = "Tripped" if cyc.tripped else "OK"
        if self.tripped_rb.value != tripped:
            severity = AlarmSeverity.MAJOR_ALARM if cyc.tripped else AlarmSeverity.NO_ALARM
            status = AlarmStatus.STATE if cyc.tripped else AlarmStatus.NO_ALARM
            await self.tripped_rb.write(tripped, status=status, severity=severity)
        if not cyc.running and self._ends:
            ends, self._ends = self._ends, []
            failed = cyc.reason.startswith("safety")
            for end in ends:
                if end.done():
                    continue
                if failed:
                    end.set_exception(RigError(f"step ended by a {cyc.reason}", Refusal.INTERLOCK))
                else:
                    end.set_result(None)
