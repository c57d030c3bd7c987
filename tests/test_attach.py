"""Losing the acquiring process loses nothing: the protocol goes on on the instrument, and
``attach`` closes the orphaned run and continues in a linked one. Real IOC, real
processes killed with SIGKILL, real catalog."""

from __future__ import annotations

import itertools
import select
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ssb_analysis.catalog import open_catalog
from ssb_analysis.runs import chain_of, status
from ssb_analysis.runs import whole as whole_run

HERE = Path(__file__).parent
HEARTBEAT = 0.5
PROTOCOL = """\
Set pressure to 30 MPa
Rest for 2 minutes
Ramp pressure to 45 MPa at 0.05 MPa/s
Measure impedance from 100 kHz to 5 mHz
Charge at C/2 for 20 minutes
Rest for 5 minutes
Discharge at C/2 for 20 minutes
"""


def acquire(catalog_dir, tmp_path, prefix, *mode, heartbeat=HEARTBEAT) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "acquire_protocol.py"), str(catalog_dir),
         str(tmp_path / "md"), prefix, str(heartbeat), *mode],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    line = proc.stdout.readline() if ready else ""
    if "acquiring" not in line:
        proc.kill()
        _, err = proc.communicate(timeout=10)  # reaped, pipes closed: nothing leaks on
        raise AssertionError(f"acquisition did not start: {err}")
    return proc


def column(run, stream: str, field: str) -> np.ndarray:
    data = run[stream].read() if stream in run else {}
    return data[field].values if field in data else np.empty(0)


def kill(proc: subprocess.Popen) -> None:
    proc.kill()  # SIGKILL: no chance to flush, close the run or stop the sequence
    proc.wait(10)
    proc.stdout.close()
    proc.stderr.close()


def attach_to_the_end(catalog_dir, tmp_path, prefix: str) -> None:
    """Once the killed run looks orphaned, attach and follow the protocol to its end."""
    deadline = time.monotonic() + 30
    while newest_status(catalog_dir) != "orphaned":  # a readiness poll of the catalog
        assert time.monotonic() < deadline, "the killed run never looked orphaned"
        time.sleep(0.1)  # poll interval
    proc = acquire(catalog_dir, tmp_path, prefix, "attach")
    assert proc.wait(180) == 0, proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()


def newest_status(catalog_dir) -> str:
    catalog = open_catalog(catalog_dir)
    try:
        return status(catalog[-1])
    finally:
        catalog.context.close()


@pytest.fixture
def slow_ioc(ca_context):
    from conftest import start_ioc

    running = start_ioc(ca_context, speed=60.0)
    yield running
    running.stop()


def test_kills_at_any_moment_lose_no_sample_and_the_chain_reads_as_one(
    slow_ioc, tmp_path, ca_context
):
    ioc, catalog_dir = slow_ioc, tmp_path / "catalog"
    ioc.put("Press:Mode-SP", "Pressure")
    protocol = tmp_path / "protocol.txt"
    protocol.write_text(PROTOCOL)
    step = lambda: int(ioc.get("Seq:Step-RB"))  # noqa: E731
    proc = acquire(catalog_dir, tmp_path, ioc.prefix, "run", str(protocol))
    kill_points = [
        ("during the pressure ramp", lambda: step() == 3),
        ("during the impedance sweep", lambda: step() == 4),
        ("mid-step (charging)", lambda: step() == 5 and ioc.get("Cyc:StepTime-RB") > 300),
    ]
    try:
        for what, when in kill_points:
            ioc.wait_for(when, timeout=120, what=what)
            kill(proc)
            assert ioc.enum("Seq:State-RB") == "Running"  # the instrument goes on
            ioc.wait_for(lambda: newest_status(catalog_dir) == "orphaned", 30, "orphan")
            proc = acquire(catalog_dir, tmp_path, ioc.prefix, "attach")
        completed = ioc.get("Seq:Completed-RB")  # at a step boundary
        ioc.wait_for(lambda: ioc.get("Seq:Completed-RB") > completed, 120, "a step boundary")
    finally:
        kill(proc)  # also when a wait failed: no acquisition outlives the test
    attach_to_the_end(catalog_dir, tmp_path, ioc.prefix)

    catalog = open_catalog(catalog_dir)
    runs = chain_of(catalog, catalog[-1])
    assert len(runs) == 5
    for before, after in itertools.pairwise(runs):
        assert after.start["continues"] == before.start["uid"]
        assert after.start["sequence_id"] == before.start["sequence_id"]
        assert after.start["cell_id"] == "ATTACH-1" and after.start["protocol"]
    for run in runs[:-1]:
        assert run.stop["exit_status"] == "fail"
        assert "acquisition lost" in run.stop["reason"]
    assert runs[-1].stop["exit_status"] == "success"
    seqs = np.concatenate([column(run, "samples", "seq") for run in runs])
    assert len(seqs) == len(set(seqs.tolist())), "a sample stored twice"
    assert sorted(seqs.tolist()) == list(range(int(seqs.min()), int(seqs.max()) + 1))
    steps = np.concatenate([column(run, "steps", "step_step") for run in runs])
    assert sorted(steps.tolist()) == list(range(1, 8)), "each step recorded once"
    spectra = np.concatenate([column(run, "impedance", "spectrum") for run in runs])
    assert len(np.unique(spectra)) == 1  # the sweep's spectrum, once
    whole = whole_run(catalog, runs[1])  # readers take the chain as one experiment
    assert whole.start["uid"] == runs[0].start["uid"] and whole.stop == runs[-1].stop
    assert len(whole["samples"].read()["seq"]) == len(seqs)
    catalog.context.close()


