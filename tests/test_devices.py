"""ophyd devices against the IOC subprocess, over Channel Access."""

import math
import threading
import time

import bluesky.plan_stubs as bps
import pytest
from bluesky import RunEngine
from bluesky.simulators import check_limits
from ophyd.utils import LimitError

from ssb_devices import PressureRejected, Rig, RigDisconnected
from ssb_ioc.server import RigIOC
from ssb_ioc.sim import Rig as SimRig
from ssb_ioc.sim import load_cell_file
from ssb_plans import set_pressure


def test_every_device_pv_is_served_by_the_ioc():
    served = set(RigIOC(prefix="SSB:", backend=SimRig(load_cell_file("si-nmc"))).pvdb)
    device = Rig("SSB:", name="rig")
    try:
        named = set()
        for walk in device.walk_signals():
            signal = walk.item
            named.add(signal.pvname)
            named.add(getattr(signal, "setpoint_pvname", signal.pvname))
        missing = named - served
        assert not missing, f"devices name PVs the IOC does not serve: {sorted(missing)}"
        assert len(named) > 30
    finally:
        device.destroy()


def test_describe_carries_units_and_precision(rig):
    desc = rig.describe()
    assert desc["rig_press_readback"]["units"] == "MPa"
    assert desc["rig_press_gap"]["units"] == "um"
    assert desc["rig_load_cell_force"]["units"] == "kN"
    assert desc["rig_clock_time"]["units"] == "s"
    assert desc["rig_press_readback"]["precision"] == 3
    assert rig.press.readback.kind & rig.press.readback.kind.hinted
    assert "rig_press_kp" in rig.read_configuration()


def test_set_completes_when_settled_and_reads_the_settled_pressure(rig):
    rig.press.regulate().wait(5)
    status = rig.press.set(70.0)
    status.wait(20)
    assert status.success
    assert rig.press.settled.get() == "Yes"
    assert abs(rig.press.readback.get() - 70.0) <= 0.2  # a fresh read, not a stale monitor
    again = rig.press.set(70.0)  # a move to the present value completes too
    again.wait(5)
    assert again.success


def test_bluesky_mv_and_abs_set_wait(rig):
    RE = RunEngine(context_managers=[])
    RE(bps.mv(rig.press.mode, "Pressure"))
    RE(bps.mv(rig.press, 40.0))
    assert abs(rig.press.readback.get() - 40.0) <= 0.2
    RE(bps.abs_set(rig.press, 45.0, wait=True))
    assert abs(rig.press.readback.get() - 45.0) <= 0.2


def test_move_reports_progress_for_a_progress_bar(rig):
    rig.press.regulate().wait(5)
    rig.press.ramp_rate.set(1.0).wait(5)  # 60 s of experiment time, 0.6 s here
    updates = []

    def watcher(current=None, target=None, fraction=None, **kwargs):
        if current is not None:
            updates.append((current, target, fraction))

    status = rig.press.set(60.0)
    status.watch(watcher)
    status.wait(30)
    assert len(updates) >= 3  # ~12 at 20 Hz; fewer when the machine is busy
    assert all(target == 60.0 for _, target, _ in updates)
    currents = [c for c, _, _ in updates]
    fractions = [f for _, _, f in updates]
    assert currents[-1] > currents[0] + 20
    assert fractions[-1] < fractions[0]  # ophyd's fraction counts what is left to go


def test_stop_ends_a_ramp_and_holds(rig):
    rig.press.regulate().wait(5)
    rig.press.ramp_rate.set(0.5).wait(5)
    status = rig.press.set(150.0)
    deadline = time.monotonic() + 10
    while rig.press.readback.get() < 5.0 and time.monotonic() < deadline:
        time.sleep(0.02)
    rig.press.stop(success=True)
    status.wait(5)
    held = rig.press.setpoint.get()
    assert 5.0 < held < 150.0


