"""Both sides agree with the contract: the IOC's own enumerations and the enum strings of
its PVs are the contract's names (no network: the PV database in memory)."""

from __future__ import annotations

import pytest

from ssb_contract.refusals import REFUSAL_NAMES
from ssb_contract.states import (
    DIRECTIONS,
    LIMITS,
    NO_LIMIT,
    PRESS_MODES,
    SEQUENCE_ACTIVE,
    SEQUENCE_STATES,
    STEP_KINDS,
)
from ssb_ioc.server import RigIOC
from ssb_ioc.sim import Mode, Rig, load_cell_file
from ssb_ioc.sim.cycler import Limit, StepKind
from ssb_ioc.sim.sequencer import ACTIVE


@pytest.fixture(scope="module")
def pvdb():
    return RigIOC(prefix="C:", backend=Rig(load_cell_file("si-nmc"))).pvdb


def test_the_simulations_enumerations_are_the_contracts():
    assert tuple(m.name.title() for m in Mode) == PRESS_MODES
    assert tuple(k.value for k in StepKind) == tuple(k.lower() for k in STEP_KINDS)
    assert tuple(limit.value for limit in Limit) == tuple(x.lower() for x in LIMITS)
    assert set(ACTIVE) == set(SEQUENCE_ACTIVE) <= set(SEQUENCE_STATES)


@pytest.mark.parametrize(
    "name, names",
    [
        ("Press:Mode-SP", PRESS_MODES),
        ("Press:Mode-RB", PRESS_MODES),
        ("Cyc:StepType-SP", STEP_KINDS),
        ("Cyc:Term1Type-SP", (NO_LIMIT, *LIMITS)),
        ("Cyc:Term3Dir-SP", DIRECTIONS),
        ("Seq:State-RB", SEQUENCE_STATES),
        ("Press:Refusal-RB", REFUSAL_NAMES),
        ("Rig:Refusal-RB", REFUSAL_NAMES),
    ],
)
def test_each_enum_pv_serves_the_contracts_names_in_order(pvdb, name, names):
    assert tuple(pvdb["C:" + name].enum_strings) == names


def test_the_devices_check_steps_against_the_contract():
    from ssb_devices import CyclerStep, Termination

    for kind in STEP_KINDS:
        CyclerStep(kind, current=1e-3, voltage=4.0, power=1e-3, resistance=10.0)
    for limit in LIMITS:
        Termination(limit, 1.0)
    with pytest.raises(ValueError, match="expected one of"):
        CyclerStep("Charge")
    with pytest.raises(ValueError, match="expected one of"):
        Termination("Voltage", 4.2, direction="Up")
