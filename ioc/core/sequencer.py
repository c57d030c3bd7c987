"""The protocol sequencer: the whole schedule runs on the instrument, as on a commercial
cycler, so that steps follow each other without a gap and without a client.

A client uploads a *table* (JSON; see :func:`load_table`): the protocol's steps as the
plan expanded them (electrochemical and impedance steps as cycler steps, pressure
set/ramp/hold steps, gap holds), with repeats kept as repeats so that a protocol of a
million steps stays small. The table is checked as a whole before it is taken. While the
sequence runs, :meth:`Sequencer.poll` (called by the rig after every simulation step)
ends the running step when its condition is met and starts the next one in the same
simulation step. Step indices and cycle numbers are those of the plan: steps numbered
from 1 in execution order, the cycle counting iterations of the outermost repeats.

Meanings kept from the plan-driven protocol: a pause opens the circuit and holds the
press; resume runs the rest of the interrupted step (time and capacity limits less what
was done, other limits as written) under the same index; a pressure hold keeps its end
time (time paused counts as holding). A safety trip or an interlock fails the sequence;
a client's ``Stop`` or an event whose action opens the circuit aborts it. However it
ends, the cell is left at open circuit and the press holding its pressure.
"""

from __future__ import annotations

import math
import secrets
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ssb_contract.records import RESULTS_KEPT
from ssb_contract.refusals import Refusal, Refused, refusal_of
from ssb_contract.states import SEQUENCE_ACTIVE, SEQUENCE_STATES
from ssb_contract.table import CyclerStep, RunCycler, SetPressure, Table, TableError, TableStep

from .channel import SAMPLE_FIELDS, CyclerError, step_of
from .press import Mode

if TYPE_CHECKING:
    from .control import RigControl as Rig

STATES = SEQUENCE_STATES
ACTIVE = SEQUENCE_ACTIVE  # a sequence that owns the channel and the press
COUNTERS = ("charge_capacity", "discharge_capacity", "charge_energy", "discharge_energy")


class SequenceError(Refused):
    """A table or a command the sequencer refuses; the message names the problem."""


# --- the table --------------------------------------------------------------------------


def _as_written(step: CyclerStep, reason: str) -> str:
    """The reason a step ended in the protocol's terms: a step resumed after a pause ran
    the rest of its time or capacity limit, and ended on the limit as written."""
    for t in step.terminations:
        if t.limit == "Time" and reason.startswith("time "):
            return f"time {t.value:g} s"
        if t.limit == "Capacity" and reason.startswith("capacity "):
            return f"capacity {t.value:g} mAh"
    return reason


def load_table(rig: Rig, source: str | bytes) -> Table:
    """The table in ``source`` (:mod:`ssb_contract.table`) checked as a whole against the
    rig's limits; refuses with the path of the first bad entry (``steps[2].step.current:
    ...``). ``hold_steps``: the simulation's clock holds at the start of each of them
    until the client moves the hold on (it reads its detectors there; see
    ``Rig:HoldAt-SP``)."""
    try:
        table = Table.from_json(source)
    except TableError as ex:
        raise SequenceError(str(ex), refusal_of(ex)) from None
    for where, node in table.walk():
        named = f"{where}{f' ({node.text})' if node.text else ''}"
        if isinstance(node, RunCycler):
            try:
                rig.cycler.validate(step_of(node.step))
            except CyclerError as ex:
                raise SequenceError(f"{named}: {ex}", refusal_of(ex)) from None
        elif isinstance(node, SetPressure):
            _within(f"{where}.pressure", node.pressure, rig.max_setpoint)
            if node.rate is not None:
                _within(f"{where}.rate", node.rate, rig.params.limits.max_ramp_rate)
    return table


def _within(where: str, value: float, high: float) -> None:
    if value > high:
        raise SequenceError(f"{where}: {value!r} outside 0..{high:g}", code=Refusal.LIMIT)


# --- running it -------------------------------------------------------------------------


