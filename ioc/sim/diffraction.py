"""Powder diffraction of the pressed cell, as a strip detector at a beamline sees it.

Pure physics, no EPICS: the patterns of the simulated diffraction detector
(:mod:`ssb_ioc.server.detector`).

The cathode is layered NMC811 (LiNi0.8Mn0.1Co0.1O2, R-3m, hexagonal setting). Its lattice
follows its lithium content x in Li_x(NMC): on delithiation (charge) ``c`` grows while the
transition-metal layers lose Li and the O-O repulsion across the Li layer rises, reaches a
maximum near x = 0.5, and collapses at high state of charge (x < 0.4) as charge moves onto
oxygen; ``a`` shrinks steadily as the transition metals oxidise. The anchor values are read
(to about 0.01 A for c, 0.002 A for a) from the operando XRD of NCM811 in

  A. O. Kondrakov et al., "Charge-Transfer-Induced Lattice Collapse in Ni-Rich NCM Cathode
  Materials during Delithiation", J. Phys. Chem. C 121, 24381-24388 (2017), Fig. 1/2,

consistent with L. de Biasi et al., J. Phys. Chem. C 121, 26163-26171 (2017), and
interpolated linearly between them: that piecewise-linear law *is* the simulated truth.

The full cell's state of charge maps onto x linearly: about 0.95 Li after formation
(discharged) and about 0.23 at the top of charge (~200 mAh/g of the 275 theoretical).

Also in the beam: the Li6PS5Cl separator (argyrodite, F-43m, a = 9.85 A), whose
reflections do not move, and a smooth background (amorphous scattering, cell body). The
beam is 30 keV (0.4133 A, transmission through a pressed cell); the detector is one
1280-strip module covering 3.0 to 19.0 deg 2-theta. Counts are Poisson: their expected
number grows with the exposure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

WAVELENGTH = 0.4133  # A: 30 keV

# Li content x -> NMC811 lattice parameters (A); Kondrakov et al. 2017 (see above).
LI_CONTENT = np.array([0.15, 0.20, 0.25, 0.30, 0.40, 0.50, 0.60, 0.80, 1.00])
C_LATTICE = np.array([13.98, 14.04, 14.16, 14.30, 14.44, 14.47, 14.43, 14.32, 14.20])
A_LATTICE = np.array([2.815, 2.816, 2.818, 2.821, 2.829, 2.838, 2.847, 2.862, 2.873])

X_DISCHARGED = 0.95  # Li per formula unit at state of charge 0 (after formation)
X_CHARGED = 0.23  # ... at state of charge 1

# NMC (R-3m) reflections h k l and relative integrated intensities (typical of NMC811).
NMC_REFLECTIONS: tuple[tuple[tuple[int, int, int], float], ...] = (
    ((0, 0, 3), 100.0),
    ((1, 0, 1), 38.0),
    ((0, 0, 6), 6.0),
    ((0, 1, 2), 10.0),
    ((1, 0, 4), 75.0),
    ((0, 1, 5), 9.0),
    ((1, 0, 7), 7.0),
    ((0, 1, 8), 6.0),
    ((1, 1, 0), 8.0),
    ((1, 1, 3), 6.0),
)
# Li6PS5Cl (F-43m, a = 9.85 A): h k l and relative intensities.
ARGYRODITE_A = 9.85
ARGYRODITE_REFLECTIONS: tuple[tuple[tuple[int, int, int], float], ...] = (
    ((1, 1, 1), 25.0),
    ((2, 0, 0), 8.0),
    ((2, 2, 0), 55.0),
    ((3, 1, 1), 90.0),
    ((2, 2, 2), 70.0),
    ((4, 0, 0), 20.0),
    ((4, 4, 0), 45.0),
)


@dataclass(frozen=True)
class StripGeometry:
    """A line detector: ``strips`` channels from ``start`` deg 2-theta, ``step`` apart."""

    start: float = 3.0
    step: float = 0.0125
    strips: int = 1280

    def two_theta(self) -> np.ndarray:
        """The 2-theta (deg) at each strip's centre."""
        return self.start + self.step * np.arange(self.strips)


