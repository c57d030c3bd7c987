"""The core plans against both backends: the simulation served directly (``ssb-ioc
--cell``) and emulated instruments over their wire protocols (``ssb-emulate`` with a Modbus
TCP press controller and a Neware BTS cycler, ``ssb-ioc --rig``). The same plans, the same
assertions: from a client's point of view the two are one rig."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import RunningIOC, connected_rig, start_ioc
from test_studies import critical_cell

from ssb_ioc.backends import load_rig_file
from ssb_ioc.emulate import EmulatorThread
from ssb_ioc.launch import EmulatorProcess, rig_file_on_free_ports
from ssb_plans import hold_pressure, ramp_pressure, set_pressure
from ssb_plans.cycling import run_protocol
from ssb_plans.studies import minimum_pressure_study

SPEED = 2000.0
RIGS = Path(__file__).parent.parent / "rigs"
PROTOCOL = """Set pressure to 20 MPa
Repeat 2 times:
    Charge at 1 mA until 3.9 V
    Hold at 3.9 V until 0.2 mA
    Rest for 5 minutes
    Discharge at 1 mA until 3.5 V
"""


class Backend:
    """An IOC (and, when emulated, the emulator behind it) with the ophyd rig on it."""

    def __init__(
        self,
        kind: str,
        ca_context,
        tmp_path: Path,
        cell: str = "si-nmc",
        speed: float = SPEED,
        control: bool = False,
    ):
        """``control``: the emulator in this process, to reach into its simulated cell."""
        self.kind, self.emulator = kind, None
        if kind == "simulation":
            self.ioc = start_ioc(ca_context, speed=speed, cell=cell)
        else:
            template = (RIGS / "emulated.toml").read_text()
            template = re.sub(r'(?m)^cell = "[^"]*"', f'cell = "{cell}"', template)
            (tmp_path / "template.toml").write_text(template)
            path = rig_file_on_free_ports(tmp_path / "template.toml", tmp_path / "rig")
            if control:
                self.emulator = EmulatorThread(load_rig_file(path), speed, seed=1).start()
            else:
                self.emulator = EmulatorProcess(path, speed=speed).start()
            self.ioc = RunningIOC(ca_context, extra_args=["--rig", path]).start()
        self.rig = connected_rig(self.ioc.prefix)

    def close(self) -> None:
        self.rig.destroy()
        code = self.ioc.stop()
        if self.emulator is not None:
            self.emulator.stop()
        assert code == 0, self.ioc.stderr


@pytest.fixture(params=["simulation", "emulated"])
def backend(request, ca_context, tmp_path):
    (tmp_path / "rig").mkdir()
    made = Backend(request.param, ca_context, tmp_path)
    yield made
    made.close()


@pytest.mark.parametrize("kind", ["simulation", "emulated"])
def test_set_ramp_and_hold_pressure(kind, ca_context, tmp_path, session):
    (tmp_path / "rig").mkdir()
    made = Backend(kind, ca_context, tmp_path, speed=100.0)  # readings every 0.4 s of wall
    try:
        pressure_plans(made.rig, session)
    finally:
        made.close()


def pressure_plans(rig, session) -> None:
    run = session.catalog[session.RE(set_pressure(rig, 20.0))[0]]
    assert run.stop["exit_status"] == "success"
    assert run.primary.read()["rig_press_readback"].values[-1] == pytest.approx(20.0, abs=0.3)
    (uid,) = session.RE(ramp_pressure(rig, 40.0, 0.05, interval=40.0))
    ramp = session.catalog[uid].primary.read()
    clock, pressures = ramp["rig_clock_time"].values, ramp["rig_press_readback"].values
    assert np.all(np.diff(pressures) > -0.5) and pressures[-1] == pytest.approx(40.0, abs=0.3)
    # followed at 0.05 MPa/s on the rig's clock, not jumped (readings every 40 s of it)
    mid = (pressures > 21.0) & (pressures < 39.0)
    assert mid.sum() >= 3
    slope = np.diff(pressures[mid][[0, -1]]) / np.diff(clock[mid][[0, -1]])
    assert slope[0] == pytest.approx(0.05, rel=0.2)
    assert rig.press.ramp_rate.get() != 0.05  # the previous rate is back
    (uid,) = session.RE(hold_pressure(rig, 300.0, interval=50.0))
    hold = session.catalog[uid].primary.read()
    assert hold["rig_clock_time"].values[-1] - hold["rig_clock_time"].values[0] >= 300.0
    assert np.all(np.abs(hold["rig_press_readback"].values - 40.0) < 0.5)


def test_protocol_with_a_repeat(backend, session):
    (uid,) = session.RE(run_protocol(backend.rig, PROTOCOL))
    run = session.catalog[uid]
    assert run.stop["exit_status"] == "success"
    steps = run["steps"].read()
    assert list(steps["step_step"].values) == list(range(1, 10))
    reasons = [str(r) for r in steps["step_reason"].values]
    assert reasons[1:5] == ["voltage >= 3.9 V", "current <= 0.0002 A", "time 300 s",
                            "voltage <= 3.5 V"]  # fmt: skip
    assert reasons[5:] == reasons[1:5]
    assert steps["step_duration"].values[[3, 7]] == pytest.approx([300.0, 300.0], abs=1.0)
    discharged = steps["step_discharge"].values[[4, 8]]
    assert discharged[1] == pytest.approx(discharged[0], rel=0.05) and discharged[0] > 0.5
    assert np.all(np.abs(steps["step_pressure_mean"].values[1:] - 20.0) < 0.5)
    samples = run["samples"].read()
    assert np.all(np.diff(samples["seq"].values) == 1), "a sample was lost or duplicated"
    assert np.all(np.diff(samples["test_time"].values) >= 0)
    charging = samples["current"].values[samples["step"].values == 2]
    assert charging.max() == pytest.approx(1e-3, rel=1e-3) and charging.min() >= 0
    v = samples["voltage"].values[samples["step"].values == 5]
    assert v.min() == pytest.approx(3.5, abs=0.02) and v.max() < 3.95


def test_minimum_pressure_study(ca_context, tmp_path, session):
    """The study finds the critical pressure on both backends (no impedance on BTS)."""
    for kind in ("simulation", "emulated"):
        folder = tmp_path / kind
        (folder / "rig").mkdir(parents=True)
        made = Backend(kind, ca_context, folder, critical_cell(folder, 25.0), speed=5000.0)
        try:
            session.RE(minimum_pressure_study(made.rig, [30, 20], impedance=False))
        finally:
            made.close()
        summary = session.catalog[-1]
        assert summary.start["study_role"] == "summary", kind
        assert summary.start["minimum_stable_pressure"] == pytest.approx(30.0, abs=0.5), kind


def test_over_pressure_interlock_releases_the_press(backend):
    ioc = backend.ioc
    ioc.put("Press:Mode-SP", "Pressure")
    ioc.put("Press:Pressure-SP", 20.0, timeout=30)
    ioc.put("Press:Mode-SP", "Gap")
    ioc.put("Press:MaxPressure-SP", 10.0)
    ioc.put("Press:OverPressure-SP", 15.0)  # the pressure now is above it
    ioc.wait_for(lambda: ioc.enum("Rig:Interlock-RB") == "Tripped", 10.0, "the trip")
    assert "over-pressure" in ioc.text("Rig:InterlockReason-RB")
    ioc.wait_for(lambda: ioc.get("Press:Pressure-RB") < 1.0, 20.0, "the release")
    assert ioc.enum("Press:Mode-RB") == "Off"
    ioc.put("Rig:InterlockReset-Cmd", 1)
    assert ioc.enum("Rig:Interlock-RB") == "OK"


def inject(backend, kind: str, size: float) -> None:
    """A fault in the cell itself: through the simulation's PVs, or inside the emulator
    (instruments have no such PV: the cell just does it)."""
    if backend.emulator is None:
        ioc = backend.ioc
        ioc.put("Rig:FaultType-SP", {"pressure_spike": "PressureSpike"}.get(kind, "SoftShort"))
        ioc.put("Rig:FaultSize-SP", size)
        ioc.put("Rig:InjectFault-Cmd", 1)
    else:
        emulator = backend.emulator
        emulator.call(lambda: emulator.emulator.sim.inject_fault(kind, size))


@pytest.mark.parametrize("kind", ["emulated", "simulation"])
def test_events_are_detected_above_the_boundary(kind, ca_context, tmp_path):
    """A jump in stack thickness (in a fixed gap) and a soft short under charge are seen
    by the IOC's event detection on either backend."""
    (tmp_path / "rig").mkdir()
    made = Backend(kind, ca_context, tmp_path, speed=100.0, control=True)
    ioc = made.ioc
    try:
        ioc.put("Press:Mode-SP", "Pressure")
        ioc.put("Press:Pressure-SP", 30.0, timeout=30)
        ioc.put("Press:Mode-SP", "Gap")
        if made.emulator is not None:  # the controller has locked the piston
            sim = made.emulator.emulator.sim
            ioc.wait_for(lambda: made.emulator.call(lambda: sim.press.mode) == 2, 5, "Gap")
        inject(made, "pressure_spike", 3.0)
        ioc.wait_for(lambda: ioc.get("Evt:Count-RB") >= 1, 20, "the pressure event")
        assert "pressure_spike" in ioc.text("Evt:Last-RB")
        ioc.put("Rig:CellCurrent-SP", 1e-3)
        ioc.wait_for(lambda: ioc.get("Cyc:StepTime-RB") > 60, 20, "charging")
        inject(made, "soft_short", 2e-3)
        ioc.wait_for(lambda: ioc.get("Evt:Count-RB") >= 2, 30, "the soft short")
        assert "soft_short" in ioc.text("Evt:Last-RB")
    finally:
        made.close()


