"""Figures from runs in the catalog (matplotlib ``Figure`` objects, for notebooks and for
the PNGs that ``ssb demo`` writes)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .runs import in_instrument_order
from .timebase import hours_since_start


def samples(run) -> dict[str, np.ndarray]:
    """The run's logged samples as arrays (``hours``: experiment time from the run's
    start, :mod:`ssb_analysis.timebase`)."""
    data = in_instrument_order(run["samples"].read())
    out = {name: data[name].values for name in data.data_vars}
    out["hours"] = hours_since_start(run, out["test_time"])
    return out


EVENT_COLOURS = {
    "pressure_spike": "tab:red",
    "pressure_drop": "tab:purple",
    "soft_short": "tab:orange",
    "resistance_jump": "tab:brown",
}


def events(run) -> dict[str, np.ndarray]:
    """The run's detected events (``events`` stream) as arrays; empty if none."""
    if "events" not in run:
        return {}
    data = run["events"].read()
    return {name[len("events_") :]: data[name].values for name in data.data_vars}


def mark_events(axes, run) -> None:
    """Vertical lines at each event on every axis, named on the top one."""
    ev = events(run)
    for k in range(len(ev.get("time", []))):
        hours = hours_since_start(run, ev["time"][k])
        kind = str(ev["kind"][k])
        colour = EVENT_COLOURS.get(kind, "tab:gray")
        for ax in axes:
            ax.axvline(hours, color=colour, lw=1.0, ls="--", alpha=0.8)
        axes[0].annotate(
            kind.replace("_", " "),
            (hours, 1.0 - 0.3 * (k % 3)),  # staggered: events close in time stay legible
            xycoords=("data", "axes fraction"),
            rotation=90,
            va="top",
            ha="right",
            fontsize=8,
            color=colour,
        )


def cycling_figure(runs: Sequence, labels: Sequence[str], title: str = "") -> Figure:
    """Voltage, current, stack pressure and gap against experiment time, one colour per
    run: what constant pressure holds and what a fixed gap lets swing. Detected events
    are marked as dashed lines."""
    fig = Figure(figsize=(9, 9), layout="constrained")
    axes = fig.subplots(4, 1, sharex=True)
    lows, highs = [], []  # of each run's breathing, for the gap panel's limits
    for run, label in zip(runs, labels, strict=True):
        s = samples(run)
        axes[0].plot(s["hours"], s["voltage"], label=label)
        axes[1].plot(s["hours"], s["current"] * 1e3, label=label)
        axes[2].plot(s["hours"], s["pressure"], label=label)
        loaded = np.flatnonzero(s["current"] != 0)  # from the first electrochemical step
        first = loaded[0] if len(loaded) else 0
        # before the first current the press closes on the stack (tens of um): drawn, it
        # would flatten the breathing, so the panel starts where the cell is loaded
        change = np.where(np.arange(len(s["gap"])) >= first, s["gap"] - s["gap"][first], np.nan)
        axes[3].plot(s["hours"], change, label=label)
        breathing = change[first:]
        if len(breathing) and np.isfinite(breathing).any():
            lows.append(float(np.nanmin(breathing)))
            highs.append(float(np.nanmax(breathing)))
        mark_events(axes, run)
    if lows:
        pad = max(0.1 * (max(highs) - min(lows)), 0.5)
        axes[3].set_ylim(min(lows) - pad, max(highs) + pad)
    for ax, name in zip(
        axes,
        [
            "voltage / V",
            "current / mA\n(+ = charge)",
            "stack pressure / MPa",
            "gap change / µm\n(from first current)",
        ],
        strict=True,
    ):
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.ticklabel_format(axis="y", useOffset=False)
    if len(runs) > 1:
        axes[0].legend(loc="best")
    axes[-1].set_xlabel("experiment time from the run's start / h")
    fig.suptitle(title or describe(runs[0]))
    return fig


