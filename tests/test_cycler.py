"""The cycler channel over the simulated cell: step types, terminations, safety, logging."""

import math

import numpy as np
import pytest
from conftest import pressed_sim_rig

from ssb_ioc.core.channel import (
    SAMPLE_FIELDS,
    CyclerError,
    Limit,
    SampleBuffer,
    Step,
    StepKind,
    Termination,
)

C2 = 1e-3  # A: C/2 of the 2 mAh presets
COL = {name: i for i, name in enumerate(SAMPLE_FIELDS)}


@pytest.fixture
def rig():
    return pressed_sim_rig()


def run_step(rig, step, limit=20 * 3600.0, chunk=30.0):
    rig.cycler.start(step)
    elapsed = 0.0
    while rig.cycler.running and elapsed < limit:
        rig.advance(chunk)
        elapsed += chunk
    assert not rig.cycler.running, "step did not end"
    return rig.cycler.reason


def end_sample(rig):
    """The sample logged when the last step ended (idle logging follows it)."""
    data = rig.cycler.buffer.since(0)
    data = data[data[:, COL["step"]] == rig.cycler.counters.step]
    return data[np.argmax(data[:, COL["step_time"]])]


def v(value, rising=None):
    return Termination(Limit.VOLTAGE, value, rising)


def test_cc_charge_counts_capacity_and_energy(rig):
    reason = run_step(rig, Step(StepKind.CC, C2, terminations=(Termination(Limit.TIME, 3600),)))
    c = rig.cycler.counters
    assert reason == "time 3600 s"
    assert c.step_time == pytest.approx(3600.0)
    assert c.step_charge == pytest.approx(1.0, rel=1e-6)  # 1 mA for an hour
    assert c.charge_energy == pytest.approx(1.0 * 3.6, rel=0.1)  # mWh ~ mAh x ~3.6 V
    assert c.discharge_capacity == 0.0


def test_voltage_termination_follows_the_step_direction(rig):
    up = run_step(rig, Step(StepKind.CC, C2, terminations=(v(4.0),)))
    assert up == "voltage >= 4 V"
    assert end_sample(rig)[COL["voltage"]] >= 4.0
    down = run_step(rig, Step(StepKind.CC, -C2, terminations=(v(3.5),)))
    assert down == "voltage <= 3.5 V"
    assert end_sample(rig)[COL["voltage"]] <= 3.5


def test_first_termination_met_ends_the_step(rig):
    step = Step(
        StepKind.CC,
        C2,
        terminations=(v(4.3), Termination(Limit.CAPACITY, 0.25), Termination(Limit.TIME, 7200)),
    )
    assert run_step(rig, step) == "capacity 0.25 mAh"
    assert rig.cycler.counters.step_charge == pytest.approx(0.25, abs=0.01)


def test_cv_holds_the_voltage_until_the_current_falls(rig):
    run_step(rig, Step(StepKind.CC, C2, terminations=(v(4.05),)))
    c50 = 2e-3 / 50
    reason = run_step(
        rig,
        Step(StepKind.CV, 2 * C2, voltage=4.05, terminations=(Termination(Limit.CURRENT, c50),)),
    )
    assert reason == f"current <= {c50:g} A"
    data = rig.cycler.buffer.since(0)
    cv = data[data[:, COL["step"]] == rig.cycler.counters.step]
    assert np.abs(cv[:, COL["voltage"]] - 4.05).max() < 0.01
    assert abs(cv[-1, COL["current"]]) <= c50 * 1.5


def test_cccv_switches_from_current_to_voltage(rig):
    step = Step(StepKind.CCCV, C2, voltage=4.0, terminations=(Termination(Limit.CURRENT, 1e-4),))
    run_step(rig, step)
    data = rig.cycler.buffer.since(0)
    i, volts = data[:, COL["current"]], data[:, COL["voltage"]]
    assert i.max() == pytest.approx(C2)
    assert volts.max() < 4.01
    assert (i < C2 * 0.5).any()  # the CV phase tapered the current


