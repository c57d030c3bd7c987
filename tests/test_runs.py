"""Plans end to end: IOC subprocess, real RunEngine, runs written to and read back from a
real local catalog."""

import threading

import pytest
from tiled.queries import Key

from ssb_devices import PressureRejected, RigDisconnected
from ssb_plans import (
    MetadataError,
    SuspendOutsidePressureBand,
    hold_pressure,
    pressure_steps,
    ramp_pressure,
    set_pressure,
    start_session,
)
from ssb_plans.demo import DEMO_CELL

CELL = {**DEMO_CELL, "cell_id": "E2E-1"}


def when_event(RE, n, action):
    """Run ``action`` in a thread once the ``n``-th event of a run has been emitted."""
    seen = []

    def callback(name, doc):
        if name == "event":
            seen.append(doc)
            if len(seen) == n:
                threading.Thread(target=action, daemon=True).start()

    return RE.subscribe(callback)


def test_set_pressure_run_is_stored_with_metadata_and_units(session, rig):
    (uid,) = session.RE(set_pressure(rig, 60.0))
    run = session.catalog[uid]
    start = run.start
    assert start["plan_name"] == "set_pressure"
    assert start["plan_args"] == {"pressure": 60.0}
    assert start["rig_prefix"] == rig.prefix
    assert start["cell"]["chemistry"] == CELL["chemistry"]
    assert start["cell_id"] == "E2E-1"
    assert (start["purpose"], start["operator"]) == ("material analysis", "tester")
    assert run.stop["exit_status"] == "success"
    keys = run.primary.descriptors[0]["data_keys"]
    assert keys["rig_press_readback"]["units"] == "MPa"
    assert keys["rig_press_gap"]["units"] == "um"
    assert keys["rig_clock_time"]["units"] == "s"
    data = run.primary.read()
    assert len(data["time"]) == 2
    assert abs(float(data["rig_press_readback"][-1]) - 60.0) <= 0.2


def test_ramp_hold_and_steps_record_what_happened(session, rig):
    (ramp,) = session.RE(ramp_pressure(rig, 90.0, 0.5, interval=5.0))
    p = session.catalog[ramp].primary.read()["rig_press_readback"].values
    assert len(p) >= 4  # ~36 at full speed (1.8 s of wall time); fewer when the machine is busy
    assert (p[1:] >= p[:-1] - 0.5).all()  # rising along the ramp
    assert abs(p[-1] - 90.0) <= 0.2
    assert rig.press.ramp_rate.get() == 0.0  # restored

    (hold,) = session.RE(hold_pressure(rig, 300.0, pressure=50.0, interval=30.0))
    data = session.catalog[hold].primary.read()
    clock = data["rig_clock_time"].values
    settled_at = clock[data["rig_press_setpoint"].values == 50.0].min()
    assert clock[-1] - settled_at >= 300.0
    assert abs(data["rig_press_readback"].values[-5:] - 50.0).max() <= 0.2

    (steps,) = session.RE(pressure_steps(rig, [70.0, 30.0], 120.0, interval=30.0))
    data = session.catalog[steps].primary.read()
    for target in (70.0, 30.0):
        at = data["rig_press_readback"].values[data["rig_press_setpoint"].values == target]
        assert len(at) >= 3
        assert abs(at[-1] - target) <= 0.2


def test_reading_back_the_databroker_way(session, rig):
    (uid,) = session.RE(set_pressure(rig, 20.0, md={"sample_note": "find me"}))
    catalog = session.catalog
    assert catalog[-1].start["uid"] == uid
    assert catalog[uid[:8]].start["uid"] == uid
    found = catalog.search(Key("cell_id") == "E2E-1").search(Key("sample_note") == "find me")
    assert list(found) == [uid]
    table = catalog.v1[uid].table()
    assert "rig_press_readback" in table.columns and len(table) == 2
    # the legacy view leaves the catalog's own (and any other catalog's) runs as they were:
    # bluesky-tiled-plugins sets it on a shared map, which open_catalog keeps apart
    from ssb_analysis.catalog import open_catalog

    other = open_catalog(session.location)
    for run in (catalog[uid], other[uid]):
        assert type(run).__name__ == "BlueskyRunV3"
        assert run["primary"]["rig_press_readback"].read().shape == (2,)
    other.context.close()


