"""The battery cycler channel: run one step at a time, and collect its logged samples.

``Cycler.set(step)`` writes the step's settings, then puts ``Cyc:Start-Cmd`` with a
completion callback: the IOC completes it when the step terminates, so the status is done
exactly when the instrument says so; ``status.reason`` then holds why (``"voltage >= 4.2
V"``). A step the IOC refuses (the put itself fails), or ends with a safety trip, fails
the status with :class:`StepRejected`: its ``code`` from ``Cyc:Refusal-RB`` and the
IOC's words from ``Cyc:RefusalMsg-RB``.

On a pause or a suspension the RunEngine calls ``stop(success=True)`` and ``pause()``:
the channel goes to open circuit and remembers what the step had done; ``resume()``
starts the rest of it under the same step index: a time limit less the time already run,
a capacity limit less the capacity already passed, voltage and current limits unchanged.
The step's status stays pending across the pause. ``stop()`` ends the step (open
circuit) and fails its status; a step still paused at ``unstage()`` is abandoned.

Samples logged on the instrument are read in bulk by :class:`SampleLog`, a flyer
(:class:`ssb_devices.buffers.RowLog`): every sample, in pages, with nothing lost or
duplicated between collects. :class:`ImpedanceLog` does the same for impedance spectra.
Current is positive on charge, everywhere.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import ClassVar

import numpy as np
from ophyd import Component as Cpt
from ophyd import Device, EpicsSignal, EpicsSignalRO, Kind
from ophyd.status import DeviceStatus, Status

from ssb_contract.paging import HEADER, Lost, Page, Paging, follow
from ssb_contract.records import SAMPLE, SPECTRA_KEPT
from ssb_contract.refusals import Refusal
from ssb_contract.table import CyclerStep

from .buffers import RowLog, finished, page_signals, read_fresh
from .compat import tell_watchers
from .press import RigDisconnected
from .refusals import ConfirmedSignal, LastRefusal, PutRefused, put_confirmed

logger = logging.getLogger(__name__)


class StepRejected(RuntimeError):
    """The cycler refused a step or a safety trip ended it; the message says why, ``code``
    (:class:`ssb_contract.refusals.Refusal`, None for a check made here) which kind."""

    def __init__(self, message: str, code: Refusal | None = None):
        super().__init__(message)
        self.code = code


class StepStatus(DeviceStatus):
    """Done when the step terminates; ``reason`` says why; ``watch`` reports step time."""

    def __init__(self, device, step: CyclerStep, **kwargs):
        super().__init__(device, **kwargs)
        self.step = step
        self.reason = ""
        self.started = time.time()
        self.interruptions: list[str] = []
        self.time_before_pauses = 0.0  # step time run before each pause, summed

    def progress(self, step_time: float) -> None:
        limits = [t.value for t in self.step.terminations if t.limit == "Time"]
        target = min(limits) if limits else None
        tell_watchers(
            self,
            name=self.device.name,
            current=step_time,
            initial=0.0,
            target=target,
            unit="s",
            fraction=None if target is None else 1 - min(step_time / target, 1.0),
        )


class SampleLog(RowLog):
    """The cycler's sample buffer as a flyer (stream ``samples``), at ``Cyc:Buf:``."""

    record = SAMPLE
    stream = "samples"
    time_field = "test_time"