def test_rest_is_open_circuit(rig):
    run_step(rig, Step(StepKind.CC, C2, terminations=(Termination(Limit.TIME, 600),)))
    reason = run_step(rig, Step(StepKind.REST, terminations=(Termination(Limit.TIME, 1800),)))
    assert reason == "time 1800 s"
    assert rig.cell.current == 0.0
    assert rig.cell.voltage == pytest.approx(rig.cell.open_circuit_voltage, abs=2e-3)


def test_constant_power_and_constant_resistance_steps(rig):
    run_step(rig, Step(StepKind.CC, C2, terminations=(Termination(Limit.TIME, 3600),)))
    run_step(rig, Step(StepKind.CP, power=-3e-3, terminations=(Termination(Limit.TIME, 600),)))
    data = rig.cycler.buffer.since(0)
    cp = data[(data[:, COL["step"]] == rig.cycler.counters.step) & (data[:, COL["step_time"]] > 0)]
    cp = cp[cp[:, COL["current"]] != 0]
    power = cp[:, COL["voltage"]] * cp[:, COL["current"]]
    assert np.abs(power + 3e-3).max() < 1e-4  # -3 mW held while the voltage falls
    reason = run_step(rig, Step(StepKind.CR, resistance=4000.0, terminations=(v(3.4),)))
    assert reason == "voltage <= 3.4 V"
    data = rig.cycler.buffer.since(0)
    cr = data[(data[:, COL["step"]] == rig.cycler.counters.step) & (data[:, COL["step_time"]] > 0)]
    cr = cr[cr[:, COL["current"]] != 0]  # idle samples after the step ended
    ratio = cr[:, COL["voltage"]] / -cr[:, COL["current"]]
    assert np.abs(ratio - 4000.0).max() < 400.0  # V/I follows the load (within one step)


def test_overvoltage_trips_to_open_circuit_with_no_client(rig):
    rig.cycler.start(Step(StepKind.CC, 5 * C2))  # no terminations: runs into the limit
    rig.advance(5 * 3600.0)
    assert rig.cycler.tripped.startswith("voltage")
    assert "safety" in rig.cycler.reason
    assert rig.cell.current == 0.0
    with pytest.raises(CyclerError, match="reset it first"):
        rig.cycler.start(Step(StepKind.REST))
    rig.cycler.reset()
    rig.cycler.start(Step(StepKind.REST))


def test_press_interlock_trips_the_cycler(rig):
    rig.cycler.start(Step(StepKind.CC, C2))
    rig.advance(60.0)
    rig._trip("over-pressure: test")
    rig.advance(10.0)
    assert rig.cycler.tripped.startswith("press interlock")
    assert rig.cell.current == 0.0


@pytest.mark.parametrize(
    ("step", "match"),
    [
        (Step(StepKind.CC, 1.0), "outside"),
        (Step(StepKind.CC, math.nan), "outside"),
        (Step(StepKind.CC, 0.0), "rest step"),
        (Step(StepKind.CV, C2, voltage=5.0), "voltage 5 V outside"),
        (Step(StepKind.CCCV, C2), "voltage 0 V"),
        (Step(StepKind.CC, C2, terminations=(v(4),) * 4), "at most three"),
        (Step(StepKind.CC, C2, terminations=(Termination(Limit.TIME, -1),)), "termination"),
        (Step(StepKind.CP), "constant power"),
        (Step(StepKind.CR, resistance=-5.0), "resistance > 0"),
    ],
)
def test_bad_steps_are_refused_and_change_nothing(rig, step, match):
    before = rig.cycler.counters.step
    with pytest.raises(CyclerError, match=match):
        rig.cycler.start(step)
    assert not rig.cycler.running
    assert rig.cycler.counters.step == before


