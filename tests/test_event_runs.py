"""Events in a run, end to end: faults injected into the IOC while run_protocol runs are
stored in the ``events`` stream with full-rate samples around them, and each reaction does
what it says. IOC subprocess at 5000x, real RunEngine and catalog."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from bluesky.utils import RunEngineInterrupted

from ssb_analysis.report import write_report
from ssb_plans.cycling import run_protocol
from ssb_plans.events import EndedOnEvent, EventWatch, Limit

CHARGE = "Set pressure to 100 MPa\nCharge at C/2 for 1 hour\nRest for 10 minutes\n"


def inject_during_step(RE, ioc, faults, step=2):
    """Inject ``faults`` [(type, size)] once samples of ``step`` arrive (from another
    thread: callbacks run on the RunEngine's loop)."""
    done = threading.Event()

    def inject():
        for kind, size in faults:
            ioc.put("Rig:FaultType-SP", kind)
            ioc.put("Rig:FaultSize-SP", size)
            ioc.put("Rig:InjectFault-Cmd", 1)

    def on_page(name, doc):
        if name == "event_page" and step in doc["data"].get("step", []) and not done.is_set():
            done.set()
            threading.Thread(target=inject, daemon=True).start()

    RE.subscribe(on_page)
    return done


def test_injected_spike_and_soft_short_are_stored_with_full_rate_surroundings(
    session, fast_rig, fast_ioc, tmp_path
):
    inject_during_step(session.RE, fast_ioc, [("PressureSpike", 2.0), ("SoftShort", 1e-4)])
    order: list[str] = []  # the streams of the run's events, in the order emitted
    streams: dict[str, str] = {}

    def note(name, doc):
        if name == "descriptor":
            streams[doc["uid"]] = doc["name"]
        elif name == "event":
            kind = doc["data"].get("events_kind", "")
            order.append(f"{streams[doc['descriptor']]}:{kind}".rstrip(":"))

    token = session.RE.subscribe(note)
    (uid,) = session.RE(
        run_protocol(fast_rig, CHARGE, poll=0.05, reactions={"pressure_spike": "read"})
    )
    session.RE.unsubscribe(token)
    run = session.catalog[uid]
    assert run.stop["exit_status"] == "success"
    events = run["events"].read()
    kinds = [str(k) for k in events["events_kind"].values]
    assert sorted(kinds) == ["pressure_spike", "soft_short"]
    by_kind = {k: i for i, k in enumerate(kinds)}
    spike, short = by_kind["pressure_spike"], by_kind["soft_short"]
    assert events["events_magnitude"].values[spike] == pytest.approx(1.5, rel=0.3)  # MPa
    assert str(events["events_unit"].values[spike]) == "MPa"
    assert events["events_magnitude"].values[short] == pytest.approx(0.019, rel=0.2)  # V
    assert {str(s) for s in events["events_source"].values} == {"ioc"}
    assert str(events["events_reaction"].values[spike]) == "read"
    assert set(events["events_step"].values) == {2}

    fast = run["load_cell_fast"].read()
    t = fast["time"].values
    for when in events["events_time"].values:  # 2 s at 1 kHz after each event
        window = (t >= when) & (t <= when + 2.0)
        assert window.sum() >= 1900
        assert np.allclose(np.diff(t[window]), 1e-3)
        assert ((t < when - 0.5) & (t > when - 6.0)).sum() >= 3  # led by the cell steps
    near_spike = (t >= events["events_time"].values[spike]) & (
        t <= events["events_time"].values[spike] + 2.0
    )
    assert fast["pressure"].values[near_spike].max() > 100.5  # the transient, at full rate
    samples = run["samples"].read()
    assert np.all(np.diff(samples["seq"].values) == 1)  # nothing lost around the events
    # "read": the rig was read as soon as the plan stored the event (a primary reading
    # right after it, besides those at the start, the boundaries seen and the end)
    spike_at = order.index("events:pressure_spike")
    after = next(k for k in range(spike_at, len(order)) if not order[k].startswith("events"))
    assert order[after] == "primary", order

    page = write_report(run, tmp_path)  # the events, marked and listed, from the catalog
    text = page.read_text()
    assert "| pressure_spike | 1." in text and "| soft_short | 0.01" in text
    assert (page.parent / "events.png").stat().st_size > 10_000


def test_end_reaction_ends_the_run_safely_and_keeps_what_was_taken(session, fast_rig, fast_ioc):
    inject_during_step(session.RE, fast_ioc, [("SoftShort", 1e-4)])
    with pytest.raises(EndedOnEvent, match=r"soft_short of 0\.0"):
        session.RE(run_protocol(fast_rig, CHARGE, poll=0.05, reactions={"soft_short": "end"}))
    run = session.catalog[-1]
    assert run.stop["exit_status"] == "fail"
    assert "ended safely on soft_short" in run.stop["reason"]
    safe = run["safe_state"].read()
    assert safe["rig_cycler_current"].values[0] == 0.0
    assert safe["rig_press_readback"].values[0] == pytest.approx(100.0, abs=0.5)
    assert fast_ioc.enum("Cyc:Running-RB") == "No"
    assert fast_ioc.enum("Press:Mode-RB") == "Pressure"
    assert [str(k) for k in run["events"].read()["events_reaction"].values] == ["end"]
    steps = run["steps"].read()
    assert list(steps["step_step"].values) == [1, 2]  # step 2 was cut: its record says so
    assert "stopped on event: soft_short" in str(steps["step_reason"].values[1])
    samples = run["samples"].read()
    assert 2 in samples["step"].values and np.all(np.diff(samples["seq"].values) == 1)
    # the IOC opened the circuit in the simulation step of the event, not the plan later
    short_at = run["events"].read()["events_time"].values[0]
    charging = samples["test_time"].values[samples["current"].values > 0]
    assert charging.max() <= short_at + 1.0 + 1e-6
    assert fast_ioc.enum("Evt:SoftShortAction-SP") == "Log"  # restored after the run


# at 5000x the charge is 0.7 s of wall time: the rest after it is long enough that the
# plan's pause always lands in a step, however late a loaded machine sees the spike
LONG_REST = "Set pressure to 100 MPa\nCharge at C/2 for 1 hour\nRest for 4 hours\n"


def test_pause_reaction_rests_the_cell_and_resume_finishes(session, fast_rig, fast_ioc):
    RE = session.RE
    inject_during_step(RE, fast_ioc, [("PressureSpike", 2.0)])
    with pytest.raises(RunEngineInterrupted):
        RE(run_protocol(fast_rig, LONG_REST, poll=0.05, reactions={"pressure_spike": "pause"}))
    assert RE.state == "paused"
    assert fast_ioc.enum("Cyc:Running-RB") == "No" and fast_ioc.get("Cyc:Current-RB") == 0.0
    assert fast_ioc.enum("Press:Mode-RB") == "Pressure"
    (uid,) = RE.resume()
    run = session.catalog[uid]
    assert run.stop["exit_status"] == "success"
    ev = run["events"].read()
    assert [str(k) for k in ev["events_kind"].values] == ["pressure_spike"]
    steps = run["steps"].read()
    assert len(steps["step_step"]) == 3
    # the step running when the plan saw the event (at 5000x maybe the next one) was
    # interrupted, then finished: its duration counts only the time it ran
    notes = [str(n) for n in steps["step_interruptions"].values]
    k = next(k for k, note in enumerate(notes) if "paused after" in note)
    assert k + 1 >= int(ev["events_step"].values[0])
    planned = {1: None, 2: 3600.0, 3: 14400.0}[k + 1]
    if planned is not None:
        assert steps["step_duration"].values[k] == pytest.approx(planned, rel=1e-3)


def test_plan_side_limits_and_full_rate_steps_on_request(session, fast_rig):
    protocol = (
        "Set pressure to 100 MPa\nHold pressure at 100 MPa for 5 seconds\n"
        "Charge at C/2 until 3.7 V\nRest for 10 minutes\n"
    )
    limit = Limit("voltage", high=3.65, kind="voltage_high")
    (uid,) = session.RE(
        run_protocol(fast_rig, protocol, poll=0.05, limits=[limit], fast_steps=[2])
    )
    run = session.catalog[uid]
    events = run["events"].read()
    assert [str(k) for k in events["events_kind"].values] == ["voltage_high"]  # once
    assert str(events["events_source"].values[0]) == "plan"
    assert events["events_value"].values[0] > 3.65
    steps = run["steps"].read()
    start = steps["step_start_time"].values[1]
    t = run["load_cell_fast"].read()["time"].values
    assert len(t) == pytest.approx(5000, abs=15)  # the 5 s hold at 1 kHz, no more
    assert t.min() >= start - 0.01 and t.max() <= start + 5.01
    assert fast_rig.load_cell.fast_sampling.get(use_monitor=False) == "Off"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"reactions": {"meteor": "end"}}, "unknown event kinds \\['meteor'\\]"),
        ({"reactions": {"soft_short": "panic"}}, "expected one of log, read, pause, end"),
        ({"limits": [Limit("voltage", high=4.3)], "reactions": {"pressure_spike": "x"}}, "x"),
        ({"fast_steps": [0]}, "fast_steps: expected step numbers"),
    ],
)
def test_bad_event_options_are_refused_before_the_run(session, fast_rig, kwargs, message):
    before = len(list(session.catalog))
    with pytest.raises(ValueError, match=message):
        session.RE(run_protocol(fast_rig, CHARGE, **kwargs))
    assert len(list(session.catalog)) == before


@pytest.mark.parametrize(
    "args, message",
    [
        (("temperature",), "expected one of voltage"),
        (("voltage",), "give a finite low and/or high"),
        (("voltage", 4.0, 3.0), "low 4.0 >= high 3.0"),
        (("pressure", float("nan")), "give a finite"),
    ],
)
def test_bad_limits_say_what_is_wrong(args, message):
    with pytest.raises(ValueError, match=message):
        Limit(*args)
    assert EventWatch().reaction("soft_short").value == "log"  # the default
