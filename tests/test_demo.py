"""``ssb demo`` end to end, as a newcomer runs it, and interrupted with Ctrl-C."""

import os
import re
import select
import signal
import subprocess
import sys
from pathlib import Path

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


def test_demo_runs_stores_the_runs_and_a_figure_and_leaves_no_process(tmp_path):
    process = demo(tmp_path / "catalog", "--cycles", "1")
    out, err = process.communicate(timeout=180)
    assert process.returncode == 0, err
    for noise in ("Traceback", "Warning", "cannot schedule new futures"):  # a clean shell
        assert noise not in out + err, err
    assert out.count("exit status success") == 2
    assert re.search(r"cycle 1: charged 1\.9\d\d mAh, discharged 1\.9\d\d mAh", out)
    held = re.search(r"pressure error (0\.\d+) MPa RMS, (\d+\.\d+) MPa peak", out)
    swing = re.search(r"in a fixed gap: the pressure swung (\d+\.\d) MPa", out)
    assert held and swing, out
    assert float(held.group(1)) < 0.2  # 0.2 % of 100 MPa
    assert float(swing.group(1)) > 50 * float(held.group(2))
    assert "step 2/6 (cycle 1) Charge at C/2 until 4.1 V: voltage >= 4.1 V" in err  # progress
    figure = re.search(r"figure (\S+\.png)", out).group(1)
    assert os.path.getsize(figure) > 20_000
    first, gap, failure = re.findall(r"report (\S+report\.md)", out)
    assert "capacity.png" in Path(first).read_text()
    assert "breathing (gap range)" in Path(gap).read_text()  # the fixed gap gets one too
    assert "events.png" in Path(failure).read_text()
    # the failure watch: both injected faults detected, the run ended safely at the short
    assert re.search(r"pressure_spike of 1\.\d+ MPa .* detected by the ioc, reaction read", out)
    assert re.search(r"soft_short of 0\.0\d+ V .* detected by the ioc, reaction end", out)
    assert "EVENT pressure_spike" in err and "ended safely on soft_short" in err
    assert gone(ioc_pid(out))
    catalog = open_catalog(tmp_path / "catalog")
    constant, fixed_gap, watch = catalog[-3], catalog[-2], catalog[-1]
    assert constant.start["plan_name"] == fixed_gap.start["plan_name"] == "run_protocol"
    assert "Hold gap" in fixed_gap.start["protocol"]
    assert len(constant["samples"].read()["seq"]) > 500
    assert watch.stop["exit_status"] == "fail" and "soft_short" in watch.stop["reason"]
    assert watch["safe_state"].read()["rig_cycler_current"].values[0] == 0.0


def test_ctrl_c_aborts_the_run_keeps_its_data_and_stops_the_ioc(tmp_path):
    process = demo(tmp_path / "catalog", "--cycles", "1000")  # would take hours
    lines = []
    while True:  # wait for the first finished step: the run is under way
        ready, _, _ = select.select([process.stderr], [], [], 60)
        assert ready, "no progress within 60 s"
        line = process.stderr.readline()
        lines.append(line)
        if line.startswith("step 2/"):
            break
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, "".join(lines) + err
    assert "interrupted" in err and "open circuit" in err
    assert gone(ioc_pid(out))
    run = open_catalog(tmp_path / "catalog")[-1]
    assert run.stop["exit_status"] == "abort"
    assert len(run["samples"].read()["seq"]) >= 10
    assert run["safe_state"].read()["rig_cycler_current"].values[0] == 0.0


def test_operando_demo_stores_frames_and_writes_the_operando_figures(tmp_path):
    process = demo(tmp_path / "catalog", "--operando")  # its default speed, as users run it
    out, err = process.communicate(timeout=240)
    assert process.returncode == 0, err
    for noise in ("Traceback", "Warning", "cannot schedule new futures"):
        assert noise not in out + err, err
    frames = int(re.search(r"(\d+) patterns of 60 s \(xrd, 1280 strips", out).group(1))
    assert frames >= 12  # one every 5 min of 2 h, fewer when a plan round trip runs long
    top = re.search(r"largest (\d+\.\d+) Å after (\d+\.\d+) mAh", out)
    assert 14.40 < float(top.group(1)) <= 14.475  # the law's maximum is 14.47 A at Li0.5
    assert 0.8 < float(top.group(2)) < 1.6  # ~0.6 of 2 mAh: x = 0.95 - 0.72 x 0.6
    page = Path(re.search(r"report (\S+report\.md)", out).group(1))
    text = page.read_text()
    for name in ("operando", "lattice"):
        assert f"({name}.png)" in text and (page.parent / f"{name}.png").stat().st_size > 20_000
    pids = re.search(r"IOC pid (\d+), detector pid (\d+)", out)
    assert gone(int(pids.group(1))) and gone(int(pids.group(2)))
    run = open_catalog(tmp_path / "catalog")[-1]
    assert run["primary"]["xrd_image"].shape == (frames, 1280)
