"""The sequencer over Channel Access: no gap between steps at any speed, refusals from
any client, and a sequence held (never resumed on its own) across an IOC kill."""

from __future__ import annotations

import json

import numpy as np
import pytest
from caproto import ChannelType
from conftest import start_ioc
from test_autosave import start as start_autosaved

from ssb_plans.cycling import prepare, sequence_table

pytestmark = pytest.mark.network

README_PROTOCOL = """\
Set pressure to 100 MPa
Rest for 10 minutes
Charge at C/2 for 20 minutes
Rest for 10 minutes
Discharge at C/2 for 20 minutes
Rest for 10 minutes
"""


def boundary_gaps(session, uid) -> tuple[np.ndarray, dict]:
    """Experiment time between each cycler step's last sample (logged as it ends) and the
    start of the next, as the next step's own samples date it (test time - step time).
    Step 1 sets the pressure: the cycler steps are 2 on."""
    samples = session.catalog[uid]["samples"].read()
    step, t, st = (samples[k].values for k in ("step", "test_time", "step_time"))
    gaps, rests = [], {}
    for k in np.unique(step[step >= 2])[:-1]:
        end = t[step == k].max()
        nxt = step == k + 1
        gaps.append((t[nxt] - st[nxt]).min() - end)
        rests[int(k)] = st[step == k].max()
    return np.asarray(gaps), rests


@pytest.mark.parametrize(
    ("speed", "protocol", "bound", "rest"),
    [
        (5000.0, README_PROTOCOL, 1.0, 600.0),
        (
            1.0,
            "Set pressure to 100 MPa\nRest for 3 seconds\nCharge at C/2 for 3 seconds\n"
            "Rest for 2 seconds\n",
            0.01,
            3.0,
        ),
    ],
)
def test_no_open_circuit_between_steps(ca_context, session, speed, protocol, bound, rest):
    from ssb_plans.cycling import run_protocol

    ioc = start_ioc(ca_context, speed=speed)
    from conftest import connected_rig

    rig = connected_rig(ioc.prefix)
    try:
        if speed == 1.0:
            rig.cycler.log_period.put(0.5, wait=True)
        (uid,) = session.RE(run_protocol(rig, protocol, poll=0.2))
        gaps, durations = boundary_gaps(session, uid)
        assert len(gaps) == protocol.count("\n") - 2
        assert np.all(np.abs(gaps) <= bound), gaps
        assert durations[2] == pytest.approx(rest, abs=min(bound, 1.0))  # the first rest
        steps = session.catalog[uid]["steps"].read()
        assert steps["step_duration"].values[1] == pytest.approx(rest, abs=min(bound, 1.0))
    finally:
        rig.destroy()
        ioc.stop()


def test_tables_and_commands_are_refused_with_reasons_from_any_client(ioc):
    ioc.put("Seq:Start-Cmd", 1, wait=False)
    ioc.wait_for(lambda: "no table loaded" in ioc.text("Rig:Msg-RB"), what="a refusal")
    bad = json.dumps({"version": 1, "steps": [{"do": "cycler", "step": {"kind": "cc",
                      "current": 1.0}}]})  # fmt: skip
    pv = ioc.pv("Seq:Table-SP")
    pv.write(bad.encode(), wait=False, data_type=ChannelType.CHAR)
    ioc.wait_for(lambda: "current 1 A outside" in ioc.text("Rig:Msg-RB"), what="a refusal")
    assert ioc.enum("Seq:State-RB") == "Idle" and ioc.get("Seq:Steps-RB") == 0
    good = json.dumps({"version": 1, "steps": [{"do": "cycler", "text": "Rest", "step": {
        "kind": "rest", "terminations": [["time", 1e6, "Auto"]]}}]})  # fmt: skip
    pv.write(good.encode(), wait=True, data_type=ChannelType.CHAR, timeout=10)
    ioc.put("Seq:Start-Cmd", 1)
    assert ioc.enum("Seq:State-RB") == "Running"
    ioc.put("Cyc:Start-Cmd", 1, wait=False)  # a manual step would fight the sequence
    ioc.wait_for(lambda: "sequence is running" in ioc.text("Rig:Msg-RB"), what="a refusal")
    for value, kind in ((2.5, ChannelType.DOUBLE), ("Go", ChannelType.STRING),
                        (float("nan"), ChannelType.DOUBLE)):  # fmt: skip
        ioc.pv("Seq:Pause-Cmd").write([value], wait=False, data_type=kind)
    assert ioc.enum("Seq:State-RB") == "Running"  # none of those is a push of the button
    pv.write(good.encode(), wait=False, data_type=ChannelType.CHAR)  # not while running
    ioc.wait_for(lambda: "a sequence is running" in ioc.text("Rig:Msg-RB"), what="refusal")
    ioc.put("Seq:Pause-Cmd", 1)
    assert ioc.enum("Seq:State-RB") == "Paused" and ioc.enum("Cyc:Running-RB") == "No"
    ioc.put("Seq:Resume-Cmd", 1)
    assert ioc.enum("Cyc:Running-RB") == "Yes"
    ioc.put("Seq:Abort-Cmd", 1)
    assert ioc.enum("Seq:State-RB") == "Aborted" and ioc.enum("Cyc:Running-RB") == "No"
    records = ioc.results()
    assert records[0]["reason"] == "aborted by a client"
    assert "paused after" in records[0]["interruptions"]


