"""Study plans that answer a question in one run, with the answer stored in the run.

* :func:`pressure_impedance_scan` (material analysis): impedance at each pressure, the
  interfacial resistance, and its power law in pressure (stream ``resistance``, one event
  per pressure; stream ``fit``: exponent, its standard error, R at 100 MPa).
* :func:`rate_capability`: discharge capacity at each C-rate at constant pressure
  (stream ``rate_capability``).
* :func:`minimum_pressure_study` (commercial viability): cycling at pressures from high
  to low, one run per level linked by ``study_id``, each judged stable or not (stream
  ``stability``), and a summary run with the minimum stable pressure.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import bluesky.preprocessors as bpp
import numpy as np
from bluesky.protocols import Readable
from bluesky.utils import MsgGenerator

from ssb_analysis.impedance import fit_power_law, interfacial_resistance
from ssb_analysis.stability import Criteria, Verdict, judge, operating_window
from ssb_devices import Rig

from .cycling import Acquisition, Outcome, prepare, protocol_run
from .pressure import start_metadata
from .protocol import Electro, Impedance, PressureStep, Protocol, Quantity, Repeat, Step, Until
from .results import ResultStream


def _volts(value: float) -> Until:
    return Until(Quantity("voltage", value))


def _text(steps) -> str:
    """Protocol text for typed steps (parsed again by ``prepare``, so that a refusal
    names a line of it)."""
    return str(Protocol(tuple(steps)))


def pressure_impedance_scan(
    rig: Rig,
    pressures: Sequence[float],
    *,
    f_start: float = 1e5,
    f_end: float = 1.0,
    settle: float = 60.0,
    detectors: Sequence[Readable] = (),
    md: dict[str, Any] | None = None,
) -> MsgGenerator[str]:
    """At each pressure (MPa): settle for ``settle`` s of experiment time, measure
    impedance from ``f_start`` to ``f_end`` Hz, and take the interfacial resistance;
    then fit ``R_int ~ P^n``. One run; returns its uid."""
    pressures = [float(p) for p in pressures]
    if len(pressures) < 3:
        raise ValueError(f"pressures: give three or more for the fit, got {pressures}")
    steps = []
    for p in pressures:
        steps += [PressureStep("hold", p, duration=settle), Impedance(f_start, f_end)]
    protocol, planned = prepare(rig, _text(steps), None)
    args = {"pressures": pressures, "f_start": f_start, "f_end": f_end, "settle": settle}

    def evaluate(outcome):
        yield from evaluate_impedance_scan(args, outcome)

    return (
        yield from protocol_run(
            rig,
            "pressure_impedance_scan",
            args,
            protocol,
            planned,
            md,
            Acquisition(detectors),
            evaluate=evaluate,
        )
    )


def rate_capability(
    rig: Rig,
    c_rates: Sequence[float],
    pressure: float,
    *,
    charge_rate: float = 0.2,
    v_max: float = 4.1,
    v_min: float = 3.0,
    rest: float = 600.0,
    detectors: Sequence[Readable] = (),
    md: dict[str, Any] | None = None,
) -> MsgGenerator[str]:
    """At constant ``pressure`` MPa: for each C-rate, a full charge (``charge_rate`` to
    ``v_max``, hold to C/20), a rest, a discharge at that rate to ``v_min`` and a rest.
    Stream ``rate_capability``: C-rate, discharge capacity and its share of the first
    rate's."""
    c_rates = [float(c) for c in c_rates]
    if not c_rates or any(not c > 0 for c in c_rates):
        raise ValueError(f"c_rates: give positive C-rates, got {c_rates}")
    steps: list[Step] = [PressureStep("set", pressure)]
    for c in c_rates:
        steps += [
            Electro("charge", Quantity("c_rate", charge_rate), until=(_volts(v_max),)),
            Electro("hold", Quantity("voltage", v_max), until=(Until(Quantity("c_rate", 0.05)),)),
            Electro("rest", duration=rest),
            Electro("discharge", Quantity("c_rate", c), until=(_volts(v_min),)),
            Electro("rest", duration=rest),
        ]
    protocol, planned = prepare(rig, _text(steps), None)
    args = {"c_rates": c_rates, "pressure": pressure, "charge_rate": charge_rate}

    def evaluate(outcome):
        yield from evaluate_rate_capability(args, outcome)

    return (
        yield from protocol_run(
            rig,
            "rate_capability",
            args,
            protocol,
            planned,
            md,
            Acquisition(detectors),
            evaluate=evaluate,
        )
    )