def test_client_side_refusals_name_the_problem_and_send_nothing(rig, ioc):
    rig.press.regulate().wait(5)
    before = rig.press.setpoint.get()
    with pytest.raises(ValueError, match="not a finite number"):
        rig.press.set(math.nan)
    with pytest.raises(LimitError, match=r"outside the IOC's limits 0\.\.200 MPa"):
        rig.press.set(250.0)
    rig.press.hold_gap().wait(5)
    with pytest.raises(PressureRejected, match="Gap mode"):
        rig.press.set(10.0)
    assert rig.press.setpoint.get() == before
    assert ioc.text("Rig:Msg-RB") == ""  # nothing reached the IOC


def test_an_ioc_refusal_mid_move_fails_the_status_with_its_reason(rig, ioc):
    rig.press.regulate().wait(5)
    rig.press.ramp_rate.set(1.0).wait(5)
    status = rig.press.set(120.0)
    ioc.put("Press:Mode-SP", "Gap")  # another client (an operator) changes the mode
    with pytest.raises(PressureRejected, match="mode changed to Gap"):
        status.wait(5)
    assert not rig.press.moving


def test_ioc_killed_mid_move_fails_within_a_bounded_time(rig, ioc):
    rig.press.regulate().wait(5)
    rig.press.ramp_rate.set(0.5).wait(5)
    status = rig.press.set(150.0)
    ioc.process.kill()
    with pytest.raises(RigDisconnected, match="is the IOC running"):
        status.wait(10)


def test_check_limits_uses_the_ioc_limits(rig):
    check_limits(set_pressure(rig, 150.0))
    with pytest.raises(LimitError):
        check_limits(set_pressure(rig, 250.0))
    rig.press.max_pressure.set(120.0).wait(5)
    with pytest.raises(LimitError, match=r"0\.\.120 MPa"):
        check_limits(set_pressure(rig, 150.0))


def test_a_simulation_always_answers(rig):
    """Its links (instruments only can stutter) read OK, with no reply missed."""
    assert rig.link.get() == "OK" and rig.missed_replies.get() == 0


def test_tare_interlock_reset_and_mode_helpers(rig):
    rig.load_cell.tare().wait(5)
    assert abs(rig.load_cell.force.get()) < 0.01
    rig.press.regulate().wait(5)
    assert rig.press.mode.get() == "Pressure"
    rig.press.set(150.0).wait(20)
    rig.press.hold_gap().wait(5)
    rig.press.max_pressure.set(120.0).wait(5)
    rig.press.over_pressure.set(130.0).wait(5)
    deadline = time.monotonic() + 10
    while rig.interlock.get() != "Tripped" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert rig.interlock.get() == "Tripped"
    assert "over-pressure" in rig.interlock_reason.get()
    while rig.press.readback.get() > 1.0 and time.monotonic() < deadline:
        time.sleep(0.02)
    rig.reset_interlock().wait(5)
    assert rig.interlock.get() == "OK"
    rig.press.release().wait(5)
    assert rig.press.mode.get() == "Off"


def test_clock_waits_on_experiment_time(rig):
    start = rig.clock.time.get()
    done = threading.Event()
    status = rig.clock.set(start + 50.0)  # 0.5 s of wall time at 100x
    status.add_callback(lambda st: done.set())
    assert done.wait(10)
    assert rig.clock.time.get() >= start + 50.0


class _LateSignal:
    """A channel whose first read times out: connected (a busy IOC) or not (a lost one)."""

    pvname = "X:Late-RB"

    def __init__(self, connected: bool):
        self.connected, self.calls = connected, []

    def get(self, *, use_monitor, timeout=None):
        self.calls.append(timeout)
        if len(self.calls) == 1:
            raise TimeoutError("no answer")
        return 42.0


def test_a_late_answer_is_read_again_but_a_lost_ioc_fails_at_once(caplog):
    from ssb_devices.buffers import LATE_READ_TIMEOUT, read_fresh

    busy = _LateSignal(connected=True)
    assert read_fresh(busy) == 42.0
    assert busy.calls == [None, LATE_READ_TIMEOUT]
    assert "answered late" in caplog.text
    lost = _LateSignal(connected=False)
    with pytest.raises(TimeoutError):
        read_fresh(lost)
    assert len(lost.calls) == 1
