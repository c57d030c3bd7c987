"""Export a run from the catalog: Battery Data Format (BDF) columns, or every stream as
CSV or Parquet.

BDF (Battery Data Alliance) names each column ``Quantity / unit`` in SI units: required
``Test Time / s``, ``Voltage / V``, ``Current / A``; here also ``Unix Time / s``,
``Cycle Count / 1``, ``Step Count / 1``, charge/discharge capacities (Ah) and energies
(Wh) and ``Applied Pressure / Pa``: only columns BDF defines, so that ``bdf validate``
finds nothing it ignores. The rig's own columns (``Step Time / s``, ``Force / N``,
``Stack Gap / m``) go beside it, in ``<stem>.rig.csv``, row for row. Current is positive
on charge.

The values mean what BDF says of one test: test time from the run's start,
capacities and energies counted from zero at the run's first row, cycle and step counts
of this run (rows logged before its first step are step 0, cycle 0), and ``Unix Time``
the run's start plus the test time: the wall clock of an instrument (whose experiment
time is the wall's), and for an accelerated simulation what the wall clock would have
read at speed 1, the same for every export of the run.

``csv`` and ``parquet`` write every stream, one file each, with the same columns in the
same order every time (the event's Unix time, ``seq``, then the fields by name), each
header ``field / unit`` where the field has a unit, and every time on the rig's clock
counted from the run's start.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .runs import in_instrument_order
from .timebase import run_origin

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("bdf", "csv", "parquet")

# samples field -> (BDF column, factor from the stored unit)
BDF_COLUMNS = {
    "test_time": ("Test Time / s", 1.0),
    "voltage": ("Voltage / V", 1.0),
    "current": ("Current / A", 1.0),
    "cycle": ("Cycle Count / 1", 1),
    "step": ("Step Count / 1", 1),
    "charge_capacity": ("Charging Capacity / Ah", 1e-3),  # mAh
    "discharge_capacity": ("Discharging Capacity / Ah", 1e-3),
    "charge_energy": ("Charging Energy / Wh", 1e-3),  # mWh
    "discharge_energy": ("Discharging Energy / Wh", 1e-3),
    "pressure": ("Applied Pressure / Pa", 1e6),  # MPa
}
RIG_COLUMNS = {  # beside the BDF file: what BDF has no column for
    "step_time": ("Step Time / s", 1.0),
    "force": ("Force / N", 1e3),  # kN
    "gap": ("Stack Gap / m", 1e-6),  # um
}
COUNTED_FROM_ZERO = ("charge_capacity", "discharge_capacity", "charge_energy", "discharge_energy")
EXPECTED_UNITS = {
    "test_time": "s",
    "voltage": "V",
    "current": "A",
    "charge_capacity": "mAh",
    "discharge_capacity": "mAh",
    "charge_energy": "mWh",
    "discharge_energy": "mWh",
    "pressure": "MPa",
    "force": "kN",
    "gap": "um",
}


class ExportError(ValueError):
    """A run that cannot be exported as asked; the message says why."""


def _on_the_rigs_clock(field: str, unit: str) -> bool:
    """A time on the rig's experiment clock (shifted to the run's start on export), not a
    duration (step time) nor the event's Unix time."""
    if unit != "s":
        return False
    return field in ("time", "events_time") or field.endswith(
        ("test_time", "clock_time", "start_time", "end_time", "spectrum_time",
         "time_before", "time_after")
    )  # fmt: skip


