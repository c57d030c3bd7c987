"""The simulated diffraction physics and the peak fits, with no network: the lattice law,
the Bragg positions and counting statistics of the patterns, and fits whose positions and
stated uncertainties hold against many noisy patterns of a known lattice."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ssb_analysis.diffraction import d_of, fit_peaks, two_theta_of
from ssb_ioc.sim.diffraction import (
    C_LATTICE,
    LI_CONTENT,
    Beamline,
    Exposure,
    bragg_two_theta,
    count_rate,
    d_hexagonal,
    lattice,
    lithium_content,
)

BEAM = Beamline()
TWO_THETA = BEAM.geometry.two_theta()


def test_lattice_law_follows_its_anchors():
    """c grows on delithiation to its maximum near x = 0.5 and collapses below x = 0.4;
    a shrinks monotonically (NCM811, Kondrakov et al. 2017)."""
    assert lattice(1.0) == pytest.approx((2.873, 14.20))
    assert lattice(0.5)[1] == pytest.approx(C_LATTICE.max())
    xs = np.linspace(0.15, 1.0, 200)
    c = np.array([lattice(x)[1] for x in xs])
    a = np.array([lattice(x)[0] for x in xs])
    assert 0.45 <= xs[np.argmax(c)] <= 0.55
    assert np.all(np.diff(a) > 0)  # larger x, larger a
    assert c[0] < lattice(1.0)[1]  # the collapse goes below the pristine c
    assert lithium_content(0.0) == pytest.approx(0.95)
    assert lithium_content(1.0) == pytest.approx(0.23)
    assert lithium_content(1.5) == lithium_content(1.0)  # clipped, not extrapolated
    assert list(LI_CONTENT) == sorted(LI_CONTENT)


def test_peaks_sit_at_their_bragg_angles():
    for soc in (0.0, 0.6, 1.0):
        a, c = lattice(lithium_content(soc))
        rate = count_rate(soc, BEAM)
        for hkl in ((0, 0, 3), (1, 1, 0)):
            expected = bragg_two_theta(d_hexagonal(hkl, a, c), BEAM.wavelength)
            near = np.abs(TWO_THETA - expected) < 0.06
            top = TWO_THETA[near][np.argmax(rate[near])]
            assert top == pytest.approx(expected, abs=BEAM.geometry.step)
    assert d_of(two_theta_of(4.7, 0.4133), 0.4133) == pytest.approx(4.7)


def test_counts_are_poisson_and_grow_with_the_exposure():
    rng = np.random.default_rng(3)
    short, long = Exposure(BEAM, rng), Exposure(BEAM, rng)
    short.add(10.0, 0.3)
    long.add(40.0, 0.3)
    assert long.expected == pytest.approx(4 * short.expected)
    frames = np.array([long.read() for _ in range(200)])
    flat = slice(0, 40)  # background only, below the first reflection
    mean, var = frames[:, flat].mean(axis=0), frames[:, flat].var(axis=0, ddof=1)
    assert np.median(var / mean) == pytest.approx(1.0, abs=0.15)
    assert frames.dtype == np.int32 and frames.min() >= 0


def test_an_exposure_integrates_the_states_it_saw():
    """Half the time at one state of charge and half at another: the frame is the mean
    of the two patterns, both (003) positions in it."""
    mixed = Exposure(BEAM, np.random.default_rng(0))
    mixed.add(30.0, 0.0)
    mixed.add(30.0, 0.6)
    pure = [Exposure(BEAM, np.random.default_rng(0)) for _ in range(2)]
    pure[0].add(60.0, 0.0)
    pure[1].add(60.0, 0.6)
    assert mixed.expected == pytest.approx((pure[0].expected + pure[1].expected) / 2)
    assert mixed.exposed == 60.0
    for soc in (0.0, 0.6):
        a, c = lattice(lithium_content(soc))
        at = np.argmin(np.abs(TWO_THETA - bragg_two_theta(d_hexagonal((0, 0, 3), a, c))))
        assert mixed.expected[at] > 0.4 * pure[soc > 0].expected[at]


@pytest.mark.parametrize("soc", [0.1, 0.62, 0.95])
def test_fitted_positions_and_uncertainties_hold_over_noise(soc):
    """Over 40 noisy patterns the fitted (003) is unbiased and its stated uncertainty is
    its actual scatter (pulls of unit width), also at high state of charge where the
    peak broadens."""
    a, c = lattice(lithium_content(soc))
    truth = bragg_two_theta(d_hexagonal((0, 0, 3), a, c), BEAM.wavelength)
    exposure = Exposure(BEAM, np.random.default_rng(7))
    exposure.add(60.0, soc)
    window = (two_theta_of(4.86, BEAM.wavelength), two_theta_of(4.63, BEAM.wavelength))
    pulls, sigmas = [], []
    for _ in range(40):
        (peak,) = fit_peaks(TWO_THETA, exposure.read().astype(float), window, 1)
        pulls.append((peak.centre - truth) / peak.sigma)
        sigmas.append(peak.sigma)
    pulls = np.array(pulls)
    assert abs(pulls.mean()) < 0.6
    assert 0.6 < pulls.std(ddof=1) < 1.5
    assert np.median(sigmas) < 0.002  # deg: a usable precision at 60 s


def test_two_overlapping_peaks_are_told_apart():
    """(018) and (110) are fitted together; each lands on its own Bragg angle."""
    soc = 0.9
    a, c = lattice(lithium_content(soc))
    exposure = Exposure(BEAM, np.random.default_rng(1))
    exposure.add(60.0, soc)
    window = (two_theta_of(1.46, BEAM.wavelength), two_theta_of(1.395, BEAM.wavelength))
    peaks = fit_peaks(TWO_THETA, exposure.read().astype(float), window, 2)
    assert peaks is not None and len(peaks) == 2
    for peak, hkl in zip(peaks, [(0, 1, 8), (1, 1, 0)], strict=True):
        truth = bragg_two_theta(d_hexagonal(hkl, a, c), BEAM.wavelength)
        assert abs(peak.centre - truth) < 5 * peak.sigma + 1e-4


def test_a_fit_in_an_empty_window_says_none():
    flat = np.full(TWO_THETA.shape, 100.0)
    assert fit_peaks(TWO_THETA, flat, (4.0, 4.02), 1) is None  # too few points
    noise = np.random.default_rng(0).poisson(100.0, TWO_THETA.shape).astype(float)
    peaks = fit_peaks(TWO_THETA, noise, (5.5, 6.0), 1)
    assert peaks is None or not math.isfinite(peaks[0].sigma) or peaks[0].area < 50