def describe(run) -> str:
    """A figure title: what was run (the protocol's heading, a title given in the
    metadata, else the plan and its pressure), on which cell."""
    start = run.start
    what = start.get("title") or ""
    if not what:
        what = str(start.get("plan_name", "run")).replace("_", " ")
        if "samples" in run:
            pressure = run["samples"].read()["pressure"].values
            if len(pressure):
                what += f" at {np.median(pressure):.0f} MPa (median)"
    return f"{what}: cell {start.get('cell_id', '?')} (scan {start.get('scan_id', '?')})"


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
    if hi - lo < 5.0:  # one pressure (to within noise): say it, no one-colour bar
        middle = (hi + lo) / 2
        ax.set_title(f"{label.split(' / ')[0]} {middle:.0f} {label.split(' / ')[-1]}")
        norm = colors.Normalize(vmin=middle - 2.5, vmax=middle + 2.5)
        return cm.ScalarMappable(norm=norm, cmap="viridis")
    norm = colors.Normalize(vmin=lo, vmax=hi)
    mapper = cm.ScalarMappable(norm=norm, cmap="viridis")
    ax.figure.colorbar(mapper, ax=ax, label=label)
    return mapper


def per_cycle(run) -> dict[str, np.ndarray]:
    """Charge, discharge, coulombic efficiency and mean pressure of each full cycle."""
    steps = run["steps"].read()
    cycle = steps["step_cycle"].values
    out: dict[str, list] = {"cycle": [], "charge": [], "discharge": [], "ce": [], "pressure": []}
    for c in sorted(set(cycle.tolist())):
        mask = cycle == c
        charge = float(steps["step_charge"].values[mask].sum())
        discharge = float(steps["step_discharge"].values[mask].sum())
        if c == 0 and (len(set(cycle.tolist())) > 1 or not (charge > 0 and discharge > 0)):
            continue  # before the first Repeat; or a protocol without one that did not cycle
        electro = mask & (steps["step_step_type"].values != "Pressure")
        out["cycle"].append(c)
        out["charge"].append(charge)
        out["discharge"].append(discharge)
        out["ce"].append(discharge / charge if charge > 0 else np.nan)
        out["pressure"].append(float(np.nanmean(steps["step_pressure_mean"].values[electro])))
    return {k: np.asarray(v) for k, v in out.items()}


