"""Both sides agree with the contract: the IOC's own enumerations and the enum strings of
its PVs are the contract's names, the IOC serves exactly the contract's PVs (type, units,
access), and the devices name only those (no network: the PV database in memory, the
device classes read without connecting)."""

from __future__ import annotations

import pytest
from caproto import ChannelChar, ChannelDouble, ChannelEnum, ChannelInteger
from ophyd import Device, EpicsSignalRO
from ophyd.signal import EpicsSignalBase

from ssb_contract.pvs import ARRAY, ENUM, FLOAT, INT, PV, RIG_PVS, TEXT
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
from ssb_ioc.core.channel import Limit, StepKind
from ssb_ioc.core.sequencer import ACTIVE
from ssb_ioc.server import RigIOC
from ssb_ioc.sim import Mode, Rig, load_cell_file


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


def served(pv) -> PV:
    """What the IOC serves at ``pv``, in the contract's terms."""
    array = getattr(pv, "max_length", 1) > 1
    if isinstance(pv, ChannelEnum):
        kind = ENUM
    elif isinstance(pv, ChannelDouble):
        kind = ARRAY if array else FLOAT
    elif isinstance(pv, ChannelInteger):
        kind = INT
    elif isinstance(pv, ChannelChar):
        kind = TEXT
    else:
        raise AssertionError(f"{pv.pvname}: a {type(pv).__name__} is no type of the contract")
    writable = pv.pvspec.put is not None or not pv.pvspec.read_only
    return PV(kind, getattr(pv, "units", "") or "", writable)


def test_the_ioc_serves_the_contracts_pvs_and_no_others(pvdb):
    names = {name.removeprefix("C:") for name in pvdb}
    assert sorted(names - set(RIG_PVS)) == [], "served, not in ssb_contract.pvs"
    assert sorted(set(RIG_PVS) - names) == [], "in ssb_contract.pvs, not served"
    differ = {
        name: (served(pvdb["C:" + name]), pv)
        for name, pv in RIG_PVS.items()
        if served(pvdb["C:" + name]) != pv
    }
    assert differ == {}, "served (left) unlike the contract (right)"


def device_signals(cls, prefix: str = ""):
    """(suffix, written) of every PV the EPICS signals of an ophyd device class and its
    sub-devices name, read from the classes: nothing connects."""
    for attr in cls.component_names:
        cpt = getattr(cls, attr)
        suffix = prefix + (cpt.suffix or "")
        if isinstance(cpt.cls, type) and issubclass(cpt.cls, Device):
            yield from device_signals(cpt.cls, suffix)
        elif isinstance(cpt.cls, type) and issubclass(cpt.cls, EpicsSignalBase):
            writes = not issubclass(cpt.cls, EpicsSignalRO)
            if "write_pv" in cpt.kwargs:  # reads one PV, writes another
                yield suffix, False
                yield prefix + cpt.kwargs["write_pv"], writes
            else:
                yield suffix, writes


def test_the_devices_name_only_the_contracts_pvs_and_write_only_writable_ones():
    from ssb_devices import Rig as RigDevice

    signals = list(device_signals(RigDevice))
    assert len(signals) > 100  # the walk reached the sub-devices
    unknown = sorted(suffix for suffix, _ in signals if suffix not in RIG_PVS)
    assert unknown == [], "named by a device, not in ssb_contract.pvs"
    written = sorted(
        suffix for suffix, writes in signals if writes and not RIG_PVS[suffix].writable
    )
    assert written == [], "writable signals on PVs the contract says are read-only"


def test_every_reading_of_the_ports_is_shown_by_pvs_the_contract_lists():
    """The PV layer maps each reading a backend can call stale to the PVs that show it:
    every reading is mapped, and every PV it maps to is a rig PV of the contract."""
    from ssb_ioc.core.ports import READINGS
    from ssb_ioc.server.alarms import READING_PVS

    assert set(READING_PVS) == set(READINGS)
    for reading, names in READING_PVS.items():
        assert names and set(names) <= set(RIG_PVS), reading
