"""Cell files: every parameter of the simulated rig, with units, bounds and validation.

A cell file is TOML. Each numeric value is a string with a unit (``area = "0.785 cm^2"``)
or a bare number for dimensionless values. The rig sections (press, load cell, controller,
limits, simulation) have shipped defaults in ``presets/rig-defaults.toml``; the cell
sections (cell, electrochemistry, mechanics, contact) must be given in full. Anything
malformed, unknown, in the wrong unit or physically impossible is refused with a
:class:`CellFileError` that names the key.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from ssb_contract.records import SAMPLE

PRESETS = resources.files("ssb_ioc").joinpath("presets")  # the shipped cell files


CHEMISTRIES = ("nmc-si", "nmc-li", "nmc-liin")


class CellFileError(ValueError):
    """A cell file that cannot be used; the message names the offending key."""


MAX_FILE_BYTES = 1_000_000  # a cell file is a page of TOML
SAMPLE_BYTES = SAMPLE.width * 8  # one logged cycler sample held in the IOC
MAX_SAMPLES = 1_000_000  # samples a cycler channel may hold (cycler.buffer_size)


def _q(
    unit: str,
    lo: float = -math.inf,
    hi: float = math.inf,
    *,
    lo_open: bool = False,
    why: str = "",
):
    """Declare a quantity field: canonical unit, the possible (or plausible) range and,
    where the range is a plausibility bound rather than physics, the reason for it."""
    return field(metadata={"unit": unit, "lo": lo, "hi": hi, "lo_open": lo_open, "why": why})


@dataclass(frozen=True)
class CellSection:
    name: str = field(metadata={"kind": "str"})
    chemistry: str = field(metadata={"kind": "choice", "choices": CHEMISTRIES})
    area: float = _q(
        "cm**2", 0.01, 100, why="lab cells are 1 mm^2 to 100 cm^2 (a 10 mm pellet: 0.785)"
    )
    capacity: float = _q("mAh", 0, 1e5, lo_open=True)
    initial_soc: float = _q("", 0, 1)


@dataclass(frozen=True)
class ElectrochemistrySection:
    r_bulk: float = _q("ohm", 0, 1e6)
    r_int_ref: float = _q("ohm", 0, 1e6)
    p_ref: float = _q("MPa", 0, 1000, lo_open=True)
    r_pol: float = _q("ohm", 0, 1e6)
    tau_pol: float = _q("s", 0, 1e6, lo_open=True)
    c_int: float = _q("uF", 0, 1e6, lo_open=True)


@dataclass(frozen=True)
class MechanicsSection:
    stack_thickness: float = _q("um", 0, 1e5, lo_open=True)
    stiffness: float = _q("MPa/um", 0, 1e4, lo_open=True)
    anode_expansion: float = _q("um*cm**2/mAh", 0, 1e3)


@dataclass(frozen=True)
class ContactSection:
    void_rate: float = _q("cm**2/mAh", 0, 10)
    void_pressure_scale: float = _q("MPa", 0, 1000, lo_open=True)
    creep_threshold: float = _q("MPa", 0, 1000)
    creep_rate: float = _q("1/s", 0, 10)
    creep_exponent: float = _q("", 0.1, 20)
    critical_pressure: float = _q("MPa", 0, 1000)
    penetration_pressure: float = _q("MPa", 0, 1e5, lo_open=True)
    short_growth: float = _q("S/s", 0, 1)
    pressure_floor: float = _q("MPa", 0, 100, lo_open=True)


@dataclass(frozen=True)
class PressSection:
    frame_stiffness: float = _q("kN/mm", 0, 1e5, lo_open=True)
    max_speed: float = _q("um/s", 0, 1e5, lo_open=True)
    valve_time_constant: float = _q("s", 0, 10, lo_open=True)
    max_force: float = _q("kN", 0, 1e4, lo_open=True)
    retract_position: float = _q("um", -1e5, 0)


@dataclass(frozen=True)
class LoadCellSection:
    capacity: float = _q("kN", 0, 1e4, lo_open=True)
    sensitivity: float = _q("mV/V", 0, 100, lo_open=True)
    excitation: float = _q("V", 0, 100, lo_open=True)
    adc_range: float = _q("", 1, 10)
    noise: float = _q("N", 0, 1e4)
    zero_offset: float = _q("N", -1e5, 1e5)
    drift_rate: float = _q("N/s", -10, 10)
    sample_rate: float = _q(
        "Hz", 0, 1e4, lo_open=True, why="the simulation steps the loop at this rate"
    )


@dataclass(frozen=True)
class ControllerSection:
    kp: float = _q("um/s/MPa", 0, 1e5)
    ki: float = _q("1/s", 0, 1e4)
    kd: float = _q("s", 0, 100)
    drvh: float = _q("um/s", -1e5, 1e5)
    drvl: float = _q("um/s", -1e5, 1e5)
    period: float = _q("s", 0, 1, lo_open=True)


@dataclass(frozen=True)
class LimitsSection:
    max_setpoint: float = _q("MPa", 0, 1e4, lo_open=True)
    over_pressure: float = _q("MPa", 0, 1e4, lo_open=True)
    settle_tolerance: float = _q("MPa", 0, 100, lo_open=True)
    settle_time: float = _q("s", 0, 1e4)
    ramp_rate: float = _q("MPa/s", 0, 1e4)
    max_ramp_rate: float = _q("MPa/s", 0, 1e4, lo_open=True)


@dataclass(frozen=True)
class CyclerSection:
    v_min: float = _q("V", 0, 10)
    v_max: float = _q("V", 0, 10)
    i_max: float = _q("A", 0, 10, lo_open=True)
    log_period: float = _q("s", 0, 1e6, lo_open=True)
    log_dv: float = _q("V", 0, 10)
    buffer_size: float = _q(
        "",
        100,
        MAX_SAMPLES,
        why=f"each sample holds {SAMPLE_BYTES} bytes in the IOC: 1e6 samples = 112 MB",
    )


@dataclass(frozen=True)
class SimulationSection:
    cell_step: float = _q("s", 0.01, 60, why="finer steps cost time, not accuracy")
    chunk: float = _q("s", 0.001, 60, why="finer checks cost time, not safety")


@dataclass(frozen=True)
class RigParams:
    """All parameters of one simulated rig: a cell in a press with a load cell."""

    cell: CellSection
    electrochemistry: ElectrochemistrySection
    mechanics: MechanicsSection
    contact: ContactSection
    press: PressSection
    load_cell: LoadCellSection
    controller: ControllerSection
    limits: LimitsSection
    cycler: CyclerSection
    simulation: SimulationSection
    source: str = "<defaults>"

    def replace(self, **sections: dict[str, float]) -> RigParams:
        """Copy with some values changed, e.g. ``replace(contact={"critical_pressure": 8})``
        (canonical units, validated like a file)."""
        raw = {s: dataclasses.asdict(getattr(self, s)) for s in SECTIONS}
        for section, values in sections.items():
            if section not in raw:
                raise CellFileError(f"unknown section [{section}]")
            raw[section].update(values)
        return _build(raw, self.source, canonical=True)


SECTIONS: dict[str, type] = {
    "cell": CellSection,
    "electrochemistry": ElectrochemistrySection,
    "mechanics": MechanicsSection,
    "contact": ContactSection,
    "press": PressSection,
    "load_cell": LoadCellSection,
    "controller": ControllerSection,
    "limits": LimitsSection,
    "cycler": CyclerSection,
    "simulation": SimulationSection,
}
RIG_SECTIONS = ("press", "load_cell", "controller", "limits", "cycler", "simulation")


@cache
def _units():
    import pint

    return pint.UnitRegistry(cache_folder=":auto:")


def _to_canonical(key: str, value: Any, unit: str) -> float:
    """Parse ``value`` (a number or a "number unit" string) into ``unit``."""
    if isinstance(value, bool):
        raise CellFileError(f"{key}: expected a quantity in {unit or 'no unit'}, got {value!r}")
    if isinstance(value, int | float):
        if unit:
            raise CellFileError(f'{key}: a unit is required, e.g. "{value} {unit}"')
        return float(value)
    if not isinstance(value, str):
        raise CellFileError(f"{key}: expected a quantity string, got {type(value).__name__}")
    ureg = _units()
    try:
        quantity = ureg.Quantity(value)
        magnitude = float(quantity.to(unit or "dimensionless").magnitude)
    except Exception as ex:  # pint raises several unrelated types
        want = unit or "a dimensionless number"
        raise CellFileError(f"{key}: cannot read {value!r} as {want} ({ex})") from None
    return magnitude


def _check_range(key: str, x: float, meta: Mapping[str, Any]) -> None:
    lo, hi, lo_open = meta["lo"], meta["hi"], meta["lo_open"]
    if not math.isfinite(x):
        raise CellFileError(f"{key}: must be finite, got {x}")
    if x < lo or (lo_open and x == lo) or x > hi:
        low = f"> {lo:g}" if lo_open else f">= {lo:g}"
        why = f": {meta['why']}" if meta.get("why") else ""
        unit = f" {meta['unit']}" if meta["unit"] else ""
        raise CellFileError(f"{key}: {x:g}{unit} is impossible (needs {low}, <= {hi:g}){why}")


def _build_section(name: str, cls: type, raw: dict, canonical: bool) -> Any:
    if not isinstance(raw, dict):
        raise CellFileError(f"[{name}] must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise CellFileError(f"{name}.{key}: unknown key (known: {', '.join(fields)})")
    values: dict[str, Any] = {}
    for key, f in fields.items():
        full = f"{name}.{key}"
        if key not in raw:
            raise CellFileError(f"{full}: missing")
        value, meta = raw[key], f.metadata
        kind = meta.get("kind")
        if kind in ("str", "choice"):
            if not isinstance(value, str) or not value:
                raise CellFileError(f"{full}: expected a non-empty string")
            if kind == "choice" and value not in meta["choices"]:
                raise CellFileError(f"{full}: {value!r} is not one of {meta['choices']}")
            values[key] = value
            continue
        x = float(value) if canonical else _to_canonical(full, value, meta["unit"])
        _check_range(full, x, meta)
        values[key] = x
    return cls(**values)


def _build(raw: dict, source: str, canonical: bool = False) -> RigParams:
    for name in raw:
        if name not in SECTIONS:
            raise CellFileError(f"[{name}]: unknown section (known: {', '.join(SECTIONS)})")
    sections = {
        name: _build_section(name, cls, raw.get(name, {}), canonical)
        for name, cls in SECTIONS.items()
    }
    params = RigParams(**sections, source=source)
    _check_consistency(params)
    return params


def _check_consistency(p: RigParams) -> None:
    """Cross-field rules that a single range cannot express."""
    c, lim, lc = p.controller, p.limits, p.load_cell
    if c.drvl >= c.drvh:
        raise CellFileError("controller.drvl: must be below controller.drvh")
    if max(abs(c.drvl), abs(c.drvh)) > p.press.max_speed:
        raise CellFileError("controller.drvh: output limits exceed press.max_speed")
    if lim.max_setpoint >= lim.over_pressure:
        raise CellFileError("limits.max_setpoint: must be below limits.over_pressure")
    capacity_mpa = lc.capacity * 1e3 / (p.cell.area * 100)
    if lim.max_setpoint >= capacity_mpa:
        raise CellFileError(
            f"limits.max_setpoint: {lim.max_setpoint:g} MPa exceeds the load cell capacity "
            f"({capacity_mpa:.1f} MPa on {p.cell.area:g} cm^2)"
        )
    if c.period < 1.0 / lc.sample_rate - 1e-12:
        raise CellFileError(
            "controller.period: the loop cannot run faster than the load cell "
            f"samples ({lc.sample_rate:g} Hz)"
        )
    area_m2 = p.cell.area * 1e-4
    if lc.noise / area_m2 / 1e6 >= lim.settle_tolerance:
        raise CellFileError(
            f"cell.area: {p.cell.area:g} cm^2 turns the load cell's {lc.noise:g} N noise "
            f"into {lc.noise / area_m2 / 1e6:.3g} MPa, above the settle tolerance "
            f"({lim.settle_tolerance:g} MPa): the press could never settle"
        )
    if abs(lc.zero_offset) / area_m2 / 1e6 >= lim.over_pressure:
        raise CellFileError(
            f"cell.area: {p.cell.area:g} cm^2 turns the load cell's {lc.zero_offset:g} N "
            f"zero offset into {abs(lc.zero_offset) / area_m2 / 1e6:.3g} MPa, above the "
            f"over-pressure interlock ({lim.over_pressure:g} MPa)"
        )
    if not float(p.cycler.buffer_size).is_integer():
        raise CellFileError("cycler.buffer_size: must be a whole number of samples")
    if p.simulation.chunk > p.simulation.cell_step:
        raise CellFileError("simulation.chunk: must not exceed simulation.cell_step")
    if p.cycler.v_min >= p.cycler.v_max:
        raise CellFileError("cycler.v_min: must be below cycler.v_max")
    if lim.ramp_rate > lim.max_ramp_rate:
        raise CellFileError("limits.ramp_rate: exceeds limits.max_ramp_rate")


def _read_text(path: Path) -> str:
    """A cell file's text; binary, non-UTF-8 or oversized files get one line that says so."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise CellFileError(f"{path}: {path.stat().st_size:,} bytes is not a cell file")
        return path.read_bytes().decode("utf-8")
    except OSError as ex:
        raise CellFileError(f"cannot read cell file {path}: {ex.strerror}") from None
    except UnicodeDecodeError as ex:
        raise CellFileError(
            f"{path}: not a text cell file (byte {ex.start} is not UTF-8; save it as UTF-8 TOML)"
        ) from None