def test_an_attached_study_concludes_on_the_whole_acquisition(slow_ioc, tmp_path):
    ioc, catalog_dir = slow_ioc, tmp_path / "catalog"
    proc = acquire(catalog_dir, tmp_path, ioc.prefix, "scan")
    ioc.wait_for(lambda: ioc.get("Seq:Step-RB") >= 5, 120, "the third pressure")
    kill(proc)
    attach_to_the_end(catalog_dir, tmp_path, ioc.prefix)
    catalog = open_catalog(catalog_dir)
    first, last = chain_of(catalog, catalog[-1])
    assert "fit" not in first and last.start["plan_name"] == "pressure_impedance_scan"
    resistance = last["resistance"].read()  # every pressure, from both runs
    assert np.allclose(resistance["resistance_pressure"].values, [20, 40, 60, 80], atol=1.0)
    exponent = last["fit"].read()["fit_exponent"].values[0]
    assert exponent == pytest.approx(-0.5, abs=0.05)  # R_int ~ P^-0.5 in the simulated cell
    catalog.context.close()


def test_attach_refuses_with_nothing_to_attach_to(rig, tmp_path):
    from ssb_plans import start_session
    from ssb_plans.attach import AttachError, attach

    session = start_session(tmp_path / "c", md_dir=tmp_path / "md", progress=False,
                            context_managers=[])  # fmt: skip
    try:
        with pytest.raises(AttachError, match="nothing to attach to"):
            session.RE(attach(rig, session.catalog))
    finally:
        session.close()


def test_ssb_attach_says_why_it_cannot_attach(ioc, tmp_path):
    from conftest import run_cli

    done = run_cli("ssb_plans.cli", "attach", "--prefix", ioc.prefix, "--catalog", str(tmp_path))
    assert done.returncode == 1
    assert f"ssb attach: {ioc.prefix} sequence Idle" in done.stdout
    first = done.stderr.splitlines()[0]  # (caproto's noise at interpreter exit: issue 12)
    assert first.startswith("ssb attach: no protocol") and "nothing to attach to" in first


def test_attach_refuses_an_acquisition_of_another_catalog(rig, tmp_path):
    import json

    from ssb_plans import start_session
    from ssb_plans.attach import AttachError, lost_acquisition

    rest = {"kind": "rest", "terminations": [["time", 1e6, "Auto"]]}
    table = {"version": 1, "owner": {"sequence_id": "elsewhere"}}
    table["steps"] = [{"do": "cycler", "step": rest}]
    status = rig.sequencer.set(json.dumps(table))
    session = start_session(tmp_path / "c", md_dir=tmp_path / "md", progress=False,
                            context_managers=[])  # fmt: skip
    try:
        with pytest.raises(AttachError, match="not in this catalog"):
            lost_acquisition(rig, session.catalog)
        assert rig.sequencer.state.get(use_monitor=False) == "Running"  # left as it was
    finally:
        rig.sequencer.stop()
        status.wait(10)
        session.close()


def test_ssb_attach_right_after_a_crash_takes_over_at_once(slow_ioc, tmp_path):
    """On the host that wrote it, a run whose writer's process is gone is orphaned at
    once, however fresh its last heartbeat: no guessing how long to wait."""
    from conftest import run_cli

    ioc, catalog_dir = slow_ioc, tmp_path / "catalog"
    protocol = tmp_path / "protocol.txt"
    protocol.write_text("Set pressure to 30 MPa\nRest for 10 minutes\n")
    proc = acquire(catalog_dir, tmp_path, ioc.prefix, "run", str(protocol), heartbeat=600)
    ioc.wait_for(lambda: ioc.get("Seq:Step-RB") == 2, timeout=60, what="the rest")
    kill(proc)
    assert newest_status(catalog_dir) == "orphaned"  # its beat is fresh; its process gone
    done = run_cli("ssb_plans.cli", "attach", "--prefix", ioc.prefix, "--catalog",
                   str(catalog_dir))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "continues the acquisition" in done.stdout
    catalog = open_catalog(catalog_dir)
    first, second = chain_of(catalog, catalog[-1])
    assert "acquisition lost" in first.stop["reason"]
    assert second.stop["exit_status"] == "success"
    catalog.context.close()
