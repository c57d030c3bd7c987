"""One time base for a run: experiment time from the run's start.

A person reads every time of a run (progress lines, reports, figures, exports) from the
run's start; the rig's own clock (seconds since the IOC was first started) and the Unix
time stay in the data. The run's start is the earlier of its first reading of the rig
(``rig_clock_time`` in ``primary``) and its first logged sample (the samples are
collected from just before that first reading). Experiment time and wall time advance at
the rig's speed (1 on real instruments, thousands in a simulated demo), measured from the
run's own readings.
"""

from __future__ import annotations


def _first(run, stream: str, field: str) -> tuple[float, float] | None:
    """(value of ``field``, Unix time) of the stream's first event, if any."""
    if stream not in run or field not in run[stream]:
        return None
    data = run[stream].read(variables=[field, "time"])  # not the frames of a detector
    if not data.sizes.get("time", 0) or field not in data:
        return None
    return float(data[field].values[0]), float(data["time"].values[0])


def clock_rate(run) -> float:
    """Experiment seconds per wall second over the run's readings (1 if unknown)."""
    if "primary" not in run or "rig_clock_time" not in run["primary"]:
        return 1.0
    data = run["primary"].read(variables=["rig_clock_time", "time"])
    if data.sizes.get("time", 0) < 2 or "rig_clock_time" not in data:
        return 1.0
    clock, unix = data["rig_clock_time"].values, data["time"].values
    if unix[-1] - unix[0] <= 0 or clock[-1] - clock[0] <= 0:
        return 1.0
    return float((clock[-1] - clock[0]) / (unix[-1] - unix[0]))


def run_origin(run) -> tuple[float, float]:
    """The rig's clock (s) and the Unix time (s) at the run's start."""
    reading = _first(run, "primary", "rig_clock_time")
    sample = _first(run, "samples", "test_time")
    if reading is None:
        return (0.0 if sample is None else sample[0]), float(run.start["time"])
    clock, unix = reading
    if sample is not None and sample[0] < clock:  # logged before the first reading
        return sample[0], unix - (clock - sample[0]) / clock_rate(run)
    return clock, unix


def hours_since_start(run, clock) -> float:
    """``clock`` (the rig's, s; a number or an array) as hours from the run's start."""
    return (clock - run_origin(run)[0]) / 3600.0


def duration(seconds: float) -> str:
    """A duration as a person reads it: 45 s, 12.5 min, 1.59 h, 3.2 d."""
    if seconds != seconds:  # NaN
        return "?"
    if abs(seconds) < 120:
        return f"{seconds:.0f} s"
    if abs(seconds) < 7200:
        return f"{seconds / 60:.1f} min"
    if abs(seconds) < 3 * 86400:
        return f"{seconds / 3600:.2f} h"
    return f"{seconds / 86400:.1f} d"
