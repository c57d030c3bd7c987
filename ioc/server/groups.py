"""The rig IOC's root group: the rig-level PVs, the scan that runs the backend (advance
a simulation, exchange with instruments), and the subgroups (press and load cell in
:mod:`.press`, the cycler, events, sequencer and diagnostics in theirs); autosave in
:mod:`.persistence`, the clock hold's lease in :mod:`.clock`, stale readbacks in
:mod:`.alarms`.

PV naming: ``{prefix}{Group}:{Name}-{Suffix}`` with ``-SP`` for a value you set,
``-RB`` for a value the rig reports and ``-Cmd`` for a push button (write 1).
"""

from __future__ import annotations

# caproto's `@pv.putter` redefines the name, as a property setter does (mypy knows only
# property's):
# mypy: disable-error-code="no-redef"
import asyncio
import logging
import math
import time
from typing import ClassVar, cast

from caproto import AlarmSeverity, AlarmStatus
from caproto.server import SubGroup

from ssb_contract.refusals import Refusal
from ssb_ioc.core.errors import RigError
from ssb_ioc.core.ports import InstrumentBackend, SimulatedBackend
from ssb_ioc.core.press import Mode

from .access import AccessRules
from .alarms import StaleReadbacks, limit_alarm
from .autosave import AutosaveFile
from .clock import HoldLease
from .cycler import CyclerGroup
from .diagnostics import DiagnosticsGroup
from .events import EventsGroup
from .persistence import Persistence
from .press import NO_YES, LoadCellGroup, PressGroup
from .pvs import (
    BEAT_WRAP,
    RigPVGroup,
    choice,
    command,
    counter,
    keyed_command,
    limits,
    publish,
    reading,
    refusals,
    setting,
    text,
)
from .sequencer import SequencerGroup

log = logging.getLogger("ssb_ioc")  # the IOC's own events (cli.py: to stdout, 'ssb-ioc: ...')

SCAN_PERIOD = 0.05  # s of wall time between simulation advances and readback updates
TICK_BUDGET = 0.04  # s of wall time the simulation may use per scan
SLICE_WALL = 0.005  # s of wall time per advance() call: the budget is checked between them
OVERRIDE_WINDOW = 30.0  # s of wall time a manual override (Rig:Override-Cmd) stays open
HELD_STACK = 1.0  # MPa: above this, the press holds a stack that a release would let go
DEVIATION_MINOR = 1.0  # MPa off the working setpoint: Pressure-RB alarms MINOR
DEVIATION_MAJOR = 5.0  # MPa: MAJOR
# Writes that change a running experiment: while a sequence owns the rig, refused unless
# an override is open (Rig:Override-Cmd, with 1 from a person or the owner's key).
EXPERIMENT_PVS = (
    "Press:Mode-SP", "Press:Pressure-SP", "Press:RampRate-SP", "Press:KP-SP", "Press:KI-SP",
    "Press:KD-SP", "Press:DRVH-SP", "Press:DRVL-SP", "Press:SettleTol-SP",
    "Press:SettleTime-SP", "Press:MaxPressure-SP", "Evt:Enable-SP", "Evt:PressureThresh-SP",
    "Evt:VoltageDropThresh-SP", "Evt:ResistanceThresh-SP", "Evt:Window-SP",
    "Evt:PressureSpikeAction-SP", "Evt:PressureDropAction-SP", "Evt:SoftShortAction-SP",
    "Evt:ResistanceJumpAction-SP", "Cyc:LogPeriod-SP", "Cyc:Capacity-SP",
)  # fmt: skip


async def _fault_type(group, instance, value):
    return await group.fault_units(value)