def capacity_figure(run) -> Figure:
    """Charge and discharge capacity (from zero, so that a 1 % fade looks like one) and
    coulombic efficiency per cycle."""
    c = per_cycle(run)
    fig = Figure(figsize=(8, 6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.plot(c["cycle"], c["charge"], "^-", color="tab:blue", label="charge")
    top.plot(c["cycle"], c["discharge"], "v-", color="tab:red", label="discharge")
    top.set_ylim(0, max(np.nanmax(c["charge"]), np.nanmax(c["discharge"])) * 1.1)
    top.set_ylabel("capacity / mAh")
    top.legend(loc="lower left")
    ce = c["ce"] * 100
    bottom.plot(c["cycle"], ce, "o-", color="tab:gray")
    finite = ce[np.isfinite(ce)]
    if len(finite):  # a 1 % difference looks like one, not like the whole axis
        bottom.set_ylim(min(finite.min() - 0.5, 95.0), max(finite.max() + 0.5, 100.5))
    bottom.set_ylabel("coulombic efficiency / %")
    bottom.set_xlabel("cycle")
    bottom.xaxis.get_major_locator().set_params(integer=True)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        ax.ticklabel_format(axis="y", useOffset=False)
    pressures = c["pressure"][np.isfinite(c["pressure"])]
    held = f", {np.median(pressures):.0f} MPa" if len(pressures) else ""
    fig.suptitle(f"capacity per cycle, cell {run.start.get('cell_id', '?')}{held}")
    return fig


def _hysteresis(soc, value, charging, discharging, cycle):
    """Per cycle: the state-of-charge grid where both directions were measured, and the
    value on discharge less the value on charge there (the loop's width)."""
    out = []
    for c in np.unique(cycle):
        up, down = charging & (cycle == c), discharging & (cycle == c)
        if up.sum() < 5 or down.sum() < 5:
            continue
        lo = max(soc[up].min(), soc[down].min())
        hi = min(soc[up].max(), soc[down].max())
        if hi - lo < 0.05:
            continue
        grid = np.linspace(lo, hi, 100)
        order_up, order_down = np.argsort(soc[up]), np.argsort(soc[down])
        on_charge = np.interp(grid, soc[up][order_up], value[up][order_up])
        on_discharge = np.interp(grid, soc[down][order_down], value[down][order_down])
        out.append((int(c), grid, on_discharge - on_charge))
    return out


def breathing_figure(run) -> Figure:
    """Stack pressure and gap against the charge stored (the breathing loop), charge
    drawn solid and discharge dashed, and the loop's width per cycle: what the gap (or,
    in a fixed gap, the pressure) does on discharge less what it did on charge at the
    same state of charge. A loop of zero width is drawn as one, and says so."""
    s = samples(run)
    stored = s["charge_capacity"] - s["discharge_capacity"]
    stored = stored - stored.min()
    capacity = run.start.get("cell", {}).get("capacity_mAh") or max(stored.max(), 1e-9)
    soc = stored / capacity
    cycling = s["current"] != 0
    if not cycling.any():  # no electrochemistry: show every sample
        cycling[:] = True
    fig = Figure(figsize=(8, 8), layout="constrained")
    top, middle, bottom = fig.subplots(3, 1, sharex=True)
    gap = s["gap"] - s["gap"][cycling].min()
    charging, discharging = cycling & (s["current"] > 0), cycling & (s["current"] < 0)
    for name, mask, colour, style in (
        ("charge", charging, "tab:blue", dict(lw=3.0, alpha=0.45)),
        ("discharge", discharging, "tab:red", dict(lw=1.0, ls="--")),
    ):  # the pressure held is noise about the setpoint: points; the gap is smooth: lines
        top.plot(soc[mask], s["pressure"][mask], ".", ms=2, color=colour, label=name)
        middle.plot(soc, np.where(mask, gap, np.nan), color=colour, label=name, **style)
    swung = np.ptp(s["pressure"][cycling]) > 1.0  # a fixed gap: the pressure breathes
    what, values, unit = ("pressure", s["pressure"], "MPa") if swung else ("gap", gap, "µm")
    widths = _hysteresis(soc, values, charging, discharging, s["cycle"])
    for c, grid, width in widths:
        bottom.plot(grid, width, label=f"cycle {c}")
    widest = max((float(np.abs(w).max()) for _, _, w in widths), default=float("nan"))
    bottom.axhline(0.0, color="0.5", lw=0.8)
    bottom.set_ylabel(f"loop width: {what}\non discharge - charge / {unit}")
    if widths:
        bottom.legend(loc="best", fontsize=8)
        bottom.set_title(f"widest {widest:.3g} {unit}", fontsize=9, loc="right")
    top.set_ylabel("stack pressure / MPa")
    middle.set_ylabel("gap change / µm")
    bottom.set_xlabel("charge stored / nominal capacity")
    top.legend(loc="best", markerscale=4)
    middle.legend(loc="best")
    for ax in (top, middle, bottom):
        ax.grid(alpha=0.3)
        ax.ticklabel_format(axis="y", useOffset=False)
    fig.suptitle(f"breathing of cell {run.start.get('cell_id', '?')}: pressure and gap")
    return fig


def _hertz(f: float) -> str:
    for factor, unit in ((1e6, "MHz"), (1e3, "kHz"), (1.0, "Hz"), (1e-3, "mHz")):
        if f >= factor:
            return f"{f / factor:g} {unit}"
    return f"{f:g} Hz"


def impedance_figure(run) -> Figure:
    """Nyquist plot of every spectrum coloured by pressure; with a pressure scan, R_int
    against pressure and the fitted power law."""
    eis = run["impedance"].read()
    has_fit = "fit" in run and "resistance" in run
    fig = Figure(figsize=(11 if has_fit else 7, 5), layout="constrained")
    axes = list(fig.subplots(1, 2 if has_fit else 1, squeeze=False)[0])
    nyquist = axes[0]
    spectrum = eis["spectrum"].values
    pressure = eis["spectrum_pressure"].values
    mapper = _colour_by(nyquist, pressure, "pressure / MPa")
    for n, k in enumerate(np.unique(spectrum)):
        mask = spectrum == k
        re_z, im_z = eis["z_real"].values[mask], -eis["z_imag"].values[mask]
        nyquist.plot(re_z, im_z, "o-", ms=3, color=mapper.to_rgba(pressure[mask][0]))
        if n == 0:  # the frequency at each decade, on the first spectrum, where legible
            freq = eis["frequency"].values[mask]
            spacing = 0.04 * max(float(np.ptp(re_z)), float(np.ptp(im_z)), 1e-9)
            placed: list[tuple[float, float]] = []
            for j in np.flatnonzero(np.isclose(np.log10(freq) % 1, 0, atol=0.02)):
                if all(np.hypot(re_z[j] - x, im_z[j] - y) > spacing for x, y in placed):
                    placed.append((re_z[j], im_z[j]))
                    nyquist.annotate(_hertz(freq[j]), (re_z[j], im_z[j]), fontsize=7,
                                     xytext=(3, 3), textcoords="offset points")  # fmt: skip
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
    """A minimum-pressure study: capacity fade per cycle and coulombic efficiency against
    pressure, thresholds marked, stable levels in green, soft shorts in orange, and the
    operating window shaded."""
    levels = summary_run["levels"].read()
    order = np.argsort(levels["levels_pressure"].values)
    p = levels["levels_pressure"].values[order]
    fade = levels["levels_fade_per_cycle"].values[order] * 100
    ce = levels["levels_coulombic_efficiency"].values[order] * 100
    stable = levels["levels_stable"].values[order].astype(bool)
    if "levels_mechanism" in levels:
        mechanism = levels["levels_mechanism"].values[order].astype(str)
    else:  # a study stored before verdicts named their mechanism
        mechanism = np.where(stable, "stable", "contact_loss")
    criteria = summary_run.start["plan_args"]["criteria"]
    minimum = summary_run.start.get("minimum_stable_pressure")
    maximum = summary_run.start.get("maximum_stable_pressure")
    fig = Figure(figsize=(8, 7), layout="constrained")
    axes = fig.subplots(2, 1, sharex=True)
    for ax, values, threshold, label in (
        (axes[0], fade, criteria["max_fade_per_cycle"] * 100, "capacity fade / % per cycle"),
        (axes[1], ce, criteria["min_coulombic_efficiency"] * 100, "coulombic efficiency / %"),
    ):
        ax.plot(p, values, "-", color="0.6")
        shorted = mechanism == "soft_short"
        ax.scatter(p[stable], values[stable], color="tab:green", zorder=3, label="stable")
        lost = ~stable & ~shorted
        ax.scatter(p[lost], values[lost], color="tab:red", zorder=3, label="contact loss")
        ax.scatter(p[shorted], values[shorted], color="tab:orange", zorder=3, label="soft short")
        ax.axhline(threshold, ls="--", color="k", label=f"threshold {threshold:g}")
        if minimum is not None:
            top = maximum if maximum is not None else p.max()
            ax.axvspan(minimum, top, color="tab:green", alpha=0.1, label="stable window")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if minimum is not None:
        axes[0].axvline(minimum, ls=":", color="tab:green", label=f"minimum {minimum:.1f} MPa")
    if maximum is not None:
        axes[0].axvline(maximum, ls=":", color="tab:orange", label=f"maximum {maximum:.1f} MPa")
    axes[0].legend(loc="best", fontsize=8)
    axes[1].set_xlabel("stack pressure / MPa")
    return fig


def _unjoined(t: np.ndarray, y: np.ndarray, gap: float = 0.01):
    """``t, y`` with a NaN wherever samples are further apart than ``gap`` s: sparse
    samples before a full-rate window show as points, not as a ramp drawn between them."""
    if len(t) < 2:
        return t, y
    breaks = np.flatnonzero(np.diff(t) > gap) + 1
    return np.insert(t, breaks, np.nan), np.insert(y.astype(float), breaks, np.nan)


def event_figure(run, window: float = 2.5) -> Figure:
    """Each detected event (up to six) with the full-rate load-cell samples around it:
    pressure and cell voltage against time from the event."""
    ev = events(run)
    fast = run["load_cell_fast"].read() if "load_cell_fast" in run else None
    n = min(len(ev.get("time", [])), 6)
    fig = Figure(figsize=(9, 2.6 * max(n, 1)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(max(n, 1), 1))
    for k in range(n):
        ax, t0, kind = axes[k], float(ev["time"][k]), str(ev["kind"][k])
        ax.set_title(
            f"{kind.replace('_', ' ')}: {float(ev['magnitude'][k]):.4g} {ev['unit'][k]} "
            f"at t = {hours_since_start(run, t0):.3f} h from the run's start "
            f"(step {int(ev['step'][k])}, {ev['source'][k]}, "
            f"reaction {ev['reaction'][k]})",
            fontsize=9,
        )
        if fast is None or "time" not in fast:
            continue
        t = fast["time"].values
        near = (t >= t0 - window) & (t <= t0 + window)
        dt, p = _unjoined(t[near] - t0, fast["pressure"].values[near])
        ax.plot(dt, p, ".-", ms=2, color="tab:blue", lw=0.8)
        ax.set_ylabel("pressure / MPa", color="tab:blue")
        twin = ax.twinx()
        dt, v = _unjoined(t[near] - t0, fast["voltage"].values[near])
        twin.plot(dt, v, ".-", ms=2, color="tab:orange", lw=1.0)
        twin.set_ylabel("voltage / V", color="tab:orange")
        for axis in (ax, twin):
            axis.ticklabel_format(axis="y", useOffset=False)
        ax.axvline(0.0, color=EVENT_COLOURS.get(kind, "tab:gray"), ls="--")
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("time from the event / s (load cell at full rate)")
    return fig


def pressure_figure(run) -> Figure:
    """A pressure plan's readings: measured pressure against the working setpoint, and
    the stack gap, against experiment time from the run's first reading."""
    data = run.primary.read()
    t = data["rig_clock_time"].values
    t = t - t[0]
    scale, unit = (60.0, "min") if t[-1] > 600 else (1.0, "s")
    style = "o-" if len(t) >= 20 else "o"  # a few readings are points, not a curve
    fig = Figure(figsize=(7.5, 5.0), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.plot(t / scale, data["rig_press_readback"].values, style, ms=4, label="measured")
    if "rig_press_demand" in data:
        top.plot(t / scale, data["rig_press_demand"].values, "x", label="working setpoint")
    top.set_ylabel("pressure / MPa")
    top.legend(loc="best", fontsize=8)
    bottom.plot(t / scale, data["rig_press_gap"].values, style, ms=4, color="tab:green")
    bottom.set_ylabel("gap / µm")
    bottom.set_xlabel(f"experiment time from the run's first reading / {unit}")
    for ax in (top, bottom):
        ax.ticklabel_format(useOffset=False)
    start = run.start
    fig.suptitle(
        f"{start.get('plan_name', 'run')} on cell {start.get('cell_id', '?')} "
        f"(scan {start.get('scan_id', '?')})"
    )
    return fig
