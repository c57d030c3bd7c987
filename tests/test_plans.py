"""Plan structure without hardware: message sequences, limits, metadata checks."""

import pytest
from bluesky import RunEngine
from bluesky.simulators import check_limits
from ophyd.sim import make_fake_device
from ophyd.utils import LimitError

from ssb_devices import Rig
from ssb_plans import (
    MetadataError,
    hold_pressure,
    pressure_steps,
    ramp_pressure,
    set_pressure,
    validate_cell,
    validate_run_metadata,
)
from ssb_plans.demo import DEMO_CELL

CELL = {**DEMO_CELL, "cell_id": "A1"}
GOOD_MD = {"cell": CELL, "cell_id": "A1", "purpose": "material analysis", "operator": "ada"}


@pytest.fixture
def fake_rig():
    rig = make_fake_device(Rig)("SSB:", name="rig")
    rig.press.max_pressure.sim_put(200.0)
    return rig


def commands(plan):
    return list(plan)


def test_set_pressure_messages(fake_rig):
    msgs = commands(set_pressure(fake_rig, 50.0, md=GOOD_MD))
    names = [m.command for m in msgs]
    assert names[0] == "stage" and names[-1] == "unstage"
    assert names.index("open_run") < names.index("set") < names.index("close_run")
    start = next(m for m in msgs if m.command == "open_run").kwargs
    assert start["plan_name"] == "set_pressure"
    assert start["plan_args"] == {"pressure": 50.0}
    assert start["rig_prefix"] == "SSB:"
    assert start["cell"]["cell_id"] == "A1" and start["purpose"] == "material analysis"
    sets = [(m.obj.name, m.args[0]) for m in msgs if m.command == "set"]
    assert sets == [("rig_press_mode", "Pressure"), ("rig_press", 50.0)]
    assert names.count("save") == 2  # a reading before and after


def test_ramp_sets_the_rate_and_restores_it(fake_rig):
    msgs = commands(ramp_pressure(fake_rig, 80.0, 2.0, interval=5.0, md=GOOD_MD))
    sets = [(m.obj.name, m.args[0]) for m in msgs if m.command == "set"]
    assert sets[0] == ("rig_press_ramp_rate", 2.0)
    assert ("rig_press", 80.0) in sets
    assert sets[-1] == ("rig_press_ramp_rate", 0.0)  # the previous rate (simulated: 0)


def test_hold_waits_on_the_rig_clock_not_on_sleep(fake_rig):
    msgs = commands(hold_pressure(fake_rig, 600.0, interval=60.0, md=GOOD_MD))
    assert not any(m.command == "sleep" for m in msgs)
    clock_targets = [m.args[0] for m in msgs if m.command == "set" and m.obj is fake_rig.clock]
    assert clock_targets == [60.0 * k for k in range(1, 11)]
    assert [m.command for m in msgs].count("save") == 11


def test_pressure_steps_visit_each_pressure_in_one_run(fake_rig):
    msgs = commands(pressure_steps(fake_rig, [100, 50, 25], 300.0, rate=1.0, md=GOOD_MD))
    names = [m.command for m in msgs]
    assert names.count("open_run") == 1
    targets = [m.args[0] for m in msgs if m.command == "set" and m.obj is fake_rig.press]
    assert targets == [100, 50, 25]


def test_check_limits_refuses_a_step_beyond_the_limit(fake_rig):
    RunEngine(context_managers=[])  # check_limits runs in the bluesky event loop
    check_limits(pressure_steps(fake_rig, [100, 150], 60.0, md=GOOD_MD))
    with pytest.raises(LimitError, match="250 MPa is outside"):
        check_limits(pressure_steps(fake_rig, [100, 250], 60.0, md=GOOD_MD))


@pytest.mark.parametrize(
    ("plan", "match"),
    [
        (lambda rig: set_pressure(rig, float("nan"), md=GOOD_MD), "not a finite number"),
        (lambda rig: ramp_pressure(rig, 50, -1.0, md=GOOD_MD), "rate"),
        (lambda rig: hold_pressure(rig, 0, md=GOOD_MD), "duration"),
        (lambda rig: pressure_steps(rig, [], 10, md=GOOD_MD), "at least one pressure"),
    ],
)
def test_bad_arguments_are_refused_before_any_message(fake_rig, plan, match):
    with pytest.raises(ValueError, match=match):
        next(plan(fake_rig))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"area_cm2": -0.785}, r"cell\.area_cm2: -0\.785 cm\^2 is impossible"),
        ({"area_cm2": None}, r"cell\.area_cm2: missing"),
        ({"layers_um": {"separator": 0}}, r"cell\.layers_um\.separator"),
        ({"capacity_mAh": None}, r"cell\.capacity_mAh: missing"),
        ({"colour": "blue"}, r"cell\.colour: unknown field"),
        ({"cell_id": ""}, r"cell\.cell_id: expected a non-empty string"),
        ({"cell_id": "../../etc/x"}, r"cell\.cell_id: '\.\./\.\./etc/x' names files"),
        ({"cell_id": "A1\x1b[2J"}, r"cell\.cell_id: '\\x1b' at 3 is not printable"),
        ({"cell_id": "A1\nB2"}, r"cell\.cell_id: '\\n' at 3 is not printable"),
        ({"cell_id": "A" * 10_000}, r"cell\.cell_id: 10,000 characters; at most 64"),
        ({"chemistry": "NMC\rLPSCl"}, r"cell\.chemistry: '\\r' at 4 is not printable"),
        ({"notes": "x" * 5000}, r"cell\.notes: 5,000 characters; at most 4000"),
    ],
)
def test_bad_cell_descriptions_name_the_field(fake_rig, change, match):
    cell = {**CELL, **change}
    cell = {k: v for k, v in cell.items() if v is not None}
    with pytest.raises(MetadataError, match=match):
        validate_cell(cell)
    plan = set_pressure(fake_rig, 50.0, md={**GOOD_MD, "cell": cell, "cell_id": "A1"})
    with pytest.raises(MetadataError, match=match):
        next(plan)  # refused before the first message: nothing moves


def test_printable_identifiers_pass_and_notes_may_run_over_lines():
    validate_cell({**CELL, "cell_id": "Zelle-ü #3 (B)", "notes": "line one\nline\ttwo"})
    with pytest.raises(MetadataError, match=r"operator: '\\x1b' at 4 is not printable"):
        validate_run_metadata({**GOOD_MD, "operator": "ada\x1b]0;owned\a"})


def test_run_metadata_needs_cell_purpose_operator():
    validate_run_metadata(GOOD_MD)
    with pytest.raises(MetadataError, match="purpose"):
        validate_run_metadata({**GOOD_MD, "purpose": "fun"})
    with pytest.raises(MetadataError, match="operator"):
        validate_run_metadata({k: v for k, v in GOOD_MD.items() if k != "operator"})
    with pytest.raises(MetadataError, match="cell: missing"):
        validate_run_metadata({"purpose": "failure mechanism", "operator": "ada"})
    with pytest.raises(MetadataError, match="cell_id"):
        validate_run_metadata({**GOOD_MD, "cell_id": "B2"})
    validate_run_metadata({"purpose": "commercial viability"}, partial=True)
