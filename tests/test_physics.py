"""Each physical law of the simulated rig, tested so that it fails if the law breaks."""

import itertools
import math

import numpy as np
import pytest

from ssb_ioc.sim import Cell, Epid, Mode, Rig, RigError, load_cell_file, ocv
from ssb_ioc.sim.cell import OCV_TABLES


@pytest.fixture
def si():
    return load_cell_file("si-nmc")


@pytest.fixture
def li():
    return load_cell_file("li-nmc")


def pressurised(params, pressure=100.0, seed=0, settle=5.0):
    """A rig with a tared load cell, settled at ``pressure``."""
    rig = Rig(params, seed=seed)
    rig.tare()
    rig.set_mode("Pressure")
    rig.set_pressure(pressure)
    rig.advance(settle)
    return rig


def cycle_capacities(params, pressure, cycles, c_rate=0.5):
    """Discharge capacities (mAh) of a cell cycled between empty and full at a pressure."""
    cell = Cell(params)
    current = c_rate * params.cell.capacity * 1e-3
    caps = []
    for _ in range(cycles):
        while cell.soc < 0.999:
            cell.step(10.0, current, pressure)
        start = cell.state.charge
        while cell.state.charge > 1e-6:
            cell.step(10.0, -current, pressure)
        caps.append(start)
    return caps


# --- electrochemistry ------------------------------------------------------------------


@pytest.mark.parametrize("chemistry", sorted(OCV_TABLES))
def test_ocv_rises_with_state_of_charge(chemistry):
    values = [ocv(chemistry, s) for s in np.linspace(0, 1, 21)]
    assert all(b > a for a, b in itertools.pairwise(values))
    assert 2.5 < values[0] < values[-1] < 4.5


def test_interfacial_resistance_falls_as_inverse_square_root_of_pressure(si):
    cell = Cell(si)
    r25, r100 = cell.interfacial_resistance(25.0), cell.interfacial_resistance(100.0)
    assert r25 / r100 == pytest.approx(2.0, rel=1e-12)
    assert r100 == pytest.approx(si.electrochemistry.r_int_ref)


def test_interfacial_resistance_scales_with_lost_contact(si):
    cell = Cell(si)
    full = cell.interfacial_resistance(50.0)
    cell.state.void_recoverable = 0.5
    assert cell.interfacial_resistance(50.0) == pytest.approx(2 * full)


def test_terminal_voltage_follows_current_sign_and_resistance(si):
    cell = Cell(si)
    cell.state.charge = 1.0
    rest = cell.terminal_voltage(0.0, 100.0)
    charge = cell.terminal_voltage(1e-3, 100.0)
    discharge = cell.terminal_voltage(-1e-3, 100.0)
    r = si.electrochemistry.r_bulk + cell.interfacial_resistance(100.0)
    assert charge - rest == pytest.approx(1e-3 * r)
    assert discharge < rest < charge


def test_polarisation_relaxes_with_its_time_constant(si):
    cell = Cell(si)
    cell.state.charge = 1.0
    cell.step(10 * si.electrochemistry.tau_pol, 1e-3, 100.0)
    v_rc = cell.state.v_rc
    assert v_rc == pytest.approx(1e-3 * si.electrochemistry.r_pol, rel=1e-3)
    cell.step(si.electrochemistry.tau_pol, 0.0, 100.0)
    assert cell.state.v_rc == pytest.approx(v_rc / math.e, rel=1e-9)


def test_charge_counting_in_milliamp_hours(si):
    cell = Cell(si)
    cell.step(3600.0, 1e-3, 100.0)  # 1 mA for an hour
    assert cell.state.charge == pytest.approx(1.0)
    assert cell.soc == pytest.approx(0.5)


# --- mechanics -------------------------------------------------------------------------


