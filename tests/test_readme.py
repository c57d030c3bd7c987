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
    assert listed == set(ioc.pvdb)
