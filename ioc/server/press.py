"""The press and the load cell as PVs (``{prefix}Press:``, ``{prefix}LC:``).

Their putters ask the rig's control (:mod:`ssb_ioc.core`) through the root group
(:class:`~ssb_ioc.server.groups.RigIOC`): a refusal there is a refused put here.
"""

from __future__ import annotations

# caproto's `@pv.putter` redefines the name, as a property setter does (mypy knows only
# property's):
# mypy: disable-error-code="no-redef"
from caproto.server import SubGroup

from ssb_ioc.core.press import Mode

from .events import FastRows
from .pvs import RigPVGroup, choice, command, limits, publish, reading, refusals, setting

MODES = [m.name.title() for m in Mode]  # Off, Pressure, Gap
NO_YES = ["No", "Yes"]


class PressGroup(RigPVGroup):
    """Servo-hydraulic press with the pressure loop (``{prefix}Press:``).

    Pressure-SP       MPa   target pressure; put with callback completes when settled
    Pressure-RB       MPa   measured pressure (load-cell force / cell area)
    PressureDemand-RB MPa   working setpoint of the loop (follows the ramp)
    Force-RB          kN    measured force
    Position-RB       um    platen travel from first contact (+ = closing)
    Gap-RB            um    distance between platens (stack thickness under load)
    Mode-SP/-RB             Off | Pressure | Gap
    RampRate-SP       MPa/s ramp rate for new setpoints, 0 = step
    MaxPressure-SP    MPa   highest pressure setpoint accepted
    OverPressure-SP   MPa   interlock: release the press above this pressure
    KP-SP  um/s/MPa, KI-SP 1/s (repeats/s), KD-SP s, DRVH-SP/DRVL-SP um/s: epid loop
    Output-RB         um/s  loop output (valve speed command), Error-RB MPa
    SettleTol-SP      MPa   |pressure - target| within this ...
    SettleTime-SP     s     ... for this long (experiment time) = settled
    Settled-RB              No | Yes (the done flag of a pressure move)
    Stop-Cmd                hold the pressure measured now; completes pending moves
    Deadman-SP        s     wall-clock seconds without a client put to Heartbeat-Cmd after
                            which the press takes DeadmanAction-SP (0 = off, the default)
    DeadmanAction-SP        Hold (the pressure measured then) | RampDown (to DeadmanFloor-SP
                            at RampRate-SP, or 1 MPa/s if that is 0)
    DeadmanFloor-SP   MPa   where RampDown ends
    Heartbeat-Cmd           a client says it is alive (write 1)
    Deadman-RB              Armed | Off | Expired (the action was taken; a heartbeat re-arms)
    DevMinor-SP, DevMajor-SP MPa  Pressure-RB alarms MINOR, then MAJOR, when it is this far
                            from the working setpoint in Pressure mode (once the move has
                            settled, or while it ramps), whatever Mode-RB says
    """

    last_refusal = refusals("")  # the last refused put: Refusal-RB, RefusalMsg-RB

    pressure_sp = setting("Pressure-SP", "MPa", 0.0, 200.0, "Target pressure")
    pressure_rb = reading("Pressure-RB", "MPa", -400.0, 400.0, "Measured pressure")
    demand_rb = reading("PressureDemand-RB", "MPa", 0.0, 400.0, "Working setpoint")
    force_rb = reading("Force-RB", "kN", -100.0, 100.0, "Measured force")
    position_rb = reading("Position-RB", "um", -1e5, 1e5, "Platen travel", precision=2)
    gap_rb = reading("Gap-RB", "um", -1e5, 1e5, "Distance between platens", precision=2)
    mode_sp = choice("Mode-SP", MODES, "Press mode: Off, Pressure or Gap")
    mode_rb = choice("Mode-RB", MODES, "Press mode in effect", read_only=True)
    ramp_rate_sp = setting(
        "RampRate-SP",
        "MPa/s",
        0.0,
        50.0,
        "Ramp rate, 0 = step",
        apply=lambda rig, value: rig.set_ramp_rate(value),
    )
    max_pressure_sp = setting("MaxPressure-SP", "MPa", 0.0, 400.0, "Setpoint limit")
    over_pressure_sp = setting("OverPressure-SP", "MPa", 0.0, 400.0, "Interlock limit")
    kp_sp = setting(
        "KP-SP",
        "um/s/MPa",
        0.0,
        1e4,
        "Proportional gain (epid KP)",
        apply=lambda rig, value: rig.set_gains(kp=value),
    )
    ki_sp = setting(
        "KI-SP",
        "1/s",
        0.0,
        1e3,
        "Integral gain, repeats/s (epid KI)",
        apply=lambda rig, value: rig.set_gains(ki=value),
    )
    kd_sp = setting(
        "KD-SP",
        "s",
        0.0,
        10.0,
        "Derivative time (epid KD)",
        apply=lambda rig, value: rig.set_gains(kd=value),
    )
    drvh_sp = setting(
        "DRVH-SP",
        "um/s",
        -1e4,
        1e4,
        "Loop output high limit",
        apply=lambda rig, value: rig.set_output_limits(drvh=value),
    )
    drvl_sp = setting(
        "DRVL-SP",
        "um/s",
        -1e4,
        1e4,
        "Loop output low limit",
        apply=lambda rig, value: rig.set_output_limits(drvl=value),
    )
    output_rb = reading("Output-RB", "um/s", -1e4, 1e4, "Loop output (valve speed)")
    error_rb = reading("Error-RB", "MPa", -400.0, 400.0, "Loop error")
    settle_tol_sp = setting(
        "SettleTol-SP",
        "MPa",
        0.001,
        100.0,
        "Settle tolerance",
        apply=lambda rig, value: rig.set_settle(tolerance=value),
    )
    settle_time_sp = setting(
        "SettleTime-SP",
        "s",
        0.0,
        3600.0,
        "Settle time (experiment)",
        apply=lambda rig, value: rig.set_settle(time=value),
    )
    settled_rb = choice("Settled-RB", NO_YES, "Pressure settled at the target", read_only=True)
    stop_cmd = command("Stop-Cmd", "Hold the present pressure; ends ramps and moves")
    deadman_sp = setting("Deadman-SP", "s", 0.0, 86400.0, "Seconds without heartbeat, 0 = off")
    deadman_action_sp = choice("DeadmanAction-SP", ["Hold", "RampDown"], "Deadman action")
    deadman_floor_sp = setting("DeadmanFloor-SP", "MPa", 0.0, 400.0, "Deadman ramp-down floor")
    heartbeat_cmd = command("Heartbeat-Cmd", "A client is alive (write 1)")
    deadman_rb = choice("Deadman-RB", ["Off", "Armed", "Expired"], "Deadman state", read_only=True)
    dev_minor_sp = setting("DevMinor-SP", "MPa", 0.001, 400.0, "Deviation for a MINOR alarm")
    dev_major_sp = setting("DevMajor-SP", "MPa", 0.001, 400.0, "Deviation for a MAJOR alarm")

    @pressure_sp.putter
    async def pressure_sp(self, instance, value):
        self.rig.set_pressure(value)
        await instance.write(value, verify_value=False)  # show the new target at once
        await self.root.wait_until_settled()
        return self.rig.press.target  # differs from value after a stop

    @mode_sp.putter
    async def mode_sp(self, instance, value):
        self.rig.set_mode(value)
        await self.root.update_readbacks()
        return value

    @max_pressure_sp.putter
    async def max_pressure_sp(self, instance, value):
        self.rig.set_max_setpoint(value)
        await self.pressure_sp.write_metadata(**limits(0.0, value))
        await self.pressure_rb.write_metadata(upper_warning_limit=value)
        return value

    @over_pressure_sp.putter
    async def over_pressure_sp(self, instance, value):
        self.rig.set_over_pressure(value)
        await self.pressure_rb.write_metadata(upper_alarm_limit=value)
        await self.root.update_readbacks()  # a lowered limit may have tripped
        return value

    @deadman_sp.putter
    async def deadman_sp(self, instance, value):
        self.root.heartbeat()
        await publish(self.deadman_rb, "Armed" if value > 0 else "Off")
        return value

    @heartbeat_cmd.putter
    async def heartbeat_cmd(self, instance, value):
        self.root.heartbeat()
        await publish(self.deadman_rb, "Armed" if self.deadman_sp.value > 0 else "Off")
        return 0

    @stop_cmd.putter
    async def stop_cmd(self, instance, value):
        if value:
            self.rig.stop()
            self.root.finish_moves()
            await self.pressure_sp.write(self.rig.press.target, verify_value=False)
            await self.root.update_readbacks()
        return 0


