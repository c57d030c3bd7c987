"""The instrument outlives its recorder's troubles: a catalog that cannot be written (a full
disk, a Tiled server gone) stops the acquisition, never the protocol; it is said in one
line, the rest is spooled, and `ssb attach` later stores everything the IOC still holds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import CA_ENV, start_ioc

from ssb_analysis.catalog import open_catalog
from ssb_analysis.runs import chain_of

pytestmark = pytest.mark.network
CELL = (
    'cell_id = "DISK-1"\nchemistry = "NMC811 | LPSCl | Si"\narea_cm2 = 0.785\n'
    "capacity_mAh = 2.0\n[layers_um]\ncathode = 60\nseparator = 500\nanode = 40\n"
)
PROTOCOL = "Set pressure to 30 MPa\nCharge at C/5 for 3 hours\nRest for 2 hours\n"


@pytest.fixture
def small_disk(tmp_path):
    """A 30 MB tmpfs the test fills (made and removed by the test: root only)."""
    assert os.geteuid() == 0, "this test mounts a small tmpfs: run the suite as root (CI does)"
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=30m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of ``disk``."""
    filler = disk / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M"], capture_output=True)
    return filler


def ssb(*args, env, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "ssb_plans.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kwargs)  # fmt: skip


def test_a_full_disk_stops_the_acquisition_never_the_protocol(ca_context, tmp_path, small_disk):
    ioc = start_ioc(ca_context, speed=300.0)
    catalog = small_disk / "catalog"
    env = {**os.environ, **CA_ENV, "XDG_DATA_HOME": str(tmp_path / "home")}  # the spool
    (tmp_path / "cell.toml").write_text(CELL)
    (tmp_path / "p.txt").write_text(PROTOCOL)
    try:
        run = ssb("run", str(tmp_path / "p.txt"), "--prefix", ioc.prefix, "--cell",
                  str(tmp_path / "cell.toml"), "--catalog", str(catalog), env=env)  # fmt: skip
        ioc.wait_for(lambda: ioc.get("Seq:Step-RB") == 2, 60, "the charge")
        filler = fill(small_disk)
        _, err = run.communicate(timeout=120)
        assert run.returncode != 0
        assert "Traceback" not in err, err
        said = [line for line in err.splitlines() if line.startswith("ssb run: the catalog")]
        assert len(said) == 1 and "the protocol goes on on the instrument" in said[0], err
        assert "ssb attach" in said[0] and "spool" in said[0]
        assert ioc.enum("Seq:State-RB") == "Running"  # the instrument went on, untouched
        assert list((tmp_path / "home" / "ssb-bluesky" / "spool").glob("*.jsonl"))
        filler.unlink()  # the disk is freed; the acquisition is taken up again
        attach = subprocess.run(
            [sys.executable, "-m", "ssb_plans.cli", "attach", "--prefix", ioc.prefix,
             "--catalog", str(catalog)],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert attach.returncode == 0, attach.stdout + attach.stderr
        stored = open_catalog(catalog)
        first, second = chain_of(stored, stored[-1])
        assert first.stop["exit_status"] == "fail" and "acquisition lost" in first.stop["reason"]
        assert second.stop["exit_status"] == "success"
        # the first run may hold none of them (its pages were buffered when the disk
        # filled): then the continuation stores them all, from the instrument's buffer
        parts = [r["samples"].read() for r in (first, second) if "samples" in r]
        seq = np.concatenate([p["seq"].values for p in parts])
        step = np.concatenate([p["step"].values for p in parts])
        step_time = np.concatenate([p["step_time"].values for p in parts])
        assert {2, 3} <= set(step.tolist())  # the charge the disk filled in, and the rest
        assert step_time[step == 2].min() < 60.0  # the charge's samples from its start
        assert len(seq) == len(set(seq.tolist())), "a sample stored twice"
        assert sorted(seq.tolist()) == list(range(int(seq.min()), int(seq.max()) + 1))
        steps = np.concatenate([r["steps"].read()["step_step"].values for r in (first, second)
                                if "steps" in r])  # fmt: skip
        assert sorted(steps.tolist()) == [1, 2, 3]
        stored.context.close()
    finally:
        ioc.stop()


def test_a_catalog_server_gone_stops_the_acquisition_never_the_protocol(ca_context, tmp_path):
    from test_tiled_server import TiledServer

    ioc = start_ioc(ca_context, speed=300.0)
    server = TiledServer(tmp_path / "server").start()
    env = {**os.environ, **CA_ENV, "XDG_DATA_HOME": str(tmp_path / "home"),
           "SSB_CATALOG_API_KEY": server.api_key}  # fmt: skip
    (tmp_path / "cell.toml").write_text(CELL)
    (tmp_path / "p.txt").write_text(PROTOCOL)
    try:
        run = ssb("run", str(tmp_path / "p.txt"), "--prefix", ioc.prefix, "--cell",
                  str(tmp_path / "cell.toml"), "--catalog", server.url, env=env)  # fmt: skip
        ioc.wait_for(lambda: ioc.get("Seq:Step-RB") == 2, 60, "the charge")
        server.kill()
        _, err = run.communicate(timeout=120)
        assert run.returncode != 0 and "Traceback" not in err, err
        assert "ssb run: the catalog cannot be written" in err, err
        assert ioc.enum("Seq:State-RB") == "Running"
    finally:
        server.stop()
        ioc.stop()


def test_a_killed_ioc_is_said_in_one_line_without_tracebacks(ca_context, tmp_path):
    """The acquisition's other trouble: the instrument's IOC dies. `ssb run` ends the run
    as failed and says so once, asking whether the IOC runs (it cannot tell a broken link
    from a dead IOC), with no traceback."""
    ioc = start_ioc(ca_context, speed=300.0)
    env = {**os.environ, **CA_ENV, "XDG_DATA_HOME": str(tmp_path / "home")}
    (tmp_path / "cell.toml").write_text(CELL)
    (tmp_path / "p.txt").write_text(PROTOCOL)
    try:
        run = ssb("run", str(tmp_path / "p.txt"), "--prefix", ioc.prefix, "--cell",
                  str(tmp_path / "cell.toml"), "--catalog", str(tmp_path / "catalog"),
                  env=env)  # fmt: skip
        ioc.wait_for(lambda: ioc.get("Seq:Step-RB") == 2, 60, "the charge")
        ioc.process.kill()
        _, err = run.communicate(timeout=120)
        assert run.returncode == 1 and "Traceback" not in err, err
        said = [line for line in err.splitlines() if line.startswith("ssb run: ")]
        assert len(said) == 1 and "is the IOC running?" in said[0], err
        stored = open_catalog(tmp_path / "catalog")
        assert stored[-1].stop["exit_status"] == "fail"
        stored.context.close()
    finally:
        ioc.stop()