@dataclass
class Running:
    """The step in progress and what the record needs of it."""

    index: int
    cycle: int
    step: TableStep
    start_time: float
    start: dict[str, float]  # cumulative counters at the start
    active: float = 0.0  # step time run before pauses (cycler steps)
    done_capacity: float = 0.0  # mAh passed before pauses
    interruptions: list[str] = field(default_factory=list)
    usual_period: float | None = None
    usual_rate: float | None = None
    phase: str = ""  # pressure steps: "settling", then "holding" for holds
    live: bool = False  # a cycler step: started on the channel and not paused

    def active_time(self, step_time: float) -> float:
        """Step time run so far, pauses excluded (``step_time``: the channel's)."""
        return self.active + (step_time if self.live else 0.0)


class Sequencer:
    """Runs a :class:`Table` on the rig; see the module's docstring."""

    def __init__(self, rig: Rig):
        self.rig = rig
        self.table: Table | None = None
        self.source = ""  # the table's JSON as it was put
        self.state = "Idle"
        self.reason = ""  # why it ended, paused or was held
        self.running: Running | None = None
        self.results: deque[dict[str, Any]] = deque(maxlen=RESULTS_KEPT)
        self.completed = 0  # steps completed since the table was started
        self.changes = 0  # counts state and step changes, for publishing
        self._steps: Iterator[tuple[int, int, TableStep]] | None = None
        self.key = 0  # the owner's key while a table is loaded (0: nobody's)
        self.client = ""  # who uploaded the table (user@host) and when
        self.since = 0.0

    # --- who the sequence belongs to ----------------------------------------------------
    @property
    def owned(self) -> bool:
        return self.state in ACTIVE and bool(self.key)

    def owner_text(self) -> str:
        """Who the active sequence belongs to, in words."""
        owner = self.table.owner if self.table else {}
        what = owner.get("plan") or "a client"
        seq = str(owner.get("sequence_id", ""))[:8]
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return f"{what} (sequence {seq}) of {self.client or 'a client'} since {when}"

    def check_key(self, key: int, what: str) -> None:
        """A command on an owned sequence must carry its owner's key (``Seq:OwnerKey-RB``);
        1 is enough for a sequence nobody owns. Refuses with who owns it and since when."""
        if self.owned and int(key) != self.key:
            raise SequenceError(
                f"{what} refused: the sequence belongs to {self.owner_text()}; its owner "
                "puts its key (Seq:OwnerKey-RB) to take over, a person forces an end with "
                "Seq:ForceAbort-Cmd",
                code=Refusal.OWNED,
            )

    # --- commands -----------------------------------------------------------------------
    def load(self, source: str | bytes, client: str = "") -> Table:
        """Take a new table (refused while one is running, paused or held); its owner (a
        table with ``owner.sequence_id``) gets a new key."""
        if self.state in ACTIVE:
            raise SequenceError(
                f"table refused: a sequence is {self.state.lower()} on this rig, "
                f"{self.owner_text()}; wait for its end, or attach to it",
                code=Refusal.OWNED,
            )
        table = load_table(self.rig, source)
        self.source = source.decode() if isinstance(source, bytes) else source
        self.key = secrets.randbelow(2**31 - 2) + 2 if table.owner.get("sequence_id") else 0
        self.client, self.since = client, time.time()
        self.table, self.state, self.reason = table, "Idle", ""
        self.running, self._steps = None, None
        self._held_pressure = None  # a past sequence's pressure is not this one's
        self.completed = 0
        self.results.clear()
        self._changed()
        return table

    def start(self, first: int = 1) -> None:
        """Run the table from step ``first`` (1 = the beginning)."""
        if self.table is None:
            raise SequenceError(
                "no table loaded: put one to Seq:Table-SP first", code=Refusal.STATE
            )
        if self.state in ("Running", "Paused"):
            raise SequenceError(f"sequence already {self.state.lower()}", code=Refusal.STATE)
        if not 1 <= first <= self.table.total:
            raise SequenceError(
                f"start at step {first}: the table has {self.table.total}", code=Refusal.LIMIT
            )
        self._check_free()
        self._steps = self.table.expand(first)
        self.state, self.reason = "Running", ""
        self.completed = 0
        self.results.clear()
        self._next()

    def _check_free(self) -> None:
        rig = self.rig
        if rig.interlock:
            raise SequenceError(
                f"interlock tripped ({rig.interlock}); reset it first", code=Refusal.INTERLOCK
            )
        if rig.cycler.tripped:
            raise SequenceError(
                f"cycler safety trip latched ({rig.cycler.tripped}); reset it",
                code=Refusal.INTERLOCK,
            )
        if rig.cycler.running:
            raise SequenceError(
                "a cycler step is running: stop it before starting a sequence", code=Refusal.STATE
            )

    def pause(self, why: str = "paused by a client") -> None:
        """Open the circuit and hold the sequence; the press holds its pressure."""
        if self.state != "Running":
            raise SequenceError(
                f"cannot pause: sequence is {self.state.lower()}", code=Refusal.STATE
            )
        run = self.running
        if run is not None and run.step.do == "cycler" and self.rig.cycler.running:
            c = self.rig.cycler.counters
            run.active, run.live = run.active + c.step_time, False
            run.done_capacity += max(c.step_charge, c.step_discharge)
            run.interruptions.append(
                f"paused after {run.active:.0f} s and {run.done_capacity:.4g} mAh "
                f"(t = {c.test_time:.1f} s); cell at open circuit"
            )
            self.state = "Paused"  # before stop(): poll() must not take it as the end
            self.rig.cycler.stop("paused")
        elif run is not None:
            run.interruptions.append(f"paused at t = {self.rig.time:.1f} s")
        self.state, self.reason = "Paused", why
        self._changed()

    def suspend(self, why: str) -> bool:
        """Pause a running sequence because the rig cannot keep its conditions (an
        instrument that stopped answering): the cell goes to open circuit, the press is
        to be locked by the caller. :meth:`resume` re-presses to the pressure it
        regulated and runs the rest of the step. True if it was running (and so may go
        on by itself once the rig can keep its conditions again); a sequence a client
        paused stays paused, to re-press when it is resumed."""
        if self.state not in ("Running", "Paused"):
            return False
        running, press = self.state == "Running", self.rig.press
        if press.mode == Mode.PRESSURE:
            self._held_pressure = press.target
        if running:
            self.pause(why)
        if self.running is not None:
            self.running.interruptions.append(f"at t = {self.rig.time:.1f} s: {why}")
        self.reason = why if running else f"{self.reason}; then {why}"
        self._changed()
        return running

    def resume(self) -> None:
        """Run the rest of the interrupted step, then go on. A sequence held by a restart
        first brings the press back to the pressure it was regulating."""
        if self.state not in ("Paused", "Held"):
            raise SequenceError(
                f"cannot resume: sequence is {self.state.lower()}", code=Refusal.STATE
            )
        self._check_free()
        rig, run = self.rig, self.running
        held = self._held_pressure  # kept by a restart or a lost link: re-press first
        if held is not None:
            if rig.press.mode != Mode.PRESSURE:
                rig.set_mode("pressure")
            rig.set_pressure(held)
        self.state, self.reason, self._held_pressure = "Running", "", None
        if run is None:
            self._next()
            return
        run.interruptions.append(f"resumed at t = {rig.time:.1f} s")
        if run.step.do == "cycler":
            if held is not None:  # the rest of the step once the pressure is back
                run.phase = "repress"
            else:
                self._start_cycler(run, remaining=True)
        self._changed()

    def abort(self, why: str = "aborted by a client") -> None:
        """End the sequence now: open circuit, the press holds its pressure."""
        if self.state not in ("Running", "Paused", "Held"):
            raise SequenceError(
                f"cannot abort: sequence is {self.state.lower()}", code=Refusal.STATE
            )
        self._finish("Aborted", why)

    # --- the step machine ---------------------------------------------------------------
    def poll(self) -> None:
        """End the running step if its condition is met and start the next, at once."""
        for _ in range(1000):  # instantaneous steps (gap holds, settled set-points) chain
            if self.state != "Running" or self.running is None or self.rig.held:
                return
            reason = self._ended(self.running)
            if not reason:
                return
            self._complete(reason)
            if self.state == "Running":
                self._next()

    def max_step(self) -> float:
        """Longest simulation step (s) that does not run past a pressure hold's end."""
        run = self.running
        if self.state == "Running" and run is not None and run.phase == "holding":
            step = run.step
            if step.do == "pressure":
                return max(run.start_time + step.duration - self.rig.time, 1e-3)
        return math.inf

    def _ended(self, run: Running) -> str:
        rig, step = self.rig, run.step
        if rig.interlock:
            self._finish("Failed", f"interlock: {rig.interlock}")
            return ""
        if step.do == "cycler":
            cyc = rig.cycler
            if run.phase == "repress":
                if rig.press.settled:
                    run.phase = ""
                    run.interruptions.append(f"pressure back at t = {rig.time:.1f} s")
                    self._start_cycler(run, remaining=True)
                return ""
            if cyc.running:
                return ""
            if cyc.reason.startswith("safety"):
                self._finish("Failed", f"step {run.index} ended by a {cyc.reason}")
                return ""
            if cyc.reason.startswith("stopped") or cyc.reason == "manual rest":
                self._finish("Aborted", f"step {run.index}: {cyc.reason}")
                return ""
            return _as_written(step.step, cyc.reason)
        if step.do == "gap":
            return "gap locked"
        press = rig.press
        if press.mode != Mode.PRESSURE:
            self._finish("Aborted", f"step {run.index}: press mode changed to {press.mode.name}")
            return ""
        if run.phase == "settling":
            if not press.settled:
                return ""
            if step.action != "hold":
                return "pressure settled"
            run.phase = "holding"
        if rig.time >= run.start_time + step.duration - 1e-9:
            return f"held {step.duration:g} s"
        return ""

    def _next(self) -> None:
        table, steps = self.table, self._steps
        if table is None or steps is None:  # nothing loaded, or the sequence has ended
            return
        try:
            index, cycle, step = next(steps)
        except StopIteration:
            self._finish("Done", f"all {table.total} steps done")
            return
        rig = self.rig
        start = {name: getattr(rig.cycler.counters, name) for name in COUNTERS}
        run = Running(index, cycle, step, rig.time, start)
        self.running = run
        if step.period is not None:
            run.usual_period = rig.cycler.log_period
            rig.cycler.log_period = step.period
        if table.fast(index):
            rig.set_fast_sampling("on", duration=0.0)
        if step.do != "cycler":  # samples logged meanwhile carry this step's numbers
            rig.cycler.counters.step, rig.cycler.counters.cycle = index, cycle
        try:
            if step.do == "cycler":
                self._start_cycler(run)
            elif step.do == "gap":
                rig.set_mode("gap")
            else:
                if rig.press.mode != Mode.PRESSURE:
                    rig.set_mode("pressure")
                if step.action == "ramp" and step.rate is not None:  # a ramp has its rate
                    run.usual_rate = rig.press.ramp_rate
                    rig.set_ramp_rate(step.rate)
                rig.set_pressure(step.pressure)
                run.phase = "settling"
        except (CyclerError, ValueError) as ex:
            self._finish("Failed", f"step {index} ({step.text}) refused: {ex}")
            return
        if table.holds(index) and not rig.keeps_own_time:
            rig.hold_clock(rig.time)  # a client reads its detectors here, then moves on
        self._changed()

    def _start_cycler(self, run: Running, remaining: bool = False) -> None:
        if run.step.do != "cycler":
            raise SequenceError(f"step {run.index} is no cycler step", code=Refusal.INVALID)
        step = run.step.step
        if remaining:
            step = step.remaining(run.active, run.done_capacity)
        self.rig.cycler.start(step_of(step), cycle=run.cycle, index=run.index)
        run.live = True

    def _complete(self, reason: str) -> None:
        run, rig = self.running, self.rig
        if run is None:  # no step is running: nothing to complete
            return
        self._restore(run)
        c = rig.cycler.counters
        duration = rig.time - run.start_time
        if run.step.do == "cycler":
            duration = run.active_time(c.step_time)
        self.completed += 1
        self.results.append(
            {
                "n": self.completed,
                "index": run.index,
                "cycle": run.cycle,
                "text": run.step.text,
                "type": run.step.step.kind.title() if run.step.do == "cycler" else "Pressure",
                "reason": reason,
                "start_time": run.start_time,
                "end_time": rig.time,
                "duration": duration,
                **{f"start_{k}": v for k, v in run.start.items()},
                **{f"end_{k}": getattr(c, k) for k in COUNTERS},
                "interruptions": "; ".join(run.interruptions),
            }
        )
        self.running = None

    def _restore(self, run: Running) -> None:
        rig = self.rig
        if run.usual_period is not None:
            rig.cycler.log_period = run.usual_period
        if run.usual_rate is not None:
            rig.set_ramp_rate(run.usual_rate)
        if self.table is not None and self.table.fast(run.index):
            rig.set_fast_sampling("off")

    def _finish(self, state: str, reason: str) -> None:
        """End the sequence; a step cut short gets its record, with the reason."""
        rig = self.rig
        if rig.cycler.running:
            rig.cycler.stop(reason)
        if state != "Done":
            rig.stop()  # the press holds what it measures (nothing in other modes)
        if self.running is not None:
            self._complete(reason)
        self.state, self.reason, self._steps = state, reason, None
        self._changed()

    def _changed(self) -> None:
        self.changes += 1

    # --- surviving a restart ----------------------------------------------------------
    _held_pressure: float | None = None

    def snapshot(self) -> dict[str, Any] | None:
        """What a restarted IOC needs to hold the sequence where it was (JSON-able)."""
        if self.table is None:
            return None
        run = self.running
        return {
            "table": self.source,
            "state": self.state,
            "reason": self.reason,
            "step": run.index if run else None,
            "active": run.active_time(self.rig.cycler.counters.step_time) if run else 0.0,
            "done_capacity": run.done_capacity if run else 0.0,
            "start_time": run.start_time if run else 0.0,
            "start": run.start if run else {},
            "interruptions": run.interruptions if run else [],
            "pressure": self.rig.press.target if self.rig.press.mode == Mode.PRESSURE else None,
            "results": list(self.results)[-1000:],
            "completed": self.completed,
            "key": self.key,
            "client": self.client,
            "since": self.since,
        }

    def restore(self, saved: dict[str, Any]) -> str:
        """After a restart: a sequence that was running or paused is *held* (the press is
        Off and the cell at open circuit; resume re-presses and runs the rest of the
        step). Says what it found."""
        table = self.load(saved["table"])
        key = saved.get("key", self.key)
        self.key = key if isinstance(key, int) and not isinstance(key, bool) else self.key
        self.client = str(saved.get("client", ""))[:200]
        self.since = float(saved.get("since", self.since) or self.since)
        self.completed = int(saved.get("completed", 0))
        self.results.extend(saved.get("results", []))
        state, step = saved.get("state"), saved.get("step")
        if state not in ("Running", "Paused", "Held") or not step:
            self.state = state if isinstance(state, str) and state in STATES else "Idle"
            self.reason = str(saved.get("reason", ""))
            return f"sequence {self.state.lower()}"
        step, start_time = int(step), float(saved.get("start_time", 0.0))
        active, done_capacity = saved.get("active", 0.0), saved.get("done_capacity", 0.0)
        interruptions = list(saved.get("interruptions", []))
        newest = self.rig.cycler.buffer.last()  # the state is saved every second or so:
        if newest is not None:  # the samples say if a later step had begun
            logged = dict(zip(SAMPLE_FIELDS, newest, strict=True))
            if step < int(logged["step"]) <= table.total:
                step, active, done_capacity = int(logged["step"]), logged["step_time"], 0.0
                start_time, interruptions = logged["test_time"] - logged["step_time"], []
        self._steps = table.expand(step)
        index, cycle, node = next(self._steps)
        run = Running(index, cycle, node, start_time, dict(saved.get("start", {})))
        run.active, run.done_capacity = float(active), float(done_capacity)
        run.interruptions = [*interruptions, "IOC restarted"]
        if node.do == "pressure":
            run.phase = "settling"
        self.running = run
        self._held_pressure = saved.get("pressure")
        self.state = "Held"
        press = (  # instruments are taken over as found (a controller regulates on)
            "the press as the IOC found it" if self.rig.keeps_own_time else "press Off"
        )
        again = f" to {self._held_pressure:g} MPa" if self._held_pressure else ""
        self.reason = (
            f"IOC restarted during step {index}: {press}, cell at open circuit; resume "
            f"to re-press{again} and go on"
        )
        self._changed()
        return f"sequence held at step {index} of {table.total}"
