"""A Neware BTS channel as the rig's cycler: the sequencer's steps run on the instrument.

Each step (from the sequencer or a client) becomes a one-step test on the channel: its
step file is written where the BTS server reads it, started, and from then on the channel
terminates it (voltage, current, time, capacity) on its own. Each scan the IOC inquires
the channel's state and downloads the points it has not stored, turning them into the
rig's samples: test time on the rig's clock (the step's start plus the channel's test
time), the rig's cycle and step numbers, cumulative capacities and energies, and the
pressure, force and gap the rig measured in the scan that brought them.

Above the boundary nothing changes: the step is validated against the rig's limits, the
IOC stops the channel if the voltage leaves them, and a step the channel refuses or ends
in protection ends with a reason starting "safety", which fails a running sequence.
"""

from __future__ import annotations

import math
from pathlib import Path

from ssb_contract.refusals import Refusal

from ..core.channel import Channel as CyclerChannel
from ..core.channel import CyclerError, Limit, SafetyLimits, Step, StepKind
from .bts import BtsClient, Channel
from .rigfile import BtsCycler
from .stepfile import step_file, step_type

DOWNLOAD = 1000  # points per download request
ENDED = {"finish", "stop", "protect"}
REFUSED = "safety: the cycler refused the step (channel busy, or the step not allowed there)"


class MeasuredCell:
    """The cell as the cycler channel last measured it."""

    swelling = 0.0

    def __init__(self) -> None:
        self.voltage = math.nan
        self.current = 0.0

    def open_circuit(self) -> None:
        self.current = 0.0


def _number(status: dict[str, str], key: str) -> float:
    try:
        return float(status.get(key, "nan"))
    except ValueError:
        return math.nan


