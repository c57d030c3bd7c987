"""One time base for a run: experiment time from the run's first reading.

A person reads every time of a run (progress lines, reports, figures, exports) from the
run's start; the rig's own clock (seconds since the IOC was first started) and the Unix
time stay in the data. The run's start is its first reading of the rig
(``rig_clock_time`` in ``primary``), else its first logged sample.
"""

from __future__ import annotations


def run_origin(run) -> tuple[float, float]:
    """The rig's clock (s) and the Unix time (s) at the run's start."""
    if "primary" in run:
        primary = run.primary.read()
        if primary.sizes.get("time", 0) and "rig_clock_time" in primary:
            return float(primary["rig_clock_time"].values[0]), float(primary["time"].values[0])
    if "samples" in run:
        samples = run["samples"].read()
        if samples.sizes.get("time", 0):
            return float(samples["test_time"].values[0]), float(run.start["time"])
    return 0.0, float(run.start["time"])


def hours_since_start(run, clock) -> float:
    """``clock`` (the rig's, s; a number or an array) as hours from the run's start."""
    return (clock - run_origin(run)[0]) / 3600.0
