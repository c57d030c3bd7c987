"""``ssb demo`` end to end, as a newcomer runs it, and interrupted with Ctrl-C."""

import os
import re
import select
import signal
import subprocess
import sys

from ssb_analysis.catalog import open_catalog


def demo(catalog, *args):
    return subprocess.Popen(
        [sys.executable, "-m", "ssb_plans.cli", "demo", "--catalog", str(catalog), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def ioc_pid(stdout_text):
    return int(re.search(r"IOC pid (\d+)", stdout_text).group(1))


def gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_demo_runs_stores_the_run_and_leaves_no_process(tmp_path):
    process = demo(tmp_path / "catalog", "--hold", "1200")
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "exit status success" in out
    assert re.search(r"hold at 100 MPa while charging: pressure error 0\.0\d\d MPa RMS", out)
    assert "the cell breathed" in out
    assert "%" in err  # progress was shown
    assert gone(ioc_pid(out))
    run = open_catalog(tmp_path / "catalog")[-1]
    assert run.start["plan_name"] == "demo_experiment"
    assert run.stop["exit_status"] == "success"
    assert len(run.primary.read()["time"]) > 20


def test_ctrl_c_aborts_the_run_keeps_its_data_and_stops_the_ioc(tmp_path):
    process = demo(tmp_path / "catalog", "--hold", "360000")  # would take ten minutes
    lines = []
    while True:  # wait for the first progress line: the run is under way
        ready, _, _ = select.select([process.stderr], [], [], 60)
        assert ready, "no progress within 60 s"
        line = process.stderr.readline()
        lines.append(line)
        if "%" in line:
            break
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, "".join(lines) + err
    assert "interrupted" in err
    assert gone(ioc_pid(out))
    run = open_catalog(tmp_path / "catalog")[-1]
    assert run.stop["exit_status"] == "abort"
    assert len(run.primary.read()["time"]) >= 1