def stream_frame(run, stream: str) -> pd.DataFrame | None:
    """One stream of a run as a table (one row per event), the same every time: the
    event's Unix time, ``seq``, then the fields sorted by name; headers ``name / unit``;
    times on the rig's clock from the run's start. None if it has no events."""
    import pandas as pd

    data = run[stream].read()
    if not data.sizes.get("time", 0):
        return None
    units: dict[str, str] = {}
    for descriptor in run[stream].descriptors:
        for key, spec in descriptor.get("data_keys", {}).items():
            units.setdefault(key, spec.get("units") or "")
    t0 = run_origin(run)[0]
    columns = {"Unix Time / s": data["time"].values}
    fields = sorted(data.data_vars, key=lambda f: (f != "seq", f))
    for field in fields:
        values = data[field]
        if values.ndim != 1:  # a detector frame per event: one column per element
            for k, column in enumerate(values.values.T):
                columns[f"{field}[{k}]" + (f" / {units[field]}" if units.get(field) else "")] = (
                    column
                )
            continue
        unit = units.get(field, "")
        column = values.values
        if _on_the_rigs_clock(field, unit):
            column = column - t0
        columns[f"{field} / {unit}" if unit else field] = column
    return pd.DataFrame(columns)


def bdf_frame(run) -> pd.DataFrame:
    """The run's logged samples with BDF column names and SI units."""
    import pandas as pd

    if "samples" not in run:
        raise ExportError(
            f"run {run.start['uid'][:8]} has no 'samples' stream (only {', '.join(run)}): "
            "BDF export needs a run_protocol run"
        )
    keys = run["samples"].descriptors[0]["data_keys"]
    for field, unit in EXPECTED_UNITS.items():
        if keys[field].get("units") != unit:
            raise ExportError(f"samples.{field} is in {keys[field].get('units')!r}, not {unit}")
    data = in_instrument_order(run["samples"].read())
    values = {field: data[field].values.astype(float) for field in BDF_COLUMNS}
    t0, unix0 = run_origin(run)
    if "steps" in run and run["steps"].read().sizes.get("time", 0):
        first_step = float(run["steps"].read()["step_start_time"].values[0])
        before = values["test_time"] < first_step - 1e-9  # the previous run's numbering
        values["cycle"][before] = 0
        values["step"][before] = 0
    for field in COUNTED_FROM_ZERO:
        values[field] = values[field] - values[field][0]
    test_time = values["test_time"] - t0
    frame = {"Test Time / s": test_time}  # then the other required ones, as BDF orders them
    for field, (column, factor) in BDF_COLUMNS.items():
        if field != "test_time":
            frame[column] = values[field] * factor
        if field == "current":  # the run's start plus the test time (see the docstring)
            frame["Unix Time / s"] = unix0 + test_time
    for column in ("Cycle Count / 1", "Step Count / 1"):
        frame[column] = frame[column].astype(int)
    return pd.DataFrame(frame)


def rig_frame(run) -> pd.DataFrame:
    """The rig's own columns of the logged samples, row for row with :func:`bdf_frame`."""
    import pandas as pd

    data = in_instrument_order(run["samples"].read())
    frame = {"Test Time / s": data["test_time"].values.astype(float) - run_origin(run)[0]}
    for field, (column, factor) in RIG_COLUMNS.items():
        frame[column] = data[field].values.astype(float) * factor
    return pd.DataFrame(frame)


def export_run(run, directory: str | Path, fmt: str) -> list[Path]:
    """Write ``run`` in ``fmt`` (bdf, csv or parquet) to ``directory``; returns the files."""
    if fmt not in FORMATS:
        raise ExportError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cell = "".join(c if c.isalnum() or c in "-_" else "-" for c in run.start.get("cell_id", ""))
    stem = f"{cell + '_' if cell else ''}scan{run.start.get('scan_id', 0)}-{run.start['uid'][:8]}"
    if fmt == "bdf":
        path, beside = directory / f"{stem}.bdf.csv", directory / f"{stem}.rig.csv"
        bdf_frame(run).to_csv(path, index=False)
        rig_frame(run).to_csv(beside, index=False)
        return [path, beside]
    written = []
    for stream in sorted(run):
        frame = stream_frame(run, stream)
        if frame is None:  # declared but empty (e.g. no impedance measured)
            continue
        path = directory / f"{stem}-{stream}.{fmt}"
        if fmt == "csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
        written.append(path)
    return written