class RigIOC(RigPVGroup):
    """Simulated pressure-controlled ASSB rig: press, load cell and cell on one clock.

    Rig PVs (``{prefix}Rig:``):

    Time-RB            s     experiment time on the rig's clock
    Speed-SP           x     speed factor of the clock (1 = real time)
    ActualSpeed-RB     x     speed achieved (lower if the simulation cannot keep up)
    Area-RB            cm^2  cell area (pressure = force / area)
    Cell-RB                  cell file or preset in use
    CellVoltage-RB     V     cell terminal voltage
    CellSOC-RB               state of charge of the simulated cell (the simulation's truth,
                             what a simulated detector in the beam sees; NaN for instruments)
    CellCurrent-SP     A     manual constant current through the cell, + = charge (0 = rest);
                             refused while a protocol sequence owns the cycler
    Status-RB                one-line state of the rig
    Msg-RB                   last refused put or interlock event, with the reason
    Interlock-RB             OK | Tripped (latched, MAJOR alarm)
    Link-RB                  instruments only: OK | Silent (an instrument missed replies;
                             its readbacks are INVALID, nothing else changes; MINOR) |
                             Lost (the press or load cell silent for the rig file's
                             link_timeout: press locked, cell at open circuit, a running
                             protocol paused until the link is back, then it goes on; MAJOR)
    MissedReplies-RB         scans in which an instrument did not answer, since the start
    Beat-RB                  counts scans from 1 once the IOC is configured and its clock
                             runs: readiness (launchers wait for it, not for output text)
    InterlockReason-RB       why it tripped
    InterlockReset-Cmd       clear a trip whose condition is gone
    FaultType-SP, FaultSize-SP, InjectFault-Cmd: inject SoftShort (S), PressureSpike
                       (um of thickness) or ContactLoss (fraction); 0 = default size;
    FaultAt-SP         s     experiment time to inject it at (past or 0: at once)
    HoldAt-SP          s     simulation only: the clock stops at this experiment time (at
                             once if past) until the hold is moved; 0 = no hold. A client
                             that coordinates other instruments holds the clock where it
                             must act (a detector's schedule), so that a high speed factor
                             costs no experiment time between its looks. A clock that
                             stands at its hold goes on if no client puts the hold (or
                             Press:Heartbeat-Cmd) again within 10 s of wall time. The
                             sequencer also holds at the steps the table names
                             (hold_steps)
    Held-RB                  No | Yes: the clock stands at its hold; a put with callback
                             to HoldAt-SP completes when the clock stands at a hold (or
                             the hold is released or lapses)
    Simulated-RB             No | Yes: a simulation, whose clock can be held
    Override-Cmd             while a protocol sequence owns the rig, the writes that would
                             change its experiment (press mode, setpoints, loop gains and
                             output limits, settle criteria, event detection and actions,
                             logging period, capacity) are refused, and so is releasing a
                             held stack (Mode Off above 1 MPa) at any time: write 1 (a
                             person) or the owner's key (Seq:OwnerKey-RB) to open a 30 s
                             window in which they are taken, each logged with who; 0
                             closes it
    Override-RB              No | Yes: the window is open

    Press (``{prefix}Press:``), load cell (``{prefix}LC:``), cycler (``{prefix}Cyc:``),
    protocol sequencer (``{prefix}Seq:``), events (``{prefix}Evt:``) and diagnostics
    (``{prefix}Diag:``) PVs: see their groups.
    """

    last_refusal = refusals("Rig:")  # the last refused put: Refusal-RB, RefusalMsg-RB

    press = SubGroup(PressGroup, prefix="Press:")
    load_cell = SubGroup(LoadCellGroup, prefix="LC:")
    cycler = SubGroup(CyclerGroup, prefix="Cyc:")
    sequencer = SubGroup(SequencerGroup, prefix="Seq:")
    events = SubGroup(EventsGroup, prefix="Evt:")
    diagnostics = SubGroup(DiagnosticsGroup, prefix="Diag:")

    time_rb = reading("Rig:Time-RB", "s", 0.0, 1e12, "Experiment time", precision=3)
    speed_sp = setting("Rig:Speed-SP", "x", 0.001, 1e5, "Clock speed factor")
    actual_speed_rb = reading("Rig:ActualSpeed-RB", "x", 0.0, 1e6, "Speed achieved", precision=1)
    area_rb = reading("Rig:Area-RB", "cm^2", 0.0, 100.0, "Cell area", precision=4)
    cell_rb = text("Rig:Cell-RB", "Cell file or preset")
    voltage_rb = reading("Rig:CellVoltage-RB", "V", -10.0, 10.0, "Cell voltage", precision=4)
    soc_rb = reading("Rig:CellSOC-RB", "1", -1.0, 2.0, "Simulated cell's state of charge", 4)
    current_sp = setting(
        "Rig:CellCurrent-SP", "A", -1.0, 1.0, "Cell current, + = charge", precision=6
    )
    status_rb = text("Rig:Status-RB", "State of the rig")
    msg_rb = text("Rig:Msg-RB", "Last refused put or interlock event")
    interlock_rb = choice(
        "Rig:Interlock-RB", ["OK", "Tripped"], "Latched interlock", read_only=True
    )
    interlock_reason_rb = text("Rig:InterlockReason-RB", "Why the interlock tripped")
    link_rb = choice("Rig:Link-RB", ["OK", "Silent", "Lost"], "Instrument links",
                     read_only=True)  # fmt: skip
    missed_replies_rb = counter("Rig:MissedReplies-RB", "Scans with an instrument silent")
    beat_rb = counter("Rig:Beat-RB", "Scans since the IOC was ready (readiness: > 0)")
    interlock_reset_cmd = command("Rig:InterlockReset-Cmd", "Clear a trip whose condition is gone")
    hold_at_sp = setting(
        "Rig:HoldAt-SP", "s", 0.0, 1e12, "Hold the clock at this time (0 = none)", 3
    )
    override_cmd = keyed_command(
        "Rig:Override-Cmd", "Open a 30 s manual override (1, or the owner's key; 0 closes)"
    )
    override_rb = choice("Rig:Override-RB", NO_YES, "A manual override is open", read_only=True)
    held_rb = choice("Rig:Held-RB", NO_YES, "The clock stands at its hold", read_only=True)
    simulated_rb = choice(
        "Rig:Simulated-RB", NO_YES, "A simulation (its clock can be held)", read_only=True
    )
    fault_type_sp = choice(
        "Rig:FaultType-SP",
        ["SoftShort", "PressureSpike", "ContactLoss"],
        "Fault to inject (simulation)",
        put=_fault_type,
    )
    fault_size_sp = setting("Rig:FaultSize-SP", "S", 0.0, 1e3, "Fault size; 0 = default", 6)
    fault_at_sp = setting("Rig:FaultAt-SP", "s", 0.0, 1e12, "Inject the fault at this time", 3)
    inject_fault_cmd = command("Rig:InjectFault-Cmd", "Inject (or schedule) the fault")

    def __init__(
        self,
        *args,
        backend: SimulatedBackend | InstrumentBackend,
        speed: float = 1.0,
        source: str = "",
        access_rules: AccessRules | None = None,
        autosave: AutosaveFile | None = None,
        **kwargs,
    ):
        self.backend = backend
        self.access_rules = access_rules
        self.autosave = autosave
        self.persistence = Persistence(autosave)
        self._heartbeat = time.monotonic()
        self._deadman_expired = False
        self.speed = speed
        self.source = source
        self._moves: list[asyncio.Future] = []
        self._reported_trip = ""
        self._actual_speed = speed
        self._slice = 1.0  # s of experiment time per advance(), adapted to the regime
        self._last_wall = time.monotonic()
        self.stale = StaleReadbacks()  # readbacks whose instrument does not answer
        self.hold = HoldLease()  # a client's hold of the clock, lapsing if not renewed
        self._pacing = ""  # the buffer the clock waits for, while it does
        self._settled_on: float | None = None  # the target the press last settled at
        self._override_until = 0.0  # monotonic time the manual override closes
        self._override_by = ""
        super().__init__(*args, **kwargs)

    # --- startup and the clock --------------------------------------------------------
    @time_rb.startup
    async def time_rb(self, instance, async_lib):
        """Configure the PVs, say ready, then run the clock."""
        await self.configure()
        log.info("ready (%d PVs, prefix %r)", len(self.pvdb), self.prefix)
        self._last_wall = time.monotonic()
        while True:
            await async_lib.library.sleep(SCAN_PERIOD)
            await self.tick()

    async def configure(self) -> None:
        """Load limits and settings from the cell file into the PVs."""
        rig, p, press = self.backend, self.backend.params, self.press
        if rig.keeps_own_time:  # ready means the instruments have been asked once
            await self._exchange()
            await self.soc_rb.write(math.nan, verify_value=False)  # no simulated cell
        lc = p.load_cell
        capacity_mpa = lc.capacity * 1e3 / (p.cell.area * 100)
        await press.pressure_sp.write_metadata(**limits(0.0, rig.max_setpoint))
        await press.max_pressure_sp.write_metadata(**limits(1.0, capacity_mpa))
        await press.over_pressure_sp.write_metadata(**limits(1.0, capacity_mpa))
        await press.pressure_rb.write_metadata(
            upper_alarm_limit=rig.over_pressure,
            upper_warning_limit=rig.max_setpoint,
            lower_alarm_limit=-400.0,
            lower_warning_limit=-400.0,
        )
        for pv in (press.force_rb, self.load_cell.force_rb):
            await pv.write_metadata(
                upper_alarm_limit=lc.capacity,
                upper_warning_limit=0.9 * lc.capacity,
                lower_alarm_limit=-lc.capacity,
                lower_warning_limit=-0.9 * lc.capacity,
            )
        top = p.press.max_speed
        for pv in (press.drvh_sp, press.drvl_sp, press.output_rb):
            await pv.write_metadata(**limits(-top, top))
        await press.ramp_rate_sp.write_metadata(**limits(0.0, p.limits.max_ramp_rate))
        initial = {
            self.simulated_rb: "No" if rig.keeps_own_time else "Yes",
            press.max_pressure_sp: rig.max_setpoint,
            press.over_pressure_sp: rig.over_pressure,
            press.ramp_rate_sp: rig.press.ramp_rate,
            press.kp_sp: rig.press.pid.kp,
            press.ki_sp: rig.press.pid.ki,
            press.kd_sp: rig.press.pid.kd,
            press.drvh_sp: rig.press.pid.drvh,
            press.drvl_sp: rig.press.pid.drvl,
            press.settle_tol_sp: rig.press.settle_tolerance,
            press.settle_time_sp: rig.press.settle_time,
            press.dev_minor_sp: DEVIATION_MINOR,
            press.dev_major_sp: DEVIATION_MAJOR,
            self.speed_sp: self.speed,
            self.load_cell.capacity_rb: lc.capacity,
            self.load_cell.sensitivity_rb: lc.sensitivity,
            self.load_cell.sample_rate_rb: lc.sample_rate,
            self.load_cell.fast_rate_sp: lc.sample_rate,
            self.area_rb: p.cell.area,
        }
        for pv, value in initial.items():
            await pv.write(value, verify_value=False)
        cyc = p.cycler
        await self.cycler.current_sp.write_metadata(**limits(-cyc.i_max, cyc.i_max))
        await self.cycler.voltage_sp.write_metadata(**limits(cyc.v_min, cyc.v_max))
        channel = {
            self.cycler.eis_f_start: 1e6,  # a usual PEIS: 1 MHz to 100 mHz, 10 per decade
            self.cycler.eis_f_end: 0.1,
            self.cycler.eis_ppd: 10,
            self.cycler.capacity_sp: p.cell.capacity,
            self.cycler.log_period_sp: cyc.log_period,
        }
        for pv, value in channel.items():
            await pv.write(value, verify_value=False)
        await self.current_sp.write_metadata(**limits(-cyc.i_max, cyc.i_max))
        await self.load_cell.fast_rate_sp.write_metadata(**limits(0.001, lc.sample_rate))
        await self.fault_units(self.fault_type_sp.value)
        await self.events.configure()
        await self.restore()
        await self.update_readbacks()
        await self.cell_rb.write(self.source or p.cell.name)

    # --- autosave -----------------------------------------------------------------------
    async def restore(self) -> None:
        """Restore saved settings through the checks of a client's put, then the clock."""
        await self.persistence.restore(self)

    def setting_changed(self, pvname: str) -> None:
        """A client changed a saved setting: save it at the next scan."""
        self.persistence.changed(pvname[len(self.prefix) :])

    def save(self) -> None:
        """Write the saved settings and the clock now."""
        self.persistence.save(self)

    async def tick(self) -> None:
        """Advance the simulation by the wall time elapsed times the speed factor.

        The work per scan is capped (``TICK_BUDGET`` of wall time): if the simulation
        cannot keep up with the speed factor, experiment time runs slower rather than
        the IOC stop answering. ``Rig:ActualSpeed-RB`` shows the speed achieved.
        """
        now = time.monotonic()
        elapsed, self._last_wall = now - self._last_wall, now
        if self.backend.keeps_own_time:  # instruments: one exchange per scan
            before = self.backend.time
            await self._exchange()
            if elapsed > 0:
                done = self.backend.time - before
                self._actual_speed += 0.2 * (done / elapsed - self._actual_speed)
            await self._finish_scan()
            return
        wanted, done = elapsed * self.speed, 0.0
        released = self.hold.check(self.backend, now)
        if released:
            await self.report(released)
        while done < wanted and time.monotonic() - now < TICK_BUDGET:
            if self.backend.held or await self._paced(now):
                break
            step = min(self._slice, wanted - done)
            started = time.monotonic()
            ran = cast(SimulatedBackend, self.backend).advance(
                step, stop=lambda: self._behind(now) is not None
            )
            took = time.monotonic() - started
            if self.backend.held or self._behind(now) is not None:
                done += ran
                continue  # held, or a reader fell behind: said at the loop's top
            done += step  # (what a step leaves under one press period is carried over)
            if step == self._slice:  # aim at SLICE_WALL per slice, whatever the regime
                factor = min(2.0, SLICE_WALL / took) if took > 0 else 2.0
                self._slice = min(max(self._slice * factor, 0.05), 3600.0)
        if elapsed > 0:
            self._actual_speed += 0.2 * (done / elapsed - self._actual_speed)
        await self._finish_scan()

    # --- what may change a running experiment ---------------------------------------------
    async def guard_experiment(self, pv, data, data_type) -> None:
        """Refuse a client's write that would change an experiment in progress: while a
        sequence owns the rig, every write of EXPERIMENT_PVS; at any time, a release
        (Mode Off) of a press holding a stack. An open override (Rig:Override-Cmd) lets
        them through, each said on Rig:Msg-RB with who wrote it."""
        name = pv.pvname[len(self.prefix) :]
        rig = self.backend
        releasing = name == "Press:Mode-SP" and _is_off(data, data_type)
        held = rig.press.mode != Mode.OFF and rig.press.pressure > HELD_STACK
        owned = rig.sequencer.state in ("Running", "Paused", "Held")
        if not ((owned and name in EXPERIMENT_PVS) or (releasing and held)):
            return
        who = pv.writer or "a client"
        if time.monotonic() < self._override_until:
            await self.report(f"override ({self._override_by}): {name} written by {who}")
            return
        what = (
            f"a protocol sequence owns the rig, {rig.sequencer.owner_text()}"
            if owned
            else f"it would release the stack held at {rig.press.pressure:.1f} MPa"
        )
        raise RigError(
            f"{what}; if you mean it, write Rig:Override-Cmd (1, or the owner's key) "
            "first: a 30 s window",
            code=Refusal.OWNED,
        )

    @override_cmd.putter
    async def override_cmd(self, instance, value):
        seq, who = self.backend.sequencer, instance.writer or "the IOC"
        if not value:
            self._override_until = 0.0
            await self.override_rb.write("No")
            return 0
        if value != 1:
            seq.check_key(value, "override")
        self._override_until = time.monotonic() + OVERRIDE_WINDOW
        self._override_by = "the owner" if value != 1 else who
        await self.override_rb.write("Yes")
        await self.report(f"manual override opened by {who} for {OVERRIDE_WINDOW:g} s")
        return 0

    # --- the clock's hold and pace ------------------------------------------------------
    def renew_hold(self) -> None:
        """A client is still there to move the hold on."""
        self.hold.renew(time.monotonic())

    def _keeps(self):
        rig = self.backend
        return (
            ("Cyc:Buf:", self.cycler.buf.keep, rig.cycler.buffer),
            ("LC:Fast:", self.load_cell.fast.keep, rig.fast),
            ("Evt:Buf:", self.events.buf.keep, rig.events.buffer),
        )

    def _behind(self, now: float):
        """The buffer whose reader is so far behind that going on would overwrite rows it
        still needs (its ``Keep-SP``), if any."""
        for name, keep, buffer in self._keeps():
            if keep.holds_back(buffer, now):
                return name, keep, buffer
        return None

    async def _paced(self, now: float) -> bool:
        """True while a reader is behind (:meth:`_behind`): the speed factor is a maximum,
        not a promise. Said once per episode on Rig:Msg-RB."""
        behind = self._behind(now)
        if behind is None:
            self._pacing = ""
            return False
        name, keep, buffer = behind
        if self._pacing != name:
            self._pacing = name
            unread = buffer.next_seq - max(keep.seq or 0, buffer.oldest_seq)
            await self.report(
                f"clock slowed: {self.prefix}{name} holds {unread} rows its reader has not "
                "read yet; time waits for it (the speed is a maximum)"
            )
        return True

    async def _finish_scan(self) -> None:
        if self._override_until and time.monotonic() >= self._override_until:
            self._override_until = 0.0
            await self.override_rb.write("No")
        await self._check_deadman()
        await self.update_readbacks()
        await self.beat_rb.write(self.beat_rb.value % BEAT_WRAP + 1)  # configured; the clock runs
        self._resolve_moves()
        self.hold.resolve(self.backend)
        self.persistence.save_if_due(self)

    async def _exchange(self) -> None:
        """One scan of a hardware rig; say what it had to say."""
        await cast(InstrumentBackend, self.backend).exchange()
        for news in self.backend.news:
            log.info("%s", news)
            await self.report(news)
        self.backend.news.clear()

    # --- the deadman ----------------------------------------------------------------------
    def heartbeat(self) -> None:
        self._heartbeat = time.monotonic()
        self._deadman_expired = False
        self.renew_hold()

    async def _check_deadman(self) -> None:
        """No heartbeat for Deadman-SP s of wall time: hold, or ramp down to the floor."""
        press, limit = self.press, self.press.deadman_sp.value
        state = "Off" if limit <= 0 else "Expired" if self._deadman_expired else "Armed"
        await publish(press.deadman_rb, state)
        if state != "Armed" or time.monotonic() - self._heartbeat < limit:
            return
        self._deadman_expired = True
        rig = self.backend
        action = {"Hold": "hold", "RampDown": "ramp_down"}[press.deadman_action_sp.value]
        done = rig.deadman(action, press.deadman_floor_sp.value)
        self.finish_moves()
        await press.ramp_rate_sp.write(rig.press.ramp_rate, verify_value=False)
        await press.pressure_sp.write(rig.press.target, verify_value=False)
        await self.report(f"deadman: no client heartbeat for {limit:g} s: {done}")

    # --- moves (put-completion on Press:Pressure-SP) ------------------------------------
    async def wait_until_settled(self) -> None:
        """Wait until the press reports settled at its target (or the move ends)."""
        if self.backend.press.settled:
            return
        move = asyncio.get_running_loop().create_future()
        self._moves.append(move)
        await move

    def finish_moves(self, error: Exception | None = None) -> None:
        for move in self._moves:
            if not move.done():
                if error is None:
                    move.set_result(None)
                else:
                    move.set_exception(error)
        self._moves.clear()

    def _resolve_moves(self) -> None:
        if not self._moves:
            return
        press = self.backend.press
        if self.backend.interlock:
            self.finish_moves(
                RigError(f"move aborted: interlock ({self.backend.interlock})", Refusal.INTERLOCK)
            )
        elif press.mode != Mode.PRESSURE:
            self.finish_moves(
                RigError(f"move aborted: mode changed to {press.mode.name.title()}", Refusal.STATE)
            )
        elif press.settled:
            self.finish_moves()

    # --- readbacks and messages -------------------------------------------------------
    async def report(self, message: str) -> None:
        """Publish a refusal or an interlock event on Rig:Msg-RB."""
        await self.msg_rb.write(message[:255])

    def _status(self) -> str:
        rig, press = self.backend, self.backend.press
        if rig.interlock:
            return f"TRIPPED: {rig.interlock}"
        if rig.link == "Lost":
            return "LINK LOST: press locked, cell at open circuit, protocol paused"
        if press.mode == Mode.PRESSURE:
            state = "settled" if press.settled else "ramping" if press.ramping else "moving"
            line = f"Pressure {press.target:g} MPa, {state}"
        else:
            line = press.mode.name.title()
        seq = rig.sequencer
        if seq.state in ("Running", "Paused", "Held") and seq.table is not None:
            step = seq.running.index if seq.running else 0
            line += f"; protocol {seq.state.lower()}, step {step} of {seq.table.total}"
        if rig.held:
            line += f"; clock held at t = {rig.time:.1f} s"
        return line

    async def update_readbacks(self) -> None:
        rig, press, lc = self.backend, self.backend.press, self.backend.load_cell
        pg, lg = self.press, self.load_cell
        force_kn = lc.force / 1e3
        values = {
            self.time_rb: rig.time,
            self.actual_speed_rb: self._actual_speed,
            self.voltage_rb: rig.cell.voltage,
            self.soc_rb: rig.state_of_charge,
            pg.demand_rb: press.setpoint,
            pg.force_rb: force_kn,
            pg.position_rb: press.platen_position,
            pg.gap_rb: press.gap,
            pg.output_rb: press.pid.oval,
            pg.error_rb: press.pid.err,
            pg.mode_rb: press.mode.name.title(),
            pg.settled_rb: "Yes" if press.settled else "No",
            lg.force_rb: force_kn,
            lg.signal_rb: lc.signal,
            lg.tare_offset_rb: lc.tare_offset / 1e3,
            lg.overload_rb: "Yes" if lc.overloaded else "No",
            self.status_rb: self._status(),
            self.interlock_reason_rb: rig.interlock,
            self.held_rb: "Yes" if rig.held else "No",
        }
        for pv, value in values.items():
            await publish(pv, value)
        await self._deviation_alarm()
        if pg.mode_sp.value != values[pg.mode_rb]:  # a trip changed the mode
            await pg.mode_sp.write(values[pg.mode_rb], verify_value=False)
        await self.cycler.update()
        await self.sequencer.update()
        hold = 0.0 if rig.hold_at is None else rig.hold_at
        shown = ((pg.pressure_sp, press.target), (pg.ramp_rate_sp, press.ramp_rate),
                 (self.hold_at_sp, hold))  # fmt: skip
        for pv, value in shown:
            if pv.value != value:  # the sequencer (or the deadman) set it: show it
                await pv.write(value, verify_value=False)
        await self.events.update()
        await self.load_cell.fast.update()
        for why in await self.stale.mark(self.pvdb, self.prefix, self.backend):
            await self.report(why)  # each new reason once
        if rig.interlock and rig.interlock != self._reported_trip:
            await self.report(f"interlock tripped: {rig.interlock}")
        self._reported_trip = rig.interlock
        link = rig.link
        if self.link_rb.value != link:
            severity = {"OK": AlarmSeverity.NO_ALARM, "Silent": AlarmSeverity.MINOR_ALARM,
                        "Lost": AlarmSeverity.MAJOR_ALARM}[link]  # fmt: skip
            status = AlarmStatus.NO_ALARM if link == "OK" else AlarmStatus.COMM
            await self.link_rb.write(link, status=status, severity=severity)
        await publish(self.missed_replies_rb, rig.missed_replies)
        tripped = "Tripped" if rig.interlock else "OK"
        if self.interlock_rb.value != tripped:
            severity = AlarmSeverity.MAJOR_ALARM if rig.interlock else AlarmSeverity.NO_ALARM
            status = AlarmStatus.STATE if rig.interlock else AlarmStatus.NO_ALARM
            await self.interlock_rb.write(tripped, status=status, severity=severity)

    async def _deviation_alarm(self) -> None:
        """Publish Pressure-RB with its alarm, in one write: its limit alarms, and off its
        working setpoint in Pressure mode MINOR, then MAJOR (a loop that no longer holds
        must not look healthy)."""
        press, pv = self.backend.press, self.press.pressure_rb
        value = press.pressure
        if isinstance(value, float) and math.isnan(value):
            return  # not measured: the last value stays, marked stale
        value = min(max(value, pv.lower_ctrl_limit), pv.upper_ctrl_limit)
        if press.mode != Mode.PRESSURE:
            self._settled_on = None
        elif press.settled:
            self._settled_on = press.target
        watching = press.mode == Mode.PRESSURE and (
            press.ramping or self._settled_on == press.target
        )
        deviation = abs(press.pressure - press.setpoint) if watching else 0.0
        status, severity = limit_alarm(pv, value)
        if deviation >= self.press.dev_major_sp.value:
            status, severity = AlarmStatus.STATE, AlarmSeverity.MAJOR_ALARM
        elif deviation >= self.press.dev_minor_sp.value and severity < AlarmSeverity.MINOR_ALARM:
            status, severity = AlarmStatus.STATE, AlarmSeverity.MINOR_ALARM
        if "Press:Pressure-RB" in self.stale.names:
            return  # the instrument is lost: that says more (see StaleReadbacks)
        if (pv.value, pv.status, pv.severity) != (value, status, severity):
            await pv.write(value, status=status, severity=severity, verify_value=False)

    # --- rig-level settings -------------------------------------------------------------
    @speed_sp.putter
    async def speed_sp(self, instance, value):
        if self.backend.keeps_own_time:
            raise RigError(
                "Rig:Speed-SP refused: real instruments keep their own time",
                code=Refusal.UNSUPPORTED,
            )
        self.speed = value
        return value

    @hold_at_sp.putter
    async def hold_at_sp(self, instance, value):
        rig = self.backend
        rig.hold_clock(value if value > 0 else None)
        self.renew_hold()
        at = rig.hold_at or 0.0  # a time already past holds now
        await instance.write(at, verify_value=False)
        if rig.hold_at is not None and not rig.held:
            await self.hold.reached()  # the clock stands still (or the hold is gone)
        return rig.hold_at or 0.0

    @current_sp.putter
    async def current_sp(self, instance, value):
        self.backend.set_current(value)
        return value

    FAULT_UNITS: ClassVar[dict[str, str]] = {
        "SoftShort": "S",
        "PressureSpike": "um",
        "ContactLoss": "1",  # a fraction of the contact
    }

    async def fault_units(self, kind: str) -> str:
        """FaultSize-SP's units follow the fault type."""
        await self.fault_size_sp.write_metadata(units=self.FAULT_UNITS[kind])
        return kind

    @inject_fault_cmd.putter
    async def inject_fault_cmd(self, instance, value):
        if value:
            kind = {"SoftShort": "soft_short", "PressureSpike": "pressure_spike"}.get(
                self.fault_type_sp.value, "contact_loss"
            )
            at = self.fault_at_sp.value or None
            await self.report(self.backend.inject_fault(kind, self.fault_size_sp.value, at))
        return 0

    @interlock_reset_cmd.putter
    async def interlock_reset_cmd(self, instance, value):
        if value:
            reason = self.backend.interlock
            self.backend.reset_interlock()
            if reason:
                await self.report(f"interlock reset (was: {reason})")
            await self.update_readbacks()
        return 0


def _is_off(data, data_type) -> bool:
    """A put to Press:Mode-SP that asks for Off: state name or index 0."""
    from caproto import ChannelType, native_type

    try:
        value = data[0]
    except (TypeError, IndexError):
        return False
    if native_type(data_type) == ChannelType.STRING:
        raw = value if isinstance(value, bytes | bytearray) else str(value).encode()
        return raw.split(b"\0", 1)[0].decode("latin-1").strip().lower() in ("off", "0")
    try:
        return float(value) == 0.0
    except (TypeError, ValueError):
        return False
