"""The rig's PVGroups in process, without a network: awaited writes on the pvproperties."""

import asyncio
import math

import pytest
from caproto import AlarmSeverity, AlarmStatus

from ssb_ioc.server import RigIOC
from ssb_ioc.sim import Mode, Rig, load_cell_file


@pytest.fixture
def ioc():
    rig = Rig(load_cell_file("si-nmc"), seed=2)
    ioc = RigIOC(prefix="U:", backend=rig, speed=2000.0, source="si-nmc")
    asyncio.run(ioc.configure())
    return ioc


def run(coro):
    return asyncio.run(coro)


async def tick_until(ioc, task, timeout=5.0):
    """Advance the clock until ``task`` is done (the IOC's scan, run by hand)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not task.done():
        if loop.time() > deadline:
            raise AssertionError("put did not complete")
        await asyncio.sleep(0.005)
        await ioc.tick()
    return task.result()


def test_configure_loads_limits_from_the_cell_file(ioc):
    press = ioc.press
    assert press.pressure_sp.upper_ctrl_limit == 200.0
    assert press.pressure_rb.upper_alarm_limit == 225.0
    assert press.force_rb.upper_alarm_limit == 20.0
    assert press.kp_sp.value == 19.0
    assert press.pressure_sp.units == "MPa"
    assert ioc.cell_rb.value == "si-nmc"


@pytest.mark.parametrize("value", [math.nan, math.inf, -5.0, 250.0])
def test_refused_setpoints_leave_state_and_say_why(ioc, value):
    async def go():
        await ioc.press.mode_sp.write("Pressure")  # holds the pressure there: the target
        before = ioc.press.pressure_sp.value
        with pytest.raises(Exception):  # noqa: B017 - the reason is checked below
            await ioc.press.pressure_sp.write(value)
        return before

    before = run(go())
    sp = ioc.press.pressure_sp
    assert sp.value == before == pytest.approx(ioc.backend.press.target)
    assert ioc.backend.press.target == pytest.approx(ioc.backend.press.pressure)
    assert "Pressure-SP refused" in ioc.msg_rb.value
    assert ("finite" in ioc.msg_rb.value) or ("outside the limits" in ioc.msg_rb.value)
    assert sp.alarm.status == AlarmStatus.WRITE
    assert sp.alarm.severity == AlarmSeverity.MAJOR_ALARM
    assert ioc.press.pressure_rb.alarm.severity == AlarmSeverity.NO_ALARM  # alarms not shared


def test_pressure_setpoint_refused_while_off(ioc):
    with pytest.raises(Exception, match="Off mode"):
        run(ioc.press.pressure_sp.write(20.0))
    assert ioc.backend.press.target == 0.0
    assert "set Mode to Pressure first" in ioc.msg_rb.value


def test_put_completes_when_settled_and_a_move_to_the_same_value_completes(ioc):
    async def go():
        await ioc.press.mode_sp.write("Pressure")
        move = asyncio.create_task(ioc.press.pressure_sp.write(80.0))
        await tick_until(ioc, move)
        assert ioc.backend.press.settled
        assert ioc.press.settled_rb.value == "Yes"
        assert abs(ioc.press.pressure_rb.value - 80.0) <= 0.2
        again = asyncio.create_task(ioc.press.pressure_sp.write(80.0))
        await tick_until(ioc, again, timeout=1.0)

    run(go())


def test_stop_completes_a_pending_ramp_and_holds(ioc):
    async def go():
        await ioc.press.mode_sp.write("Pressure")
        await ioc.press.ramp_rate_sp.write(1.0)
        ioc.speed = 20.0
        move = asyncio.create_task(ioc.press.pressure_sp.write(150.0))
        for _ in range(5):
            await asyncio.sleep(0.01)
            await ioc.tick()
        assert not move.done()
        await ioc.press.stop_cmd.write(1)
        await asyncio.wait_for(move, 1.0)
        held = ioc.backend.press.target
        assert 0 < held < 20
        assert ioc.press.pressure_sp.value == pytest.approx(held)

    run(go())


def test_interlock_trips_latches_and_resets(ioc):
    async def go():
        press = ioc.press
        await press.mode_sp.write("Pressure")
        move = asyncio.create_task(press.pressure_sp.write(150.0))
        await tick_until(ioc, move)
        await press.mode_sp.write("Gap")
        await press.max_pressure_sp.write(120.0)
        await press.over_pressure_sp.write(130.0)  # below the load: trips at once
        await ioc.tick()
        assert ioc.interlock_rb.value == "Tripped"
        assert ioc.interlock_rb.alarm.severity == AlarmSeverity.MAJOR_ALARM
        assert press.mode_rb.value == "Off" and press.mode_sp.value == "Off"
        assert "over-pressure" in ioc.interlock_reason_rb.value
        with pytest.raises(Exception, match="reset it"):
            await press.mode_sp.write("Pressure")
        for _ in range(20):  # the released press unloads
            await asyncio.sleep(0.005)
            await ioc.tick()
        await ioc.interlock_reset_cmd.write(1)
        assert ioc.interlock_rb.value == "OK"
        assert ioc.interlock_rb.alarm.severity == AlarmSeverity.NO_ALARM
        assert "interlock reset" in ioc.msg_rb.value

    run(go())


def test_a_trip_during_a_move_fails_the_put(ioc):
    async def go():
        press = ioc.press
        await press.mode_sp.write("Pressure")
        await press.ramp_rate_sp.write(1.0)
        ioc.speed = 50.0
        move = asyncio.create_task(press.pressure_sp.write(100.0))
        await asyncio.sleep(0.01)
        await ioc.tick()
        ioc.backend._trip("over-pressure: test")  # as the physics would
        await ioc.tick()
        with pytest.raises(Exception, match="interlock"):
            await asyncio.wait_for(move, 1.0)
        assert ioc.backend.press.mode == Mode.OFF

    run(go())


def test_gains_and_output_limits_reach_the_loop(ioc):
    async def go():
        await ioc.press.kp_sp.write(10.0)
        await ioc.press.drvh_sp.write(100.0)
        with pytest.raises(Exception, match="DRVL"):
            await ioc.press.drvl_sp.write(150.0)

    run(go())
    pid = ioc.backend.press.pid
    assert pid.kp == 10.0 and pid.drvh == 100.0 and pid.drvl == -200.0
    assert ioc.press.drvl_sp.value == -200.0


def test_tare_refused_under_load_and_accepted_when_off(ioc):
    async def go():
        await ioc.press.mode_sp.write("Pressure")
        with pytest.raises(Exception, match="Off first"):
            await ioc.load_cell.tare_cmd.write(1)
        await ioc.press.mode_sp.write("Off")
        await ioc.load_cell.tare_cmd.write(1)

    run(go())
    assert ioc.load_cell.force_rb.value == 0.0
    assert ioc.load_cell.tare_offset_rb.value != 0.0


def test_a_scan_that_cannot_keep_up_slows_the_clock_instead_of_blocking(ioc):
    async def go():
        await ioc.press.mode_sp.write("Pressure")
        ioc.backend.press.allow_linear = False  # every loop period: ~500x real time
        ioc.speed = 1e5
        ioc._last_wall -= 0.05  # one scan period has passed
        start = ioc.backend.time
        await ioc.tick()
        return ioc.backend.time - start

    advanced = run(go())
    assert 0 < advanced < 0.05 * 1e5
    assert ioc.actual_speed_rb.value < 1e5


def test_every_floating_point_pv_says_its_units(ioc):
    """A number without a unit is half a number (a CA client shows EGU beside it). A unit
    that follows another PV says the one in force, and says so while none is chosen."""
    from caproto import ChannelDouble

    from ssb_ioc.server.detector import DetectorIOC

    detector = DetectorIOC(prefix="X:", sample="U:")
    for group in (ioc, detector):
        missing = [
            name
            for name, pv in group.pvdb.items()
            if isinstance(pv, ChannelDouble) and not (pv.units or "").strip()
        ]
        assert not missing, f"floating-point PVs without units: {missing}"
        too_long = [name for name, pv in group.pvdb.items() if len(getattr(pv, "units", "")) > 8]
        assert not too_long, f"units longer than a CA client shows (8): {too_long}"
    value = ioc.cycler.term1_value
    assert value.units == "by type"
    run(ioc.cycler.term1_type.write("Capacity"))
    assert value.units == "mAh"
    run(ioc.fault_type_sp.write("ContactLoss"))
    assert ioc.fault_size_sp.units == "1"
