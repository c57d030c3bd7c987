"""Strain-gauge bridge load cell: what the amplifier reports for a true force."""

from __future__ import annotations

import numpy as np

from ..core.loadcell import ForceReading
from ..params import LoadCellSection


class LoadCell(ForceReading):
    """Bridge output = sensitivity * excitation * (F + offset + drift) / capacity + noise.

    The amplifier saturates at ``adc_range`` times full scale. ``tare()`` zeroes the
    reading at the present load. Forces in newtons.
    """

    kept = ("tare_offset", "drift")  # the drift a restarted IOC goes on from

    def __init__(self, params: LoadCellSection, rng: np.random.Generator):
        super().__init__(params.capacity)
        self.p = params
        self.rng = rng
        self.drift = 0.0  # N accumulated since start

    @property
    def bias(self) -> float:
        """Systematic error of the reading (N): zero offset + drift - tare."""
        return self.p.zero_offset + self.drift - self.tare_offset

    @property
    def noise(self) -> float:
        return self.p.noise

    @property
    def full_scale(self) -> float:
        """Largest reading the amplifier can report (N)."""
        return self.p.adc_range * self.capacity

    def advance(self, dt: float) -> None:
        self.drift += self.p.drift_rate * dt

    def report(self, true_force: float, noise: float | None = None) -> float:
        """Record and return the reading for ``true_force``; draws noise unless given."""
        if noise is None:
            noise = self.rng.normal(0.0, self.p.noise) if self.p.noise > 0 else 0.0
        raw = true_force + self.p.zero_offset + self.drift + noise
        raw = min(max(raw, -self.full_scale), self.full_scale)
        self.signal = self.p.sensitivity * raw / self.capacity
        self.force = raw - self.tare_offset
        return self.force
