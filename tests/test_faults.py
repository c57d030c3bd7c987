"""Faults injected on command, so that failure detection can be tested and shown."""

import asyncio

import numpy as np
import pytest
from conftest import pressed_sim_rig

from ssb_ioc.server import RigIOC
from ssb_ioc.sim import RigError


@pytest.fixture
def rig():
    return pressed_sim_rig()


def test_soft_short_discharges_the_cell_at_rest(rig):
    v0 = rig.cell.voltage
    rig.advance(3600.0)
    clean = v0 - rig.cell.voltage
    assert rig.inject_fault("soft_short") == "soft short of 0.0001 S injected"
    v1 = rig.cell.voltage
    rig.advance(3600.0)
    assert v1 - rig.cell.voltage > 10 * max(clean, 1e-4)  # the voltage sags at open circuit


def test_pressure_spike_is_caught_by_the_loop_but_swings_a_fixed_gap(rig):
    rig.inject_fault("pressure_spike", 2.0)
    trace = []
    for _ in range(500):  # 5 s in 10 ms steps
        rig.advance(0.01)
        trace.append(rig.press.pressure)
    trace = np.array(trace)
    assert 0.3 < trace.max() - 100.0 < 5.0  # a spike ...
    assert abs(trace[-50:].mean() - 100.0) < 0.05  # ... that the loop takes back
    rig.set_mode("Gap")
    before = rig.press.pressure
    rig.inject_fault("pressure_spike", 2.0)
    rig.advance(5.0)
    assert rig.press.pressure - before > 1.0  # held gap: the pressure stays up


def test_contact_loss_raises_the_interfacial_resistance(rig):
    r0 = rig.cell.interfacial_resistance(100.0)
    rig.inject_fault("contact_loss", 0.3)
    assert rig.cell.interfacial_resistance(100.0) == pytest.approx(r0 / 0.7, rel=1e-6)


@pytest.mark.parametrize(
    "kind, size, message",
    [
        ("meteor", 0.0, "expected one of soft_short"),
        ("soft_short", -1.0, "expected >= 0"),
        ("contact_loss", 1.5, "fraction below 1"),
        ("soft_short", float("nan"), "not a finite number"),
    ],
)
def test_bad_faults_are_refused_and_change_nothing(rig, kind, size, message):
    before = (rig.cell.state.short_conductance, rig.cell.state.void_recoverable)
    with pytest.raises(RigError, match=message):
        rig.inject_fault(kind, size)
    assert (rig.cell.state.short_conductance, rig.cell.state.void_recoverable) == before


def test_fault_pvs_inject_and_report(rig):
    ioc = RigIOC(prefix="F:", backend=rig, speed=1000.0)

    async def go():
        await ioc.configure()
        await ioc.fault_type_sp.write("ContactLoss")
        await ioc.fault_size_sp.write(0.2)
        await ioc.inject_fault_cmd.write(1)

    asyncio.run(go())
    assert ioc.msg_rb.value == "loss of 20% of the interface contact injected"
    assert rig.cell.contact == pytest.approx(0.8)
