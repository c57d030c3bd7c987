"""Figures from runs in the catalog (matplotlib ``Figure`` objects, for notebooks and for
the PNGs that ``ssb demo`` writes)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


def samples(run) -> dict[str, np.ndarray]:
    """The run's logged samples as arrays (experiment time in hours as ``hours``)."""
    data = run["samples"].read()
    out = {name: data[name].values for name in data.data_vars}
    out["hours"] = (out["test_time"] - out["test_time"][0]) / 3600.0
    return out


def cycling_figure(runs: Sequence, labels: Sequence[str], title: str = "") -> Figure:
    """Voltage, current, stack pressure and gap against experiment time, one colour per
    run: what constant pressure holds and what a fixed gap lets swing."""
    fig = Figure(figsize=(9, 9), layout="constrained")
    axes = fig.subplots(4, 1, sharex=True)
    for run, label in zip(runs, labels, strict=True):
        s = samples(run)
        axes[0].plot(s["hours"], s["voltage"], label=label)
        axes[1].plot(s["hours"], s["current"] * 1e3, label=label)
        axes[2].plot(s["hours"], s["pressure"], label=label)
        loaded = np.flatnonzero(s["current"] != 0)  # from the first electrochemical step
        reference = s["gap"][loaded[0]] if len(loaded) else s["gap"][0]
        axes[3].plot(s["hours"], s["gap"] - reference, label=label)
    for ax, name in zip(
        axes,
        [
            "voltage / V",
            "current / mA\n(+ = charge)",
            "stack pressure / MPa",
            "gap change / um\n(from first current)",
        ],
        strict=True,
    ):
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="best")
    axes[-1].set_xlabel("experiment time / h")
    if title:
        fig.suptitle(title)
    return fig


