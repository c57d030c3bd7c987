"""Figures from runs in the catalog (matplotlib ``Figure`` objects, for notebooks and for
the PNGs that ``ssb demo`` writes)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


def samples(run) -> dict[str, np.ndarray]:
    """The run's logged samples as arrays (experiment time in hours as ``hours``)."""
    data = run["samples"].read()
    out = {name: data[name].values for name in data.data_vars}
    out["hours"] = (out["test_time"] - out["test_time"][0]) / 3600.0
    return out


def cycling_figure(runs: Sequence, labels: Sequence[str], title: str = "") -> Figure:
    """Voltage, current, stack pressure and gap against experiment time, one colour per
    run: what constant pressure holds and what a fixed gap lets swing."""
    fig = Figure(figsize=(9, 9), layout="constrained")
    axes = fig.subplots(4, 1, sharex=True)
    for run, label in zip(runs, labels, strict=True):
        s = samples(run)
        axes[0].plot(s["hours"], s["voltage"], label=label)
        axes[1].plot(s["hours"], s["current"] * 1e3, label=label)
        axes[2].plot(s["hours"], s["pressure"], label=label)
        loaded = np.flatnonzero(s["current"] != 0)  # from the first electrochemical step
        reference = s["gap"][loaded[0]] if len(loaded) else s["gap"][0]
        axes[3].plot(s["hours"], s["gap"] - reference, label=label)
    for ax, name in zip(
        axes,
        [
            "voltage / V",
            "current / mA\n(+ = charge)",
            "stack pressure / MPa",
            "gap change / um\n(from first current)",
        ],
        strict=True,
    ):
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="best")
    axes[-1].set_xlabel("experiment time / h")
    if title:
        fig.suptitle(title)
    return fig


def save(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG (creating the folder); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