class ImpedanceLog(Device):
    """Measured impedance spectra as a flyer (stream ``impedance``, one event per
    frequency), built at ``Cyc:EIS:``."""

    count = Cpt(EpicsSignalRO, "Count-RB", kind=Kind.omitted)
    pressure = Cpt(EpicsSignalRO, "Pressure-RB", kind=Kind.omitted, auto_monitor=False)
    test_time = Cpt(EpicsSignalRO, "TestTime-RB", kind=Kind.omitted, auto_monitor=False)
    frequency = Cpt(EpicsSignalRO, "Freq-RB", kind=Kind.omitted, auto_monitor=False)
    z_real = Cpt(EpicsSignalRO, "ZRe-RB", kind=Kind.omitted, auto_monitor=False)
    z_imag = Cpt(EpicsSignalRO, "ZIm-RB", kind=Kind.omitted, auto_monitor=False)
    f_start = Cpt(EpicsSignal, "FStart-SP", kind=Kind.config)
    f_end = Cpt(EpicsSignal, "FEnd-SP", kind=Kind.config)
    points_per_decade = Cpt(EpicsSignal, "PointsPerDecade-SP", kind=Kind.config)
    pages = page_signals()

    stream = "impedance"
    UNITS: ClassVar[dict[str, str]] = {
        "frequency": "Hz",
        "z_real": "Ohm",
        "z_imag": "Ohm",
        "spectrum": "",
        "spectrum_pressure": "MPa",
        "spectrum_time": "s",
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._seen: int | None = None
        self.resume_at: int | None = None  # where the next kickoff begins, if set
        self.lost = 0  # spectra the instrument no longer held when they were read
        self.gaps: list[dict] = []

    def kickoff(self, start: int | None = None) -> Status:
        """Begin after spectrum number ``start``, else :attr:`resume_at` (once), else the
        last one measured."""
        start = self.resume_at if start is None else start
        self.resume_at = None
        self._seen = int(self.count.get(use_monitor=False)) if start is None else start
        return finished(self)

    def complete(self) -> Status:
        return finished(self)

    def describe_collect(self) -> dict:
        keys = {
            name: {
                "source": self.count.pvname.replace("Count-RB", name),
                "dtype": "integer" if name == "spectrum" else "number",
                "shape": [],
                "units": unit,
            }
            for name, unit in self.UNITS.items()
        }
        return {self.stream: keys}

    def _fetch(self, index: int) -> Page[list[np.ndarray]]:
        """Page PV ``index``: its spectra, each [number, MPa, s, points, Hz.., Re.., Im..]."""
        value = np.asarray(read_fresh(getattr(self.pages, f"page{index}")), dtype=float)
        page, n = int(value[0]), int(value[1])
        records, at = [], HEADER
        for _ in range(n):
            width = 4 + 3 * int(value[at + 3])
            records.append(value[at : at + width])
            at += width
        return Page(page, [int(r[0]) for r in records], records)

    def collect_pages(self):
        """Every spectrum measured since the last collect, one page each (read by number
        from the instrument, which keeps the last 1000)."""
        if self._seen is None:
            raise RuntimeError(f"{self.name}: kickoff() before collecting")
        count = int(read_fresh(self.count))
        for item in follow(Paging(SPECTRA_KEPT), self._seen + 1, count + 1, self._fetch):
            if isinstance(item, Lost):  # older ones were let go on the instrument
                self.lost += item.count
                self.gaps.append({"first_seq": item.first, "last_seq": item.last,
                                  "rows": item.count, "time_before": float("nan"),
                                  "time_after": float("nan")})  # fmt: skip
                logger.warning(
                    "%s: %d spectra were no longer held on the instrument when read; the "
                    "run records the loss",
                    self.name,
                    item.count,
                )
                self._seen = item.last
                continue
            for row in item:
                yield self._page(row)
                self._seen = int(row[0])

    @staticmethod
    def _page(row: np.ndarray) -> dict:
        number, pressure, test_time, n = int(row[0]), row[1], row[2], int(row[3])
        freq, z_re, z_im = row[4 : 4 + n], row[4 + n : 4 + 2 * n], row[4 + 2 * n : 4 + 3 * n]
        data = {
            "frequency": freq.tolist(),
            "z_real": z_re.tolist(),
            "z_imag": z_im.tolist(),
            "spectrum": [number] * n,
            "spectrum_pressure": [float(pressure)] * n,
            "spectrum_time": [float(test_time)] * n,
        }
        now = time.time()
        return {"data": data, "timestamps": {k: [now] * n for k in data}, "time": [now] * n}


class Cycler(Device):
    """One battery-cycler channel (``Cyc:`` PVs), built from the rig prefix; current
    positive on charge.

    >>> status = rig.cycler.set(CyclerStep("CC", current=1e-3,
    ...                         terminations=(Termination("Voltage", 4.2),)))
    >>> status.wait(); status.reason
    'voltage >= 4.2 V'
    """

    step_type = Cpt(EpicsSignal, "Cyc:StepType-SP", string=True, kind=Kind.omitted)
    current_sp = Cpt(EpicsSignal, "Cyc:Current-SP", kind=Kind.omitted)
    voltage_sp = Cpt(EpicsSignal, "Cyc:Voltage-SP", kind=Kind.omitted)
    power_sp = Cpt(EpicsSignal, "Cyc:Power-SP", kind=Kind.omitted)
    resistance_sp = Cpt(EpicsSignal, "Cyc:Resistance-SP", kind=Kind.omitted)
    term1_type = Cpt(EpicsSignal, "Cyc:Term1Type-SP", string=True, kind=Kind.omitted)
    term1_value = Cpt(EpicsSignal, "Cyc:Term1Value-SP", kind=Kind.omitted)
    term1_dir = Cpt(EpicsSignal, "Cyc:Term1Dir-SP", string=True, kind=Kind.omitted)
    term2_type = Cpt(EpicsSignal, "Cyc:Term2Type-SP", string=True, kind=Kind.omitted)
    term2_value = Cpt(EpicsSignal, "Cyc:Term2Value-SP", kind=Kind.omitted)
    term2_dir = Cpt(EpicsSignal, "Cyc:Term2Dir-SP", string=True, kind=Kind.omitted)
    term3_type = Cpt(EpicsSignal, "Cyc:Term3Type-SP", string=True, kind=Kind.omitted)
    term3_value = Cpt(EpicsSignal, "Cyc:Term3Value-SP", kind=Kind.omitted)
    term3_dir = Cpt(EpicsSignal, "Cyc:Term3Dir-SP", string=True, kind=Kind.omitted)
    cycle_sp = Cpt(EpicsSignal, "Cyc:Cycle-SP", kind=Kind.omitted)
    step_sp = Cpt(EpicsSignal, "Cyc:Step-SP", kind=Kind.omitted)
    capacity = Cpt(EpicsSignal, "Cyc:Capacity-SP", kind=Kind.config)
    log_period = Cpt(EpicsSignal, "Cyc:LogPeriod-SP", kind=Kind.config)
    start_cmd = Cpt(EpicsSignal, "Cyc:Start-Cmd", kind=Kind.omitted, put_complete=True)
    stop_cmd = Cpt(EpicsSignal, "Cyc:Stop-Cmd", kind=Kind.omitted, put_complete=True)
    reset_cmd = Cpt(ConfirmedSignal, "Cyc:Reset-Cmd", refusals="Cyc:", kind=Kind.omitted)

    voltage = Cpt(EpicsSignalRO, "Cyc:Voltage-RB", kind=Kind.hinted, auto_monitor=False)
    current = Cpt(EpicsSignalRO, "Cyc:Current-RB", kind=Kind.hinted, auto_monitor=False)
    test_time = Cpt(EpicsSignalRO, "Cyc:TestTime-RB", kind=Kind.normal, auto_monitor=False)
    step_time = Cpt(EpicsSignalRO, "Cyc:StepTime-RB", kind=Kind.normal, auto_monitor=True)
    cycle_index = Cpt(EpicsSignalRO, "Cyc:CycleIndex-RB", kind=Kind.normal, auto_monitor=False)
    step_index = Cpt(EpicsSignalRO, "Cyc:StepIndex-RB", kind=Kind.normal, auto_monitor=False)
    step_charge = Cpt(EpicsSignalRO, "Cyc:StepCharge-RB", kind=Kind.omitted, auto_monitor=False)
    step_discharge = Cpt(
        EpicsSignalRO, "Cyc:StepDischarge-RB", kind=Kind.omitted, auto_monitor=False
    )
    charge_capacity = Cpt(EpicsSignalRO, "Cyc:ChargeCapacity-RB", kind=Kind.normal)
    discharge_capacity = Cpt(EpicsSignalRO, "Cyc:DischargeCapacity-RB", kind=Kind.normal)
    charge_energy = Cpt(EpicsSignalRO, "Cyc:ChargeEnergy-RB", kind=Kind.omitted)
    discharge_energy = Cpt(EpicsSignalRO, "Cyc:DischargeEnergy-RB", kind=Kind.omitted)
    running = Cpt(EpicsSignalRO, "Cyc:Running-RB", string=True, kind=Kind.omitted)
    reason = Cpt(EpicsSignalRO, "Cyc:Reason-RB", string=True, kind=Kind.omitted)
    tripped = Cpt(EpicsSignalRO, "Cyc:Tripped-RB", string=True, kind=Kind.omitted)
    trip_reason = Cpt(EpicsSignalRO, "Cyc:TripReason-RB", string=True, kind=Kind.omitted)

    message = Cpt(EpicsSignalRO, "Rig:Msg-RB", string=True, kind=Kind.omitted)
    refusals = Cpt(LastRefusal, "Cyc:", kind=Kind.omitted)

    samples = Cpt(SampleLog, "Cyc:Buf:")
    impedance = Cpt(ImpedanceLog, "Cyc:EIS:")

    def __init__(self, prefix: str = "", *, name: str, **kwargs):
        super().__init__(prefix, name=name, **kwargs)
        self._lock = threading.Lock()
        self._status: StepStatus | None = None
        self._paused: tuple[float, float] | None = None  # step time, capacity at pause
        self._stopping = False
        self.step_time.subscribe(self._on_step_time, run=False)
        self.voltage.subscribe(self._on_connection, event_type="meta", run=False)

    # --- one step ---------------------------------------------------------------------
    def set(self, step: CyclerStep) -> StepStatus:
        """Run ``step``; the status completes when the instrument ends it."""
        if not isinstance(step, CyclerStep):
            raise TypeError(f"{self.name}.set expects a CyclerStep, got {step!r}")
        with self._lock:
            pending = self._status
            if pending is not None and not pending.done:
                if pending.step == step:  # the same step again (a RunEngine rewind)
                    return pending
                if self._paused is not None:  # an interrupted step, superseded
                    self._paused = None
                    pending.set_exception(StepRejected(f"{self.name}: paused step superseded"))
                else:
                    raise StepRejected(
                        f"{self.name}: a step is already running; stop() it or wait for it"
                    )
            status = StepStatus(self, step)
            self._status, self._paused = status, None
        self._start(step, status)
        return status

    def _write(self, step: CyclerStep) -> None:
        puts = {self.step_type: step.kind, self.cycle_sp: step.cycle, self.step_sp: step.index}
        if step.kind in ("CC", "CV", "CCCV"):
            puts[self.current_sp] = step.current
        if step.kind in ("CV", "CCCV"):
            puts[self.voltage_sp] = step.voltage
        if step.kind == "CP":
            puts[self.power_sp] = step.power
        if step.kind == "CR":
            puts[self.resistance_sp] = step.resistance
        if step.kind == "PEIS":
            puts |= {
                self.impedance.f_start: step.f_start,
                self.impedance.f_end: step.f_end,
                self.impedance.points_per_decade: step.points_per_decade,
            }
        slots = [
            (self.term1_type, self.term1_value, self.term1_dir),
            (self.term2_type, self.term2_value, self.term2_dir),
            (self.term3_type, self.term3_value, self.term3_dir),
        ]
        for k, (kind, value, direction) in enumerate(slots):
            t = step.terminations[k] if k < len(step.terminations) else None
            puts[kind] = t.limit if t else "None"
            if t:
                puts[value], puts[direction] = t.value, t.direction
        for signal, value in puts.items():  # in order, each answered by the IOC
            try:  # Cyc:EIS: PVs are the cycler group's too
                put_confirmed(signal, value, refusals=self.refusals, timeout=5).wait()
            except PutRefused as ex:
                raise StepRejected(f"{value!r} not accepted: {ex}", ex.code) from None

    def _start(self, step: CyclerStep, status: StepStatus) -> None:
        status.started = time.time()
        try:
            self._write(step)
        except Exception as ex:
            status.set_exception(
                StepRejected(
                    f"{self.name}: could not define the step: {ex}", getattr(ex, "code", None)
                )
            )
            return
        started = put_confirmed(self.start_cmd, 1, refusals=self.refusals, timeout=None)
        started.add_callback(lambda st: self._on_step_end(st, status))

    def _on_step_end(self, started, status: StepStatus) -> None:
        """The IOC answers Start-Cmd when the step ends: done, or refused (a step it
        would not start, a safety trip that ended it)."""
        if status.done or self._paused is not None or self._stopping:
            return
        if not started.success:
            ex = started.exception()
            status.set_exception(StepRejected(f"{self.name}: {ex}", getattr(ex, "code", None)))
            return

        def finish():  # a CA read: not on the client's callback thread
            try:
                status.reason = self.reason.get(use_monitor=False)
                status.set_finished()
            except Exception as ex:
                if not status.done:
                    status.set_exception(ex)

        threading.Thread(target=finish, daemon=True).start()

    def _on_step_time(self, value: float = 0.0, **kwargs) -> None:
        status = self._status
        if status is not None and not status.done:
            status.progress(value)

    def _on_connection(self, connected: bool = True, **kwargs) -> None:
        status = self._status
        if not connected and status is not None and not status.done:
            status.set_exception(
                RigDisconnected(
                    f"{self.name}: lost {self.voltage.pvname} during a step; is the IOC running?"
                )
            )

    # --- interruptions -----------------------------------------------------------------
    def stop(self, *, success: bool = False) -> None:
        """Open circuit now. ``success=True`` is what the RunEngine calls on a pause or a
        suspension: the step is interrupted and :meth:`resume` runs the rest of it;
        otherwise the step ends and its status fails."""
        if success:
            self._interrupt()
            return
        status, self._paused, self._stopping = self._status, None, True
        try:
            if self.stop_cmd.connected:
                self.stop_cmd.put(1, wait=True, timeout=5)
        finally:
            self._stopping = False
        if status is not None and not status.done:
            status.reason = "stopped"
            status.set_exception(StepRejected(f"{self.name}: step stopped"))

    def pause(self) -> None:
        """Open circuit now; remember how far the step got (see :meth:`resume`)."""
        self._interrupt()

    def _interrupt(self) -> None:
        status = self._status
        if status is None or status.done or self._paused is not None:
            return
        self._paused = (0.0, 0.0)  # before Stop-Cmd completes the step's put
        self.stop_cmd.put(1, wait=True, timeout=5)
        reason = self.reason.get(use_monitor=False)
        if reason != "stopped by a client":  # it had ended by itself: it is done
            self._paused = None
            status.reason = reason
            status.set_finished()
            return
        step_time = float(self.step_time.get(use_monitor=False))
        capacity = max(
            float(self.step_charge.get(use_monitor=False)),
            float(self.step_discharge.get(use_monitor=False)),
        )
        self._paused = (step_time, capacity)
        status.time_before_pauses += step_time
        status.interruptions.append(
            f"paused after {step_time:.0f} s and {capacity:.4g} mAh; cell at open circuit"
        )

    def unstage(self):
        """A step still paused when the plan ends is abandoned (the cell stays at open
        circuit)."""
        status, paused = self._status, self._paused
        if status is not None and not status.done and paused is not None:
            self._paused = None
            status.set_exception(StepRejected(f"{self.name}: paused step abandoned"))
        return super().unstage()

    def resume(self) -> None:
        """Start the rest of a paused step (same step index)."""
        status, paused = self._status, self._paused
        if status is None or status.done or paused is None:
            return
        rest = status.step.remaining(*paused)
        if rest.index == 0:
            rest = dataclasses.replace(rest, index=int(self.step_index.get(use_monitor=False)))
        self._paused = None
        status.interruptions.append("resumed with its remaining limits")
        self._start(rest, status)

    def reset(self):
        """Clear a latched safety trip (the IOC checks the condition again)."""
        return self.reset_cmd.set(1)
