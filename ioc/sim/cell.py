"""The simulated all-solid-state cell: equivalent circuit, breathing, contact and voids.

Laws (the simplest forms that give the behaviours an ASSB shows; parameters in the cell
file):

* Terminal voltage ``V = OCV(SOC) + I (R_bulk + R_int) + V_rc`` with current ``I`` in A,
  **positive on charge**. ``R_int = R_int_ref (P / P_ref)^-0.5 / contact`` (arXiv
  2501.00600: R ~ P^-0.5 and ~ 1/contact area); P is floored at ``pressure_floor``.
  One RC pair (``r_pol``, ``tau_pol``), integrated exactly for a constant current.
* Small-signal impedance (what a PEIS measures):
  ``Z = R_bulk + R_int || C_int + r_pol || (tau_pol / r_pol)``, so the interfacial arc
  shrinks as the stack pressure rises.
* Stack thickness grows with the charge stored in the anode:
  ``swelling = anode_expansion * charge / area`` (Si composite: a parameter; Li metal:
  4.85 um per mAh/cm^2 from the molar volume).
* Delithiation of the anode (discharge) opens voids:
  ``d(void) = void_rate * (charge stripped per area) / (1 + P / void_pressure_scale) * contact``.
  Above ``critical_pressure`` the voids are recoverable; below it they are permanent
  (isolated material), which shrinks the accessible capacity, so capacity fades cycle by
  cycle only below the critical pressure.
* Creep closes recoverable voids when ``P > creep_threshold`` at the rate
  ``creep_rate * ((P - threshold) / threshold)^creep_exponent``.
* Li metal above ``penetration_pressure`` while plating (charge) grows a soft-short
  conductance at ``short_growth * (P - P_pen) / P_pen``. A short of conductance ``G``
  draws ``G V`` through the cell's ohmic resistance ``R``, so the terminal voltage falls
  at once to ``(OCV + V_rc + I R) / (1 + G R)`` and the cell discharges by ``G V``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..core.channel import MAH  # coulombs per mAh
from ..params import RigParams

# OCV vs state of charge of the full cell. Shapes follow typical NMC811 curves; the
# anode shifts them: Si composite ~0.2-0.3 V below Li, Li-In 0.62 V below Li.
_SOC = np.array([0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
_NMC_VS_LI = np.array([3.40, 3.58, 3.65, 3.72, 3.77, 3.83, 3.89, 3.96, 4.03, 4.10, 4.18, 4.30])
OCV_TABLES: dict[str, np.ndarray] = {
    "nmc-li": _NMC_VS_LI,
    "nmc-liin": _NMC_VS_LI - 0.62,
    "nmc-si": np.array([3.00, 3.30, 3.45, 3.55, 3.62, 3.68, 3.74, 3.81, 3.88, 3.95, 4.03, 4.12]),
}
# Beyond the rated window the voltage runs away steeply (overcharge / overdischarge), so
# that a cycler with no voltage limit meets its safety limits as on a real cell.
SOC_RANGE = (-0.1, 1.1)
_EDGE_SOC = np.array([-0.1, -0.05, -0.02])
_EDGE_DV_LOW = np.array([-3.0, -1.5, -0.5])
_EDGE_SOC_HIGH = np.array([1.02, 1.05, 1.1])
_EDGE_DV_HIGH = np.array([0.3, 1.0, 3.0])


def ocv(chemistry: str, soc: float) -> float:
    """Open-circuit voltage (V) of the full cell at a state of charge; rated in [0, 1],
    steep outside it (down to -0.1 and up to 1.1)."""
    table = OCV_TABLES[chemistry]
    if soc < 0:
        return float(np.interp(soc, [*_EDGE_SOC, 0.0], [*(table[0] + _EDGE_DV_LOW), table[0]]))
    if soc > 1:
        return float(
            np.interp(soc, [1.0, *_EDGE_SOC_HIGH], [table[-1], *(table[-1] + _EDGE_DV_HIGH)])
        )
    return float(np.interp(soc, _SOC, table))


@dataclass
class CellState:
    charge: float  # mAh stored (anode lithiated), within the accessible capacity
    v_rc: float = 0.0  # V across the polarisation RC pair
    void_recoverable: float = 0.0  # interface fraction lost to voids that creep can close
    void_permanent: float = 0.0  # interface fraction lost for good (isolated material)
    short_conductance: float = 0.0  # S, soft-short path through the separator
    extra_swelling: float = 0.0  # um of stack thickness added by an injected fault


class Cell:
    """An ASSB cell stepped with an explicit time step; pure physics, no EPICS."""

    def __init__(self, params: RigParams):
        self.p = params
        c = params.cell
        self.area = c.area  # cm^2
        self.capacity = c.capacity  # mAh, nominal
        self.is_lithium_metal = c.chemistry == "nmc-li"
        self.state = CellState(charge=c.initial_soc * c.capacity)
        self.current = 0.0  # A, positive = charge
        self.pressure = 0.0  # MPa at the last step
        self.voltage = self.open_circuit_voltage

    # --- derived quantities -------------------------------------------------------
    @property
    def contact(self) -> float:
        """Fraction of the interface still in contact (feeds R_int)."""
        s = self.state
        return max(1.0 - s.void_recoverable - s.void_permanent, 0.02)

    @property
    def accessible_capacity(self) -> float:
        """mAh that can still be cycled: permanent voids isolate material."""
        return self.capacity * (1.0 - self.state.void_permanent)

    @property
    def soc(self) -> float:
        """Stored charge over accessible capacity: 0..1 rated, beyond it over(dis)charged."""
        return self.state.charge / self.accessible_capacity

    @property
    def open_circuit_voltage(self) -> float:
        return ocv(self.p.cell.chemistry, self.soc)

    @property
    def swelling(self) -> float:
        """Stack thickness change (um) from the anode's stored charge."""
        anode = self.p.mechanics.anode_expansion * self.state.charge / self.area
        return anode + self.state.extra_swelling

    def interfacial_resistance(self, pressure: float) -> float:
        """R_int (ohm) at a stack pressure (MPa): R_ref (P/P_ref)^-0.5 / contact."""
        e = self.p.electrochemistry
        p = max(pressure, self.p.contact.pressure_floor)
        return e.r_int_ref * (p / e.p_ref) ** -0.5 / self.contact

    def impedance(self, frequencies: np.ndarray, pressure: float) -> np.ndarray:
        """Complex impedance (ohm) at ``frequencies`` (Hz) and stack ``pressure`` (MPa)."""
        e = self.p.electrochemistry
        jw = 2j * np.pi * np.asarray(frequencies, dtype=float)
        r_int = self.interfacial_resistance(pressure)
        interface = r_int / (1 + jw * r_int * e.c_int * 1e-6)
        polarisation = e.r_pol / (1 + jw * e.tau_pol)
        return e.r_bulk + interface + polarisation

    def open_circuit(self) -> None:
        """Disconnect the cell now: no current, no ohmic drop (the RC pair relaxes on)."""
        self.current = 0.0
        self.voltage = self.terminal_voltage(0.0, self.pressure)

    def terminal_voltage(self, current: float, pressure: float) -> float:
        e = self.p.electrochemistry
        r = e.r_bulk + self.interfacial_resistance(pressure)
        emf = self.open_circuit_voltage + current * r + self.state.v_rc
        return emf / (1.0 + self.state.short_conductance * r)

    # --- time step ----------------------------------------------------------------
    def step(self, dt: float, current: float, pressure: float) -> None:
        """Advance ``dt`` seconds at a constant ``current`` (A, + = charge) and stack
        ``pressure`` (MPa)."""
        s, e, k = self.state, self.p.electrochemistry, self.p.contact
        self.current, self.pressure = current, pressure
        short_current = s.short_conductance * self.voltage
        net = current - short_current
        delta = net * dt / MAH  # mAh
        low, high = SOC_RANGE
        s.charge = min(
            max(s.charge + delta, low * self.accessible_capacity), high * self.accessible_capacity
        )

        decay = math.exp(-dt / e.tau_pol)
        s.v_rc = s.v_rc * decay + current * e.r_pol * (1.0 - decay)

        if net < 0:  # anode delithiation: stripping opens voids
            stripped = -delta / self.area  # mAh/cm^2
            opened = k.void_rate * stripped / (1.0 + pressure / k.void_pressure_scale)
            opened *= self.contact
            if pressure < k.critical_pressure:
                before = self.accessible_capacity
                s.void_permanent = min(s.void_permanent + opened, 0.98)
                s.charge *= self.accessible_capacity / before
            else:
                s.void_recoverable += opened
        if pressure > k.creep_threshold and s.void_recoverable > 0:
            excess = (pressure - k.creep_threshold) / max(k.creep_threshold, 1e-9)
            s.void_recoverable *= math.exp(-k.creep_rate * excess**k.creep_exponent * dt)

        if self.is_lithium_metal and current > 0 and pressure > k.penetration_pressure:
            excess = (pressure - k.penetration_pressure) / k.penetration_pressure
            s.short_conductance += k.short_growth * excess * dt

        self.voltage = self.terminal_voltage(current, pressure)
