"""``ssb demo`` end to end, as a newcomer runs it, and interrupted with Ctrl-C."""

import os
import re
import select
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

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
    first, gap, failure = (Path(page).read_text() for page in (first, gap, failure))
    # each page says what was run (the protocol's heading) and how it ended
    assert first.startswith("# Si | LPSCl | NMC811 cycled at constant stack pressure: cell")
    assert "capacity.png" in first and "| 1 | 1.9" in first
    assert "breathing (gap range)" in gap  # the fixed gap gets one too
    assert "pressure swing in the fixed gap" in gap and "deviation" not in gap
    assert "| 0 | 1.9" in gap  # one cycle without a Repeat is still a cycle
    assert "events.png" in failure and "> ended safely on soft_short" in failure
    # the failure watch: both injected faults detected, the run ended safely at the short
    assert re.search(r"pressure_spike of 1\.\d+ MPa .* detected by the ioc, reaction read", out)
    assert re.search(r"soft_short of 0\.0\d+ V .* detected by the ioc, reaction end", out)
    assert "EVENT pressure_spike" in err and "ended safely on soft_short" in err
    assert gone(ioc_pid(out))
    catalog = open_catalog(tmp_path / "catalog")
    constant, fixed_gap, watch = catalog[-3], catalog[-2], catalog[-1]
    for run in (constant, fixed_gap, watch):  # step 1 begins with the run: no idle hour
        first_sample = float(run["samples"].read()["test_time"].values[0])
        step_1 = float(run["steps"].read()["step_start_time"].values[0])
        clock_0 = float(run.primary.read()["rig_clock_time"].values[0])
        assert clock_0 == step_1 and first_sample - step_1 < 60.0
    from ssb_analysis.figures import capacity_figure, cycling_figure

    gap_line = cycling_figure([constant], ["c"]).axes[3].lines[0].get_ydata()
    current = constant["samples"].read()["current"].values
    loaded = int(np.flatnonzero(current != 0)[0])
    assert np.isnan(gap_line[:loaded]).all() and np.isfinite(gap_line[loaded:]).all()
    low, high = capacity_figure(constant).axes[1].get_ylim()  # coulombic efficiency / %
    assert high - low >= 5.0  # 98.9 and 100.0 % do not fill the axis
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
    assert frames >= 40  # one every 5 min of ~3.6 h of experiment time, and at each step
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
    schedule = run["schedule"].read()  # every pattern asked for was taken, on time
    assert int(schedule["schedule_missed"][0]) == 0
    assert int(schedule["schedule_asked"][0]) == int(schedule["schedule_taken"][0]) >= frames - 2
    clock = run.primary.read(variables=["rig_clock_time"])["rig_clock_time"].values
    assert np.isclose(np.diff(clock), 300.0, atol=1e-3).sum() >= frames // 2
