"""``ssb report RUN``: PNG figures and a Markdown page with the key numbers, from the
catalog alone."""

from __future__ import annotations

from pathlib import Path

from . import diffraction
from .figures import (
    breathing_figure,
    capacity_figure,
    cycling_figure,
    describe,
    event_figure,
    events,
    impedance_figure,
    per_cycle,
    pressure_figure,
    save,
    study_figure,
)
from .timebase import hours_since_start


def _has_events(run, stream: str) -> bool:
    """The stream exists and holds data (a flyer's stream may exist empty)."""
    return stream in run and run[stream].read().sizes.get("time", 0) > 0


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table and the blank line after it."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return [*lines, *("| " + " | ".join(row) + " |" for row in rows), ""]


def _levels(run):
    """The pressure levels the protocol set (``Set``/``Ramp``/``Hold pressure`` lines)."""
    import re

    protocol = run.start.get("protocol", "")
    return sorted(set(re.findall(r"pressure (?:to|at) ([0-9.]+) MPa", protocol)))


def _key_numbers(run) -> list[str]:
    """Pressure held (and how well), breathing, and each impedance spectrum's resistances,
    while current flowed (or over every sample, if it never did). A protocol that set
    several pressures is summed up per level: one deviation over a ladder means nothing."""
    import numpy as np

    from .figures import samples
    from .impedance import interfacial_resistance

    s = samples(run)
    cycling = s["current"] != 0
    if not cycling.any():
        cycling[:] = True
    levels = [float(p) for p in _levels(run)]
    rows = []
    if len(levels) > 1 and _has_events(run, "steps"):
        rows += _per_level(run, s, cycling)
    else:
        p, gap = s["pressure"][cycling], s["gap"][cycling]
        held = float(np.median(p))
        deviation = p - held
        if "Hold gap" in run.start.get("protocol", ""):  # nothing held: the pressure swung
            rows.append(["pressure swing in the fixed gap", f"{np.ptp(p):.2f} MPa"])
        else:
            rows += [
                ["stack pressure (median)", f"{held:.2f} MPa"],
                [
                    "pressure deviation RMS / peak",
                    f"{np.sqrt((deviation**2).mean()):.3f} / {np.abs(deviation).max():.3f} MPa",
                ],
            ]
        rows += [
            ["pressure range", f"{p.min():.2f} to {p.max():.2f} MPa"],
            ["breathing (gap range)", f"{np.ptp(gap):.2f} µm"],
        ]
    if _has_events(run, "impedance"):
        eis = run["impedance"].read()
        for k in np.unique(eis["spectrum"].values):
            mask = eis["spectrum"].values == k
            z, f = eis["z_real"].values[mask], eis["frequency"].values[mask]
            at = float(eis["spectrum_pressure"].values[mask][0])
            resistances = (
                f"bulk {z[0]:.2f} ohm, R_int {interfacial_resistance(f, z):.2f} ohm, "
                f"total {z[-1]:.2f} ohm"
            )
            rows.append([f"impedance {int(k)} at {at:.0f} MPa", resistances])
    return _table(["while cycling", "value"], rows)


def _per_level(run, s, cycling) -> list[list[str]]:
    """Per pressure held while current flowed: how well it was held and the breathing."""
    import numpy as np

    rows = []
    p = s["pressure"]
    bands = np.round(p[cycling] / 0.5) * 0.5  # the levels as held, to half an MPa
    for level in sorted(set(bands.tolist())):
        near = cycling & (np.abs(p - level) < 0.5 + 0.02 * level)
        if near.sum() < 3:
            continue
        dev = p[near] - level
        rows.append(
            [
                f"at {level:g} MPa ({near.sum()} samples)",
                f"deviation RMS {np.sqrt((dev**2).mean()):.3f} / peak {np.abs(dev).max():.3f} "
                f"MPa, breathing {np.ptp(s['gap'][near]):.2f} µm",
            ]
        )
    return rows