def test_the_simulation_and_the_instruments_serve_one_interface():
    """The PV layer asks a RigBackend only; both implementations give every member of it,
    and differ where they must: who keeps the time (each has its own way to scan and not
    the other's), what can be out of reach."""
    from ssb_ioc.backends import HardwareRig
    from ssb_ioc.core.ports import READINGS, InstrumentBackend, RigBackend, SimulatedBackend
    from ssb_ioc.sim import Rig, load_cell_file

    rig_file = load_rig_file(Path(__file__).parent.parent / "rigs" / "emulated.toml")
    params = load_cell_file(rig_file.cell)
    simulation, instruments = Rig(params), HardwareRig(params, rig_file)
    assert isinstance(simulation, RigBackend) and isinstance(instruments, RigBackend)
    assert isinstance(simulation, SimulatedBackend)
    assert not isinstance(simulation, InstrumentBackend)
    assert isinstance(instruments, InstrumentBackend)
    assert not isinstance(instruments, SimulatedBackend)
    assert not simulation.keeps_own_time and instruments.keeps_own_time
    assert simulation.stale_readings() == {}
    stale = instruments.stale_readings()  # nothing asked yet: nothing is known
    assert {"press.pressure", "cell.voltage"} <= set(stale) <= set(READINGS)
    assert all(why == "not connected yet" for why, _ in stale.values())


