"""The ophyd cycler and run_protocol end to end: IOC subprocess over Channel Access, a real
RunEngine, runs written to and read back from a real local catalog."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from bluesky.utils import RunEngineInterrupted
from ophyd.sim import SynAxis, SynGauss

from ssb_analysis.report import write_report
from ssb_devices import CyclerStep, StepRejected, Termination
from ssb_plans.cycling import plan_steps, run_protocol
from ssb_plans.demo import DEMO_CELL
from ssb_plans.protocol import ProtocolError, parse

CELL = {**DEMO_CELL, "cell_id": "CYC-1"}
CAPACITY = 2.0  # mAh, the si-nmc preset
FORMATION = """
# formation under pressure
Set pressure to 100 MPa
Repeat 2 times:
    Charge at C/2 until 4.1 V
    Hold at 4.1 V until C/20
    Rest for 10 minutes
    Discharge at C/2 until 3.0 V
Measure impedance from 100 kHz to 1 Hz
"""


def pressed(rig, pressure=100.0):
    rig.press.regulate().wait(10)
    rig.press.set(pressure).wait(30)


# --- protocol -> cycler steps (no IOC) ----------------------------------------------------


def test_protocol_lines_become_cycler_steps():
    steps = plan_steps(parse(FORMATION), CAPACITY, i_max=0.02)
    assert [s.index for s in steps] == list(range(1, 11))
    assert [s.cycle for s in steps] == [0, 1, 1, 1, 1, 2, 2, 2, 2, 2]
    pressure, charge, hold, rest, discharge = (s.cycler for s in steps[:5])
    assert pressure is None
    assert (charge.kind, charge.current) == ("CC", pytest.approx(1e-3))
    assert charge.terminations == (Termination("Voltage", 4.1, "Auto"),)
    assert (hold.kind, hold.voltage, hold.current) == ("CV", 4.1, 0.02)
    assert hold.terminations == (Termination("Current", pytest.approx(1e-4)),)
    assert rest.terminations == (Termination("Time", 600.0),)
    assert discharge.current == pytest.approx(-1e-3)
    assert (charge.cycle, charge.index) == (1, 2)
    eis = steps[-1].cycler
    assert (eis.kind, eis.f_start, eis.f_end) == ("PEIS", 1e5, 1.0)


def test_pybamm_forms_translate_with_their_meaning():
    (power, ohm, until_lt, both) = plan_steps(
        parse(
            "Discharge at 2 mW until 3 V\n"
            "Discharge at 2000 Ohm for 1 hour\n"
            "Charge at 1 mA until < 4 V\n"
            "Rest for 1 hour or until 3.5 V\n"
        ),
        CAPACITY,
        0.02,
    )
    assert (power.cycler.kind, power.cycler.power) == ("CP", pytest.approx(-2e-3))
    assert (ohm.cycler.kind, ohm.cycler.resistance) == ("CR", 2000.0)
    assert until_lt.cycler.terminations[0].direction == "Falling"
    assert [t.limit for t in both.cycler.terminations] == ["Time", "Voltage"]
    with pytest.raises(ProtocolError, match=r"line 1.*only discharge"):
        plan_steps(parse("Charge at 100 Ohm for 1 hour"), CAPACITY, 0.02)


# --- the ophyd cycler ----------------------------------------------------------------------


def test_cycler_step_completes_with_the_instruments_reason(fast_rig):
    pressed(fast_rig)
    cycler = fast_rig.cycler
    cycler.samples.kickoff()
    # an hour: 0.7 s of wall time, several IOC updates, so progress is seen on any machine
    status = cycler.set(CyclerStep("CC", current=1e-3, terminations=(Termination("Time", 3600),)))
    seen = []
    status.watch(lambda **kw: seen.append(kw.get("current")))
    status.wait(30)
    assert status.success and status.reason == "time 3600 s"
    assert cycler.step_charge.get(use_monitor=False) == pytest.approx(1.0, rel=1e-3)
    assert any(t is not None and t > 0 for t in seen)  # progress was reported
    # a second step; samples collected in two pieces are contiguous, none repeated
    first = list(cycler.samples.collect_pages())
    status = cycler.set(CyclerStep("Rest", terminations=(Termination("Time", 300),)))
    status.wait(30)
    second = list(cycler.samples.collect_pages())
    seq = np.concatenate([p["data"]["seq"] for p in first + second])
    assert len(seq) > 10 and np.all(np.diff(seq) == 1)
    assert seq[-1] < cycler.samples.next_seq.get(use_monitor=False)
    assert cycler.samples.lost == 0


def test_refused_step_names_the_problem_and_changes_nothing(fast_rig):
    cycler = fast_rig.cycler
    before = cycler.step_index.get(use_monitor=False)
    status = cycler.set(CyclerStep("CC", current=0.5))  # beyond the 20 mA channel limit
    with pytest.raises(
        StepRejected, match=r"Current-SP refused \(limit\).*0\.5 is outside the limits"
    ):
        status.wait(10)
    assert cycler.running.get(use_monitor=False) == "No"
    assert cycler.step_index.get(use_monitor=False) == before
    with pytest.raises(ValueError, match="step kind 'Charge'"):
        CyclerStep("Charge")


def test_safety_trip_fails_the_step_and_latches(fast_rig):
    pressed(fast_rig)
    cycler = fast_rig.cycler
    status = cycler.set(CyclerStep("CC", current=0.01))  # 5C, no end: into the voltage limit
    with pytest.raises(StepRejected, match="safety: voltage"):
        status.wait(30)
    assert cycler.tripped.get(use_monitor=False) == "Tripped"
    assert cycler.current.get(use_monitor=False) == 0.0
    refused = cycler.set(CyclerStep("Rest", terminations=(Termination("Time", 10),)))
    with pytest.raises(StepRejected, match="reset it first"):
        refused.wait(10)
    cycler.reset().wait(5)
    assert cycler.tripped.get(use_monitor=False) == "OK"


# --- run_protocol -------------------------------------------------------------------------


def test_protocol_run_is_stored_whole_and_consistent(session, fast_rig, tmp_path):
    det = SynGauss("det", SynAxis(name="motor"), "motor", center=0, Imax=1, sigma=1)
    (uid,) = session.RE(run_protocol(fast_rig, FORMATION, detectors=[det], detector_period=3600))
    run = session.catalog[uid]
    assert run.stop["exit_status"] == "success"
    streams = {"primary", "samples", "steps", "impedance", "safe_state", "load_cell_fast"}
    assert set(run) == streams | {"schedule"}  # no "events": a clean run raises none
    assert not run["load_cell_fast"].read().data_vars  # no event window opened: no rows
    assert run.start["protocol"].startswith("# formation under pressure\nSet pressure to 100")
    assert run.start["title"] == "formation under pressure"  # the protocol's heading

    steps = run["steps"].read()
    assert list(steps["step_step"].values) == list(range(1, 11))
    assert list(steps["step_cycle"].values) == [0, 1, 1, 1, 1, 2, 2, 2, 2, 2]
    reasons = [str(r) for r in steps["step_reason"].values]
    assert reasons[1] == "voltage >= 4.1 V" and reasons[4] == "voltage <= 3 V"
    assert reasons[2] == "current <= 0.0001 A" and reasons[3] == "time 600 s"
    assert steps["step_duration"].values[3] == pytest.approx(600.0)
    discharged = steps["step_discharge"].values[[4, 8]]
    assert discharged == pytest.approx([CAPACITY] * 2, rel=0.1)  # a full C/2 discharge
    charged = steps["step_charge"].values[[1, 2]].sum()
    assert charged / discharged[0] == pytest.approx(1.0, abs=0.05)  # coulombic efficiency
    assert np.all(np.abs(steps["step_pressure_mean"].values[1:] - 100.0) < 0.5)
    breathing = steps["step_gap_max"].values[1] - steps["step_gap_min"].values[1]
    assert breathing > 5.0  # the Si anode swells on charge (um)

    samples = run["samples"].read()
    seq = samples["seq"].values
    assert np.all(np.diff(seq) == 1), "a sample was lost or duplicated"
    assert set(np.unique(samples["step"].values)) >= set(range(2, 11))
    keys = run["samples"].descriptors[0]["data_keys"]
    assert (keys["voltage"]["units"], keys["current"]["units"]) == ("V", "A")
    assert (keys["pressure"]["units"], keys["gap"]["units"]) == ("MPa", "um")
    charging = samples["current"].values[samples["step"].values == 2]
    assert charging.max() == pytest.approx(1e-3) and charging.min() >= 0  # + = charge
    # (after its end a step's index stays on the idle samples, at 0 A, until the next)

    eis = run["impedance"].read()
    assert len(eis["frequency"]) == 51 and eis["spectrum_pressure"].values[0] > 99
    assert eis["z_real"].values[-1] == pytest.approx(50.0, rel=0.05)  # R_bulk + R_int

    primary = run.primary.read()
    assert "det" in primary and "rig_sequencer_step" in primary
    # read at the start, at every step's start and every hour of experiment time, at the
    # time itself whatever the speed (the plan holds the simulation's clock there)
    clock = primary["rig_clock_time"].values
    origin = clock[0]
    assert steps["step_start_time"].values[0] == pytest.approx(origin, abs=1e-3)  # no gap
    for start in steps["step_start_time"].values:
        assert np.abs(clock - start).min() < 1e-3, f"no reading at the step start {start}"
    hours = origin + 3600.0 * np.arange(1, int((clock[-1] - origin) // 3600) + 1)
    assert len(hours) >= 5
    for due in hours:
        assert np.abs(clock - due).min() < 1e-3, f"no reading due at t = {due}"
    schedule = run["schedule"].read()
    asked, taken = int(schedule["schedule_asked"][0]), int(schedule["schedule_taken"][0])
    assert int(schedule["schedule_missed"][0]) == 0 and asked == taken >= len(hours) + 9
    assert len(clock) >= taken + 1  # and the reading at the run's start
    assert set(primary["rig_sequencer_step"].values) <= set(range(11))  # 0: between runs
    safe = run["safe_state"].read()
    assert safe["rig_cycler_current"].values[0] == 0.0
    assert safe["rig_press_readback"].values[0] == pytest.approx(100.0, abs=0.5)

    page = write_report(run, tmp_path)  # figures from the catalog alone
    text = page.read_text()
    assert "| 1 | 1.9" in text and "| 2 | 1.9" in text  # per-cycle capacities
    for name in ("timeseries", "breathing", "capacity", "impedance"):
        png = page.parent / f"{name}.png"
        assert png.stat().st_size > 10_000 and f"({name}.png)" in text


def test_pause_leaves_the_cell_safe_and_resume_finishes_the_step(session, fast_rig, fast_ioc):
    RE = session.RE
    protocol = "Set pressure to 100 MPa\nCharge at C/5 for 2 hours\nRest for 10 minutes\n"
    paused = threading.Event()

    def on_page(name, doc):
        if name == "event_page" and 2 in doc["data"].get("step", []) and not paused.is_set():
            paused.set()  # from another thread: callbacks run on the RunEngine's loop
            threading.Thread(target=RE.request_pause, kwargs={"defer": False}).start()

    RE.subscribe(on_page)
    with pytest.raises(RunEngineInterrupted):
        RE(run_protocol(fast_rig, protocol, poll=0.05))
    assert RE.state == "paused"
    assert fast_ioc.enum("Cyc:Running-RB") == "No" and fast_ioc.get("Cyc:Current-RB") == 0.0
    assert fast_ioc.enum("Press:Mode-RB") == "Pressure"
    (uid,) = RE.resume()
    run = session.catalog[uid]
    steps = run["steps"].read()
    assert "paused after" in str(steps["step_interruptions"].values[1])
    assert len(steps["step_step"]) == 3  # no step recorded twice by the rewind
    assert str(steps["step_reason"].values[1]).startswith("time")  # what remained, run
    assert steps["step_duration"].values[1] == pytest.approx(7200.0, rel=1e-3)
    assert steps["step_charge"].values[1] == pytest.approx(0.4 * 2, rel=1e-3)  # C/5 x 2 h


def test_stop_leaves_open_circuit_and_says_so(session, fast_rig, fast_ioc):
    RE = session.RE
    protocol = "Set pressure to 80 MPa\nCharge at C/10 until 4.1 V\n"

    stopping = threading.Event()

    def on_page(name, doc):
        if name == "event_page" and 2 in doc["data"].get("step", []) and not stopping.is_set():
            stopping.set()
            threading.Thread(target=RE.stop, daemon=True).start()

    RE.subscribe(on_page)
    with pytest.raises(RunEngineInterrupted):
        RE(run_protocol(fast_rig, protocol, poll=0.05))
    run = session.catalog[-1]
    assert run.stop["exit_status"] == "success"  # bluesky's word for a requested stop
    safe = run["safe_state"].read()
    assert safe["rig_cycler_current"].values[0] == 0.0
    assert safe["rig_press_readback"].values[0] == pytest.approx(80.0, abs=0.5)
    assert fast_ioc.enum("Cyc:Running-RB") == "No"


def test_bad_protocols_are_refused_before_anything_runs(session, fast_rig):
    count = len(session.catalog)
    with pytest.raises(ProtocolError, match=r"line 2, column 1: 300 MPa outside 0\.\.200 MPa"):
        session.RE(run_protocol(fast_rig, "Rest for 1 hour\nSet pressure to 300 MPa\n"))
    with pytest.raises(ProtocolError, match="line 1, column 11: expected 'at', got 'in'"):
        session.RE(run_protocol(fast_rig, "Discharge in C/2 until 3 V"))
    with pytest.raises(ProtocolError, match=r"current 0.04 A outside \(0, 0.02\] A"):
        session.RE(run_protocol(fast_rig, "Charge at 20C for 1 minute"))
    assert len(session.catalog) == count
    assert fast_rig.cycler.running.get(use_monitor=False) == "No"


# --- ssb run / ssb export ---------------------------------------------------------------


def test_ssb_run_then_export_bdf_csv_parquet(fast_ioc, tmp_path):
    import subprocess
    import sys

    import pandas as pd
    from conftest import CA_ENV

    from ssb_analysis.catalog import open_catalog

    protocol = tmp_path / "short.txt"
    protocol.write_text(
        "Set pressure to 60 MPa\nCharge at 1C for 20 minutes\nRest for 5 minutes\n"
    )
    cell = tmp_path / "cell.toml"
    cell.write_text(
        'cell_id = "CLI-1"\nchemistry = "NMC811 | LPSCl | Si"\narea_cm2 = 0.785\n'
        "capacity_mAh = 2.0\n[layers_um]\ncathode = 60\nseparator = 500\nanode = 40\n"
    )
    catalog = tmp_path / "catalog"
    env = {**__import__("os").environ, **CA_ENV}
    ssb = [sys.executable, "-m", "ssb_plans.cli"]
    args = ["--prefix", fast_ioc.prefix, "--cell", str(cell), "--catalog", str(catalog)]
    done = subprocess.run(
        [*ssb, "run", str(protocol), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "3 steps" in done.stdout and "exit status success" in done.stdout
    assert "step 2/3 (cycle 0) Charge at 1C for 20 minutes: time 1200 s" in done.stderr
    run = open_catalog(str(catalog))[-1]
    assert run.start["cell_id"] == "CLI-1"

    out = tmp_path / "export"
    for fmt in ("bdf", "csv", "parquet"):
        result = subprocess.run(
            [*ssb, "export", "-1", "--format", fmt, "--out", str(out), "--catalog", str(catalog)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
    (bdf_path,) = out.glob("*.bdf.csv")
    bdf = pd.read_csv(bdf_path)
    assert list(bdf.columns[:3]) == ["Test Time / s", "Voltage / V", "Current / A"]
    charging = bdf[bdf["Step Count / 1"] == 2]
    assert charging["Current / A"].max() == pytest.approx(2e-3)  # 1C of 2 mAh, + = charge
    gained = bdf["Charging Capacity / Ah"].iloc[-1] - bdf["Charging Capacity / Ah"].iloc[0]
    assert gained == pytest.approx(2e-3 / 3, rel=0.02)  # 20 min at 1C
    assert bdf["Applied Pressure / Pa"].median() == pytest.approx(60e6, rel=0.01)
    # what BDF says of one test: this run's time, counters and numbering, SI units
    start = run.primary.read()
    assert 0 <= bdf["Test Time / s"].iloc[0] < 60 and bdf["Test Time / s"].is_monotonic_increasing
    assert bdf["Unix Time / s"].iloc[0] == pytest.approx(float(start["time"][0]), abs=60)
    for column in ("Charging Capacity / Ah", "Discharging Energy / Wh"):
        assert bdf[column].iloc[0] == 0.0 and bdf[column].is_monotonic_increasing
    for column in ("Cycle Count / 1", "Step Count / 1"):
        # this run's numbering: step 1 (the pressure set) took no time, so logged nothing
        assert bdf[column].is_monotonic_increasing and bdf[column].iloc[0] in (0, 1, 2)
    unix = bdf["Unix Time / s"] - bdf["Unix Time / s"].iloc[0]  # the same for every export
    assert np.allclose(unix, bdf["Test Time / s"] - bdf["Test Time / s"].iloc[0])
    (rig_path,) = out.glob("*.rig.csv")  # the rig's own columns, row for row
    rig = pd.read_csv(rig_path)
    assert list(rig.columns) == ["Test Time / s", "Step Time / s", "Force / N", "Stack Gap / m"]
    assert np.array_equal(rig["Test Time / s"], bdf["Test Time / s"])
    assert rig["Stack Gap / m"].between(1e-4, 1e-2).all()  # hundreds of um, in metres
    assert bdf_path.name.startswith("CLI-1_scan")
    import bdf as batterydf  # the Battery Data Alliance's own validator

    report = batterydf.validate(bdf_path, raise_on_error=True)
    assert report["ok"] and not report.get("unknown_columns") and not report.get("extra")
    from bdf.normalize import spec

    canonical = {spec._label_for(q) for q in spec.COLUMNS}
    assert set(bdf.columns) <= canonical, set(bdf.columns) - canonical
    steps = pd.read_parquet(next(out.glob("*-steps.parquet")))
    assert list(steps["step_step"]) == [1, 2, 3]
    samples_csv = next(out.glob("*-samples.csv"))
    samples = pd.read_csv(samples_csv)
    assert len(samples) == len(bdf)
    assert list(samples.columns[:3]) == ["Unix Time / s", "seq / 1", "charge_capacity / mAh"]
    assert "test_time / s" in samples and "voltage / V" in samples and "step / 1" in samples
    assert np.allclose(samples["test_time / s"], bdf["Test Time / s"])  # from the run's start
    first = {p.name: p.read_bytes() for p in out.glob("*.csv")}
    again = subprocess.run(
        [*ssb, "export", "-1", "--format", "csv", "--out", str(out), "--catalog", str(catalog)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0, again.stderr
    assert {p.name: p.read_bytes() for p in out.glob("*.csv")} == first  # byte for byte

    refused = subprocess.run(
        [*ssb, "export", "-1", "--format", "xlsx", "--catalog", str(catalog)],
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2 and "invalid choice: 'xlsx'" in refused.stderr


def test_ssb_run_refuses_bad_files_and_a_missing_rig_clearly(tmp_path):
    import os
    import subprocess
    import sys

    from conftest import CA_ENV

    good = tmp_path / "good.txt"
    good.write_text("Rest for 1 minute\n")
    bad = tmp_path / "bad.txt"
    bad.write_text("Rest for 1 minute\nDischarge in C/2 until 3 V\n")
    cell = tmp_path / "cell.toml"
    cell.write_text('cell_id = "X"\nchemistry = "NMC | LPSCl | Si"\n')  # no area, layers

    def ssb_run(*args):
        where = ["--prefix", "NOBODY:", "--catalog", str(tmp_path / "catalog")]
        return subprocess.run(
            [sys.executable, "-m", "ssb_plans.cli", "run", *args, *where],
            env={**os.environ, **CA_ENV},
            capture_output=True,
            text=True,
            timeout=60,
        )

    done = ssb_run(str(bad))
    assert done.returncode == 2 and "line 2, column 11: expected 'at', got 'in'" in done.stderr
    done = ssb_run(str(tmp_path / "missing.txt"))
    assert done.returncode == 2 and "cannot read" in done.stderr
    done = ssb_run(str(good), "--cell", str(tmp_path / "nocell.toml"))
    assert done.returncode == 2 and "nocell.toml" in done.stderr
    done = ssb_run(str(good))  # nothing answers at NOBODY:
    assert done.returncode == 1 and "no rig answers at PV prefix 'NOBODY:'" in done.stderr
    assert not (tmp_path / "catalog").exists()  # nothing was written anywhere
    assert "cell.area_cm2: missing" in str(read_cell_error(cell))


def read_cell_error(path):
    from ssb_plans.metadata import validate_cell
    from ssb_plans.run_file import read_cell

    try:
        validate_cell(read_cell(str(path)))
    except ValueError as ex:
        return ex
    return None