def test_lithium_plating_thickness_from_charge_passed(li):
    cell = Cell(li)
    cell.step(3600.0, li.cell.area * 1e-3, 5.0)  # 1 mAh per cm^2 of lithium plated
    assert cell.swelling == pytest.approx(4.85, rel=1e-6)


def test_constant_gap_pressure_rises_on_charge_and_falls_on_discharge(si):
    rig = pressurised(si, pressure=50.0)
    rig.set_mode("Gap")
    rig.advance(2.0)
    start = rig.press.true_pressure
    rig.set_current(1e-3)  # C/2 charge
    rig.advance(3600.0)
    charged = rig.press.true_pressure
    rig.set_current(-1e-3)
    rig.advance(3600.0)
    discharged = rig.press.true_pressure
    assert charged > start + 3.0  # swelling of ~7.6 um against a stiff stack
    assert discharged < charged - 3.0
    assert discharged == pytest.approx(start, abs=0.5)


def test_constant_pressure_holds_while_displacement_tracks_swelling(si):
    rig = pressurised(si, pressure=100.0)
    gap0, swell0 = rig.press.gap, rig.cell.swelling
    rig.set_current(1e-3)
    errors = []
    for _ in range(60):
        rig.advance(60.0)
        errors.append(rig.press.pressure - 100.0)
    assert max(abs(e) for e in errors) < si.limits.settle_tolerance
    grown = rig.cell.swelling - swell0
    assert grown > 5.0
    assert rig.press.gap - gap0 == pytest.approx(grown, rel=0.02)


# --- contact and voids -----------------------------------------------------------------


def test_stripping_opens_voids_faster_at_higher_current_and_lower_pressure(si):
    def opened(current, pressure):
        cell = Cell(si)
        cell.state.charge = 1.5
        cell.step(60.0, -current, pressure)
        return cell.state.void_recoverable + cell.state.void_permanent

    assert opened(2e-3, 50.0) > opened(1e-3, 50.0) > 0
    assert opened(1e-3, 20.0) > opened(1e-3, 100.0)
    assert opened(-1e-3, 50.0) == 0  # plating (charge) opens none


def test_creep_closes_voids_faster_at_higher_pressure_and_not_below_threshold(si):
    def remaining(pressure):
        cell = Cell(si)
        cell.state.void_recoverable = 0.2
        cell.step(600.0, 0.0, pressure)
        return cell.state.void_recoverable

    assert remaining(0.5) == pytest.approx(0.2)  # below the creep threshold
    assert remaining(5.0) < 0.2
    assert remaining(50.0) < remaining(5.0)


def test_capacity_fades_below_critical_pressure_and_not_above(si):
    pc = si.contact.critical_pressure
    above = cycle_capacities(si, pc * 1.5, cycles=5)
    below = cycle_capacities(si, pc * 0.5, cycles=5)
    assert above[-1] == pytest.approx(above[0], rel=1e-6)
    assert below[-1] < 0.95 * below[0]
    assert all(b < a for a, b in itertools.pairwise(below))


def test_soft_short_grows_above_penetration_pressure_for_lithium_metal(li, si):
    pen = li.contact.penetration_pressure
    high, low, silicon = Cell(li), Cell(li), Cell(si)
    for cell, p in ((high, pen * 1.4), (low, pen * 0.5), (silicon, 150.0)):
        cell.step(3600.0, 1e-3, p)
    assert high.state.short_conductance > 0
    assert low.state.short_conductance == 0
    assert silicon.state.short_conductance == 0
    # the short drains the cell at rest
    before = high.state.charge
    high.step(3600.0, 0.0, pen * 1.4)
    assert high.state.charge < before


# --- feedback loop (epid semantics) ----------------------------------------------------


def test_epid_anti_windup_keeps_integral_inside_limits():
    pid = Epid(kp=1.0, ki=10.0, kd=0.0, drvh=5.0, drvl=-5.0, fbon=True)
    for _ in range(1000):
        pid.update(100.0, 0.0, 0.01)  # saturated high for 10 s
    assert pid.oval == 5.0
    assert pid.i <= 5.0
    # once the error reverses, the output leaves the limit at the next samples
    for _ in range(3):
        pid.update(0.0, 1.0, 0.01)
    assert pid.oval < 5.0


