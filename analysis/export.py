"""Export a run from the catalog: Battery Data Format (BDF) columns, or every stream as
CSV or Parquet.

BDF (Battery Data Alliance) names each column ``Quantity / unit`` in SI units: required
``Test Time / s``, ``Voltage / V``, ``Current / A``; here also ``Unix Time / s``,
``Cycle Count / 1``, ``Step Count / 1``, charge/discharge capacities (Ah) and energies
(Wh), ``Applied Pressure / Pa``, and the rig's own ``Force / N`` and ``Stack Gap / m``.
Current is positive on charge.

The values mean what BDF says of one test: test time from the run's start,
capacities and energies counted from zero at the run's first row, cycle and step counts
of this run (rows logged before its first step are step 0, cycle 0), and ``Unix Time``
the wall time of each row: experiment time from the run's start at the rig's speed (1 on
real instruments; an accelerated simulation's rows are that much closer in wall time).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .runs import in_instrument_order
from .timebase import clock_rate, run_origin

FORMATS = ("bdf", "csv", "parquet")

# samples field -> (BDF column, factor from the stored unit)
BDF_COLUMNS = {
    "test_time": ("Test Time / s", 1.0),
    "voltage": ("Voltage / V", 1.0),
    "current": ("Current / A", 1.0),
    "cycle": ("Cycle Count / 1", 1),
    "step": ("Step Count / 1", 1),
    "step_time": ("Step Time / s", 1.0),
    "charge_capacity": ("Charging Capacity / Ah", 1e-3),  # mAh
    "discharge_capacity": ("Discharging Capacity / Ah", 1e-3),
    "charge_energy": ("Charging Energy / Wh", 1e-3),  # mWh
    "discharge_energy": ("Discharging Energy / Wh", 1e-3),
    "pressure": ("Applied Pressure / Pa", 1e6),  # MPa
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


def stream_frame(run, stream: str) -> pd.DataFrame | None:
    """One stream of a run as a table (one row per event); None if it has no events."""
    data = run[stream].read()
    if not data.sizes.get("time", 0):
        return None
    return data.to_dataframe().reset_index()


def bdf_frame(run) -> pd.DataFrame:
    """The run's logged samples with BDF column names and SI units."""
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
    rate = clock_rate(run)
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
        if field == "current":  # wall time: experiment time at the rig's speed
            frame["Unix Time / s"] = unix0 + test_time / rate
    for column in ("Cycle Count / 1", "Step Count / 1"):
        frame[column] = frame[column].astype(int)
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
        path = directory / f"{stem}.bdf.csv"
        bdf_frame(run).to_csv(path, index=False)
        return [path]
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