def lithium_content(soc: float) -> float:
    """x in Li_x(NMC811) at the full cell's state of charge (0..1; clipped beyond)."""
    soc = min(max(soc, 0.0), 1.0)
    return X_DISCHARGED - (X_DISCHARGED - X_CHARGED) * soc


def lattice(x: float) -> tuple[float, float]:
    """(a, c) in A of NMC811 at Li content ``x`` (the law above)."""
    return float(np.interp(x, LI_CONTENT, A_LATTICE)), float(np.interp(x, LI_CONTENT, C_LATTICE))


def d_hexagonal(hkl: tuple[int, int, int], a: float, c: float) -> float:
    """d-spacing (A) of a hexagonal lattice: 1/d^2 = 4/3 (h^2+hk+k^2)/a^2 + l^2/c^2."""
    h, k, l = hkl  # noqa: E741 - crystallographic index
    return 1.0 / math.sqrt(4.0 / 3.0 * (h * h + h * k + k * k) / a**2 + l * l / c**2)


def d_cubic(hkl: tuple[int, int, int], a: float) -> float:
    h, k, l = hkl  # noqa: E741
    return a / math.sqrt(h * h + k * k + l * l)


def bragg_two_theta(d: float, wavelength: float = WAVELENGTH) -> float:
    """2-theta (deg) of a reflection of spacing ``d`` (A): lambda = 2 d sin(theta)."""
    return 2.0 * math.degrees(math.asin(wavelength / (2.0 * d)))


def peak_width(x: float) -> float:
    """FWHM (deg): instrument and crystallites, broader at high state of charge (the
    H2/H3 coexistence of Ni-rich NMC)."""
    return 0.04 + 0.02 * min(max((0.35 - x) / 0.15, 0.0), 1.0)


def _gaussians(two_theta: np.ndarray, peaks: list[tuple[float, float]], fwhm: float):
    sigma = fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    out = np.zeros_like(two_theta)
    for centre, area in peaks:
        near = np.abs(two_theta - centre) < 8 * sigma
        out[near] += area * np.exp(-0.5 * ((two_theta[near] - centre) / sigma) ** 2)
    return out / (sigma * math.sqrt(2 * math.pi))


@dataclass(frozen=True)
class Beamline:
    """Count rates: ``flux`` scales every peak (counts/s per unit relative intensity and
    deg); the background is counts/s per strip."""

    wavelength: float = WAVELENGTH
    flux: float = 2.0
    background: float = 40.0
    geometry: StripGeometry = StripGeometry()


def count_rate(soc: float, beam: Beamline = Beamline()) -> np.ndarray:
    """Expected counts/s in each strip with the cell at state of charge ``soc``."""
    tt = beam.geometry.two_theta()
    x = lithium_content(soc)
    a, c = lattice(x)
    nmc = [
        (
            bragg_two_theta(d_hexagonal(hkl, a, c), beam.wavelength),
            beam.flux * rel * beam.geometry.step * 50,
        )
        for hkl, rel in NMC_REFLECTIONS
    ]
    sse = [
        (
            bragg_two_theta(d_cubic(hkl, ARGYRODITE_A), beam.wavelength),
            beam.flux * rel * beam.geometry.step * 25,
        )
        for hkl, rel in ARGYRODITE_REFLECTIONS
    ]
    background = beam.background * (1.0 + 3.0 * np.exp(-(tt - tt[0]) / 3.0))
    return background + _gaussians(tt, nmc, peak_width(x)) + _gaussians(tt, sse, 0.04)


class Exposure:
    """One frame being exposed: the count rates integrated over the experiment time that
    passes while the cell's state changes; ``read`` draws the Poisson counts."""

    def __init__(self, beam: Beamline, rng: np.random.Generator):
        self.beam, self.rng = beam, rng
        self.expected = np.zeros(beam.geometry.strips)
        self.exposed = 0.0  # s of experiment time

    def add(self, seconds: float, soc: float) -> None:
        if seconds > 0:
            self.expected += count_rate(soc, self.beam) * seconds
            self.exposed += seconds

    def read(self) -> np.ndarray:
        return self.rng.poisson(self.expected).astype(np.int32)
