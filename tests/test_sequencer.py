"""The protocol sequencer on the simulated rig (no Channel Access): steps follow each
other in the same simulation step, the numbering is the plan's, and pause, abort, safety
and restart keep their meanings."""

import itertools
import json

import numpy as np
import pytest

from ssb_ioc.core.sequencer import SequenceError
from ssb_ioc.sim import Rig, load_cell_file

CAPACITY_A = 1e-3  # about C/2 of the si-nmc cell's default area


def rest(seconds, text="Rest"):
    return {"do": "cycler", "text": text, "step": {"kind": "rest", "terminations": [
        ["time", seconds, "Auto"]]}}  # fmt: skip


def cc(current, seconds, text="CC"):
    return {"do": "cycler", "text": text, "step": {"kind": "cc", "current": current,
            "terminations": [["time", seconds, "Auto"]]}}  # fmt: skip


def table(*steps, **extra):
    return json.dumps({"version": 1, "steps": list(steps), **extra})


@pytest.fixture
def rig():
    rig = Rig(load_cell_file("si-nmc"), seed=1)
    rig.tare()
    return rig


def run_to_end(rig, limit=1e6, chunk=50.0):
    seq, t = rig.sequencer, 0.0
    while seq.state == "Running" and t < limit:
        rig.advance(chunk)
        t += chunk
    return seq


def test_steps_follow_without_a_gap_and_rest_lasts_its_time(rig):
    seq = rig.sequencer
    seq.load(table({"do": "pressure", "action": "set", "pressure": 50.0, "text": "P 50"},
                   rest(600), cc(CAPACITY_A, 1200), rest(600), cc(-CAPACITY_A, 1200)))  # fmt: skip
    seq.start()
    run_to_end(rig)
    assert seq.state == "Done", seq.reason
    results = list(seq.results)
    assert [r["index"] for r in results] == [1, 2, 3, 4, 5]
    for before, after in itertools.pairwise(results):
        assert after["start_time"] - before["end_time"] == pytest.approx(0.0, abs=1e-9)
    assert results[1]["duration"] == pytest.approx(600.0, abs=1e-6)
    assert results[1]["reason"] == "time 600 s"
    rows = rig.cycler.buffer.since(0)
    rest_rows = rows[rows[:, 4] == 2]  # step column
    assert rest_rows[-1, 2] == pytest.approx(600.0, abs=1e-6)  # its last sample: step time


def test_repeats_number_steps_and_cycles_as_the_plan_does(rig):
    seq = rig.sequencer
    seq.load(table(rest(10), {"repeat": 2, "steps": [cc(CAPACITY_A, 20), rest(5)]}, rest(1)))
    assert seq.table.total == 6
    assert [(i, c) for i, c, _ in seq.table.expand()] == [
        (1, 0), (2, 1), (3, 1), (4, 2), (5, 2), (6, 2)]  # fmt: skip
    assert [i for i, _, _ in seq.table.expand(4)] == [4, 5, 6]
    seq.start()
    run_to_end(rig)
    assert [(r["index"], r["cycle"]) for r in seq.results] == list(
        (i, c) for i, c, _ in seq.table.expand()
    )
    steps = rig.cycler.buffer.since(0)[:, 4]
    assert set(np.unique(steps)) >= {2, 3, 4, 5}


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ("{", "not JSON"),
        (json.dumps({"version": 2, "steps": []}), "version"),
        (table(cc(5.0, 10)), "steps[0] (CC): current 5 A outside"),
        (table({"do": "pressure", "action": "set", "pressure": 1e9}), "steps[0].pressure"),
        (table({"repeat": 0, "steps": [rest(1)]}), "steps[0].repeat"),
        (table({"do": "dance"}), "steps[0].do"),
        (table({"repeat": 1001, "steps": [{"repeat": 1001, "steps": [rest(1)]}]}), "at most"),
        (table(rest(1), fast_steps="some"), "fast_steps"),
    ],
)
def test_bad_tables_are_refused_whole_and_keep_the_old_one(rig, bad, words):
    seq = rig.sequencer
    good = seq.load(table(rest(1)))
    with pytest.raises(SequenceError, match=None) as refused:
        seq.load(bad)
    assert words in str(refused.value)
    assert seq.table is good


def test_pause_opens_the_circuit_and_resume_runs_the_rest_of_the_step(rig):
    seq = rig.sequencer
    seq.load(table(cc(CAPACITY_A, 1000), rest(10)))
    seq.start()
    rig.advance(400)
    seq.pause()
    assert not rig.cycler.running and rig.cell.current == 0.0
    rig.advance(300)
    assert seq.state == "Paused" and seq.completed == 0
    seq.resume()
    run_to_end(rig)
    first = seq.results[0]
    assert first["duration"] == pytest.approx(1000.0, abs=1e-6)  # 400 + the remaining 600
    assert first["end_time"] - first["start_time"] == pytest.approx(1300.0, abs=1e-6)
    assert "paused" in first["interruptions"] and "resumed" in first["interruptions"]
    steps = rig.cycler.buffer.since(0)[:, 4]
    assert set(np.unique(steps)) == {1, 2}  # the same index before and after the pause


def test_a_pressure_hold_keeps_its_end_time_and_a_client_stop_aborts(rig):
    seq = rig.sequencer
    seq.load(table({"do": "pressure", "action": "hold", "pressure": 30.0, "duration": 500},
                   cc(CAPACITY_A, 1e5)))  # fmt: skip
    seq.start()
    run_to_end(rig, limit=600, chunk=10)
    hold = seq.results[0]
    assert hold["duration"] == pytest.approx(500.0, abs=1e-6)
    assert rig.cycler.running
    with pytest.raises(Exception, match="sequence is running"):
        rig.set_current(1e-4)
    rig.cycler.stop("stopped by a client")
    rig.advance(1)
    assert seq.state == "Aborted" and "stopped by a client" in seq.reason
    assert rig.press.target == pytest.approx(rig.press.pressure, abs=1e-9)


