"""Export a run from the catalog: Battery Data Format (BDF) columns, or every stream as
CSV or Parquet.

BDF (Battery Data Alliance) names each column ``Quantity / unit`` in SI units: required
``Test Time / s``, ``Voltage / V``, ``Current / A``; here also ``Cycle Count / 1``,
``Step Count / 1``, charge/discharge capacities (Ah) and energies (Wh), ``Applied
Pressure / Pa``, and the rig's own ``Force / N`` and ``Stack Gap / um``. Current is
positive on charge.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

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
    "gap": ("Stack Gap / um", 1.0),
}
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
    data = run["samples"].read()
    return pd.DataFrame(
        {column: data[field].values * factor for field, (column, factor) in BDF_COLUMNS.items()}
    )


def export_run(run, directory: str | Path, fmt: str) -> list[Path]:
    """Write ``run`` in ``fmt`` (bdf, csv or parquet) to ``directory``; returns the files."""
    if fmt not in FORMATS:
        raise ExportError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"scan{run.start.get('scan_id', 0)}-{run.start['uid'][:8]}"
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
