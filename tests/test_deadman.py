"""The press's deadman: without a client heartbeat for Deadman-SP s, hold or ramp down."""

from __future__ import annotations

import threading

import pytest

pytestmark = pytest.mark.network


def press_at(ioc, pressure: float) -> None:
    ioc.put("Press:Mode-SP", "Pressure")
    ioc.put("Press:Pressure-SP", pressure, timeout=20)


def test_no_heartbeat_holds_the_pressure_measured_then(ioc):
    press_at(ioc, 30.0)
    ioc.put("Press:RampRate-SP", 0.5)
    ioc.pv("Press:Pressure-SP").write([150.0], wait=False)  # a long ramp under way
    ioc.put("Press:Deadman-SP", 0.5)
    assert ioc.enum("Press:Deadman-RB") == "Armed"
    ioc.wait_for(lambda: ioc.enum("Press:Deadman-RB") == "Expired", what="the deadman")
    held = ioc.get("Press:Pressure-SP")
    assert 30.0 < held < 150.0  # the ramp stopped where it was
    assert "deadman: no client heartbeat for 0.5 s: holding" in ioc.text("Rig:Msg-RB")
    assert ioc.get("Press:PressureDemand-RB") == pytest.approx(held)
    ioc.put("Press:Heartbeat-Cmd", 1)  # a client is back: armed again, nothing restored
    assert ioc.enum("Press:Deadman-RB") == "Armed"
    assert ioc.get("Press:Pressure-SP") == pytest.approx(held)


def test_no_heartbeat_ramps_down_to_the_floor(ioc):
    press_at(ioc, 60.0)
    ioc.put("Press:DeadmanAction-SP", "RampDown")
    ioc.put("Press:DeadmanFloor-SP", 5.0)
    ioc.put("Press:Deadman-SP", 0.3)
    ioc.wait_for(lambda: ioc.enum("Press:Deadman-RB") == "Expired", what="the deadman")
    assert "ramping down to 5 MPa" in ioc.text("Rig:Msg-RB")
    ioc.wait_for(lambda: abs(ioc.get("Press:Pressure-RB") - 5.0) < 0.5, what="the floor")


def test_heartbeats_keep_the_deadman_armed(ioc):
    press_at(ioc, 40.0)
    ioc.put("Press:Deadman-SP", 0.5)
    stop = threading.Event()
    beats = ioc.pv("Press:Heartbeat-Cmd")

    def beat():
        while not stop.wait(0.1):  # a client's heartbeat every 0.1 s
            beats.write([1], wait=True, timeout=2)

    thread = threading.Thread(target=beat)
    thread.start()
    try:
        t0 = ioc.get("Rig:Time-RB")
        ioc.wait_for(lambda: ioc.get("Rig:Time-RB") > t0 + 150.0, what="1.5 s at 100x")
        assert ioc.enum("Press:Deadman-RB") == "Armed"
    finally:
        stop.set()
        thread.join()
    ioc.put("Press:Deadman-SP", 0.0)
    assert ioc.enum("Press:Deadman-RB") == "Off"


def test_a_running_protocol_keeps_the_deadman_armed(ioc, rig, session):
    from ssb_plans.cycling import run_protocol

    press_at(ioc, 30.0)
    ioc.put("Press:Deadman-SP", 3.0)  # well above a poll of the plan, even on a busy machine
    session.RE(run_protocol(rig, "Rest for 10 minutes\n", poll=0.2))  # ~6 s at 100x
    assert ioc.enum("Press:Deadman-RB") == "Armed"  # heartbeats all along
    assert "deadman" not in ioc.text("Rig:Msg-RB")
    ioc.wait_for(lambda: ioc.enum("Press:Deadman-RB") == "Expired", what="expiry once alone")
