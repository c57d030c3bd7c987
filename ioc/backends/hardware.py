"""A rig of real instruments: the rig's control and safety over drivers.

:class:`HardwareRig` is the rig's control (:class:`~ssb_ioc.core.control.RigControl`:
validation of commands, the setpoint ramp, the settle logic (done = the IOC says
settled), interlocks, event detection, the sequencer and the logged samples) over the
instruments of a rig file, as the simulation is the same control over physics. One scan
(:meth:`HardwareRig.exchange`) reads every instrument, runs the control, and writes the
outputs:

- ``topology = "controller"``: the press controller closes the pressure loop; the IOC
  writes its (ramped) setpoint and mode and reads pressure and position;
- ``topology = "ioc"``: the IOC closes the loop (:class:`~ssb_ioc.core.epid.Epid`) on the
  load-cell amplifier's force and writes the drive's valve command.

A missed reply is counted (``Rig:MissedReplies-RB``) and the readbacks of that instrument
keep their last value with an INVALID/COMM alarm at once; logged samples carry NaN for
what was not measured; nothing else changes, because a busy host stutters. A press or
load-cell link silent for the rig file's ``link_timeout`` (5 s) puts the rig in the safe
state the topology allows: the piston locked (Gap mode; the controller's position hold,
or a zero valve command), never released, because a cell that loses its stack pressure
is lost; the cell at open circuit; a running protocol paused. When the link answers
again the protocol re-presses and goes on by itself. A lost link is not latched: the
interlock is for faults of the rig.
"""

from __future__ import annotations

import asyncio
import math
import time

from ssb_contract.refusals import Refusal

from ..core.channel import Channel, CyclerError, MeasuredCell, SafetyLimits
from ..core.control import RigControl
from ..core.errors import RigError
from ..core.loadcell import ForceReading
from ..core.press import Mode, PressControl
from ..params import RigParams
from .channel import BtsChannel
from .link import CommError
from .modbus import ModbusInstrument
from .rigfile import RigFile

NAN = math.nan
# The readings that come from each instrument (names of ssb_ioc.core.ports.READINGS). The
# modes, setpoints and the step's state are the IOC's own; the rest is measured, or made of
# what was measured (the settle state, the loop's error and output, the capacities).
PRESS_READINGS = ("press.pressure", "press.force", "press.position", "press.gap",
                  "press.settled")  # fmt: skip
LOAD_CELL_READINGS = ("load_cell.force", "load_cell.signal", "load_cell.overload")
LOOP_READINGS = ("press.error", "press.output")  # the IOC's loop on the amplifier's force
CYCLER_READINGS = ("cell.voltage", "cell.current", "channel.capacities")
MECHANICAL = ("press", "load_cell")  # the press's safety depends on these links
# What the drive's mode register means in each topology (our Mode -> register value).
CONTROLLER_MODES = {Mode.OFF: 0, Mode.PRESSURE: 1, Mode.GAP: 2}
DRIVE_MODES = {Mode.OFF: 0, Mode.PRESSURE: 1, Mode.GAP: 1}  # 0 retract, 1 follow command


class NoCell:
    """Stands in for the cell when no cycler channel is attached: nothing measured."""

    voltage = NAN
    current = 0.0
    swelling = 0.0

    def open_circuit(self) -> None:
        pass


class AbsentCycler(Channel):
    """The cycler channel of a rig without one: refuses steps, still logs the mechanics."""

    def validate(self, step) -> None:
        raise CyclerError(
            "this rig has no cycler channel (rig file: [cycler] driver = 'none')",
            code=Refusal.UNSUPPORTED,
        )

    def account(self, dt, current, pressure, force, gap, interlock="") -> None:
        self.counters.test_time += dt
        self._mechanics = (pressure, force, gap)
        if self.counters.test_time - self._last_log_time >= self.log_period - 1e-9:
            self._log(0.0, self._mechanics)


