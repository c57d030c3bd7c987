"""Operando diffraction from the catalog alone: frames, peak fits, lattice against charge.

A run that read a diffraction detector (``ssb-ioc --xrd`` or a beamline's, through
:class:`ssb_devices.DiffractionDetector`) holds its frames in ``primary`` as a Tiled
array (frames x strips, counts) and the detector's configuration: the 2-theta axis (deg),
the wavelength (A) and the exposure (s). Each frame is placed at the middle of its
exposure on the rig's clock, where the logged samples give the voltage, the charge passed
since the run's start and the stack pressure.

Peaks are fitted per frame with Gaussians on a linear background by weighted least
squares (Poisson weights, ``scipy.optimize.curve_fit``; the uncertainties are the
covariance's). For a layered oxide cathode (R-3m, NMC), ``c`` comes from the (003)
reflection (c = 3 d) and ``a`` from (110) (a = 2 d), fitted together with its neighbour
(018); the search windows are d-spacings, so any wavelength works.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from .figures import samples
from .timebase import run_origin

# Reflections fitted: name -> (d range in A searched, peaks fitted together in that range;
# the reflection is the first of them).
REFLECTIONS: dict[str, tuple[tuple[float, float], int]] = {
    "003": ((4.63, 4.86), 1),
    "110": ((1.395, 1.46), 2),  # with (018): 1.42-1.46 A
}
FWHM_GUESS = 0.05  # deg


@dataclass
class Frames:
    """A run's diffraction frames and the cell's state at each exposure."""

    detector: str
    two_theta: np.ndarray  # deg, one per strip
    counts: np.ndarray  # frames x strips
    wavelength: float  # A
    exposure: float  # s of experiment time per frame
    hours: np.ndarray  # middle of each exposure, from the run's start
    voltage: np.ndarray  # V
    charge: np.ndarray  # mAh passed into the cell since the run's start (charge +)
    pressure: np.ndarray  # MPa
    capacity: float  # mAh, the cell's nominal capacity (state of charge = charge / it)


def detector_of(run) -> str | None:
    """The name of the detector whose frames ``primary`` holds (the one configured with a
    2-theta axis), or None."""
    if "primary" not in run:
        return None
    for name, conf in run["primary"].metadata.get("configuration", {}).items():
        if f"{name}_two_theta" in conf.get("data", {}):
            return name
    return None


def frames(run) -> Frames | None:
    """The run's frames with their axis and the cell's state at each, or None."""
    name = detector_of(run)
    if name is None:
        return None
    stream = run["primary"]
    conf = stream.metadata["configuration"][name]["data"]
    data = stream.read()
    counts = np.asarray(data[f"{name}_image"].values, dtype=float)
    exposure = float(conf.get(f"{name}_acquire_time", 0.0))
    middle = data[f"{name}_exposure_start"].values + exposure / 2
    s = samples(run)
    net = s["charge_capacity"] - s["discharge_capacity"]
    t = s["test_time"]
    return Frames(
        detector=name,
        two_theta=np.asarray(conf[f"{name}_two_theta"], dtype=float),
        counts=counts,
        wavelength=float(conf[f"{name}_wavelength"]),
        exposure=exposure,
        hours=(middle - run_origin(run)[0]) / 3600.0,
        voltage=np.interp(middle, t, s["voltage"]),
        charge=np.interp(middle, t, net) - net[0],
        pressure=np.interp(middle, t, s["pressure"]),
        capacity=_capacity(run),
    )


def _capacity(run) -> float:
    cell = run.start.get("cell", {})
    capacity = cell.get("capacity_mAh") or run.start.get("plan_args", {}).get("capacity")
    return float(capacity) if capacity else math.nan


# --- peak fits -----------------------------------------------------------------------------


@dataclass
class Peak:
    centre: float  # deg 2-theta
    sigma: float  # its standard uncertainty, deg
    fwhm: float  # deg
    area: float  # counts x deg


def _model(x, *p):
    """Linear background plus Gaussians: p = (b0, b1, [centre, sigma, area] ...)."""
    y = p[0] + p[1] * (x - x[0])
    for k in range(2, len(p), 3):
        c, s, a = p[k : k + 3]
        y = y + a / (s * math.sqrt(2 * math.pi)) * np.exp(-0.5 * ((x - c) / s) ** 2)
    return y


def fit_peaks(two_theta: np.ndarray, counts: np.ndarray, window: tuple[float, float], n: int):
    """``n`` Gaussian peaks on a line in ``window`` (deg), highest first in the starting
    guess, returned in order of 2-theta; None if the fit fails."""
    from scipy.optimize import curve_fit

    inside = (two_theta >= window[0]) & (two_theta <= window[1])
    x, y = two_theta[inside], counts[inside]
    if len(x) < 3 * n + 3:
        return None
    base = float(np.percentile(y, 10))
    guesses, rest = [], y - base
    for _ in range(n):  # the highest point, then the highest away from those taken
        k = int(np.argmax(rest))
        sigma = FWHM_GUESS / 2.3548
        guesses += [x[k], sigma, max(rest[k], 1.0) * sigma * 2.5066]
        rest = np.where(np.abs(x - x[k]) < 3 * FWHM_GUESS, -np.inf, rest)
    p0 = [base, 0.0, *guesses]
    try:
        p, cov = curve_fit(_model, x, y, p0=p0, sigma=np.sqrt(np.maximum(y, 1.0)),
                           absolute_sigma=True, maxfev=5000)  # fmt: skip
    except (RuntimeError, ValueError):
        return None
    errors = np.sqrt(np.diag(cov))
    peaks = [Peak(p[k], errors[k], abs(p[k + 1]) * 2.3548, p[k + 2]) for k in range(2, len(p), 3)]
    if any(not (window[0] < pk.centre < window[1]) or not math.isfinite(pk.sigma) for pk in peaks):
        return None
    return sorted(peaks, key=lambda pk: pk.centre)


def two_theta_of(d: float, wavelength: float) -> float:
    return 2 * math.degrees(math.asin(wavelength / (2 * d)))


def d_of(two_theta: float, wavelength: float) -> float:
    return wavelength / (2 * math.sin(math.radians(two_theta / 2)))


@dataclass
class Lattice:
    """Per frame: fitted peak positions (deg) and lattice parameters (A), with their
    standard uncertainties; NaN where a fit failed."""

    peak_003: np.ndarray
    peak_003_sigma: np.ndarray
    peak_110: np.ndarray
    peak_110_sigma: np.ndarray
    c: np.ndarray
    c_sigma: np.ndarray
    a: np.ndarray
    a_sigma: np.ndarray


def lattice(fr: Frames) -> Lattice:
    """Fit (003) and (110) in every frame; c = 3 d(003), a = 2 d(110)."""
    n = len(fr.counts)
    out = {key: np.full(n, np.nan) for key in Lattice.__dataclass_fields__}
    windows = {}
    for name, ((d_lo, d_hi), count) in REFLECTIONS.items():
        windows[name] = (
            two_theta_of(d_hi, fr.wavelength),
            two_theta_of(d_lo, fr.wavelength),
            count,
        )
    for i, pattern in enumerate(fr.counts):
        for name, (lo, hi, count) in windows.items():
            peaks = fit_peaks(fr.two_theta, pattern, (lo, hi), count)
            if peaks is None:
                continue
            peak = peaks[-1] if name == "110" else peaks[0]  # (110) is above (018)
            out[f"peak_{name}"][i], out[f"peak_{name}_sigma"][i] = peak.centre, peak.sigma
            d = d_of(peak.centre, fr.wavelength)
            # dd/d(2theta) = -d cot(theta) / 2 per radian of 2-theta
            dd = d / (2 * math.tan(math.radians(peak.centre / 2))) * math.radians(peak.sigma)
            factor = 3.0 if name == "003" else 2.0
            key = "c" if name == "003" else "a"
            out[key][i], out[f"{key}_sigma"][i] = factor * d, factor * dd
    return Lattice(**out)


# --- figures --------------------------------------------------------------------------------


def frames_of(run) -> Frames:
    """The run's frames (:func:`frames`); a run without a detector is refused by name."""
    fr = frames(run)
    if fr is None:
        raise ValueError(f"run {run.start.get('uid', '?')[:8]} has no diffraction frames")
    return fr