def test_a_killed_ioc_comes_back_holding_the_sequence_and_resume_goes_on(ca_context, tmp_path):
    from conftest import connected_rig

    first = start_autosaved(ca_context, None, tmp_path)
    prefix = first.prefix
    rig = connected_rig(prefix)
    try:
        protocol, planned = prepare(
            rig, "Set pressure to 40 MPa\nCharge at C/2 for 2 hours\nRest for 10 minutes\n", None
        )
        table = sequence_table(protocol, planned, owner={"sequence_id": "test"})
        rig.sequencer.set(table)
        first.wait_for(lambda: first.get("Cyc:StepTime-RB") > 1800, 60, "half the charge")
        first.wait_for(lambda: first.get("Cyc:StepTime-RB") > 2000, 60, "an autosave after")
    finally:
        rig.destroy()
    first.process.kill()  # SIGKILL: no chance to save anything more
    first.stop()
    second = start_autosaved(ca_context, prefix, tmp_path)
    try:
        assert second.enum("Seq:State-RB") == "Held"
        assert "IOC restarted during step 2" in second.text("Seq:Reason-RB")
        assert second.enum("Press:Mode-RB") == "Off" and second.enum("Cyc:Running-RB") == "No"
        before = second.get("Cyc:Buf:NextSeq-RB")
        key = int(second.get("Seq:OwnerKey-RB"))  # the owner's key survives the restart
        assert key > 1
        second.put("Seq:Resume-Cmd", key)  # to take over, a client says it means to
        second.wait_for(lambda: second.enum("Seq:State-RB") == "Done", 60, "the end")
        records = {r["index"]: r for r in second.results()}
        charge = records[2]
        assert charge["duration"] == pytest.approx(7200.0, abs=60.0)  # less what ran before
        assert "IOC restarted" in charge["interruptions"]
        assert "pressure back" in charge["interruptions"]
        assert second.get("Cyc:Buf:NextSeq-RB") > before  # numbering went on
        assert second.get("Press:Pressure-RB") == pytest.approx(40.0, abs=1.0)
    finally:
        second.stop()


def test_a_killed_ioc_ends_the_run_within_seconds_with_the_reason(session, rig, ioc):
    import threading
    import time

    from ssb_devices import RigDisconnected
    from ssb_plans.cycling import run_protocol

    killed: list[float] = []

    def on_page(name, doc):
        if name == "event_page" and 2 in doc["data"].get("step", []) and not killed:
            killed.append(time.monotonic())
            threading.Thread(target=ioc.process.kill).start()

    token = session.RE.subscribe(on_page)
    with pytest.raises(RigDisconnected, match="is the IOC running"):
        session.RE(run_protocol(rig, "Set pressure to 30 MPa\nRest for 10 hours\n", poll=0.2))
    failed_after = time.monotonic() - killed[0]
    session.RE.unsubscribe(token)
    assert failed_after < 10.0
    run = session.catalog[-1]
    assert run.stop["exit_status"] == "fail" and "is the IOC running" in run.stop["reason"]
    assert len(run["samples"].read()["seq"]) > 0  # what was taken is kept
