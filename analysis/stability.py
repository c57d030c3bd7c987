"""Is a cell stable at a pressure? Judged from what a level of cycling stored, so that a
study can be evaluated again from the catalog alone (with other thresholds if wanted).

Per level: discharge capacity fade per cycle, coulombic efficiency of the last cycle,
and growth of the interfacial resistance from the first to the last spectrum. An unstable
level is put down to a **soft short** when charge goes missing (coulombic efficiency
fails) while the interface kept its contact (R_int did not grow): what Li metal does when
pressed too hard. Otherwise it is **contact loss** (voids, fade, growing R_int): what any
cell does when pressed too little. The pressures between the two are the operating window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .impedance import interfacial_resistance


@dataclass(frozen=True)
class Criteria:
    """Thresholds of stable cycling (defaults: lab practice for formation-level tests)."""

    max_fade_per_cycle: float = 0.005  # 0.5 % of discharge capacity lost per cycle
    min_coulombic_efficiency: float = 0.98
    max_resistance_growth: float = 0.10  # R_int may grow 10 % over the level


@dataclass(frozen=True)
class Verdict:
    pressure: float  # MPa, mean over the level's cycling
    fade_per_cycle: float
    coulombic_efficiency: float  # of the last cycle
    resistance_growth: float
    stable: bool
    why: str  # the first criterion failed, or "stable"
    mechanism: str = "stable"  # or "soft_short" (too much pressure) or "contact_loss"


def judge(
    steps: Sequence[dict], spectra: Sequence[dict], criteria: Criteria = Criteria()
) -> Verdict:
    """A level's verdict from its step rows (``cycle``, ``charge``, ``discharge``,
    ``pressure_mean``, ``step_type``) and its impedance pages."""
    cycles = sorted({int(r["cycle"]) for r in steps} - {0})
    if len(cycles) < 2:
        raise ValueError("a level needs two or more cycles to judge its fade")
    charge = np.array([sum(r["charge"] for r in steps if r["cycle"] == c) for c in cycles])
    discharge = np.array([sum(r["discharge"] for r in steps if r["cycle"] == c) for c in cycles])
    fade = 1 - (discharge[-1] / discharge[0]) ** (1 / (len(cycles) - 1))
    ce = float(discharge[-1] / charge[-1])  # the last cycle: the first starts mid-charge
    growth = 0.0
    if len(spectra) >= 2:
        first = interfacial_resistance(spectra[0]["frequency"], spectra[0]["z_real"])
        last = interfacial_resistance(spectra[-1]["frequency"], spectra[-1]["z_real"])
        growth = last / first - 1
    pressure = float(
        np.nanmean([r["pressure_mean"] for r in steps if r["step_type"] not in ("Pressure",)])
    )
    checks = [
        (fade <= criteria.max_fade_per_cycle, f"capacity fades {fade:.2%} per cycle"),
        (ce >= criteria.min_coulombic_efficiency, f"coulombic efficiency {ce:.2%}"),
        (growth <= criteria.max_resistance_growth, f"R_int grew {growth:.1%}"),
    ]
    failed = [why for ok, why in checks if not ok]
    mechanism = "stable"
    if failed:
        shorted = (
            ce < criteria.min_coulombic_efficiency and growth <= criteria.max_resistance_growth
        )
        mechanism = "soft_short" if shorted else "contact_loss"
    why = (failed or ["stable"])[0]
    if mechanism == "soft_short":
        why = f"soft short suspected: {failed[1] if fade > criteria.max_fade_per_cycle else why}"
    return Verdict(pressure, float(fade), ce, float(growth), not failed, why, mechanism)


def level_data(run) -> tuple[list[dict], list[dict]]:
    """A stored level's step rows and spectra, in the form :func:`judge` takes."""
    st = run["steps"].read()
    rows = [
        {name[len("step_") :]: st[name].values[k].item() for name in st.data_vars}
        for k in range(len(st["time"]))
    ]
    spectra = []
    if "impedance" in run:
        eis = run["impedance"].read()
        if "time" in eis and len(eis["time"]):  # a stream whose run died before a spectrum
            for k in np.unique(eis["spectrum"].values):
                mask = eis["spectrum"].values == k
                spectra.append(
                    {
                        key: eis[key].values[mask]
                        for key in ("frequency", "z_real", "z_imag", "spectrum_pressure")
                    }
                )
    return rows, spectra


@dataclass(frozen=True)
class Window:
    """Pressures at which the cell cycled stably, from what a study measured."""

    minimum: float | None  # lowest stable level of the window (None: no stable level)
    maximum: float | None  # highest stable level (None: no stable level)
    upper_bound: bool  # a higher level shorted: ``maximum`` is a measured upper bound
    lower_bound: bool  # a lower level lost contact: ``minimum`` is a measured lower bound


def operating_window(verdicts: Sequence[Verdict]) -> Window:
    """The unbroken run of stable levels down from the highest stable one; levels above
    it failed (Li metal: shorted, or on its way to), a level below it lost contact."""
    ordered = sorted(verdicts, key=lambda v: -v.pressure)
    top = next((k for k, v in enumerate(ordered) if v.stable), None)
    if top is None:
        return Window(None, None, False, False)
    stable = []
    for v in ordered[top:]:
        if not v.stable:
            break
        stable.append(v.pressure)
    return Window(min(stable), max(stable), top > 0, top + len(stable) < len(ordered))


def minimum_stable_pressure(verdicts: Sequence[Verdict]) -> float | None:
    """The lowest pressure of the operating window (:func:`operating_window`)."""
    return operating_window(verdicts).minimum


def evaluate_study(
    catalog, study_id: str, criteria: Criteria = Criteria()
) -> tuple[list[Verdict], Window]:
    """Judge every level of a study again from the catalog; returns the verdicts and the
    operating window (``window.minimum``: the minimum stable pressure). A level whose
    acquisition was continued by ``ssb attach`` is judged once, on its whole chain."""
    from tiled.queries import Key

    from .runs import whole

    levels = catalog.search(Key("study_id") == study_id).search(Key("study_role") == "level")
    firsts = [levels[uid] for uid in levels if "continues" not in levels[uid].start]
    verdicts = [judge(*level_data(whole(catalog, run)), criteria) for run in firsts]
    return verdicts, operating_window(verdicts)