def test_epid_switch_on_is_bumpless():
    pid = Epid(kp=2.0, ki=1.0, kd=0.0, drvh=100.0, drvl=-100.0)
    pid.oval = 40.0  # output left by manual operation
    pid.update(10.0, 10.0, 0.01)  # feedback off: output untouched
    assert pid.oval == 40.0
    pid.set_feedback(True)
    out = pid.update(10.0, 10.0, 0.01)  # zero error at switch-on
    assert out == pytest.approx(40.0)


def test_epid_integral_in_repeats_per_second():
    pid = Epid(kp=2.0, ki=0.5, kd=0.0, drvh=1e9, drvl=-1e9, fbon=True)
    pid.update(1.0, 0.0, 0.1)  # first update after switch-on seeds I
    for _ in range(10):
        pid.update(1.0, 0.0, 0.1)  # constant error of 1 for one second
    assert pid.i == pytest.approx(2.0 * 0.5 * 1.0)  # KP*KI*e*t
    assert pid.oval == pytest.approx(2.0 + 1.0)


# --- regulation and integration ---------------------------------------------------------


def test_default_gains_hold_within_0p2_percent_rms_while_silicon_charges_at_c2(si):
    """Every loop period stepped (the reference integration) during a C/2 charge."""
    rig = pressurised(si, pressure=100.0)
    rig.press.allow_linear = False
    rig.set_current(0.5 * si.cell.capacity * 1e-3)
    errors = []
    for _ in range(3000):  # 30 s, sampled every 10 ms
        rig.advance(0.01)
        errors.append(rig.press.true_pressure - rig.press.target)
    rms = math.sqrt(np.mean(np.square(errors)))
    assert rms < 0.002 * 100.0


@pytest.mark.parametrize("start,end", [(60.0, 80.0), (3.0, 1.0)])
def test_fast_path_matches_stepping_every_period_without_noise(si, start, end):
    """Also at a low pressure, where the fast path now runs (force above 40 N)."""
    quiet = si.replace(load_cell={"noise": 0.0, "drift_rate": 0.0})

    def run(allow_linear):
        rig = pressurised(quiet, pressure=start)
        rig.press.allow_linear = allow_linear
        rig.set_current(1e-3)
        rig.set_ramp_rate(2.0)
        rig.set_pressure(end)
        rig.advance(30.0)
        p = rig.press
        return np.array([p.y, p.v, p.pid.i, p.setpoint, p.true_pressure, p.gap])

    assert np.allclose(run(True), run(False), rtol=1e-9, atol=1e-7)


@pytest.mark.parametrize("pressure", [100.0, 2.0])
def test_fast_path_noise_matches_stepping_every_period(si, pressure):
    def spread(allow_linear):
        rig = pressurised(si, pressure=pressure, seed=3)
        rig.press.allow_linear = allow_linear
        samples = []
        for _ in range(400):
            rig.advance(0.1)
            samples.append(rig.press.true_pressure)
        return np.std(samples)

    fast, reference = spread(True), spread(False)
    assert fast == pytest.approx(reference, rel=0.25)


def test_ramp_moves_the_working_setpoint_at_the_rate(si):
    rig = pressurised(si, pressure=20.0)
    rig.set_ramp_rate(10.0)
    rig.set_pressure(70.0)
    rig.advance(2.5)
    assert rig.press.setpoint == pytest.approx(45.0, abs=0.02)
    assert rig.press.true_pressure == pytest.approx(45.0, abs=1.0)
    assert not rig.press.settled
    rig.advance(5.0)
    assert rig.press.setpoint == 70.0
    assert rig.press.settled


