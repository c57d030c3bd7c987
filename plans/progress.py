"""A status line for a protocol run, fed by the run's documents (a RunEngine callback).

While a step runs: cycle, step, experiment time, voltage, current, pressure and gap from
the newest logged sample (redrawn in place on a terminal). When a step ends: one line
saying what it was, why it ended, how long it took and what it passed. A line for each
detected event, with the reaction taken.
"""

from __future__ import annotations

import sys
from typing import TextIO

from bluesky.utils import ProgressBarManager

from ssb_analysis.timebase import duration


class ProtocolProgress:
    """``RE.subscribe(ProtocolProgress())`` shows how a :func:`run_protocol` run goes."""

    def __init__(self, stream: TextIO = sys.stderr):
        self.stream = stream
        self.tty = stream.isatty()
        self.streams: dict[str, str] = {}  # descriptor uid -> stream name
        self.planned = 0
        self.live = False
        self.t0: float | None = None  # the rig's clock at the run's first reading

    def __call__(self, name: str, doc: dict) -> None:
        if name == "start":
            self.planned = doc.get("steps_planned", 0)
            self.t0 = None
        elif name == "descriptor":
            self.streams[doc["uid"]] = doc.get("name", "")
        elif name == "event" and self.streams.get(doc["descriptor"]) == "primary":
            if self.t0 is None:  # the run's first reading: its experiment time is 0
                self.t0 = doc["data"].get("rig_clock_time")
        elif name == "event_page" and self.streams.get(doc["descriptor"]) == "samples":
            first = min(doc["data"]["test_time"], default=None)
            if first is not None and (self.t0 is None or first < self.t0):
                self.t0 = first  # logged before the run's first reading: the start
            self._sample({key: values[-1] for key, values in doc["data"].items()})
        elif name == "event" and self.streams.get(doc["descriptor"]) == "steps":
            self._step_done(doc["data"])
        elif name == "event" and self.streams.get(doc["descriptor"]) == "events":
            self._event(doc["data"])
        elif name == "stop":
            self._end_line()
            status = doc.get("exit_status", "")
            reason = f": {doc['reason']}" if doc.get("reason") else ""
            self.stream.write(f"run ended ({status}{reason})\n")
            self.stream.flush()

    def hours(self, test_time: float) -> float:
        """Experiment time from the run's first reading, in hours."""
        return (test_time - (self.t0 if self.t0 is not None else test_time)) / 3600

    def _sample(self, s: dict) -> None:
        line = (
            f"cycle {int(s['cycle'])}  step {int(s['step'])}/{self.planned}  "
            f"t={self.hours(s['test_time']):7.2f} h  V={s['voltage']:.3f} V  "
            f"I={s['current'] * 1e3:+.3f} mA  P={s['pressure']:6.2f} MPa  "
            f"gap={s['gap']:7.2f} um"
        )
        if self.tty:
            self.stream.write("\r" + line)
            self.live = True
            self.stream.flush()

    def _step_done(self, d: dict) -> None:
        self._end_line()
        passed = d["step_charge"] - d["step_discharge"]
        pressure = d["step_pressure_mean"]
        mean = "" if pressure != pressure else f", mean pressure {pressure:.2f} MPa"  # not NaN
        self.stream.write(
            f"step {d['step_step']}/{self.planned} (cycle {d['step_cycle']}) "
            f"{d['step_text']}: {d['step_reason']} after {duration(d['step_duration'])}, "
            f"{passed:+.3f} mAh{mean}\n"
        )
        self.stream.flush()

    def _event(self, d: dict) -> None:
        self._end_line()
        self.stream.write(
            f"EVENT {d['events_kind']} of {d['events_magnitude']:.4g} {d['events_unit']} at "
            f"t={self.hours(d['events_time']):.2f} h (step {d['events_step']}, "
            f"{d['events_source']}): reaction {d['events_reaction']}\n"
        )
        self.stream.flush()

    def _end_line(self) -> None:
        if self.live:
            self.stream.write("\n")
            self.live = False


class ProgressBars(ProgressBarManager):
    """bluesky's progress bars (``RE.waiting_hook``), one per thing waited for: a plan
    that polls (waits with a timeout on the same status again and again, as
    :func:`~ssb_plans.cycling.run_protocol` does) keeps its one bar, and nothing warns."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._waiting: set = set()

    def __call__(self, status_objs_or_none) -> None:
        if status_objs_or_none is None:  # what was waited for is done
            if self.pbar is not None:
                self.pbar.clear()
            self.pbar, self._waiting = None, set()
            return
        waiting = set(status_objs_or_none)
        if self.pbar is not None and waiting == self._waiting:
            return  # the same wait again (a poll): the same bar
        if self.pbar is not None:
            self.pbar.clear()
        self._waiting = waiting
        self.pbar = self.pbar_factory(status_objs_or_none)