def test_logging_period_and_pressure_columns(rig):
    run_step(rig, Step(StepKind.REST, terminations=(Termination(Limit.TIME, 600),)))
    data = rig.cycler.buffer.since(0)
    data = data[data[:, COL["step"]] == rig.cycler.counters.step]
    times = data[:, COL["test_time"]]
    assert np.all(np.diff(times) <= 10.0 + 1e-6)
    assert len(data) >= 60
    assert np.abs(data[:, COL["pressure"]] - 100.0).max() < 0.5
    assert np.all(data[:, COL["gap"]] > 0)


def test_buffer_reads_lose_and_duplicate_nothing_across_collects():
    buffer = SampleBuffer(size=50)
    seen = []
    next_seq = 0
    for batch in range(7):
        for k in range(7):
            buffer.append([batch * 10 + k] + [0.0] * (len(SAMPLE_FIELDS) - 2))
        rows = buffer.since(next_seq)
        seen += list(rows[:, 0].astype(int))
        next_seq = buffer.next_seq
    assert seen == list(range(49))
    for _ in range(60):  # overflow: the oldest are gone, and a reader can tell
        buffer.append([0.0] * (len(SAMPLE_FIELDS) - 1))
    rows = buffer.since(next_seq)
    assert rows[0, 0] == buffer.oldest_seq > next_seq
    assert len(rows) == 50


def test_impedance_sweep_shows_interfacial_resistance_falling_with_pressure(rig):
    e = rig.params.electrochemistry
    step = Step(StepKind.PEIS, f_start=1e6, f_end=0.1, points_per_decade=10)
    reason = run_step(rig, step, chunk=5.0)
    at_100 = rig.cycler.spectrum
    assert reason == "impedance sweep done (71 points)"
    assert rig.cycler.counters.step_charge == 0.0  # measured at open circuit
    assert at_100.frequency[0] == pytest.approx(1e6) and at_100.frequency[-1] == pytest.approx(0.1)
    # the high-frequency intercept is the bulk; the interface arc adds R_int(P)
    assert at_100.impedance[0].real == pytest.approx(e.r_bulk, rel=0.01)
    mid = np.argmin(np.abs(at_100.frequency - 10.0))  # between the two arcs
    r_int_100 = at_100.impedance[mid].real - e.r_bulk
    assert r_int_100 == pytest.approx(rig.cell.interfacial_resistance(100.0), rel=0.05)
    assert np.all(at_100.impedance.imag <= 0)  # capacitive
    rig.set_pressure(25.0)
    rig.advance(20.0)
    run_step(rig, step, chunk=5.0)
    at_25 = rig.cycler.spectrum
    assert at_25.count == 2 and at_25.pressure == pytest.approx(25.0, abs=0.5)
    assert at_25.impedance[mid].real - e.r_bulk == pytest.approx(2 * r_int_100, rel=0.05)


@pytest.mark.parametrize(
    "step, message",
    [
        (Step(StepKind.PEIS, f_start=1e8), "outside 1 mHz..10 MHz"),
        (Step(StepKind.PEIS, f_start=1.0, f_end=1.0), "two different"),
        (Step(StepKind.PEIS, points_per_decade=0), "points per decade"),
        (Step(StepKind.PEIS, f_start=1e7, f_end=1e-3, points_per_decade=50), "at most 200"),
    ],
)
def test_impedance_sweep_refusals(rig, step, message):
    with pytest.raises(CyclerError, match=message):
        rig.cycler.start(step)
    assert not rig.cycler.running


def test_a_stop_between_simulation_steps_logs_the_latest_mechanics():
    """Regression: a client's stop logged a sample with zero pressure, force and gap."""
    rig = pressed_sim_rig()
    rig.cycler.start(Step(StepKind.CC, C2))
    rig.advance(120.0)
    rig.cycler.stop("stopped by a client")
    last = rig.cycler.buffer.since(rig.cycler.buffer.next_seq - 1)[0]
    pressure, force, gap = last[-3:]
    assert pressure == pytest.approx(100.0, abs=0.5) and force > 7.0 and gap > 600.0