def level_protocol(
    pressure: float,
    cycles: int,
    c_rate: float,
    v_max: float,
    v_min: float,
    impedance: bool = True,
) -> str:
    """The default level: impedance, ``cycles`` full cycles at ``c_rate``, impedance
    (without the impedance for a cycler that has no impedance analyser)."""
    rate, eis = Quantity("c_rate", c_rate), Impedance(1e5, 1.0)
    cycle = (
        Electro("charge", rate, until=(_volts(v_max),)),
        Electro("discharge", rate, until=(_volts(v_min),)),
    )
    sweeps = [eis] if impedance else []
    return _text([PressureStep("set", pressure), *sweeps, Repeat(cycles, cycle), *sweeps])


def minimum_pressure_study(
    rig: Rig,
    pressures: Sequence[float],
    *,
    upper: Sequence[float] = (),
    criteria: Criteria | None = None,
    cycles: int = 2,
    c_rate: float = 0.5,
    v_max: float = 4.1,
    v_min: float = 3.0,
    map_window: bool = False,
    impedance: bool = True,
    md: dict[str, Any] | None = None,
) -> MsgGenerator[str]:
    """Cycle at each pressure from high to low (one run per level, linked by a
    ``study_id``), judge each level (:mod:`ssb_analysis.stability`) and stop at the first
    unstable one unless ``map_window``. Then, for Li metal, probe the ``upper`` levels
    from low to high until one soft-shorts: a short does not heal, so the upper bound is
    searched upwards, on the cell that found the lower one. Stores the verdicts and the
    operating window in a summary run (``minimum_stable_pressure``, and
    ``maximum_stable_pressure`` once a level shorted). Returns the study id;
    ``evaluate_study(catalog, id)`` judges it again from the catalog alone. With
    ``impedance=False`` (a cycler without an impedance analyser) the levels are judged
    on capacity fade and coulombic efficiency alone."""
    criteria = criteria or Criteria()
    levels = sorted((float(p) for p in pressures), reverse=True)
    probes = sorted(float(p) for p in upper)
    if len(levels) < 2:
        raise ValueError(f"pressures: give two or more levels, got {list(pressures)}")
    if probes and probes[0] <= levels[0]:
        raise ValueError(
            f"upper: levels above the highest of pressures ({levels[0]:g} MPa), got {probes}"
        )
    if cycles < 2:
        raise ValueError(f"cycles: two or more per level to see a fade, got {cycles}")
    planned = {
        p: prepare(rig, level_protocol(p, cycles, c_rate, v_max, v_min, impedance), None)
        for p in [*levels, *probes]
    }
    study_id = str(uuid.uuid4())
    args = {
        "pressures": levels,
        "upper": probes,
        "cycles": cycles,
        "c_rate": c_rate,
        "impedance": impedance,
        "criteria": asdict(criteria),
    }
    base = {**(md or {}), "study_id": study_id, "study": "minimum_pressure"}
    verdicts: list[Verdict] = []

    def level(p: float):
        protocol, steps = planned[p]

        def evaluate(outcome):
            verdicts.append((yield from evaluate_level(args, outcome)))

        level_md = {**base, "study_role": "level", "level_pressure": p}
        args_p = {**args, "pressure": p}
        yield from protocol_run(
            rig, "minimum_pressure_level", args_p, protocol, steps, level_md, evaluate=evaluate
        )
        return verdicts[-1]

    for p in levels:
        verdict = yield from level(p)
        if not verdict.stable and not map_window:
            break
    if verdicts[0].stable:  # the upper bound is looked for above a stable start only
        for p in probes:
            verdict = yield from level(p)
            if verdict.mechanism == "soft_short":
                break
    window = operating_window(verdicts)
    summary_md = start_metadata(rig, "minimum_pressure_study", args, base)
    summary_md |= {
        "study_role": "summary",
        "minimum_stable_pressure": window.minimum,
        "maximum_stable_pressure": window.maximum if window.upper_bound else None,
    }

    @bpp.run_decorator(md=summary_md)
    def summary():
        stream = ResultStream("levels", VERDICT_UNITS)
        for verdict in verdicts:
            yield from stream.emit(**_verdict_values(verdict))

    yield from summary()
    return study_id