def test_settled_needs_settle_time_and_a_move_to_the_current_target_stays_settled(si):
    rig = pressurised(si, pressure=50.0)
    assert rig.press.settled
    rig.set_pressure(50.0)
    assert rig.press.settled
    rig.set_pressure(60.0)
    assert not rig.press.settled
    rig.advance(0.5)
    assert not rig.press.settled  # still moving or within the 1 s settle time
    rig.advance(3.0)
    assert rig.press.settled


def test_off_mode_releases_all_force(si):
    rig = pressurised(si, pressure=80.0)
    rig.set_mode(Mode.OFF)
    rig.advance(5.0)
    assert rig.press.true_force == 0.0


def test_same_seed_same_run(si):
    a, b = pressurised(si, seed=7), pressurised(si, seed=7)
    assert a.press.pressure == b.press.pressure
    assert pressurised(si, seed=8).press.pressure != a.press.pressure


# --- load cell ---------------------------------------------------------------------------


def test_load_cell_bridge_output_tare_drift_and_overload(si):
    rig = Rig(si, seed=0)
    lc = rig.load_cell
    lc.report(lc.capacity - si.load_cell.zero_offset, noise=0.0)
    assert lc.signal == pytest.approx(si.load_cell.sensitivity)  # full scale = mV/V rating
    assert not lc.overloaded
    lc.report(1.1 * lc.capacity, noise=0.0)
    assert lc.overloaded
    lc.report(0.0, noise=0.0)
    assert lc.force == pytest.approx(si.load_cell.zero_offset)
    rig.tare()
    assert lc.report(0.0, noise=0.0) == pytest.approx(0.0)
    lc.advance(3600.0)
    assert lc.report(0.0, noise=0.0) == pytest.approx(si.load_cell.drift_rate * 3600.0)


def test_pressure_is_force_over_cell_area(si):
    rig = pressurised(si, pressure=100.0)
    area_mm2 = si.cell.area * 100
    assert rig.press.pressure == pytest.approx(rig.load_cell.force / area_mm2)


# --- interlocks and refused commands ------------------------------------------------------


def test_over_pressure_trips_releases_and_latches(si):
    rig = pressurised(si, pressure=150.0)
    rig.set_mode("Gap")
    rig.over_pressure = 140.0  # as if the limit had been lowered below the load
    rig.advance(0.1)
    assert rig.interlock.startswith("over-pressure")
    assert rig.press.mode == Mode.OFF
    with pytest.raises(RigError, match="reset it"):
        rig.set_mode("Pressure")
    rig.advance(5.0)
    assert rig.press.true_force == 0.0
    rig.reset_interlock()
    assert rig.interlock == ""
    rig.set_mode("Pressure")


def test_load_cell_overload_trips(si):
    small = si.replace(
        load_cell={"capacity": 10.0}, limits={"max_setpoint": 120.0, "over_pressure": 125.0}
    )
    rig = pressurised(small, pressure=115.0)
    rig.set_mode("Gap")
    rig.set_current(5e-3)  # swelling pushes past 10 kN
    rig.advance(3600.0)
    assert rig.interlock.startswith(("load cell overload", "over-pressure"))
    assert rig.press.mode == Mode.OFF


def test_interlock_reset_refused_while_condition_persists(si):
    rig = pressurised(si, pressure=150.0)
    rig.over_pressure = 140.0
    rig.set_mode("Gap")
    rig.advance(0.001)
    rig.press.mode = Mode.GAP  # piston still loaded: the condition is still there
    rig.press.pressure = 150.0
    with pytest.raises(RigError, match="condition persists"):
        rig.reset_interlock()
    assert rig.interlock


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (math.nan, "not a finite"),
        (math.inf, "not a finite"),
        (-1.0, "outside"),
        (250.0, "outside"),
        ("abc", "not a number"),
    ],
)
def test_bad_pressure_setpoints_are_refused_and_change_nothing(si, value, match):
    rig = pressurised(si, pressure=40.0)
    with pytest.raises(RigError, match=match):
        rig.set_pressure(value)
    assert rig.press.target == 40.0