def save(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG (creating the folder); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def _colour_by(ax, values, label: str):
    """A colour map over ``values`` and its colour bar (empty-safe)."""
    from matplotlib import cm, colors

    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    lo, hi = (finite.min(), finite.max()) if len(finite) else (0.0, 1.0)
    if hi - lo < 5.0:  # one pressure (to within noise): a 5 MPa span around it
        middle = round((hi + lo) / 2)
        lo, hi = middle - 2.5, middle + 2.5
    norm = colors.Normalize(vmin=lo, vmax=hi)
    mapper = cm.ScalarMappable(norm=norm, cmap="viridis")
    ax.figure.colorbar(mapper, ax=ax, label=label)
    return mapper


def per_cycle(run) -> dict[str, np.ndarray]:
    """Charge, discharge, coulombic efficiency and mean pressure of each full cycle."""
    steps = run["steps"].read()
    cycle = steps["step_cycle"].values
    out: dict[str, list] = {"cycle": [], "charge": [], "discharge": [], "ce": [], "pressure": []}
    for c in sorted(set(cycle.tolist()) - {0}):
        mask = cycle == c
        charge = float(steps["step_charge"].values[mask].sum())
        discharge = float(steps["step_discharge"].values[mask].sum())
        electro = mask & (steps["step_step_type"].values != "Pressure")
        out["cycle"].append(c)
        out["charge"].append(charge)
        out["discharge"].append(discharge)
        out["ce"].append(discharge / charge if charge > 0 else np.nan)
        out["pressure"].append(float(np.nanmean(steps["step_pressure_mean"].values[electro])))
    return {k: np.asarray(v) for k, v in out.items()}


def capacity_figure(run) -> Figure:
    """Charge and discharge capacity and coulombic efficiency per cycle, coloured by the
    cycle's mean stack pressure."""
    c = per_cycle(run)
    fig = Figure(figsize=(8, 6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    mapper = _colour_by(top, c["pressure"], "mean pressure / MPa")
    colours = mapper.to_rgba(c["pressure"])
    top.scatter(c["cycle"], c["charge"], marker="^", c=colours, label="charge")
    top.scatter(c["cycle"], c["discharge"], marker="v", c=colours, label="discharge")
    top.set_ylabel("capacity / mAh")
    top.legend(loc="best")
    bottom.scatter(c["cycle"], c["ce"] * 100, c=colours)
    bottom.set_ylabel("coulombic efficiency / %")
    bottom.set_xlabel("cycle")
    bottom.xaxis.get_major_locator().set_params(integer=True)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    return fig


def breathing_figure(run) -> Figure:
    """Stack pressure and gap against the charge stored (the breathing loop)."""
    s = samples(run)
    stored = s["charge_capacity"] - s["discharge_capacity"]
    stored = stored - stored.min()
    capacity = run.start.get("cell", {}).get("capacity_mAh") or max(stored.max(), 1e-9)
    soc = stored / capacity
    cycling = s["current"] != 0
    if not cycling.any():  # no electrochemistry: show every sample
        cycling[:] = True
    fig = Figure(figsize=(8, 6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.plot(soc[cycling], s["pressure"][cycling], ".", ms=2)
    top.set_ylabel("stack pressure / MPa")
    bottom.plot(soc[cycling], s["gap"][cycling] - s["gap"][cycling].min(), ".", ms=2)
    bottom.set_ylabel("gap change / um")
    bottom.set_xlabel("charge stored / nominal capacity")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    return fig


def impedance_figure(run) -> Figure:
    """Nyquist plot of every spectrum coloured by pressure; with a pressure scan, R_int
    against pressure and the fitted power law."""
    eis = run["impedance"].read()
    has_fit = "fit" in run and "resistance" in run
    fig = Figure(figsize=(11 if has_fit else 7, 5), layout="constrained")
    axes = fig.subplots(1, 2 if has_fit else 1)
    nyquist = axes[0] if has_fit else axes
    spectrum = eis["spectrum"].values
    pressure = eis["spectrum_pressure"].values
    mapper = _colour_by(nyquist, pressure, "pressure / MPa")
    for k in np.unique(spectrum):
        mask = spectrum == k
        nyquist.plot(
            eis["z_real"].values[mask],
            -eis["z_imag"].values[mask],
            "o-",
            ms=3,
            color=mapper.to_rgba(pressure[mask][0]),
        )
    nyquist.set_xlabel("Re Z / ohm")
    nyquist.set_ylabel("-Im Z / ohm")
    nyquist.set_aspect("equal", adjustable="datalim")
    nyquist.grid(alpha=0.3)
    if has_fit:
        from .impedance import PowerLaw

        rows, fit = run["resistance"].read(), run["fit"].read()
        p, r = rows["resistance_pressure"].values, rows["resistance_r_int"].values
        law = PowerLaw(
            float(fit["fit_exponent"].values[0]),
            float(fit["fit_exponent_err"].values[0]),
            float(fit["fit_r_100"].values[0]),
            100.0,
        )
        grid = np.geomspace(p.min(), p.max(), 50)
        axes[1].loglog(p, r, "o", label="measured")
        axes[1].loglog(
            grid, law(grid), "-", label=f"n = {law.exponent:.3f} +- {law.exponent_err:.3f}"
        )
        axes[1].set_xlabel("stack pressure / MPa")
        axes[1].set_ylabel("R_int / ohm")
        axes[1].legend()
        axes[1].grid(alpha=0.3, which="both")
    return fig


def study_figure(summary_run) -> Figure:
    """A minimum-pressure study: capacity fade per cycle against pressure, the threshold
    marked, stable levels in green, and the minimum stable pressure."""
    levels = summary_run["levels"].read()
    p = levels["levels_pressure"].values
    fade = levels["levels_fade_per_cycle"].values * 100
    stable = levels["levels_stable"].values.astype(bool)
    threshold = summary_run.start["plan_args"]["criteria"]["max_fade_per_cycle"] * 100
    minimum = summary_run.start.get("minimum_stable_pressure")
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.subplots()
    ax.plot(p, fade, "-", color="0.6")
    ax.scatter(p[stable], fade[stable], color="tab:green", zorder=3, label="stable")
    ax.scatter(p[~stable], fade[~stable], color="tab:red", zorder=3, label="unstable")
    ax.axhline(threshold, ls="--", color="k", label=f"threshold {threshold:g} %/cycle")
    if minimum is not None:
        ax.axvline(minimum, ls=":", color="tab:green", label=f"minimum stable {minimum:.1f} MPa")
    ax.set_xlabel("stack pressure / MPa")
    ax.set_ylabel("capacity fade / % per cycle")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    return fig