VERDICT_UNITS = {
    "pressure": "MPa",
    "fade_per_cycle": "",
    "coulombic_efficiency": "",
    "resistance_growth": "",
    "stable": "",
    "mechanism": "",
}


def _verdict_values(v: Verdict) -> dict[str, float | str]:
    return {
        "pressure": v.pressure,
        "fade_per_cycle": v.fade_per_cycle,
        "coulombic_efficiency": v.coulombic_efficiency,
        "resistance_growth": v.resistance_growth,
        "stable": int(v.stable),
        "mechanism": v.mechanism,
    }


# --- what each study concludes from its outcome (also for a run continued by attach) ------


def evaluate_impedance_scan(args: dict[str, Any], outcome: Outcome) -> MsgGenerator[None]:
    """Streams ``resistance`` (R_int at each pressure) and ``fit`` (its power law)."""
    measured, resistance = [], []
    rows = ResultStream("resistance", {"pressure": "MPa", "r_int": "ohm"})
    for spectrum in outcome.spectra:
        measured.append(float(np.mean(spectrum["spectrum_pressure"])))
        resistance.append(
            interfacial_resistance(
                np.asarray(spectrum["frequency"]), np.asarray(spectrum["z_real"])
            )
        )
        yield from rows.emit(pressure=measured[-1], r_int=resistance[-1])
    law = fit_power_law(measured, resistance)
    fit = ResultStream("fit", {"exponent": "", "exponent_err": "", "r_100": "ohm"})
    yield from fit.emit(exponent=law.exponent, exponent_err=law.exponent_err, r_100=law.r_ref)


def evaluate_rate_capability(args: dict[str, Any], outcome: Outcome) -> MsgGenerator[None]:
    """Stream ``rate_capability``: discharge capacity at each C-rate."""
    discharges = [row for row in outcome.steps if str(row["text"]).startswith("Discharge")]
    first = discharges[0]["discharge"]
    units = {"c_rate": "1/h", "capacity": "mAh", "retention": "", "pressure": "MPa"}
    result = ResultStream("rate_capability", units)
    for c, row in zip(args["c_rates"], discharges, strict=True):
        yield from result.emit(
            c_rate=c,
            capacity=row["discharge"],
            retention=row["discharge"] / first,
            pressure=row["pressure_mean"],
        )


def evaluate_level(args: dict[str, Any], outcome: Outcome) -> MsgGenerator[Verdict]:
    """Stream ``stability``: the level's verdict (returned too)."""
    verdict = judge(outcome.steps, outcome.spectra, Criteria(**args["criteria"]))
    yield from ResultStream("stability", VERDICT_UNITS).emit(**_verdict_values(verdict))
    return verdict


EVALUATORS = {  # plan_name -> what its run concludes, from the plan's arguments
    "pressure_impedance_scan": evaluate_impedance_scan,
    "rate_capability": evaluate_rate_capability,
    "minimum_pressure_level": evaluate_level,
}