def _window(fr: Frames, name: str, margin: float = 0.1) -> tuple[float, float]:
    (d_lo, d_hi), _ = REFLECTIONS[name]
    return two_theta_of(d_hi, fr.wavelength) - margin, two_theta_of(d_lo, fr.wavelength) + margin


def operando_figure(run) -> Figure:
    """The classic operando figure: the patterns as colour maps against time (the (003)
    and the (018)/(110) regions) beside the voltage curve on the same time axis."""
    fr = frames_of(run)
    fig = Figure(figsize=(10, 6.5), layout="constrained")
    axes = fig.subplots(1, 3, sharey=True, width_ratios=[1, 1, 0.8])
    s = samples(run)
    hours = fr.hours
    for ax, name, label in ((axes[0], "003", "(003)"), (axes[1], "110", "(018) and (110)")):
        lo, hi = _window(fr, name)
        keep = (fr.two_theta >= lo) & (fr.two_theta <= hi)
        per_second = fr.counts[:, keep] / max(fr.exposure, 1e-9)
        mesh = ax.pcolormesh(fr.two_theta[keep], hours, per_second, shading="nearest")
        ax.set_xlabel("2θ (deg)")
        ax.set_title(f"NMC {label}, λ = {fr.wavelength:.4g} Å", fontsize=10)
        fig.colorbar(mesh, ax=ax, location="bottom", label="counts/s", shrink=0.8)
    axes[0].set_ylabel("time since the run's start (h)")
    axes[2].plot(s["voltage"], s["hours"], color="tab:blue", lw=1.2, label="cell voltage")
    axes[2].plot(fr.voltage, hours, "o", ms=3, color="k", label="at each exposure")
    axes[2].set_xlabel("voltage (V)")
    axes[2].legend(loc="lower left", fontsize=8)
    axes[2].set_title(f"{len(hours)} frames of {fr.exposure:g} s", fontsize=10)
    axes[0].set_ylim(hours[0], hours[-1]) if len(hours) > 1 else None
    fig.suptitle(f"Operando diffraction, {_cell(run)}", fontsize=11)
    return fig


