"""Strain-gauge bridge load cell: what the amplifier reports for a true force."""

from __future__ import annotations

import numpy as np

from .params import LoadCellSection


class LoadCell:
    """Bridge output = sensitivity * excitation * (F + offset + drift) / capacity + noise.

    The amplifier saturates at ``adc_range`` times full scale. ``tare()`` zeroes the
    reading at the present load. Forces in newtons.
    """

    def __init__(self, params: LoadCellSection, rng: np.random.Generator):
        self.p = params
        self.rng = rng
        self.capacity = params.capacity * 1e3  # N
        self.drift = 0.0  # N accumulated since start
        self.tare_offset = 0.0  # N subtracted by tare
        self.force = 0.0  # N, last reported reading (after tare)
        self.signal = 0.0  # mV/V, last bridge output

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

    @property
    def overloaded(self) -> bool:
        return abs(self.force) > self.capacity

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

    def tare(self) -> None:
        """Zero the reading at the present load."""
        self.tare_offset += self.force
        self.force = 0.0
