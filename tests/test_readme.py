"""The README's commands are the ones CI runs, and its PV table matches the IOC."""

import re
from pathlib import Path

from ssb_ioc.server import RigIOC
from ssb_ioc.sim import Rig, load_cell_file

ROOT = Path(__file__).resolve().parents[1]


def test_readme_gives_the_commands_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    for var in ("INSTALL", "TEST"):
        command = re.search(rf"^{var}='(.+)'$", ci, re.M).group(1)
        assert command in readme, f"README.md does not give the {var.lower()} command {command}"


def test_readme_pv_table_lists_every_pv():
    readme = (ROOT / "README.md").read_text()
    ioc = RigIOC(prefix="SSB:", backend=Rig(load_cell_file("si-nmc")))
    listed = set(re.findall(r"`(SSB:[A-Za-z0-9:-]+)`", readme))
    for first, last in re.findall(r"`(SSB:[A-Za-z0-9:]+:Page0-RB) \.\. (\S+Page31-RB)`", readme):
        assert last == first.replace("Page0-RB", "Page31-RB")  # a ring's pages, one row
        listed |= {first.replace("Page0-RB", f"Page{k}-RB") for k in range(32)}
    assert listed == set(ioc.pvdb)


def readme_python_blocks() -> list[str]:
    return re.findall(r"```python\n(.+?)```", (ROOT / "README.md").read_text(), re.S)


# After the README's blocks, in the same interpreter: what the blocks stored is whole.
CHECK_WHAT_WAS_STORED = """
for _uid in list(catalog):
    _run = catalog[_uid]
    _name = f"scan {_run.start['scan_id']} ({_run.start['plan_name']})"
    assert "data_loss" not in _run, f"{_name} lost rows: {_run.stop['reason']}"
    if "schedule" in _run:
        _missed = int(_run["schedule"].read()["schedule_missed"][0])
        assert _missed == 0, f"{_name} missed readings: {_run.stop['reason']}"
    assert _run.stop["exit_status"] == "success", f"{_name}: {_run.stop}"
print("CHECKED", len(catalog), "runs")
"""


def readme_speed() -> float:
    """The speed the README starts its IOC at, for the blocks that follow."""
    readme = (ROOT / "README.md").read_text()
    return float(re.search(r"ssb-ioc --cell si-nmc --speed (\d+)\n", readme).group(1))


def test_every_python_block_of_the_readme_runs_verbatim_in_order(tmp_path):
    """As a reader would: an IOC serving SSB: (on this test's loopback ports) at the
    README's speed, then each block as the page gives it, in one interpreter, with the
    default catalog and RE.md in a temporary data directory; then every run it stored is
    checked: nothing lost, no reading of a schedule missed, each a success."""
    import os
    import subprocess
    import sys

    from conftest import CA_ENV

    from ssb_ioc.launch import DetectorProcess, IOCProcess

    script = tmp_path / "readme.py"
    script.write_text("\n".join(readme_python_blocks()) + CHECK_WHAT_WAS_STORED)
    env = {
        **os.environ,
        **CA_ENV,
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "SSB_CATALOG": "",
        "MPLBACKEND": "Agg",
    }
    port = int(CA_ENV["EPICS_CA_SERVER_PORT"])
    with (
        IOCProcess("SSB:", env=CA_ENV, speed=readme_speed(), seed=1),
        DetectorProcess("SSB:", port, prefix="XRD:", seed=1),  # its own port: port + 2
    ):
        done = subprocess.run(
            [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=900
        )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-5000:]
    assert "Traceback" not in out and "Warning" not in out, out[-5000:]
    assert "overwritten" not in out and "CHECKED" in out, out[-5000:]