def _read_toml(text: str, source: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as ex:
        raise CellFileError(f"{source}: not valid TOML ({ex})") from None


def _defaults() -> dict:
    text = PRESETS.joinpath("rig-defaults.toml").read_text()
    return _read_toml(text, "rig-defaults.toml")


def preset_names() -> list[str]:
    """Names of the shipped cell presets (``ssb-ioc --cell NAME``)."""
    folder = PRESETS
    return sorted(
        p.name.removesuffix(".toml")
        for p in folder.iterdir()
        if p.name.endswith(".toml") and p.name != "rig-defaults.toml"
    )


def load_cell_file(name_or_path: str | Path) -> RigParams:
    """Load a preset by name (``si-nmc``) or a TOML cell file by path, validated."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        text = _read_text(path)
        source = str(path)
    elif str(name_or_path) in preset_names():
        text = PRESETS.joinpath(f"{name_or_path}.toml").read_text()
        source = str(name_or_path)
    else:
        raise CellFileError(
            f"no cell file or preset named {name_or_path!r} (presets: {', '.join(preset_names())})"
        )
    user = _read_toml(text, source)
    merged = _defaults()
    for section, values in user.items():
        if section in RIG_SECTIONS and isinstance(values, dict):
            merged[section] = {**merged[section], **values}
        else:
            merged[section] = values
    return _build(merged, source)
