"""What a run asked of its instruments, and what it got.

Two things can fall short while a protocol runs, and neither may pass in silence:

* **Readings of the schedule.** A run reads its detectors at the start of chosen steps
  and every ``detector_period`` s of experiment time. The plan looks at the rig every
  ``poll`` s of wall time; at a high speed factor that is minutes of experiment time. On
  a simulated rig the plan therefore holds the rig's clock where the next reading is due
  (``Rig:HoldAt-SP``) and the sequencer holds it at the start of each chosen step, so
  every reading happens at its time and an exposure costs the experiment what it asks.
  Real instruments keep their own time: a reading whose time passed by a whole period
  before the plan looked is *missed*, said at once, and counted.
* **Rows of the instrument's buffers.** Rows a reader did not fetch before the
  instrument's ring overwrote them are *lost* (a simulated rig slows its clock rather
  than let that happen; an instrument cannot).

Both land in the run: the ``schedule`` stream (readings asked, taken, missed, per run)
and the ``data_loss`` stream (one event per run of lost rows: stream, sequence numbers,
the times either side), and the run's stop document says so in ``reason`` (a run that
lost data closes as ``fail``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.utils import MsgGenerator, RunEngineControlException

from .results import ResultStream

logger = logging.getLogger(__name__)

NO_TIME_HOLD = 1e12  # a hold at the end of time: the put completes at the sequencer's holds


@dataclass
class Schedule:
    """The detector readings a run asked for and took."""

    period: float | None  # s of experiment time between readings, or None
    holds: bool = False  # the rig's clock is held where readings are due (a simulation)
    due: float = math.inf  # experiment time of the next periodic reading
    asked: int = 0
    taken: int = 0
    missed: int = 0
    notes: list[str] = field(default_factory=list)  # what was missed, when

    def begin(self, now: float) -> None:
        self.due = now + self.period if self.period else math.inf

    def hold_target(self) -> float:
        """Where the plan holds the clock next: the next reading, else only the
        sequencer's holds wake it."""
        return self.due if math.isfinite(self.due) else NO_TIME_HOLD

    def periodic_due(self, now: float) -> bool:
        return self.period is not None and now >= self.due - 1e-6

    def read_periodic(self, now: float, what: str) -> None:
        """A periodic reading is being taken at ``now``; readings whose time passed
        meanwhile (a whole period or more) are missed."""
        period = self.period
        if period is None:  # no periodic readings: nothing is due
            return
        passed = math.floor((now - self.due) / period + 1e-9)
        if passed > 0:
            self._miss(passed, f"{what} due every {self.period:g} s from t = {self.due:.1f} s "
                       f"to {now:.1f} s")  # fmt: skip
        self.asked += 1
        self.taken += 1
        self.due += (passed + 1) * period

    def read_at_step(self, now: float) -> None:
        """A reading at a step's start; a periodic one due now is taken by it too."""
        self.asked += 1
        self.taken += 1
        if self.period is not None and self.periodic_due(now):
            self.asked += 1
            self.taken += 1
            self.due += self.period

    def steps_passed_unread(self, steps: Sequence[int], what: str) -> None:
        """Steps that started and ended between two looks of the plan."""
        if steps:
            self._miss(len(steps), f"{what} at the start of step(s) "
                       f"{', '.join(map(str, steps))}")  # fmt: skip

    def _miss(self, n: int, what: str) -> None:
        self.asked += n
        self.missed += n
        note = f"{n} reading(s) of {what} missed: the rig's clock ran past them between two looks"
        self.notes.append(note)
        logger.warning("%s (a simulated rig holds its clock for them; this one cannot)", note)

    def shortfall(self) -> str:
        if not self.missed:
            return ""
        return (
            f"detector schedule: {self.taken} of {self.asked} readings taken, {self.missed} missed"
        )


SCHEDULE_UNITS = {"asked": "", "taken": "", "missed": "", "period": "s", "clock_held": ""}
LOSS_UNITS = {
    "stream": "",
    "rows": "",
    "first_seq": "",
    "last_seq": "",
    "time_before": "s",
    "time_after": "s",
}


@dataclass
class Shortfalls:
    """The run's account of what fell short; the run closes with it."""

    schedule: Schedule | None = None
    lost: list[tuple[str, dict]] = field(default_factory=list)  # (stream, gap)

    def take_losses(self, flyers) -> None:
        """Gaps the flyers found since the last call."""
        for flyer in flyers:
            gaps = getattr(flyer, "gaps", [])
            self.lost.extend((getattr(flyer, "stream", flyer.name), gap) for gap in gaps)
            gaps.clear()

    def record(self) -> MsgGenerator[None]:
        """The ``schedule`` and ``data_loss`` streams (each only if it has something)."""
        s = self.schedule
        if s is not None and s.asked:
            yield from ResultStream("schedule", SCHEDULE_UNITS).emit(
                asked=s.asked, taken=s.taken, missed=s.missed,
                period=s.period or math.nan, clock_held=int(s.holds),
            )  # fmt: skip
        loss = ResultStream("data_loss", LOSS_UNITS)
        for stream, gap in self.lost:
            yield from loss.emit(stream=stream, **gap)

    def reason(self) -> str:
        parts = []
        by_stream: dict[str, list[dict]] = {}
        for stream, gap in self.lost:
            by_stream.setdefault(stream, []).append(gap)
        for stream, gaps in by_stream.items():
            rows = sum(g["rows"] for g in gaps)
            spans = ", ".join(f"{g['first_seq']}..{g['last_seq']}" for g in gaps[:3])
            more = f" and {len(gaps) - 3} more" if len(gaps) > 3 else ""
            parts.append(f"{stream}: {rows} rows lost on the instrument (seq {spans}{more})")
        if self.schedule is not None and self.schedule.shortfall():
            parts.append(self.schedule.shortfall())
        return "; ".join(parts)


def honest_run(plan, md: dict, shortfalls: Shortfalls) -> MsgGenerator[str]:
    """``bluesky.preprocessors.run_wrapper``, closing the run with what fell short: its
    streams, and a stop document whose ``reason`` says it (``fail`` if data was lost)."""
    uid = yield from bps.open_run(md)

    def except_plan(ex):
        yield from shortfalls.record()
        lost = shortfalls.reason()
        if isinstance(ex, RunEngineControlException):
            yield from bps.close_run(exit_status=ex.exit_status, reason=lost or None)
        else:
            why = "; ".join(filter(None, [str(ex), lost]))
            yield from bps.close_run(exit_status="fail", reason=why)

    def else_plan():
        yield from shortfalls.record()
        lost = shortfalls.reason()
        status = "fail" if shortfalls.lost else None
        yield from bps.close_run(exit_status=status, reason=lost or None)

    yield from bpp.contingency_wrapper(plan, except_plan=except_plan, else_plan=else_plan)
    return uid
