"""The simulated cycler channel: the channel's rules over the simulated cell.

:class:`Cycler` adds to :class:`~ssb_ioc.core.channel.Channel` what needs the cell's
physics: the current each step draws (the CV control law, constant power, constant
load), the cell's rest voltage, and impedance spectra from the cell's equivalent circuit
at the present pressure.
"""

from __future__ import annotations

from ..core.channel import (
    EIS_MAX_POINTS,
    SAMPLE_FIELDS,
    SPECTRA_KEPT,
    Channel,
    Counters,
    CyclerError,
    Limit,
    SafetyLimits,
    SampleBuffer,
    Spectrum,
    Step,
    StepKind,
    Termination,
    step_of,
    sweep_duration,
    sweep_frequencies,
)
from .cell import Cell

__all__ = [
    "EIS_MAX_POINTS", "SAMPLE_FIELDS", "SPECTRA_KEPT", "Counters", "Cycler", "CyclerError",
    "Limit", "SafetyLimits", "SampleBuffer", "Spectrum", "Step", "StepKind", "Termination",
    "step_of", "sweep_duration", "sweep_frequencies",
]  # fmt: skip


class Cycler(Channel):
    """A cycler channel on the simulated cell; call :meth:`command` before and
    :meth:`account` after each simulation step of the cell."""

    cell: Cell

    def command(self, pressure: float) -> float:
        """Current (A) to apply over the next simulation step."""
        if not self.running or self.tripped:
            return 0.0
        step = self.step
        if step.kind in (StepKind.REST, StepKind.PEIS):
            return 0.0
        if step.kind == StepKind.CC or (step.kind == StepKind.CCCV and not self._cv_phase):
            return step.current
        cell, i_max = self.cell, self.limits.i_max
        if step.kind == StepKind.CP:  # I = P / V at the present terminal voltage
            return min(max(step.power / max(cell.voltage, 0.1), -i_max), i_max)
        if step.kind == StepKind.CR:  # the cell discharges through the load
            return max(-cell.voltage / step.resistance, -i_max)
        ohmic = cell.p.electrochemistry.r_bulk + cell.interfacial_resistance(pressure)
        held = step.voltage * (1 + cell.state.short_conductance * ohmic)  # a short draws too
        wanted = (held - cell.open_circuit_voltage - cell.state.v_rc) / ohmic
        limit = abs(step.current)
        return min(max(wanted, -limit), limit)

    def _rest_voltage(self) -> float:
        return self.cell.open_circuit_voltage

    def _measure_spectrum(self) -> None:
        sweep = self._sweep
        if sweep is None:  # no sweep ran: nothing measured
            return
        count = self.spectrum.count + 1 if self.spectrum else 1
        z = self.cell.impedance(sweep, self._pressure)
        self.spectrum = Spectrum(sweep, z, self._pressure, self.counters.test_time, count)
        self.spectra.append(self.spectrum)
