"""Refusals travel as refusals: a refused put fails its put-completion for every Channel
Access client that asks for it (caproto's, libca's, our devices), the group's
``Refusal-RB`` names the kind from the contract, and an IOC that does not answer is a
timeout, not a refusal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from caproto import CAStatus, ChannelType
from conftest import CA_ENV

from ssb_contract.refusals import REFUSAL_NAMES, Refusal
from ssb_devices import CyclerStep, PressureRejected, SequenceRefused, StepRejected
from ssb_devices.refusals import LastRefusal, PutRefused, PutTimedOut, put_confirmed

pytestmark = pytest.mark.network

HERE = Path(__file__).resolve().parent
S = ChannelType.STRING

# (PV, value, DBR type or None, the group whose Refusal-RB shows it, the kind); the IOC's
# press starts Off, no sequence is loaded, no step runs.
REFUSED = [
    ("Press:Pressure-SP", 50.0, None, "Press:", Refusal.STATE),  # press Off
    ("Press:Pressure-SP", 1e9, None, "Press:", Refusal.LIMIT),
    ("Press:RampRate-SP", -1.0, None, "Press:", Refusal.LIMIT),
    ("Press:Mode-SP", b"Bogus", S, "Press:", Refusal.INVALID),
    ("Press:KP-SP", b"abc", S, "Press:", Refusal.INVALID),
    ("Cyc:Current-SP", 0.5, None, "Cyc:", Refusal.LIMIT),
    ("Seq:Start-Cmd", 1, None, "Seq:", Refusal.STATE),  # no table
    ("Seq:Table-SP", b"{not json", S, "Seq:", Refusal.INVALID),
    ("Seq:Pause-Cmd", 1, None, "Seq:", Refusal.STATE),
    ("Evt:PressureThresh-SP", -1.0, None, "Evt:", Refusal.LIMIT),
    ("Rig:HoldAt-SP", -5.0, None, "Rig:", Refusal.LIMIT),
]


def _ids(case) -> str:
    return f"{case[0]}={case[1]!r}"


@pytest.mark.parametrize("case", REFUSED, ids=_ids)
def test_caproto_client_sees_the_refusal_in_the_put_answer_and_its_kind(ioc, case):
    name, value, dbr, group, kind = case
    before = ioc.text(name) if dbr == S and name.endswith("Table-SP") else None
    response = ioc.pv(name).write([value], wait=True, timeout=10, data_type=dbr)
    assert response.status.name == "ECA_PUTFAIL", response
    assert ioc.enum(group + "Refusal-RB") == kind.name
    assert ioc.text(group + "RefusalMsg-RB").startswith(f"{ioc.prefix}{name} refused: ")
    assert ioc.text("Rig:Msg-RB") == ioc.text(group + "RefusalMsg-RB")  # the human log
    if before is not None:
        assert ioc.text(name) == before  # nothing changed


def test_an_accepted_put_is_answered_normally_and_leaves_the_last_refusal(ioc):
    ioc.put("Press:RampRate-SP", -1.0)  # refused
    response = ioc.pv("Press:RampRate-SP").write([2.0], wait=True, timeout=10)
    assert response.status.name == "ECA_NORMAL"
    assert ioc.get("Press:RampRate-SP") == 2.0
    assert ioc.enum("Press:Refusal-RB") == "LIMIT"  # the last refusal, kept with its time


def test_the_refusal_pv_states_are_the_contracts(ioc):
    pv = ioc.pv("Cyc:Refusal-RB")
    states = [
        s.decode() if isinstance(s, bytes) else s
        for s in pv.read(data_type="control").metadata.enum_strings
    ]
    assert tuple(states) == REFUSAL_NAMES
    assert ioc.enum("Cyc:Refusal-RB") == "NONE"  # nothing refused yet


def _libca(ops: list) -> list:
    """Operations from pyepics over libca in its own process (tests/ordinary_client.py)."""
    out = subprocess.run(
        [sys.executable, str(HERE / "ordinary_client.py"), json.dumps(ops)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **CA_ENV},
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_libca_hands_its_put_callback_the_refusal(ioc):
    p = ioc.prefix
    refused, kind, accepted = _libca(
        [
            ["putcb", p + "Press:Pressure-SP", 1e9],
            ["get", p + "Press:Refusal-RB"],
            ["putcb", p + "Press:RampRate-SP", 1.5],
        ]
    )
    assert refused["status"] == CAStatus.ECA_PUTFAIL.value.code_with_severity, refused
    assert kind == "LIMIT"
    assert accepted["status"] == CAStatus.ECA_NORMAL.value.code_with_severity, accepted


def test_a_read_only_pv_is_refused_for_access_by_the_ioc(ioc):
    """caproto's client sends a write to a PV it may not write: the IOC answers it."""
    response = ioc.pv("Press:Pressure-RB").write([3.0], wait=True, timeout=10)
    assert response.status.name == "ECA_NOWTACCESS"
    assert ioc.enum("Press:Refusal-RB") == "ACCESS"


def test_devices_raise_the_kind_at_once_not_after_a_timeout(ioc, rig):
    """The press, the sequencer and the cycler fail from the put's answer, each with the
    contract's kind and the IOC's reason."""
    rig.press.mode.set("Pressure").wait(10)
    rig.press.ramp_rate.set(0.5).wait(10)  # a move of minutes on the rig's clock
    move = rig.press.set(150.0)
    ioc.put("Press:Mode-SP", "Gap")  # another client ends the move on the IOC
    with pytest.raises(PressureRejected, match=r"refused \(state\).*mode changed to Gap"):
        move.wait(10)
    assert move.exception().code == Refusal.STATE

    with pytest.raises(SequenceRefused, match="not JSON") as caught:
        rig.sequencer.set("{not json").wait(10)
    assert caught.value.code == Refusal.INVALID

    step = CyclerStep(kind="CC", current=0.5, cycle=1, index=1)
    with pytest.raises(StepRejected, match="outside") as caught:
        rig.cycler.set(step).wait(10)
    assert caught.value.code == Refusal.LIMIT


def test_no_answer_in_time_is_a_timeout_not_a_refusal(ioc):
    """A put the IOC has not answered within the timeout fails as a timeout: here a move
    that settles only minutes later on the rig's clock. (Not a frozen IOC: a client that
    meets a server that accepts TCP but never answers loses caproto's search thread.)"""
    from ophyd import EpicsSignal

    setpoint = EpicsSignal(ioc.prefix + "Press:Pressure-SP", name="setpoint")
    refusals = LastRefusal(ioc.prefix + "Press:", name="refusals")
    try:  # destroyed at the end: a PV left behind is searched for again once the IOC goes
        setpoint.wait_for_connection(timeout=10)
        refusals.wait_for_connection(timeout=10)
        ioc.put("Press:Mode-SP", "Pressure")
        ioc.put("Press:RampRate-SP", 0.05)  # 100 MPa in 2000 s of the rig's clock (20 s)
        with pytest.raises(PutTimedOut, match=r"no answer within 0\.5 s"):
            put_confirmed(setpoint, 100.0, refusals=refusals, timeout=0.5).wait(10)
        assert ioc.enum("Press:Refusal-RB") == "NONE"  # nothing was refused
        with pytest.raises(PutRefused, match="outside the limits"):  # and a refusal is one
            put_confirmed(setpoint, 1e6, refusals=refusals, timeout=10).wait(10)
        ioc.put("Press:Stop-Cmd", 1)  # holds where it is: the pending move completes
    finally:
        setpoint.destroy()
        refusals.destroy()