def write_report(run, directory: str | Path) -> Path:
    """Write the figures that apply to ``run`` and ``report.md``; returns the page."""
    uid = run.start["uid"]
    directory = Path(directory) / f"scan{run.start.get('scan_id', 0)}-{uid[:8]}"
    stop = run.stop or {}
    lines = [
        f"# {describe(run)}",
        "",
        f"run `{uid[:8]}` ({run.start.get('plan_name', 'run')}), cell "
        f"`{run.start.get('cell_id', '?')}`, purpose {run.start.get('purpose', '?')}, "
        f"operator {run.start.get('operator', '?')}, exit status "
        f"**{stop.get('exit_status', 'running')}**",
        "",
    ]
    if stop.get("reason"):  # why it failed, or what fell short
        lines += [f"> {stop['reason']}", ""]
    figures = []
    pressure_plan = not _has_events(run, "samples") and _has_events(run, "primary")
    if pressure_plan:  # set, ramp, hold, steps: the readings are the record
        primary = run.primary.read()
        p = primary["rig_press_readback"].values
        t = primary["rig_clock_time"].values
        figures.append(("pressure", "pressure.png", pressure_figure(run)))
        lines += _table(
            ["readings", "duration / s", "first / MPa", "last / MPa", "min / MPa", "max / MPa"],
            [[f"{len(p)}", f"{t[-1] - t[0]:.1f}", f"{p[0]:.2f}", f"{p[-1]:.2f}",
              f"{p.min():.2f}", f"{p.max():.2f}"]],
        )  # fmt: skip
    if _has_events(run, "samples"):
        lines += _key_numbers(run)
        figures.append(("time series", "timeseries.png", cycling_figure([run], [uid[:8]])))
        figures.append(("breathing", "breathing.png", breathing_figure(run)))
    if _has_events(run, "steps"):
        cycles = per_cycle(run)
        if len(cycles["cycle"]):
            figures.append(("capacity per cycle", "capacity.png", capacity_figure(run)))
            lines += _table(
                ["cycle", "charge / mAh", "discharge / mAh", "CE", "P / MPa"],
                [
                    [
                        f"{cycles['cycle'][k]}",
                        f"{cycles['charge'][k]:.4f}",
                        f"{cycles['discharge'][k]:.4f}",
                        f"{cycles['ce'][k]:.2%}",
                        f"{cycles['pressure'][k]:.1f}",
                    ]
                    for k in range(len(cycles["cycle"]))
                ],
            )
    ev = events(run)
    if len(ev.get("time", [])):
        figures.append(
            ("events, with the load cell at full rate", "events.png", event_figure(run))
        )
        lines += _table(
            ["t / h (from the run's start)", "event", "magnitude", "step", "source", "reaction"],
            [
                [
                    f"{hours_since_start(run, ev['time'][k]):.3f}",
                    f"{ev['kind'][k]}",
                    f"{ev['magnitude'][k]:.4g} {ev['unit'][k]}",
                    f"{ev['step'][k]}",
                    f"{ev['source'][k]}",
                    f"{ev['reaction'][k]}",
                ]
                for k in range(len(ev["time"]))
            ],
        )
    if _has_events(run, "impedance"):
        figures.append(("impedance", "impedance.png", impedance_figure(run)))
    if diffraction.detector_of(run) and _has_events(run, "samples"):
        lines += _table(["operando diffraction", "value"], diffraction.key_numbers(run))
        figures.append(("operando diffraction", "operando.png", diffraction.operando_figure(run)))
        figures.append(("lattice against charge", "lattice.png", diffraction.lattice_figure(run)))
    if _has_events(run, "fit"):
        fit = run["fit"].read()
        lines += [
            f"R_int ~ P^n: n = {float(fit['fit_exponent'][0]):.3f} +- "
            f"{float(fit['fit_exponent_err'][0]):.3f}, R_int(100 MPa) = "
            f"{float(fit['fit_r_100'][0]):.2f} ohm",
            "",
        ]
    if _has_events(run, "rate_capability"):
        rc = run["rate_capability"].read()
        columns = zip(
            rc["rate_capability_c_rate"].values,
            rc["rate_capability_capacity"].values,
            rc["rate_capability_retention"].values,
            strict=True,
        )
        lines += _table(
            ["C-rate", "capacity / mAh", "retention"],
            [[f"{c:g}", f"{q:.4f}", f"{k:.1%}"] for c, q, k in columns],
        )
    if run.start.get("study_role") == "summary" and _has_events(run, "levels"):
        figures.append(("minimum-pressure study", "study.png", study_figure(run)))
        minimum = run.start.get("minimum_stable_pressure")
        maximum = run.start.get("maximum_stable_pressure")
        lines += [
            f"study `{run.start['study_id']}`: minimum stable pressure "
            f"{'none found' if minimum is None else f'{minimum:.1f} MPa'}",
            "",
        ]
        if maximum is not None:
            lines += [f"maximum stable pressure {maximum:.1f} MPa (above it: soft shorts)", ""]
    for title, name, fig in figures:
        save(fig, directory / name)
        lines += [f"## {title}", "", f"![{title}]({name})", ""]
    directory.mkdir(parents=True, exist_ok=True)
    page = directory / "report.md"
    page.write_text("\n".join(lines))
    return page


__all__ = ["write_report"]