def lattice_figure(run) -> Figure:
    """(003) position against charge passed (charge and discharge apart), and the lattice
    parameters c and a against state of charge, with their fitted uncertainties."""
    fr = frames_of(run)
    fit = lattice(fr)
    fig = Figure(figsize=(10, 4.5), layout="constrained")
    ax_peak, ax_c = fig.subplots(1, 2)
    rising = np.concatenate([[True], np.diff(fr.charge) >= 0])
    for mask, label, colour in ((rising, "charge", "tab:red"), (~rising, "discharge", "tab:blue")):
        ax_peak.errorbar(fr.charge[mask], fit.peak_003[mask], yerr=fit.peak_003_sigma[mask],
                         fmt="o", ms=3, color=colour, label=label)  # fmt: skip
    ax_peak.set_xlabel("charge passed (mAh)")
    ax_peak.set_ylabel("(003) position (deg 2θ)")
    ax_peak.invert_yaxis()  # up = larger d = larger c
    ax_peak.legend(fontsize=8)
    soc = fr.charge / fr.capacity
    ax_c.errorbar(soc, fit.c, yerr=fit.c_sigma, fmt="o", ms=3, color="tab:purple", label="c")
    ax_c.set_xlabel(f"state of charge (charge passed / {fr.capacity:g} mAh)")
    ax_c.set_ylabel("c (Å)", color="tab:purple")
    ax_a = ax_c.twinx()
    ax_a.errorbar(soc, fit.a, yerr=fit.a_sigma, fmt="s", ms=3, color="tab:green", label="a")
    ax_a.set_ylabel("a (Å)", color="tab:green")
    fig.suptitle(f"Lattice against charge, {_cell(run)}", fontsize=11)
    return fig


def _cell(run) -> str:
    cell = run.start.get("cell", {})
    return f"{cell.get('cell_id', '?')} ({cell.get('chemistry', 'cell')})"


def key_numbers(run) -> list[list[str]]:
    """Rows for a report: frames, exposure, and the c and a ranges fitted."""
    fr = frames_of(run)
    fit = lattice(fr)
    rows = [["diffraction frames", f"{len(fr.counts)} of {fr.exposure:g} s ({fr.detector})"]]
    if np.isfinite(fit.c).any():
        k, j = int(np.nanargmax(fit.c)), int(np.nanargmin(fit.c))
        rows.append(["c range (fitted)", f"{fit.c[j]:.4f} ± {fit.c_sigma[j]:.4f} to "
                     f"{fit.c[k]:.4f} ± {fit.c_sigma[k]:.4f} Å (max at "
                     f"{fr.charge[k]:.3f} mAh)"])  # fmt: skip
    if np.isfinite(fit.a).any():
        rows.append(["a range (fitted)", f"{np.nanmin(fit.a):.4f} to {np.nanmax(fit.a):.4f} Å"])
    return rows
