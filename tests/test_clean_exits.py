"""Every command a user types ends cleanly: the answer, or one line saying what to do,
and never a traceback or a library's warning (real IOC, real catalog, real processes)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from conftest import run_cli

README = Path(__file__).resolve().parents[1] / "README.md"
NOISE = ("Traceback", "Warning", "Error:", "cannot schedule new futures")


def clean(done, code: int = 0) -> str:
    """The command's output, once it is known to have ended as expected and quietly."""
    out = done.stdout + done.stderr
    assert done.returncode == code, out
    for word in NOISE:
        assert word not in out, out
    return out


def readme_cell_file() -> str:
    return re.search(r"```toml\n(.+?)```", README.read_text(), re.S).group(1)


def test_the_shell_commands_answer_cleanly(ioc, tmp_path):
    catalog, out = str(tmp_path / "catalog"), str(tmp_path / "out")
    cell = tmp_path / "cell.toml"
    cell.write_text(readme_cell_file())  # the README's own example
    protocol = tmp_path / "protocol.txt"
    protocol.write_text("Set pressure to 20 MPa\nRest for 2 minutes\n")
    where = ["--prefix", ioc.prefix, "--catalog", catalog]

    text = clean(run_cli("ssb_plans.cli", "run", str(protocol), "--cell", str(cell), *where))
    assert "exit status success" in text
    assert "A1" in clean(run_cli("ssb_plans.cli", "runs", "--catalog", catalog))
    assert "cell_id: A1" in clean(run_cli("ssb_plans.cli", "show", "-1", "--catalog", catalog))
    clean(run_cli("ssb_plans.cli", "report", "-1", "--catalog", catalog, "--out", out))
    clean(run_cli("ssb_plans.cli", "export", "-1", "--catalog", catalog, "--out", out))
    text = clean(run_cli("ssb_plans.cli", "attach", *where), code=1)
    assert "ended (done)" in text and "nothing to attach to" in text

    too_high = tmp_path / "too_high.txt"
    too_high.write_text("Set pressure to 390 MPa\n")
    text = clean(run_cli("ssb_plans.cli", "run", str(too_high), *where), code=2)
    assert "line 1" in text and "390" in text and "Run aborted" not in text
    text = clean(run_cli("ssb_plans.cli", "show", "zzzz", "--catalog", catalog), code=1)
    assert "no run 'zzzz'" in text and "ssb runs" in text
    missing = tmp_path / "no" / "such" / "dir"
    text = clean(run_cli("ssb_plans.cli", "runs", "--catalog", str(missing)), code=1)
    assert "no catalog at" in text and not missing.exists()
    assert "until the cycler lands" not in clean(run_cli("ssb_ioc.cli", "--help"))


@pytest.mark.parametrize("plan", ["set_pressure", "ramp_pressure", "hold_pressure"])
def test_a_report_for_every_pressure_plan(session, rig, tmp_path, plan):
    import ssb_plans
    from ssb_analysis.report import write_report

    args = {"set_pressure": (30.0,), "ramp_pressure": (30.0, 5.0), "hold_pressure": (60.0,)}
    kwargs = {"hold_pressure": {"pressure": 30.0, "interval": 10.0}}.get(plan, {})
    (uid,) = session.RE(getattr(ssb_plans, plan)(rig, *args[plan], **kwargs))
    page = write_report(session.catalog[uid], tmp_path)
    text = page.read_text()
    assert plan in text and "MPa" in text
    for figure in re.findall(r"\(([\w-]+\.png)\)", text):
        assert (page.parent / figure).stat().st_size > 10_000


def test_progress_lines_are_labelled_and_timed_from_the_run_start():
    import io
    import math

    from ssb_plans.progress import ProtocolProgress

    out = io.StringIO()
    progress = ProtocolProgress(out)
    progress("start", {"steps_planned": 2})
    for uid, name in (("p", "primary"), ("s", "steps"), ("e", "events")):
        progress("descriptor", {"uid": uid, "name": name})
    progress("event", {"descriptor": "p", "data": {"rig_clock_time": 90000.0}})
    step = {
        "step_step": 1,
        "step_cycle": 0,
        "step_text": "Hold gap",
        "step_reason": "gap locked",
        "step_duration": 0.0,
        "step_charge": 0.0,
        "step_discharge": 0.0,
    }
    progress("event", {"descriptor": "s", "data": step | {"step_pressure_mean": math.nan}})
    step |= {"step_step": 2, "step_text": "Rest", "step_duration": 3600.0}
    progress("event", {"descriptor": "s", "data": step | {"step_pressure_mean": 50.0}})
    event = {"events_kind": "pressure_spike", "events_magnitude": 1.5, "events_unit": "MPa",
             "events_time": 90000.0 + 1800.0, "events_step": 2, "events_source": "ioc",
             "events_reaction": "log"}  # fmt: skip
    progress("event", {"descriptor": "e", "data": event})
    text = out.getvalue()
    assert "nan" not in text and "Hold gap: gap locked after 0 s, +0.000 mAh\n" in text
    assert "mean pressure 50.00 MPa" in text
    assert "at t=0.50 h" in text  # from the run's first reading, not the IOC's lifetime


def test_the_harness_stops_searching_for_the_pvs_of_gone_iocs(ca_context):
    """Hundreds of IOCs per session: without this, searches for their PVs pile up in the
    client contexts until new IOCs are not found in time (seen in CI: 418 in the tests'
    context, thousands in ophyd's)."""
    from conftest import forget_gone_iocs, start_ioc

    ioc = start_ioc(ca_context)
    names = ["Rig:Time-RB", "Press:Pressure-RB", "Rig:Cell-RB"]
    for name in names:
        ioc.pv(name)
    ioc.stop()
    broadcaster = ca_context.broadcaster

    def pending() -> set[str]:
        with broadcaster._search_lock:
            return {item[0] for item in broadcaster.unanswered_searches.values()}

    wanted = {ioc.prefix + name for name in names}
    deadline = time.monotonic() + 10
    while not wanted <= pending() and time.monotonic() < deadline:
        time.sleep(0.05)  # the client notices the circuit is gone and searches again
    assert wanted <= pending()
    forget_gone_iocs()
    assert not wanted & pending()