class BtsChannel(CyclerChannel):
    """The rig's cycler, served by one channel of a Neware BTS server."""

    def __init__(self, config: BtsCycler, limits: SafetyLimits, log_period: float, size: int):
        super().__init__(MeasuredCell(), limits, log_period=log_period, buffer_size=size)
        self.config = config
        self.client = BtsClient.for_cycler(config)
        self.channel = Channel.parse(config.channel, config.host)
        self.status: dict[str, str] = {}
        # "start": to send at the next scan; "confirm": sent, not yet seen on the channel (a
        # reply lost on the way back must neither hang the step nor start it twice)
        self._pending = ""
        self._stop_owed = False  # a stop the channel has not acknowledged: sent until it has
        self._before = 0  # the channel's latest test id before our start
        self._sent_at = 0.0  # rig time at which the start was sent
        self._test: int | None = None  # the channel's test id of the running step
        self._stored = 0  # points of that test already stored
        self._step_start = 0.0  # rig time at which the step started on the channel
        self._base = (0.0, 0.0, 0.0, 0.0)  # cumulative capacities and energies at the start
        self._files = 0
        self._last_current = 0.0
        # (time, voltage, current, step) of the points stored since the rig last looked
        self.points: list[tuple[float, float, float, int]] = []

    @property
    def name(self) -> str:
        return self.client.name

    # --- commands (the sequencer's and the clients') -----------------------------------------
    def validate(self, step: Step) -> None:
        super().validate(step)
        step_type(step)

    def start(self, step: Step, *, cycle: int | None = None, index: int | None = None) -> None:
        if self.client.error and self.client.error != "not connected yet":
            raise CyclerError(f"{self.client.name}: {self.client.error}", code=Refusal.LINK)
        super().start(step, cycle=cycle, index=index)
        c = self.counters
        self._base = (c.charge_capacity, c.discharge_capacity, c.charge_energy, c.discharge_energy)
        self._pending, self._test, self._stored = "start", None, 0

    def stop(self, reason: str = "stopped") -> None:
        if self.running:
            self._owe_stop()
        super().stop(reason)

    def _owe_stop(self) -> None:
        """Stop the channel at the next scan that reaches it, however long that takes."""
        self._pending, self._stop_owed = "", True

    # --- one scan ---------------------------------------------------------------------------
    async def sync(
        self, now: float, mechanics: tuple[float, float, float], interlock: str = ""
    ) -> None:
        """Send what is pending, read the channel's state and its new points; a tripped
        press interlock stops the step, as on the simulated rig."""
        c = self.counters
        if interlock and self.running:
            self.tripped = f"press interlock ({interlock})"
            self._owe_stop()
            self._end_here(f"safety: {self.tripped}")
        if self.running:
            c.step_time += max(now - c.test_time, 0.0)
        c.test_time = now
        self._mechanics = mechanics
        try:  # a CommError leaves the step running: the channel runs on, its points wait
            if self._stop_owed:
                await self.client.stop(self.channel)
                self._stop_owed = False
            if self._pending == "start":
                await self._start(now)
            elif self._pending == "confirm":
                await self._confirm(sent=False)
            self.status = await self.client.inquire(self.channel)
            if self.running and self._test is not None:
                await self._download()
        finally:
            c.test_time = now
        self.cell.voltage = _number(self.status, "voltage")
        if self.running:
            self.cell.current = _number(self.status, "current")
            self._check_limits()
        elif c.test_time - self._last_log_time >= self.log_period - 1e-9:
            self._log(0.0, mechanics)  # the channel at rest: the rig still logs

    async def _start(self, now: float) -> None:
        folder = Path(self.config.step_dir)
        folder.mkdir(parents=True, exist_ok=True)
        self._files += 1
        name = f"ssb-step-{self.counters.cycle}-{self.counters.step}-{self._files}.xml"
        (folder / name).write_text(step_file(self.step, self.log_period, self.limits))
        remote = f"{self.config.remote_step_dir.rstrip('/')}/{name}"
        self._before, _ = await self.client.download(self.channel, 0, 0)
        self._pending, self._sent_at = "confirm", now
        if not await self.client.start(self.channel, remote, f"ssb-{self.counters.step}"):
            self._pending = ""
            self._end_here(REFUSED)
            return
        await self._confirm(sent=True)

    async def _confirm(self, sent: bool) -> None:
        """Follow the test our start began; if its reply was lost, the channel's latest
        test tells whether the start arrived (a new test) or must be sent again."""
        test, _ = await self.client.download(self.channel, 0, 0)
        if test == self._before and not sent:
            self._pending = "start"
            return
        self._pending, self._test, self._step_start = "", test, self._sent_at

    async def _download(self) -> None:
        while True:
            test, points = await self.client.download(self.channel, self._stored + 1, DOWNLOAD)
            if test != self._test:
                self._end_here("safety: the channel started another test (someone at the BTS?)")
                return
            for point in points:
                self._store(point)
            self._stored += len(points)
            if len(points) < DOWNLOAD:
                break
        work = self.status.get("workstatus", "")
        if work in ENDED and not self._pending:
            self._end_here(self._why_ended(work))

    def _store(self, point: dict[str, str]) -> None:
        """One downloaded point as a rig sample."""
        c = self.counters
        t = float(point.get("testtime", "0")) / 1e3
        volt, curr = float(point.get("volt", "nan")), float(point.get("curr", "0"))
        cap, eng = float(point.get("cap", "0")) * 1e3, float(point.get("eng", "0")) * 1e3
        charge_cap, discharge_cap, charge_eng, discharge_eng = self._base
        charging = self.step.current > 0 if self.step.kind != StepKind.REST else curr > 0
        if charging:
            c.step_charge = cap
            c.charge_capacity, c.charge_energy = charge_cap + cap, charge_eng + eng
        elif self.step.kind != StepKind.REST:
            c.step_discharge = cap
            c.discharge_capacity, c.discharge_energy = discharge_cap + cap, discharge_eng + eng
        c.test_time, c.step_time = self._step_start + t, t
        self.points.append((c.test_time, volt, curr, c.step))
        self.cell.voltage, self._last_current = volt, curr
        self._log(curr, self._mechanics)

    def _why_ended(self, work: str) -> str:
        """The channel says finished, not why: name the termination its last point meets,
        in the words the simulated channel uses."""
        if work == "protect":
            return f"safety: cycler protection (log code {self.status.get('log_code', '?')})"
        if work == "stop":
            return "stopped at the cycler"
        c, v, current = self.counters, self.cell.voltage, self._last_current
        for t in self.step.terminations:
            if t.limit == Limit.VOLTAGE:
                rising = self.step.current > 0 if t.rising is None else t.rising
                if (v >= t.value - 0.005) if rising else (v <= t.value + 0.005):
                    return f"voltage {'>=' if rising else '<='} {t.value:g} V"
            elif t.limit == Limit.CURRENT and abs(current) <= t.value * 1.02:
                return f"current <= {t.value:g} A"
            elif t.limit == Limit.TIME and c.step_time >= t.value - 1e-3:
                return f"time {t.value:g} s"
            elif (
                t.limit == Limit.CAPACITY
                and max(c.step_charge, c.step_discharge) >= t.value * 0.999
            ):
                return f"capacity {t.value:g} mAh"
        return "ended by the cycler"

    def _end_here(self, reason: str) -> None:
        """End the step as the channel did: its last point is already stored."""
        self.running, self.reason = False, reason
        self.starts_and_ends += 1
        self.end_seq = self.buffer.next_seq
        self.step = Step(StepKind.REST)
        self._test = None
        self.cell.open_circuit()

    def _check_limits(self) -> None:
        v, lim = self.cell.voltage, self.limits
        if math.isfinite(v) and not lim.v_min <= v <= lim.v_max:
            self.tripped = f"voltage {v:.3f} V outside {lim.v_min:g}..{lim.v_max:g} V"
            self._owe_stop()
            self._end_here(f"safety: {self.tripped}")
