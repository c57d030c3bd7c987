"""Impedance: the interfacial resistance from a spectrum, and its power law in pressure.

An ASSB's spectrum above the polarisation arc is ``R_bulk`` (the high-frequency
intercept) plus an interfacial arc of width ``R_int``; ``R_int ~ P^n`` with ``n`` near
-0.5 for sulfide cells (arXiv 2501.00600).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def interfacial_resistance(frequency: np.ndarray, z_real: np.ndarray) -> float:
    """Width of the interfacial arc (ohm): Re Z at the lowest frequency measured minus Re Z
    at the highest (sweeps should end above the polarisation arc, ~0.1-1 Hz)."""
    frequency, z_real = np.asarray(frequency), np.asarray(z_real)
    if len(frequency) < 2:
        raise ValueError("a spectrum needs at least two frequencies")
    return float(z_real[np.argmin(frequency)] - z_real[np.argmax(frequency)])


@dataclass(frozen=True)
class PowerLaw:
    """``R = r_ref (P / p_ref)^exponent``, fitted in log-log space."""

    exponent: float
    exponent_err: float  # one standard error
    r_ref: float  # ohm at p_ref
    p_ref: float  # MPa

    def __call__(self, pressure: np.ndarray) -> np.ndarray:
        return self.r_ref * (np.asarray(pressure) / self.p_ref) ** self.exponent

    def __str__(self) -> str:
        return (
            f"R_int = {self.r_ref:.2f} ohm x (P / {self.p_ref:g} MPa)^"
            f"({self.exponent:.3f} +- {self.exponent_err:.3f})"
        )


def fit_power_law(pressure, resistance, p_ref: float = 100.0) -> PowerLaw:
    """Least-squares fit of log R against log P; needs three or more pressures."""
    p, r = np.asarray(pressure, dtype=float), np.asarray(resistance, dtype=float)
    if len(p) < 3 or np.any(p <= 0) or np.any(r <= 0):
        raise ValueError("fit needs three or more positive pressures and resistances")
    x, y = np.log(p / p_ref), np.log(r)
    (slope, intercept), cov = np.polyfit(x, y, 1, cov="unscaled")
    residual = y - (slope * x + intercept)
    dof = max(len(p) - 2, 1)
    scale = float(residual @ residual) / dof
    return PowerLaw(
        float(slope), float(np.sqrt(cov[0, 0] * scale)), float(np.exp(intercept)), p_ref
    )