def test_each_load_cell_says_what_a_restarted_ioc_keeps():
    """Autosave asks the load cell port what to keep: the tare everywhere, and the
    simulated bridge's drift too (an amplifier read over a wire has none to keep); what is
    restored takes finite numbers only and leaves the rest as it is."""
    import math

    from ssb_ioc.backends import HardwareRig
    from ssb_ioc.sim import Rig, load_cell_file

    rig_file = load_rig_file(Path(__file__).parent.parent / "rigs" / "emulated.toml")
    params = load_cell_file(rig_file.cell)
    simulated, driven = Rig(params).load_cell, HardwareRig(params, rig_file).load_cell
    assert set(simulated.kept_state()) == {"tare_offset", "drift"}
    assert set(driven.kept_state()) == {"tare_offset"}
    simulated.restore_state({"tare_offset": 12.5, "drift": math.nan})
    assert simulated.tare_offset == 12.5 and simulated.drift == 0.0
    driven.restore_state({"tare_offset": "a lot", "drift": 3.0})  # type: ignore[dict-item]
    assert driven.tare_offset == 0.0 and not hasattr(driven, "drift")


def test_the_hardware_rigs_stale_readings_are_the_ports_readings():
    """A reading name the ports do not know would have no PVs to mark (a KeyError in the
    PV layer at the first silent instrument)."""
    from ssb_ioc.backends import hardware
    from ssb_ioc.core.ports import READINGS

    named = {
        *hardware.PRESS_READINGS, *hardware.LOAD_CELL_READINGS, *hardware.LOOP_READINGS,
        *hardware.CYCLER_READINGS,
    }  # fmt: skip
    assert named <= set(READINGS), named - set(READINGS)
