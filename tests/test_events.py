"""Event detection on the instrument: injected faults are caught, clean cycling is not."""

import asyncio
import math

import numpy as np
import pytest
from caproto import ChannelType
from conftest import pressed_sim_rig

from ssb_ioc.core.channel import Limit, Step, StepKind, Termination
from ssb_ioc.core.events import EVENT_KINDS, EventDetector, Thresholds
from ssb_ioc.server import RigIOC
from ssb_ioc.sim import RigError


def events(rig) -> list[tuple[str, float]]:
    rows = rig.events.buffer.since(0)
    return [(EVENT_KINDS[int(r[2])], float(r[3])) for r in rows]


def charge(rig, c_rate=0.5):
    rig.cycler.start(Step(StepKind.CC, current=c_rate * 2e-3))


# --- the detector alone ---------------------------------------------------------------
def test_a_pressure_excursion_is_one_event_until_it_comes_back():
    detector = EventDetector(Thresholds(pressure=1.0))
    for t, p in enumerate([100.0, 100.2, 101.6, 101.4, 100.8, 100.3, 101.5, 98.7]):
        detector.check_pressure(float(t), p, held=100.0, gap_mode=False, step=3)
    rows = detector.buffer.since(0)
    kinds = [EVENT_KINDS[int(k)] for k in rows[:, 2]]
    assert kinds == ["pressure_spike", "pressure_spike", "pressure_drop"]
    assert rows[:, 1].tolist() == [2.0, 6.0, 7.0]  # re-armed below half the threshold
    assert rows[0, 3] == pytest.approx(1.6) and rows[0, 5] == 3


def test_in_a_fixed_gap_only_a_jump_counts_not_the_slow_breathing():
    detector = EventDetector(Thresholds(pressure=1.0))
    slow = 100 + 0.3 * np.arange(20)  # 5.7 MPa of breathing, 0.3 MPa per check
    for t, p in enumerate([*slow, slow[-1] + 1.5]):
        detector.check_pressure(float(t), p, held=None, gap_mode=True, step=1)
    assert [EVENT_KINDS[int(r[2])] for r in detector.buffer.since(0)] == ["pressure_spike"]


def test_nothing_is_watched_while_moving_or_disabled():
    detector = EventDetector(Thresholds(pressure=1.0))
    detector.check_pressure(0.0, 150.0, held=None, gap_mode=False, step=1)  # moving
    detector.thresholds.enabled = False
    detector.check_pressure(1.0, 150.0, held=100.0, gap_mode=False, step=1)
    detector.check_voltage(2.0, 3.8, 3.7, 1e-3, step=1)
    assert detector.buffer.next_seq == 0


@pytest.mark.parametrize(
    "before, after, current, kind, magnitude",
    [
        (3.80, 3.78, 1e-3, "soft_short", 0.02),  # falls while charging
        (3.80, 3.78, 0.0, "soft_short", 0.02),  # falls at rest
        (3.80, 3.81, 1e-3, "resistance_jump", 10.0),  # jumps up on charge: +10 ohm
        (3.80, 3.79, -1e-3, "resistance_jump", 10.0),  # jumps down on discharge
        (3.80, 3.795, 1e-3, None, None),  # 5 mV: below the thresholds
        (3.80, 3.803, 1e-3, None, None),  # normal charging
    ],
)
def test_voltage_changes_are_classified(before, after, current, kind, magnitude):
    detector = EventDetector()
    detector.check_voltage(10.0, before, after, current, step=2)
    rows = detector.buffer.since(0)
    if kind is None:
        assert len(rows) == 0
    else:
        assert [EVENT_KINDS[int(rows[0, 2])]] == [kind]
        assert rows[0, 3] == pytest.approx(magnitude)


# --- in the simulated rig -------------------------------------------------------------
def test_an_injected_soft_short_is_detected_with_its_voltage_drop():
    rig = pressed_sim_rig()
    charge(rig)
    rig.advance(600.0)
    assert events(rig) == []
    r = 50.0  # r_bulk + R_int at 100 MPa (si-nmc)
    v = rig.cell.voltage
    rig.inject_fault("soft_short", 1e-4)
    rig.advance(5.0)
    (kind, drop), *_ = events(rig)
    assert kind == "soft_short"
    assert drop == pytest.approx(v * 1e-4 * r / (1 + 1e-4 * r), rel=0.1)  # (1 + G R) divider