class LoadCellGroup(RigPVGroup):
    """Strain-gauge load cell (``{prefix}LC:``).

    Force-RB        kN    measured force (after tare)
    Signal-RB       mV/V  bridge output
    Capacity-RB     kN    rated capacity (overload above it)
    Sensitivity-RB  mV/V  rated output at capacity
    SampleRate-RB   Hz    sampling rate
    TareOffset-RB   kN    force subtracted by tare
    Overload-RB           No | Yes
    Tare-Cmd              zero the reading (press Off, cell unloaded)
    Fast-SP               Off | On | Step: keep every sample (at FastRate-SP) for bulk
                          reads; Step: while the running cycler step runs; also on for
                          Evt:Window-SP after each event
    FastRate-SP     Hz    rate of the kept samples, up to SampleRate-RB
    FastFor-SP      s     On ends by itself this much experiment time after this put
                          (put it after Fast-SP; 0 = until Off)
    Fast:NextSeq-RB, Fast:OldestSeq-RB, Fast:Kept-RB, Fast:Page0-RB .. Fast:Page31-RB
                          rows of (seq, time s, pressure MPa, force kN, gap um,
                          voltage V, current A)
    """

    last_refusal = refusals("")  # the last refused put: Refusal-RB, RefusalMsg-RB

    fast = SubGroup(FastRows, prefix="Fast:")
    fast_sp = choice("Fast-SP", ["Off", "On", "Step"], "Keep every load-cell sample")
    fast_rate_sp = setting(
        "FastRate-SP",
        "Hz",
        0.001,
        1e6,
        "Rate of kept samples",
        1,
        apply=lambda rig, value: rig.set_fast_sampling(rig.fast_mode, rate=value),
    )
    fast_for_sp = setting(
        "FastFor-SP",
        "s",
        0.0,
        1e9,
        "Full-rate sampling On for this long (0 = until Off)",
        3,
        apply=lambda rig, value: rig.set_fast_sampling(rig.fast_mode, duration=value),
    )

    force_rb = reading("Force-RB", "kN", -100.0, 100.0, "Measured force")
    signal_rb = reading("Signal-RB", "mV/V", -100.0, 100.0, "Bridge output", precision=5)
    capacity_rb = reading("Capacity-RB", "kN", 0.0, 1e4, "Rated capacity")
    sensitivity_rb = reading("Sensitivity-RB", "mV/V", 0.0, 100.0, "Rated output")
    sample_rate_rb = reading("SampleRate-RB", "Hz", 0.0, 1e6, "Sampling rate", precision=0)
    tare_offset_rb = reading("TareOffset-RB", "kN", -100.0, 100.0, "Tare offset", precision=5)
    overload_rb = choice("Overload-RB", NO_YES, "Force above capacity", read_only=True)
    tare_cmd = command("Tare-Cmd", "Zero the reading (press Off, unloaded)")

    @fast_sp.putter
    async def fast_sp(self, instance, value):
        self.rig.set_fast_sampling(value.lower(), duration=0.0)  # until Off or FastFor-SP
        return value

    @tare_cmd.putter
    async def tare_cmd(self, instance, value):
        if value:
            self.rig.tare()
            await self.root.update_readbacks()
        return 0
