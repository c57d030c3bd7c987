"""The records an instrument logs and clients read in bulk: their fields, in wire order,
and each field's unit. The IOC fills rows in this order; clients name columns by it.

Every row starts with its sequence number (``seq``), the record number that
:mod:`ssb_contract.paging` pages by.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class Record:
    """One kind of row: its fields in wire order with units ("1" for counts and indices),
    and those that are whole numbers."""

    units: MappingProxyType[str, str]
    integers: tuple[str, ...] = ("seq",)

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.units)

    @property
    def width(self) -> int:
        return len(self.units)


def _record(*fields: tuple[str, str], integers: tuple[str, ...] = ("seq",)) -> Record:
    names = [name for name, _ in fields]
    if names[0] != "seq" or len(set(names)) != len(names):
        raise ValueError(f"a record starts with seq and names each field once: {names}")
    return Record(MappingProxyType(dict(fields)), integers)


SAMPLE = _record(  # a cycler channel's logged sample (``Cyc:Buf:``)
    ("seq", "1"),
    ("test_time", "s"),
    ("step_time", "s"),
    ("cycle", "1"),
    ("step", "1"),
    ("voltage", "V"),
    ("current", "A"),
    ("charge_capacity", "mAh"),
    ("discharge_capacity", "mAh"),
    ("charge_energy", "mWh"),
    ("discharge_energy", "mWh"),
    ("pressure", "MPa"),
    ("force", "kN"),
    ("gap", "um"),
    integers=("seq", "cycle", "step"),
)

EVENT = _record(  # an event the IOC detected (``Evt:Buf:``); magnitude in its kind's unit
    ("seq", "1"),
    ("time", "s"),
    ("kind", "1"),
    ("magnitude", "by kind"),
    ("value", "by kind"),
    ("step", "1"),
    integers=("seq", "kind", "step"),
)

FAST = _record(  # a full-rate load-cell sample (``LC:Fast:``)
    ("seq", "1"),
    ("time", "s"),
    ("pressure", "MPa"),
    ("force", "kN"),
    ("gap", "um"),
    ("voltage", "V"),
    ("current", "A"),
)

# Event kinds by their index in an event row's ``kind``, with the unit of their magnitude.
EVENT_UNITS = MappingProxyType(
    {
        "pressure_spike": "MPa",
        "pressure_drop": "MPa",
        "soft_short": "V",
        "resistance_jump": "ohm",
    }
)
EVENT_KINDS = tuple(EVENT_UNITS)

SPECTRA_KEPT = 1000  # impedance spectra an instrument keeps for reading by number
SPECTRUM_HEAD = ("number", "pressure", "test_time", "points")  # then Hz, Re, Im (Ohm)

RESULTS_KEPT = 10_000  # completed steps' records an instrument keeps, numbered from 1

SAMPLE_FIELDS = SAMPLE.fields
EVENT_FIELDS = EVENT.fields
FAST_FIELDS = FAST.fields