def test_an_injected_pressure_spike_is_detected_and_kept_at_full_rate():
    rig = pressed_sim_rig()
    rig.advance(10.0)
    rig.inject_fault("pressure_spike", 2.0)
    start = rig.time
    rig.advance(5.0)
    (kind, size), *_ = events(rig)
    k = rig.press.k / rig.press.area_mm2  # MPa per um of thickness, frame and stack in series
    assert kind == "pressure_spike"
    assert size == pytest.approx(2.0 * k, rel=0.2)
    rows = rig.fast.since(0)
    lead, fast = rows[rows[:, 1] < start], rows[rows[:, 1] >= start]
    assert np.allclose(np.diff(lead[:, 1]), 1.0) and len(lead) >= 4  # cell steps before
    assert fast[0, 1] == pytest.approx(start, abs=0.01)
    assert np.allclose(np.diff(fast[:, 1]), 1e-3)  # then every loop period: 1 kHz
    assert len(fast) == pytest.approx(rig.event_window * 1000, abs=20)
    assert fast[:, 2].max() > 100.0 + 0.5 * size  # the transient itself is in the samples
    assert abs(fast[-100:, 2].mean() - 100.0) < 0.1  # and the loop taking it back


def test_a_contact_loss_under_current_is_a_resistance_jump():
    rig = pressed_sim_rig()
    rig.set_pressure(10.0)  # creep closes voids within a second at 100 MPa, not at 10
    rig.advance(30.0)
    charge(rig)
    rig.advance(600.0)
    r_before = rig.cell.interfacial_resistance(10.0)
    rig.inject_fault("contact_loss", 0.3)
    rig.advance(5.0)
    (kind, jump), *_ = events(rig)
    assert kind == "resistance_jump"
    assert jump == pytest.approx(r_before * (1 / 0.7 - 1), rel=0.15)


@pytest.mark.parametrize(
    "cell, pressure, mode",
    [
        ("si-nmc", 100.0, "Pressure"),
        ("si-nmc", 5.0, "Pressure"),
        ("si-nmc", 100.0, "Gap"),
        ("li-nmc", 20.0, "Pressure"),
    ],
)
def test_clean_cycling_raises_no_event(cell, pressure, mode):
    from ssb_ioc.sim import Rig, load_cell_file

    rig = Rig(load_cell_file(cell), seed=2)
    rig.tare()
    rig.set_mode("Pressure")
    rig.set_pressure(pressure)
    rig.advance(30.0)
    rig.set_mode(mode)
    for c_rate in (0.2, 1.0) if pressure < 50 else (0.2, 1.0, 4.0):
        current = c_rate * 2e-3
        for step in (
            Step(
                StepKind.CCCV,
                current=current,
                voltage=4.1,
                terminations=(Termination(Limit.CURRENT, current / 10),),
            ),
            Step(StepKind.REST, terminations=(Termination(Limit.TIME, 600.0),)),
            Step(StepKind.CC, current=-current, terminations=(Termination(Limit.VOLTAGE, 3.0),)),
            Step(StepKind.REST, terminations=(Termination(Limit.TIME, 600.0),)),
        ):
            rig.cycler.start(step)
            while rig.cycler.running:
                rig.advance(60.0)
    assert not rig.cycler.tripped
    assert events(rig) == []
    assert rig.fast.next_seq == 0  # no window opened, nothing sampled at full rate


def test_full_rate_sampling_on_request_and_decimated():
    rig = pressed_sim_rig()
    rig.set_fast_sampling("on", rate=250.0)
    start = rig.time
    rig.advance(2.0)
    rows = rig.fast.since(0)
    assert len(rows) == 500 and np.allclose(np.diff(rows[:, 1]), 4e-3)
    assert rows[0, 1] > start
    rig.set_fast_sampling("off")
    rig.advance(2.0)
    assert rig.fast.next_seq == 500
    rig.set_fast_sampling("on", duration=1.0)  # ends by itself
    rig.advance(3.0)
    assert rig.fast.next_seq == 750
    rig.set_fast_sampling("step", rate=1000.0)  # with the cycler step, not before or after
    rig.advance(1.0)
    assert rig.fast.next_seq == 750
    rig.cycler.start(Step(StepKind.CC, current=1e-3, terminations=(Termination(Limit.TIME, 2.0),)))
    rig.advance(5.0)
    rows = rig.fast.since(750)
    assert len(rows) == pytest.approx(2000, abs=2) and np.all(rows[:, 6] == 1e-3)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda rig: rig.set_fast_sampling("on", rate=5000.0), "expected 0 < rate <= 1000 Hz"),
        (lambda rig: rig.set_fast_sampling("on", rate=math.nan), "not a finite number"),
        (lambda rig: rig.set_fast_sampling("sometimes"), "expected off, on or step"),
        (lambda rig: rig.set_fast_sampling("on", duration=-1.0), "expected >= 0"),
        (lambda rig: rig.set_event_thresholds(pressure=-1.0), "expected > 0"),
        (lambda rig: rig.set_event_thresholds(voltage_drop=math.inf), "not a finite number"),
        (lambda rig: rig.set_event_thresholds(speed=1.0), "unknown event thresholds: speed"),
    ],
)
def test_bad_event_settings_are_refused_and_change_nothing(call, message):
    rig = pressed_sim_rig()
    before = (rig.fast_mode, rig.fast_decimation, vars(rig.events.thresholds).copy())
    with pytest.raises(RigError, match=message):
        call(rig)
    assert (rig.fast_mode, rig.fast_decimation, vars(rig.events.thresholds)) == before


