"""A running experiment is its acquisition's: no second client, no slip of an ordinary
client (pyepics over libca) stops it, replaces it or releases its stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CA_ENV, start_ioc

pytestmark = pytest.mark.network
HERE = Path(__file__).parent


def pyepics(*ops) -> list:
    """Operations from an ordinary client in its own process (see ordinary_client.py)."""
    done = subprocess.run(
        [sys.executable, str(HERE / "ordinary_client.py"), json.dumps(ops)],
        capture_output=True, text=True, timeout=120, env={**os.environ, **CA_ENV},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def held(ca_context):
    """An IOC whose press holds 50 MPa."""
    ioc = start_ioc(ca_context, speed=1000.0)
    ioc.put("Press:Mode-SP", "Pressure")
    ioc.put("Press:Pressure-SP", 50.0, timeout=30)
    yield ioc
    ioc.stop()


def test_a_garbage_number_from_pyepics_does_not_release_a_held_stack(held):
    p = held.prefix
    pyepics(["put", f"{p}Press:Mode-SP", 1e300])  # pyepics sends index 0: "Off"
    held.wait_for(lambda: "release the stack" in held.text("Rig:Msg-RB"), what="refusal")
    assert held.enum("Press:Mode-RB") == "Pressure"
    assert held.get("Press:Pressure-RB") == pytest.approx(50.0, abs=0.5)
    assert "Rig:Override-Cmd" in held.text("Rig:Msg-RB")  # what to do if it was meant
    # the loop's settings are checked for sense while it holds
    for name, value, why in (
        ("Press:DRVH-SP", -1.0, "DRVH > 0 to press"),
        ("Press:DRVL-SP", 5.0, "DRVL < 0 to relieve"),
    ):
        before = held.get(name)
        pyepics(["put", f"{p}{name}", value])
        held.wait_for(lambda why=why: why in held.text("Rig:Msg-RB"), what=f"{name} refused")
        assert held.get(name) == before
    kp = held.get("Press:KP-SP")
    pyepics(["put", f"{p}Press:KP-SP", 0.0])
    held.wait_for(lambda: held.get("Press:KP-SP") == 0.0, what="KP = 0 (KI still acts)")
    pyepics(["put", f"{p}Press:KI-SP", 0.0])
    held.wait_for(lambda: "KP = KI = 0" in held.text("Rig:Msg-RB"), what="refusal")
    assert held.get("Press:KI-SP") > 0
    held.put("Press:KP-SP", kp)
    held.wait_for(lambda: abs(held.get("Press:Pressure-RB") - 50.0) < 0.5, what="held again")
    # a person who means it opens the override, then releases
    pyepics(["put", f"{p}Rig:Override-Cmd", 1], ["put", f"{p}Press:Mode-SP", "Off"])
    held.wait_for(lambda: held.enum("Press:Mode-RB") == "Off", what="the release")
    assert "override" in held.text("Rig:Msg-RB")


def test_a_pressure_off_its_setpoint_alarms_whatever_the_mode_says(held):
    p = held.prefix
    assert pyepics(["sev", f"{p}Press:Pressure-RB"])[0][0] == 0  # held: no alarm
    # a sluggish loop (legal: both directions), then a step in the stack's thickness
    held.put("Press:DRVH-SP", 0.001)
    held.put("Press:DRVL-SP", -0.001)
    held.put("Rig:FaultType-SP", "PressureSpike")
    held.put("Rig:FaultSize-SP", 20.0)  # um: tens of MPa in this stack
    held.put("Rig:InjectFault-Cmd", 1)
    held.wait_for(lambda: pyepics(["sev", f"{p}Press:Pressure-RB"])[0][0] == 2, 30, "MAJOR")
    assert held.enum("Press:Mode-RB") == "Pressure"  # the mode still says all is well


def test_a_second_client_is_refused_and_the_first_ones_protocol_runs_to_its_end(
    ca_context, tmp_path
):
    ioc = start_ioc(ca_context, speed=500.0)
    env = {**os.environ, **CA_ENV}
    try:
        first = tmp_path / "first.txt"
        first.write_text("Set pressure to 30 MPa\nRest for 8 hours\n")  # 58 s at x500: the
        # refused second client may take 45 s to say so on a loaded machine
        cell = tmp_path / "cell.toml"
        cell.write_text(
            'cell_id = "OWN-1"\nchemistry = "NMC811 | LPSCl | Si"\narea_cm2 = 0.785\n'
            "capacity_mAh = 2.0\n[layers_um]\ncathode = 60\nseparator = 500\nanode = 40\n"
        )
        args = ["--prefix", ioc.prefix, "--cell", str(cell)]
        owner = subprocess.Popen(
            [sys.executable, "-m", "ssb_plans.cli", "run", str(first), *args,
             "--catalog", str(tmp_path / "A")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        ioc.wait_for(lambda: ioc.get("Seq:Step-RB") == 2, 60, "the first client's rest")
        second = subprocess.run(
            [sys.executable, "-m", "ssb_plans.cli", "run", str(first), *args,
             "--catalog", str(tmp_path / "B")],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert second.returncode != 0
        assert "another acquisition's protocol" in second.stderr, second.stderr
        assert "since" in second.stderr and "ssb attach" in second.stderr
        assert ioc.enum("Seq:State-RB") == "Running"  # untouched by its clean-up
        # an ordinary client's buttons are refused too, with who owns it
        p = ioc.prefix
        pyepics(["put", f"{p}Seq:Abort-Cmd", 1], ["put", f"{p}Cyc:Stop-Cmd", 1],
                ["put", f"{p}Evt:Enable-SP", "Off"])  # fmt: skip
        ioc.wait_for(lambda: "belongs to" in ioc.text("Rig:Msg-RB")
                     or "owns the rig" in ioc.text("Rig:Msg-RB"), what="refusals")  # fmt: skip
        assert ioc.enum("Seq:State-RB") == "Running" and ioc.enum("Evt:Enable-SP") == "On"
        out, err = owner.communicate(timeout=120)
        assert owner.returncode == 0, err
        assert "exit status success" in out
    finally:
        ioc.stop()


def test_a_person_can_always_force_an_end(ca_context):
    ioc = start_ioc(ca_context, speed=100.0)
    try:
        table = {
            "version": 1,
            "owner": {"sequence_id": "someone", "plan": "run_protocol"},
            "steps": [
                {"do": "cycler", "step": {"kind": "rest", "terminations": [["time", 1e6, "Auto"]]}}
            ],
        }
        ioc.pv("Seq:Table-SP").write(
            json.dumps(table).encode(),
            wait=True,
            timeout=10,
            data_type=__import__("caproto").ChannelType.CHAR,
        )
        ioc.put("Seq:Start-Cmd", 1)
        assert ioc.enum("Seq:State-RB") == "Running" and ioc.get("Seq:OwnerKey-RB") > 1
        pyepics(["put", f"{ioc.prefix}Seq:ForceAbort-Cmd", 1])
        ioc.wait_for(lambda: ioc.enum("Seq:State-RB") == "Aborted", what="the forced end")
        assert "forced to an end by" in ioc.text("Seq:Reason-RB")
    finally:
        ioc.stop()