class DrivenPress(PressControl):
    """The press as the IOC sees it through a driver: the press's control state (mode,
    target, ramped setpoint, settling) with readbacks from the instrument."""

    def __init__(self, params: RigParams, load_cell: ForceReading):
        super().__init__(params)
        self.load_cell = load_cell
        self.clock = 0.0
        self.position = NAN
        self.measured_gap = NAN

    @property
    def time(self) -> float:
        return self.clock

    @property
    def true_force(self) -> float:  # what is measured is all there is
        return self.load_cell.force

    @property
    def platen_position(self) -> float:
        return self.position

    @property
    def gap(self) -> float:
        if math.isfinite(self.measured_gap):
            return self.measured_gap
        return self.params.mechanics.stack_thickness - self.position

    def follow(self, dt: float) -> None:
        """Move the working setpoint along its ramp and update the settle state."""
        if self.mode == Mode.PRESSURE:
            self._advance_setpoint(dt)
        self._update_settle()


class HardwareRig(RigControl):
    """The rig's control over the instruments of a rig file."""

    keeps_own_time = True  # experiment time is the wall's or an instrument's clock
    press: DrivenPress
    cycler: AbsentCycler | BtsChannel

    def __init__(self, params: RigParams, rig: RigFile):
        load_cell = ForceReading(params.load_cell.capacity)
        load_cell.force = NAN
        press = DrivenPress(params, load_cell)
        press.set_ramp_rate(params.limits.ramp_rate)
        press.pressure = NAN
        cyc = params.cycler
        limits = SafetyLimits(cyc.v_min, cyc.v_max, cyc.i_max)
        cycler: AbsentCycler | BtsChannel
        if rig.cycler is None:
            cell: MeasuredCell = NoCell()
            cycler = AbsentCycler(
                cell, limits, log_period=cyc.log_period, buffer_size=int(cyc.buffer_size)
            )
        else:
            cycler = BtsChannel(rig.cycler, limits, cyc.log_period, int(cyc.buffer_size))
            cell = cycler.cell
        super().__init__(params, press, load_cell, cycler, cell)
        self.rigfile = rig
        self.topology = rig.press.topology
        self.instruments = {d.role: ModbusInstrument(d) for d in rig.devices}
        self.comm = {role: inst.error for role, inst in self.instruments.items()}
        if isinstance(self.cycler, BtsChannel):
            self.comm["cycler"] = self.cycler.client.error
        if rig.press.loop:
            self.set_gains(**rig.press.loop)
        self._written: dict[str, float] = {}  # what each output register holds now
        self._trend: list[tuple[float, float, float, int]] = []  # points voltage events see
        self._adopted = False  # the press's state as found has been taken over
        self._wall0 = time.monotonic()
        self._clock_offset = 0.0
        self._clock_wall = 0.0  # wall time of the last clock reading
        self._clock_rate = 1.0  # experiment s per wall s, as last measured
        self._carried = False  # the last value was carried on, not read
        self._last_wall = time.monotonic()
        self.missed_replies = 0  # scans in which an instrument did not answer, in all
        self._silent: dict[str, tuple[float, int]] = {}  # role -> (silent since, missed)
        self._heard: set[str] = set()  # links that have answered since the start
        self._link_lost = ""  # why the rig is in its lost-link safe state ("" when not)
        self._resume_on_link = False  # a protocol it paused goes on when the link is back

    # --- what the PV layer asks of a backend -------------------------------------------
    def stale_readings(self) -> dict[str, tuple[str, float]]:
        """Reading -> (why it is stale, time of its last good value)."""
        out: dict[str, tuple[str, float]] = {}
        sources = {"press": PRESS_READINGS, "load_cell": LOAD_CELL_READINGS,
                   "cycler": CYCLER_READINGS}  # fmt: skip
        if self.topology == "ioc":  # pressure and force come from the amplifier
            sources = {
                "press": ("press.position", "press.gap", "press.output"),
                "load_cell": (
                    *LOAD_CELL_READINGS,
                    *PRESS_READINGS[:2],
                    "press.settled",
                    *LOOP_READINGS,
                ),
                "cycler": CYCLER_READINGS,
            }
        elif "load_cell" not in self.instruments:
            sources["press"] = (*PRESS_READINGS, *LOAD_CELL_READINGS)
        if isinstance(self.cycler, AbsentCycler):
            out.update(dict.fromkeys(CYCLER_READINGS, ("this rig has no cycler channel", 0.0)))
        for role, why in self.comm.items():
            if why:
                cycler = self.cycler if isinstance(self.cycler, BtsChannel) else None
                link = cycler.client if cycler and role == "cycler" else self.instruments[role]
                for name in sources.get(role, ()):
                    out[name] = (why, link.last_ok)
        return out

    def resume_clock(self, at: float) -> None:
        if self.rigfile.clock == "wall":
            self._clock_offset = max(float(at), 0.0)
            self._wall0 = time.monotonic()

    def tare(self) -> None:
        if "load_cell" not in self.instruments:
            raise RigError(
                "tare refused: the press controller zeroes its own load cell",
                code=Refusal.UNSUPPORTED,
            )
        if self.comm["load_cell"]:
            raise RigError(f"tare refused: {self.comm['load_cell']}", code=Refusal.LINK)
        super().tare()

    def set_mode(self, mode: int | str) -> None:
        mode = self.parse_mode(mode)
        lost = self._lost()
        if lost and mode != Mode.OFF:
            raise RigError(f"{mode.name.title()} mode refused: {lost}", code=Refusal.LINK)
        if mode == Mode.PRESSURE and not math.isfinite(self.press.pressure):
            raise RigError("Pressure mode refused: no pressure measured yet", code=Refusal.LINK)
        super().set_mode(mode)

    @property
    def link(self) -> str:
        """OK; Silent (an instrument missed replies: its readings are stale, nothing else
        changes); Lost (a link the press's safety needs was silent ``link_timeout`` s:
        the press is locked and a running protocol paused until it answers again)."""
        return "Lost" if self._link_lost else "Silent" if self._silent else "OK"

    def _lost(self) -> str:
        """Why a link the press's safety depends on is down ("" when none is)."""
        return next((self.comm[role] for role in MECHANICAL if self.comm.get(role)), "")

    def reset_interlock(self) -> None:
        lost = [self._lost()] if self._lost() else []
        if self.interlock and lost:
            raise RigError(f"cannot reset interlock: {lost[0]}")
        if self.interlock and not math.isfinite(self.press.pressure):
            raise RigError("cannot reset interlock: no pressure measured yet")
        super().reset_interlock()

    # --- one scan ---------------------------------------------------------------------------
    async def exchange(self) -> None:
        """Read every instrument, run the control and safety, write the outputs."""
        await asyncio.gather(*(self._read(role) for role in self.instruments))
        wall = time.monotonic()
        wall_dt, self._last_wall = wall - self._last_wall, wall
        now = self._clock(wall)
        dt = max(now - self.press.clock, 0.0) if self.press.clock else 0.0
        self.press.clock = now
        self._measure()
        self._watch_links(wall)
        lost = self._lost()
        self.press.follow(dt)
        command = self._loop(wall_dt)
        if not lost:
            self._check_interlocks()
        self._check_pressure(self._mechanics()[0])
        self._act_on_events()
        self._set_fast_sampling()
        if self.fast_on:  # every scan's reading, while full-rate sampling is on
            self.fast.append(self._row())
        if isinstance(self.cycler, BtsChannel):  # the channel runs on if its link is lost
            try:
                await self.cycler.sync(now, self._mechanics(), self.interlock)
                self.comm["cycler"] = ""
            except CommError as ex:
                self.comm["cycler"] = str(ex)
            self._judge_points(self.cycler.points)
            self.cycler.points.clear()
            self._act_on_events()
        else:
            self.cycler.account(dt, 0.0, *self._mechanics(), self.interlock)
        self.sequencer.poll()
        await self._write_outputs(command)

    async def _read(self, role: str) -> None:
        try:
            await self.instruments[role].read()
            self.comm[role] = ""
        except CommError as ex:
            self.comm[role] = str(ex)

    def _clock(self, wall: float) -> float:
        """Experiment time: the wall clock, or an instrument's clock register. While that
        instrument is silent its clock is carried on at the rate it last ran, so that
        samples and timeouts go on; it never runs backwards."""
        last = self.press.clock
        source = self.rigfile.clock
        if source == "wall":
            return self._clock_offset + wall - self._wall0
        since, self._clock_wall = wall - self._clock_wall, wall
        if self.comm[source]:
            self._carried = True
            return last + since * self._clock_rate
        now = self.instruments[source].values.get("clock", last)
        if since > 0 and now > last and not self._carried and last:
            self._clock_rate += 0.2 * ((now - last) / since - self._clock_rate)
        self._carried = False
        return max(now, last)

    def _measure(self) -> None:
        """Take what the instruments that answered report; a lost one keeps its last
        values (served with an INVALID alarm) and is never used for control."""
        press, lc, area = self.press, self.load_cell, self.press.area_mm2
        if not self.comm["press"]:
            values = self.instruments["press"].values
            if not self._adopted:
                self._adopt(values)
            press.position = values["position"]
            press.measured_gap = values.get("gap", NAN)
            if self.topology == "controller":
                press.pressure = values["pressure"]
                if "load_cell" not in self.instruments:
                    lc.force = values.get("force", press.pressure * area / 1e3) * 1e3
        if "load_cell" in self.instruments and not self.comm["load_cell"]:
            values = self.instruments["load_cell"].values
            lc.force = values["force"] * 1e3 - lc.tare_offset
            lc.signal = values.get("signal", lc.signal)
            if self.topology == "ioc":
                press.pressure = lc.force / area

    def _adopt(self, values: dict[str, float]) -> None:
        """Take over the press as the IOC finds it (a restarted IOC must not release a
        pressed cell): the controller's mode and setpoint; a running drive is held where
        it is (Gap) until a client asks for a pressure."""
        self._adopted = True
        mode = int(values.get("mode", 0))
        if self.topology == "controller" and mode in (1, 2):
            self.press.mode = Mode(mode)
            if mode == 1:
                self.press.target = self.press.setpoint = values["setpoint"]
                self.press.pid.set_feedback(True)
            self._written.update(mode=mode, setpoint=values.get("setpoint", math.nan))
        elif self.topology == "ioc" and mode == 1:
            self.press.mode = Mode.GAP
        if mode:
            self.news.append(f"found the press in {self.press.mode.name.title()} mode: taken over")

    def _mechanics(self) -> tuple[float, float, float]:
        """Pressure (MPa), force (kN) and gap (um) to log: NaN where not measured now."""
        press_ok = not self.comm["press"]
        force_ok = not self.comm.get("load_cell", self.comm["press"])
        pressure_ok = press_ok if self.topology == "controller" else force_ok
        return (
            self.press.pressure if pressure_ok else NAN,
            self.load_cell.force / 1e3 if force_ok else NAN,
            self.press.gap if press_ok else NAN,
        )

    def _loop(self, dt: float) -> float:
        """The valve command where the IOC closes the loop (0 = piston locked)."""
        press = self.press
        if self.topology != "ioc" or press.mode != Mode.PRESSURE or self.comm.get("load_cell"):
            return 0.0
        if not math.isfinite(press.pressure):
            return 0.0
        return press.pid.update(press.setpoint, press.pressure, dt)

    def _judge_points(self, points: list[tuple[float, float, float, int]]) -> None:
        """Voltage events from the channel's points. They are its logging period apart,
        not one cell step: each is judged against the trend of the two before it at the
        same current (a jump, not the charge's own rise); after an event or an interruption
        the trend starts again from the point that raised it."""
        for t, volt, current, step in points:
            same = [p for p in self._trend if p[2] == current and p[3] == step]
            # points further apart than the trend's own spacing were interrupted (a
            # pause, a lost link): the cell relaxed meanwhile, which is no jump
            if (
                len(same) == 2
                and t > same[1][0] > same[0][0]
                and (t - same[1][0] <= 2.5 * (same[1][0] - same[0][0]))
            ):
                (t0, v0, *_), (t1, v1, *_) = same
                expected = v1 + (v1 - v0) * (t - t1) / (t1 - t0)
                events = self.events.buffer.next_seq
                self.events.check_voltage(t, expected, volt, current, step)
                if self.events.buffer.next_seq != events:
                    same = []
            self._trend = [*same[-1:], (t, volt, current, step)]

    # --- links that stutter or die -----------------------------------------------------
    def _watch_links(self, wall: float) -> None:
        """A missed reply is counted and its readings served stale at once, and that is
        all: a busy host or network stutters. Only a press or load-cell link silent for
        ``link_timeout`` s puts the rig in its safe state; it leaves that state by itself
        when the link answers again (a latched interlock is for faults of the rig)."""
        for role, why in self.comm.items():
            heard = role in self._heard  # a link still connecting at the start is no news
            if why:
                since, missed = self._silent.get(role, (wall, 0))
                if not missed and heard:
                    self.news.append(f"{why}: its readings are stale until it answers")
                self._silent[role] = (since, missed + 1)
                self.missed_replies += heard
            else:
                if role in self._silent:
                    since, missed = self._silent.pop(role)
                    name = role.replace("_", " ")
                    if heard:
                        self.news.append(f"{name} answers again after {wall - since:.1f} s "
                                         f"({missed} replies missed)")  # fmt: skip
                self._heard.add(role)
        timeout = self.rigfile.link_timeout
        silent = [
            r for r in MECHANICAL if r in self._silent and wall - self._silent[r][0] >= timeout
        ]
        if silent and not self._link_lost:
            self._lose_link(f"communication lost for {timeout:g} s: {self.comm[silent[0]]}")
        elif self._link_lost and not self._lost():
            self._regain_link()

    def _lose_link(self, reason: str) -> None:
        """The safe state every topology allows: the piston locked where it is, the cell
        at open circuit, a protocol paused (with the pressure it regulated, to go back to)."""
        self._link_lost = reason
        self._resume_on_link = self.sequencer.suspend(
            f"{reason}; press locked, cell at open circuit; the IOC resumes when it answers"
        )
        if self.cycler.running:
            self.cycler.stop("link to the press lost")
        if self.press.mode != Mode.OFF:
            self.press.set_mode(Mode.GAP)
        self.news.append(f"{reason}: press locked (Gap), cell at open circuit")

    def _regain_link(self) -> None:
        self._link_lost = ""
        if self._resume_on_link and self.sequencer.state == "Paused":
            try:
                self.sequencer.resume()
            except (RigError, ValueError) as ex:
                self.news.append(f"links back; the protocol stays paused: {ex}")
                return
            self.news.append("links back: the protocol goes on (re-pressing first)")
        elif self.sequencer.state == "Paused":
            self.news.append("links back: the protocol stays paused, as a client asked; "
                             "resuming it re-presses first")  # fmt: skip
        else:
            self.news.append("links back: the press stays locked (Gap); set Pressure mode "
                             "to regulate again")  # fmt: skip
        self._resume_on_link = False

    async def _write_outputs(self, command: float) -> None:
        mode = self.press.mode
        if self.topology == "controller":
            outputs = {"setpoint": self.press.setpoint, "mode": CONTROLLER_MODES[mode]}
            if mode != Mode.PRESSURE:  # a controller takes a setpoint in any mode
                outputs.pop("setpoint")
        else:
            outputs = {"command": command, "mode": DRIVE_MODES[mode]}
        press = self.instruments["press"]
        for name, value in outputs.items():
            if not math.isfinite(value):
                continue
            # the drive's command every scan (its watchdog), the rest when it changes
            if name != "command" and self._written.get(name) == value:
                continue
            if self.comm["press"] and name != "command":
                continue
            try:
                await press.write(name, value)
                self._written[name] = value
            except CommError as ex:  # counted with the reads at the next scan
                self.comm["press"] = str(ex)
                self._written.clear()  # rewrite everything once the link is back
                return
            except ValueError as ex:  # cannot be encoded: say so, send nothing
                self.news.append(f"cannot send {name}: {ex}")
        if self.comm["press"]:
            self._written.clear()
