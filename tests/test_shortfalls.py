"""Nothing lost in silence: the simulated rig's clock waits for its clients (a hold where a
plan must act, a reader's Keep-SP), and what is lost anyway is recorded in the run."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from bluesky import RunEngine
from caproto import ChannelType
from conftest import start_ioc

from ssb_ioc.core.errors import RigError
from ssb_ioc.sim import Rig, load_cell_file
from ssb_plans.schedule import Schedule, Shortfalls, honest_run

# --- the simulation's hold (no EPICS) -------------------------------------------------------


def test_the_simulated_clock_stands_at_its_hold_and_goes_on_when_released():
    rig = Rig(load_cell_file("si-nmc"), seed=0)
    rig.advance(10.0)
    rig.hold_clock(25.0)
    rig.advance(1000.0)
    assert rig.time == pytest.approx(25.0) and rig.held
    rig.advance(1000.0)  # time owed while held is not owed afterwards
    assert rig.time == pytest.approx(25.0)
    rig.hold_clock(5.0)  # a time already past holds now
    assert rig.hold_at == pytest.approx(25.0) and rig.held
    rig.hold_clock(None)
    rig.advance(5.0)
    assert rig.time == pytest.approx(30.0) and not rig.held
    for bad in (float("nan"), -1.0, "soon"):
        with pytest.raises(RigError):
            rig.hold_clock(bad)
    assert rig.hold_at is None


def test_the_sequencer_holds_the_clock_at_the_steps_a_table_names():
    rig = Rig(load_cell_file("si-nmc"), seed=0)
    table = (
        '{"version": 1, "hold_steps": [2], "steps": ['
        '{"do": "cycler", "step": {"kind": "rest", "terminations": [["time", 60, "Auto"]]}},'
        '{"do": "cycler", "step": {"kind": "rest", "terminations": [["time", 60, "Auto"]]}}]}'
    )
    rig.sequencer.load(table)
    rig.sequencer.start()
    rig.advance(500.0)
    assert rig.held and rig.sequencer.running.index == 2
    assert rig.time == pytest.approx(60.0, abs=0.01)  # where step 2 began
    rig.hold_clock(None)
    rig.advance(500.0)
    assert rig.sequencer.state == "Done" and rig.time == pytest.approx(560.0, abs=0.01)


# --- the record of what fell short (a RunEngine, no IOC) -----------------------------------


class Flyer:
    """Stands for a bulk log that found rows overwritten before it read them."""

    name, stream = "rig_load_cell_fast", "load_cell_fast"

    def __init__(self, gaps):
        self.gaps = gaps


def run_closing_with(shortfalls, fail: Exception | None = None):
    RE = RunEngine({}, call_returns_result=False)
    docs = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))

    def body():
        yield from iter(())
        if fail is not None:
            raise fail

    try:
        RE(honest_run(body(), {"plan_name": "test"}, shortfalls))
    except RuntimeError:
        assert fail is not None  # the plan's own failure, raised through the RunEngine
    return docs


def test_a_run_that_lost_rows_closes_as_failed_saying_which_and_where():
    gap = {"first_seq": 1000, "last_seq": 1999, "rows": 1000, "time_before": 5.0,
           "time_after": 6.0}  # fmt: skip
    shortfalls = Shortfalls()
    shortfalls.take_losses([Flyer([gap])])
    docs = run_closing_with(shortfalls)
    stop = next(doc for name, doc in docs if name == "stop")
    assert stop["exit_status"] == "fail"
    assert "load_cell_fast: 1000 rows lost on the instrument (seq 1000..1999)" in stop["reason"]
    (descriptor,) = [d for n, d in docs if n == "descriptor" and d["name"] == "data_loss"]
    (event,) = [d for n, d in docs if n == "event" and d["descriptor"] == descriptor["uid"]]
    assert event["data"]["data_loss_rows"] == 1000
    assert event["data"]["data_loss_stream"] == "load_cell_fast"
    assert descriptor["data_keys"]["data_loss_time_after"]["units"] == "s"


def test_an_interrupted_run_still_says_what_it_lost_and_a_clean_one_says_nothing():
    shortfalls = Shortfalls()
    shortfalls.take_losses([Flyer([{"first_seq": 7, "last_seq": 7, "rows": 1,
                                    "time_before": 1.0, "time_after": 2.0}])])  # fmt: skip
    docs = run_closing_with(shortfalls, RuntimeError("the IOC went away"))
    stop = next(doc for name, doc in docs if name == "stop")
    assert stop["exit_status"] == "fail"
    assert stop["reason"].startswith("the IOC went away; load_cell_fast: 1 rows lost")
    clean = next(doc for name, doc in run_closing_with(Shortfalls()) if name == "stop")
    assert (clean["exit_status"], clean["reason"]) == ("success", "")


def test_a_schedule_counts_the_readings_a_clock_ran_past():
    schedule = Schedule(period=300.0)
    schedule.begin(1000.0)
    assert schedule.hold_target() == 1300.0
    assert schedule.periodic_due(1300.0) and not schedule.periodic_due(1299.0)
    schedule.read_periodic(1300.0, "xrd")
    schedule.read_periodic(2250.0, "xrd")  # due at 1600; 1600, 1900 and 2200 passed
    assert (schedule.asked, schedule.taken, schedule.missed) == (4, 2, 2)
    assert schedule.due == pytest.approx(2500.0)  # the grid is kept
    schedule.steps_passed_unread([4, 5], "xrd")
    assert schedule.missed == 4
    assert schedule.shortfall() == "detector schedule: 2 of 6 readings taken, 4 missed"
    (descriptor,) = [
        d
        for n, d in run_closing_with(Shortfalls(schedule=schedule))
        if n == "descriptor" and d["name"] == "schedule"
    ]
    assert descriptor["data_keys"]["schedule_period"]["units"] == "s"


# --- over Channel Access ----------------------------------------------------------------------


@pytest.mark.network
def test_a_hold_put_completes_when_the_clock_stands_there_and_lapses_without_a_client(
    ca_context,
):
    ioc = start_ioc(ca_context, speed=5000.0)
    try:
        assert ioc.enum("Rig:Simulated-RB") == "Yes"
        target = ioc.get("Rig:Time-RB") + 2000.0
        ioc.put("Rig:HoldAt-SP", target, timeout=30)  # returns once the clock stands there
        assert ioc.enum("Rig:Held-RB") == "Yes"
        assert ioc.get("Rig:Time-RB") == pytest.approx(target, abs=2e-3)
        assert "clock held" in ioc.text("Rig:Status-RB")
        past = ioc.get("Rig:Time-RB") - 500.0
        ioc.put("Rig:HoldAt-SP", past)  # a time past: held where it is
        assert ioc.get("Rig:HoldAt-SP") == pytest.approx(target, abs=2e-3)
        ioc.put("Rig:HoldAt-SP", 0.0)  # released
        ioc.wait_for(lambda: ioc.get("Rig:Time-RB") > target + 100, what="the clock going on")
        assert ioc.enum("Rig:Held-RB") == "No"
        # a held clock nobody renews goes on after 10 s of wall time, and says so
        ioc.put("Rig:HoldAt-SP", ioc.get("Rig:Time-RB") + 10.0)
        ioc.wait_for(lambda: "released" in ioc.text("Rig:Msg-RB"), timeout=30, what="lapse")
        assert "no client renewed it" in ioc.text("Rig:Msg-RB")
        ioc.wait_for(lambda: ioc.enum("Rig:Held-RB") == "No", what="running again")
    finally:
        ioc.stop()


@pytest.mark.network
def test_a_readers_keep_slows_the_clock_rather_than_overwrite_rows_it_needs(ca_context):
    ioc = start_ioc(ca_context, speed=5000.0)
    try:
        ioc.put("LC:Fast-SP", "On")  # every load-cell sample: 1,000 rows per s of the rig
        keep = int(ioc.get("LC:Fast:NextSeq-RB"))
        ioc.put("LC:Fast:Keep-SP", keep)
        ioc.wait_for(lambda: "clock slowed" in ioc.text("Rig:Msg-RB"), timeout=60, what="pace")
        assert "LC:Fast:" in ioc.text("Rig:Msg-RB")
        size = 200_000  # the ring's rows (ssb_ioc.core.control.FAST_BUFFER)
        start = ioc.get("Rig:Time-RB")
        ioc.wait_for(lambda: ioc.get("Rig:ActualSpeed-RB") < 100, what="the clock waiting")
        assert ioc.get("Rig:Time-RB") - start < 2.0  # it stands while the reader reads nothing
        assert ioc.get("LC:Fast:OldestSeq-RB") <= keep  # the kept row is still there
        assert ioc.get("LC:Fast:NextSeq-RB") - keep <= 0.8 * size
        ioc.put("LC:Fast:Keep-SP", ioc.get("LC:Fast:NextSeq-RB"))  # read: time goes on
        ioc.wait_for(lambda: ioc.get("Rig:Time-RB") > start + 50, what="the clock again")
    finally:
        ioc.stop()


@pytest.mark.network
def test_rows_overwritten_before_a_read_are_counted_with_their_span(ca_context):
    from ssb_devices.events import FastLog

    ioc = start_ioc(ca_context, speed=5000.0)
    log = FastLog(f"{ioc.prefix}LC:Fast:", name="fast")
    try:
        log.wait_for_connection(timeout=10)
        log.kickoff().wait(10)
        first = log._next
        log.keep.put = lambda *a, **k: None  # a reader that asks the rig to wait for nothing
        ioc.put("LC:Fast-SP", "On")
        ioc.wait_for(
            lambda: ioc.get("LC:Fast:OldestSeq-RB") > first + 1000, timeout=60, what="overwrite"
        )
        # stop logging before reading: on a busy machine the ring at 5000x could otherwise
        # overwrite every page before the reader reaches it, and there would be no row
        # after the gap to read
        ioc.put("LC:Fast-SP", "Off")
        pages = list(log.read_pages())
        assert pages, "no rows were left to read after the gap"
        gaps = log.gaps  # more than one if the rig outran the reader between pages too
        assert gaps[0]["first_seq"] == first and gaps[0]["last_seq"] == pages[0]["seq"][0] - 1
        assert gaps[0]["rows"] > 1000 and log.lost == sum(g["rows"] for g in gaps)
        read = np.concatenate([p["seq"] for p in pages]).astype(int).tolist()
        for gap in gaps:
            assert gap["rows"] == gap["last_seq"] - gap["first_seq"] + 1
            # a row read after it gives its end time; only a gap the read ended in has none
            assert np.isfinite(gap["time_after"]) or (
                gap is gaps[-1] and gap["last_seq"] > read[-1]
            ), gap
        skipped = [s for g in gaps for s in range(g["first_seq"], g["last_seq"] + 1)]
        end = max(read[-1], gaps[-1]["last_seq"])
        assert sorted(read + skipped) == list(range(first, end + 1))  # each seq: once
    finally:
        log.destroy()
        ioc.stop()


@pytest.mark.network
def test_the_detector_moves_a_hold_on_by_its_exposure_and_no_further(ca_context):
    from ssb_ioc.launch import DetectorProcess

    ioc = start_ioc(ca_context, speed=5000.0)
    port = int(ioc.env["EPICS_CA_SERVER_PORT"])
    try:
        with DetectorProcess(ioc.prefix, port, prefix=f"{ioc.prefix}XRD:", seed=1) as det:
            (acquire_time,) = ca_context.get_pvs(f"{det.prefix}cam1:AcquireTime", timeout=10)
            (acquire,) = ca_context.get_pvs(f"{det.prefix}cam1:Acquire", timeout=10)
            (stamp,) = ca_context.get_pvs(f"{det.prefix}image1:TimeStamp_RBV", timeout=10)
            acquire_time.write([60.0], wait=True, timeout=10)
            ioc.put("Rig:HoldAt-SP", ioc.get("Rig:Time-RB") + 100.0, timeout=30)
            held = ioc.get("Rig:HoldAt-SP")  # a time passed already on a busy machine holds now
            done = threading.Event()
            acquire.write(["Acquire"], data_type=ChannelType.STRING, wait=False,
                          callback=lambda _: done.set())  # fmt: skip
            assert done.wait(30), "the frame never completed"
            assert stamp.read(timeout=5).data[0] == pytest.approx(held, abs=2e-3)
            assert ioc.get("Rig:Time-RB") == pytest.approx(held + 60.0, abs=2e-3)
            assert ioc.enum("Rig:Held-RB") == "Yes"  # at the frame's end, for the plan
    finally:
        ioc.stop()


def test_a_run_that_lost_data_says_so_in_the_catalog_and_in_ssb_runs_and_show(tmp_path):
    from ssb_analysis import runs
    from ssb_plans import start_session

    session = start_session(tmp_path / "catalog", md_dir=tmp_path / "md", progress=False,
                            context_managers=[])  # fmt: skip
    try:
        session.describe_experiment(
            cell={"cell_id": "LOSS-1", "chemistry": "NMC811 | LPSCl | Si",
                  "area_cm2": 0.785, "capacity_mAh": 2.0,
                  "layers_um": {"cathode": 60, "separator": 500, "anode": 40}},
            purpose="failure mechanism", operator="tester",
        )  # fmt: skip
        gap = {"first_seq": 10, "last_seq": 19, "rows": 10, "time_before": 1.0,
               "time_after": 2.0}  # fmt: skip
        shortfalls = Shortfalls()
        shortfalls.take_losses([Flyer([gap])])
        session.RE(honest_run(iter(()), {"plan_name": "test"}, shortfalls))
        run = session.catalog[-1]
        assert run.stop["exit_status"] == "fail"
        lost = run["data_loss"].read()
        assert int(lost["data_loss_rows"][0]) == 10 and int(lost["data_loss_first_seq"][0]) == 10
        table = runs.format_table(runs.summarize([run]))
        assert "DATA LOST: load_cell_fast: 10 rows lost" in table
        assert "\x1b" not in table and "\x1b" not in runs.describe(run)  # no escapes
        assert "load_cell_fast: 10 rows lost on the instrument (seq 10..19)" in runs.describe(run)
    finally:
        session.close()