def test_event_pvs_configure_detection_and_report_the_newest():
    rig = pressed_sim_rig()
    ioc = RigIOC(prefix="E:", backend=rig, speed=1000.0)

    async def go():
        await ioc.configure()
        await ioc.events.pressure_sp.write(0.5)
        rig.inject_fault("pressure_spike", 1.0)
        rig.advance(1.0)
        await ioc.update_readbacks()
        await ioc.events.buf.pages.page0.read(ChannelType.DOUBLE)
        with pytest.raises(Exception, match="outside the limits"):
            await ioc.events.window_sp.write(-2.0)

    asyncio.run(go())
    assert rig.events.thresholds.pressure == 0.5
    assert ioc.events.count_rb.value == 1
    assert ioc.events.last_rb.value.startswith("pressure_spike of 0.")
    page0 = ioc.events.buf.pages.page0.value
    assert list(page0[:2]) == [0, 1] and len(page0) == 2 + 6  # page 0 holds the one event
    assert ioc.load_cell.fast.next_seq_rb.value == 4 + 1000  # 4 cell steps, then 1 s at 1 kHz
    assert rig.event_window == 2.0
    assert "Evt:Window-SP refused: " in ioc.msg_rb.value
    assert ioc.msg_rb.value.endswith("(the put: -2.0)")


def test_a_step_stopped_and_restarted_between_two_cell_steps_is_no_event():
    """Regression: a pause and a resume within one IOC scan left the open-circuit voltage
    as the baseline of the resumed step: its ohmic drop looked like a resistance jump."""
    rig = pressed_sim_rig()
    step = Step(StepKind.CC, current=1e-3, terminations=(Termination(Limit.TIME, 3600.0),))
    rig.cycler.start(step, index=2)
    rig.advance(100.0)
    rig.cycler.stop()  # no simulation step between the stop ...
    rig.cycler.start(step, index=2)  # ... and the same step again
    rig.advance(100.0)
    assert events(rig) == []


def test_a_scheduled_fault_happens_at_its_experiment_time():
    rig = pressed_sim_rig()
    at = rig.time + 100.0
    assert rig.inject_fault("pressure_spike", 2.0, at=at).endswith(f"scheduled at t = {at:g} s")
    rig.advance(99.0)
    assert events(rig) == [] and rig.cell.state.extra_swelling == 0.0
    rig.advance(5.0)
    assert rig.cell.state.extra_swelling == 2.0
    (row,) = rig.events.buffer.since(0)
    assert row[1] == pytest.approx(at, abs=1e-6)  # on time, whatever the advance() sizes
    with pytest.raises(RigError, match="fault time"):
        rig.inject_fault("soft_short", at=math.nan)


def test_open_circuit_action_stops_the_step_in_the_simulation_step_of_the_event():
    rig = pressed_sim_rig()
    rig.set_event_action("soft_short", "open_circuit")
    charge(rig)
    rig.advance(600.0)
    rig.inject_fault("soft_short")
    rig.advance(1.5)
    assert not rig.cycler.running and rig.cycler.reason.startswith("stopped on event: soft_short")
    assert rig.press.settled  # the press holds on
    with pytest.raises(RigError, match="expected log or open_circuit"):
        rig.set_event_action("soft_short", "explode")
    with pytest.raises(RigError, match="event kind 'meteor'"):
        rig.set_event_action("meteor", "log")
    assert rig.event_actions["soft_short"] == "open_circuit"


def test_load_cell_drift_over_a_long_hold_raises_no_pressure_event():
    """Regression: the thickness-step check compared the true pressure with the loop's
    measured setpoint, so a load cell drifting > 1 MPa fired an event every cell step."""
    from ssb_ioc.sim import Rig, load_cell_file

    params = load_cell_file("si-nmc").replace(load_cell={"drift_rate": 0.02})  # 1.3 MPa/h
    rig = Rig(params, seed=1)
    rig.tare()
    rig.set_mode("Pressure")
    rig.set_pressure(100.0)
    rig.advance(30.0)
    rig.advance(3 * 3600.0)
    assert abs(rig.press.true_pressure - 100.0) > 2.0  # the drift the loop cannot see
    assert events(rig) == [] and rig.fast.next_seq == 0