def test_a_run_without_a_cell_description_is_refused_before_anything_moves(catalog_dir, rig):
    bare = start_session(
        catalog_dir, md_dir=catalog_dir / "bare-md", progress=False, context_managers=[]
    )  # a fresh RE.md: no experiment described
    before = len(bare.catalog)
    with pytest.raises(MetadataError, match="cell: missing"):
        bare.RE(set_pressure(rig, 50.0))
    assert rig.press.mode.get() == "Off"
    assert len(bare.catalog) == before
    bare.close()


def test_scan_id_survives_a_new_session_and_a_second_session_is_refused(session, rig, tmp_path):
    (uid,) = session.RE(set_pressure(rig, 10.0))
    first = session.catalog[uid].start["scan_id"]
    with pytest.raises(RuntimeError, match="another session is using"):
        start_session(session.location, md_dir=tmp_path / "md", progress=False)
    session.close()
    again = start_session(
        session.location, md_dir=tmp_path / "md", progress=False, context_managers=[]
    )
    (uid2,) = again.RE(set_pressure(rig, 12.0))
    assert again.catalog[uid2].start["scan_id"] == first + 1
    assert again.catalog[uid2].start["cell_id"] == "E2E-1"  # the experiment description too
    again.close()


def test_ioc_refusal_mid_plan_ends_the_run_with_the_reason_and_keeps_data(session, rig, ioc):
    token = when_event(session.RE, 2, lambda: ioc.put("Press:Mode-SP", "Gap"))
    with pytest.raises(PressureRejected, match="mode changed to Gap"):
        session.RE(ramp_pressure(rig, 150.0, 0.1, interval=5.0))  # long: a loaded client
    session.RE.unsubscribe(token)
    run = session.catalog[-1]
    assert run.stop["exit_status"] == "fail"
    assert "mode changed to Gap" in run.stop["reason"]
    assert len(run.primary.read()["time"]) >= 2


def test_ioc_killed_mid_plan_fails_promptly_and_keeps_data(session, rig, ioc):
    token = when_event(session.RE, 3, ioc.process.kill)
    with pytest.raises(RigDisconnected, match="is the IOC running"):
        session.RE(hold_pressure(rig, 36000.0, pressure=40.0, interval=10.0))
    session.RE.unsubscribe(token)
    run = session.catalog[-1]
    assert run.stop["exit_status"] == "fail"
    assert len(run.primary.read()["time"]) >= 3


def test_pressure_band_suspender_pauses_and_resumes(session, rig, ioc):
    session.RE(set_pressure(rig, 100.0))
    suspender = SuspendOutsidePressureBand(rig.press.readback, 95.0, 105.0, hysteresis=1.0)
    session.RE.install_suspender(suspender)
    tripped = threading.Event()

    def disturb():  # an operator moves the press out of band, then back
        ioc.put("Press:Pressure-SP", 110.0, timeout=20)
        ioc.wait_for(lambda: suspender.tripped, what="suspension")
        tripped.set()
        ioc.put("Press:Pressure-SP", 100.0, timeout=20)

    token = when_event(session.RE, 2, disturb)
    try:
        (uid,) = session.RE(hold_pressure(rig, 600.0, interval=30.0))
    finally:
        session.RE.unsubscribe(token)
        session.RE.remove_suspender(suspender)
    assert tripped.is_set()
    data = session.catalog[uid].primary.read()
    assert session.catalog[uid].stop["exit_status"] == "success"
    p = data["rig_press_readback"].values
    assert ((p >= 95.0) & (p <= 105.0)).all()  # nothing recorded while out of band
    clock = data["rig_clock_time"].values
    assert clock[-1] - clock[0] >= 600.0


def test_bdf_export_refuses_a_run_without_cycler_samples(session, rig, tmp_path):
    from ssb_analysis.export import ExportError, export_run

    (uid,) = session.RE(set_pressure(rig, 30.0))
    with pytest.raises(ExportError, match="has no 'samples' stream"):
        export_run(session.catalog[uid], tmp_path, "bdf")
    with pytest.raises(ExportError, match="format 'xlsx'"):
        export_run(session.catalog[uid], tmp_path, "xlsx")
    assert not list(tmp_path.glob("*.bdf.csv"))
    (csv,) = export_run(session.catalog[uid], tmp_path, "csv")  # every stream still works
    assert csv.name.endswith("-primary.csv")
