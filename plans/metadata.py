"""What every run's start document must say about the cell and the experiment.

Checked before anything moves: the plans check what they are given, and a session's
RunEngine checks the merged start document (``RunEngine(md_validator=...)``), which runs
before the run opens and therefore before any motion.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

PURPOSES = ("material analysis", "failure mechanism", "commercial viability")

# field: (required, kind, unit, low, high) -- numeric bounds are exclusive of 0 below.
CELL_FIELDS: dict[str, tuple[bool, type, str, float, float]] = {
    "cell_id": (True, str, "", 0, 0),
    "chemistry": (True, str, "", 0, 0),
    "area_cm2": (True, float, "cm^2", 0.0, 100.0),
    "layers_um": (True, dict, "um", 0.0, 1e5),
    "capacity_mAh": (False, float, "mAh", 0.0, 1e5),
    "active_mass_mg": (False, float, "mg", 0.0, 1e5),
    "preset": (False, str, "", 0, 0),
    "notes": (False, str, "", 0, 0),
}


# Text that reaches terminals (`ssb runs`), file names (exports) and other tools: its
# longest length, and whether it may run over lines. Control characters never pass.
TEXT_LIMITS = {"cell_id": (64, False), "chemistry": (200, False), "preset": (64, False),
               "notes": (4000, True), "operator": (100, False)}  # fmt: skip


class MetadataError(ValueError):
    """Run metadata that cannot be accepted; the message names the field."""


def _text(name: str, value: Any) -> str:
    """Printable text of a sane length; an identifier also names no path."""
    field = name.rsplit(".", 1)[-1]
    if not isinstance(value, str) or not value.strip():
        raise MetadataError(f"{name}: expected a non-empty string, got {_short(value)}")
    longest, lines = TEXT_LIMITS.get(field, (4000, True))
    if len(value) > longest:
        raise MetadataError(f"{name}: {len(value):,} characters; at most {longest}")
    bad = next((c for c in value if not c.isprintable() and not (lines and c in "\n\t")), None)
    if bad is not None:
        raise MetadataError(f"{name}: {bad!r} at {value.index(bad) + 1} is not printable text")
    if field == "cell_id" and (any(c in value for c in '/\\:*?"<>|') or value[0] in ". "):
        raise MetadataError(
            f'{name}: {value!r} names files (exports): none of / \\ : * ? " < > |, and '
            "no . or space first"
        )
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _number(name: str, value: Any, unit: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MetadataError(f"{name}: expected a number in {unit}, got {value!r}")
    if not math.isfinite(value) or not low < value <= high:
        raise MetadataError(
            f"{name}: {value!r} {unit} is impossible (needs > {low:g}, <= {high:g})"
        )
    return float(value)


def validate_cell(cell: Any) -> dict[str, Any]:
    """A checked copy of a cell description (see ``CELL_FIELDS``)."""
    if not isinstance(cell, Mapping):
        raise MetadataError(f"cell: expected a mapping of cell fields, got {cell!r}")
    unknown = set(cell) - set(CELL_FIELDS)
    if unknown:
        raise MetadataError(
            f"cell.{sorted(unknown)[0]}: unknown field (known: {', '.join(CELL_FIELDS)})"
        )
    out: dict[str, Any] = {}
    for field, (required, kind, unit, low, high) in CELL_FIELDS.items():
        name = f"cell.{field}"
        if field not in cell:
            if required:
                raise MetadataError(f"{name}: missing")
            continue
        value = cell[field]
        if kind is str:
            out[field] = _text(name, value)
        elif kind is float:
            out[field] = _number(name, value, unit, low, high)
        else:  # layer thicknesses
            if not isinstance(value, Mapping) or not value:
                raise MetadataError(
                    f"{name}: expected layer thicknesses, e.g. "
                    '{"cathode": 60, "separator": 500, "anode": 40}'
                )
            out[field] = {
                str(k): _number(f"{name}.{k}", v, unit, low, high) for k, v in value.items()
            }
    if "capacity_mAh" not in out and "active_mass_mg" not in out:
        raise MetadataError("cell.capacity_mAh: missing (give capacity_mAh or active_mass_mg)")
    return out


def validate_run_metadata(md: Mapping[str, Any], *, partial: bool = False) -> None:
    """Refuse a start document without a valid cell, purpose and operator.

    With ``partial=True`` only the fields present are checked (a plan's own ``md``,
    before the session's defaults are merged in).
    """
    if "cell" in md or not partial:
        if "cell" not in md:
            raise MetadataError(
                "cell: missing (describe the cell: cell_id, chemistry, "
                "area_cm2, layers_um, capacity_mAh)"
            )
        cell = validate_cell(md["cell"])
        if "cell_id" in md and md["cell_id"] != cell["cell_id"]:
            raise MetadataError(
                f"cell_id: {md['cell_id']!r} differs from cell.cell_id {cell['cell_id']!r}"
            )
    if ("purpose" in md or not partial) and md.get("purpose") not in PURPOSES:
        raise MetadataError(f"purpose: {md.get('purpose')!r} is not one of {PURPOSES}")
    if "operator" in md or not partial:
        _text("operator", md.get("operator"))


def cell_metadata(cell: Mapping[str, Any]) -> dict[str, Any]:
    """Start-document fields for a cell: the checked description and a searchable id."""
    checked = validate_cell(cell)
    return {"cell": checked, "cell_id": checked["cell_id"]}