def test_pressure_setpoint_refused_in_off_mode(si):
    rig = Rig(si, seed=0)
    with pytest.raises(RigError, match="Off mode"):
        rig.set_pressure(10.0)
    assert rig.press.target == 0.0


def test_bad_limits_and_gains_are_refused(si):
    rig = Rig(si, seed=0)
    with pytest.raises(RigError, match="over-pressure"):
        rig.set_over_pressure(100.0)  # below the setpoint limit
    with pytest.raises(RigError, match="KP"):
        rig.set_gains(kp=-1.0)
    with pytest.raises(RigError, match="DRVL"):
        rig.set_output_limits(drvl=50.0, drvh=10.0)
    with pytest.raises(RigError, match="ramp rate"):
        rig.set_ramp_rate(math.nan)
    assert rig.over_pressure == si.limits.over_pressure
    assert rig.press.pid.kp == si.controller.kp
    assert rig.press.pid.drvl == si.controller.drvl


def test_tare_refused_under_load(si):
    rig = pressurised(si, pressure=50.0)
    before = rig.load_cell.tare_offset
    with pytest.raises(RigError, match="Off first"):
        rig.tare()
    assert rig.load_cell.tare_offset == before


def test_setpoint_limit_settle_and_current_refusals_change_nothing(si):
    rig = pressurised(si, pressure=150.0)
    with pytest.raises(RigError, match="below the present target"):
        rig.set_max_setpoint(100.0)
    with pytest.raises(RigError, match="over-pressure interlock"):
        rig.set_max_setpoint(300.0)
    with pytest.raises(RigError, match="settle tolerance"):
        rig.set_settle(tolerance=0.0)
    with pytest.raises(RigError, match="cell current refused"):
        rig.set_current(1.0)  # beyond the cycler channel's 20 mA
    assert rig.max_setpoint == si.limits.max_setpoint
    assert rig.press.settle_tolerance == si.limits.settle_tolerance
    assert not rig.cycler.running


def test_a_spring_fixture_swings_less_than_a_fixed_gap_and_keeps_the_force(si):
    """The spring fixture of the regulation benchmark: softer = smaller swing."""
    swings = {}
    for spring in (None, 50.0, 10.0):
        rig = pressurised(si, pressure=100.0)
        rig.set_mode("Gap")
        before = rig.press.true_pressure
        rig.press.set_spring(spring)
        assert rig.press.true_pressure == pytest.approx(before)  # no jump on fitting it
        rig.set_current(0.5 * si.cell.capacity * 1e-3)
        rig.advance(3600.0)
        swings[spring] = rig.press.true_pressure - before
    assert swings[None] > swings[50.0] > swings[10.0] > 0
    k = 1 / (1 / 100.0 + 1 / (2.0 * 78.5) + 1 / 10.0)  # N/um, frame + stack + spring
    assert swings[10.0] / swings[None] == pytest.approx(k / (1 / (1 / 100 + 1 / 157)), rel=0.05)


def test_deadman_holds_or_ramps_down_never_up():
    from conftest import pressed_sim_rig

    rig = pressed_sim_rig()  # held at 100 MPa
    rig.set_ramp_rate(0.5)
    rig.set_pressure(150.0)
    rig.advance(10.0)  # a ramp under way
    assert rig.deadman("hold", 0.0).startswith("holding")
    assert 100.0 < rig.press.target < 150.0
    assert "ramping down to 20 MPa at 0.5 MPa/s" in rig.deadman("ramp_down", 20.0)
    rig.advance(300.0)
    assert abs(rig.press.pressure - 20.0) < 0.5
    assert "ramping down to 20 MPa" in rig.deadman("ramp_down", 80.0)  # floor above: stays
    rig.set_mode("Off")
    assert "left as it is" in rig.deadman("hold", 0.0)