def test_a_safety_trip_fails_the_sequence_and_leaves_the_cell_open(rig):
    seq = rig.sequencer
    seq.load(table(cc(0.02, 1e6)))  # charges past the voltage window
    seq.start()
    run_to_end(rig)
    assert seq.state == "Failed" and "safety" in seq.reason
    assert not rig.cycler.running and rig.cell.current == 0.0
    assert seq.results[-1]["reason"] == seq.reason


def test_a_restart_holds_the_sequence_and_resume_re_presses_and_goes_on(rig):
    seq = rig.sequencer
    seq.load(table({"do": "pressure", "action": "set", "pressure": 40.0},
                   cc(CAPACITY_A, 1000), rest(10)))  # fmt: skip
    seq.start()
    rig.advance(300)
    saved = json.loads(json.dumps(seq.snapshot()))
    restarted = Rig(load_cell_file("si-nmc"), seed=2)
    restarted.tare()
    found = restarted.sequencer.restore(saved)
    assert "held at step 2" in found
    assert restarted.press.mode.name == "OFF" and not restarted.cycler.running
    restarted.sequencer.resume()
    assert restarted.press.target == pytest.approx(40.0)
    assert not restarted.cycler.running  # electrochemistry waits for the pressure
    restarted.advance(2)
    assert not restarted.cycler.running
    run_to_end(restarted)
    done = list(restarted.sequencer.results)
    assert [r["index"] for r in done] == [1, 2, 3]
    assert done[1]["duration"] == pytest.approx(1000.0, abs=2.0)
    assert "IOC restarted" in done[1]["interruptions"]
    assert "pressure back" in done[1]["interruptions"]


def test_a_termination_at_a_safety_limit_is_refused_before_anything_runs(rig):
    """``Charge ... until 4.5 V`` with 4.5 V the safety limit would trip, not end, the step."""
    limits = rig.cycler.limits
    for volts in (limits.v_max, limits.v_max + 0.1, limits.v_min):
        step = {"do": "cycler", "text": "Charge", "step": {"kind": "cc", "current": 1e-3,
                "terminations": [["voltage", volts, "Auto"]]}}  # fmt: skip
        with pytest.raises(SequenceError, match=rf"until {volts:g} V: the safety limits"):
            rig.sequencer.load(table(step))
        assert rig.sequencer.table is None and rig.sequencer.state == "Idle"
    inside = {"do": "cycler", "text": "Charge", "step": {"kind": "cc", "current": 1e-3,
              "terminations": [["voltage", limits.v_max - 0.05, "Auto"]]}}  # fmt: skip
    rig.sequencer.load(table(inside))


def snapshot_mid_charge(rig, pressure: float) -> dict:
    """The saved state of a sequence pressed to ``pressure`` and charging, as autosave
    keeps it (through JSON)."""
    seq = rig.sequencer
    seq.load(table({"do": "pressure", "action": "set", "pressure": pressure},
                   cc(CAPACITY_A, 1000)))  # fmt: skip
    seq.start()
    rig.advance(300)
    return json.loads(json.dumps(seq.snapshot()))


def test_a_restart_on_instruments_does_not_claim_the_press_is_off(rig):
    """Instruments are taken over as found (a controller regulates on): the held
    sequence's reason says so, not "press Off"."""
    restarted = Rig(load_cell_file("si-nmc"), seed=2)
    restarted.keeps_own_time = True  # as a HardwareRig
    restarted.sequencer.restore(snapshot_mid_charge(rig, 30.0))
    reason = restarted.sequencer.reason
    assert "press Off" not in reason and "the press as the IOC found it" in reason
    assert "re-press to 30 MPa" in reason


def test_a_suspended_sequence_re_presses_and_runs_the_rest_of_its_step(rig):
    """What a lost link does (HardwareRig): pause with the pressure it regulated; resume
    goes back to it before the rest of the step, which is not run again."""
    seq = rig.sequencer
    seq.load(table({"do": "pressure", "action": "set", "pressure": 30.0}, cc(CAPACITY_A, 1000)))
    seq.start()
    rig.advance(300)
    assert seq.running.index == 2 and rig.cycler.running
    assert seq.suspend("communication lost for 5 s: press") is True
    assert seq.state == "Paused" and "communication lost" in seq.reason
    assert not rig.cycler.running  # open circuit
    rig.set_mode("gap")  # what the rig does with a silent press
    rig.advance(100)
    seq.resume()
    assert rig.press.mode.name == "PRESSURE" and rig.press.target == pytest.approx(30.0)
    run_to_end(rig)
    done = list(seq.results)
    assert done[1]["duration"] == pytest.approx(1000.0, abs=2.0)
    assert "communication lost" in done[1]["interruptions"]
    assert seq.suspend("again") is False  # nothing running: nothing to suspend


def test_a_new_table_forgets_the_pressure_an_old_one_was_held_at(rig):
    """A sequence restored as held, then aborted: the next table's resume after a
    client's pause does not re-press to the old pressure."""
    restarted = Rig(load_cell_file("si-nmc"), seed=2)
    restarted.tare()
    restarted.sequencer.restore(snapshot_mid_charge(rig, 40.0))
    restarted.sequencer.abort()
    restarted.sequencer.load(table(rest(1000)))
    restarted.sequencer.start()
    restarted.advance(10)
    restarted.sequencer.pause()
    restarted.sequencer.resume()
    assert restarted.press.mode.name == "OFF"  # nothing re-pressed
