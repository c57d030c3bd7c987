"""Imports flow one way: analysis reads the catalog only; the IOC never imports clients.

    ssb_lab -> ssb_plans, ssb_devices, ssb_analysis, ssb_ioc.launch   (starts it all)
    ssb_analysis            (catalog only: no ophyd, caproto, bluesky)
    ssb_plans -> ssb_devices -> ophyd
    ssb_ioc                 (server side: no client layers)

The one client-side use of ssb_ioc is ``ssb_ioc.launch`` (start an IOC subprocess), used
by ``ssb demo`` and ``ssb lab``; the one use of ssb_lab below it is ``ssb lab``'s command
line, which the ``ssb`` command includes.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {
    "ssb_ioc": "ioc",
    "ssb_devices": "ssb_devices",
    "ssb_plans": "plans",
    "ssb_analysis": "analysis",
    "ssb_lab": "lab",
}
FORBIDDEN = {
    "ssb_ioc": {
        "ssb_devices", "ssb_plans", "ssb_analysis", "ssb_lab", "ophyd", "bluesky", "databroker",
    },
    "ssb_devices": {
        "ssb_ioc", "ssb_plans", "ssb_analysis", "ssb_lab", "bluesky", "databroker", "tiled",
    },
    "ssb_plans": {"ssb_ioc", "ssb_lab"},
    "ssb_analysis": {
        "ssb_ioc", "ssb_devices", "ssb_plans", "ssb_lab", "ophyd", "caproto", "bluesky",
    },
    "ssb_lab": {"ssb_ioc"},
}  # fmt: skip
ALLOWED = {
    "ssb_plans": {"ssb_ioc.launch", "ssb_lab.cli"},
    "ssb_lab": {"ssb_ioc.launch", "ssb_ioc.backends"},  # starts IOCs, checks rig files
}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layer_imports(package):
    files = sorted((ROOT / FOLDERS[package]).rglob("*.py"))
    assert files
    for path in files:
        modules = imported_modules(path) - ALLOWED.get(package, set())
        bad = {m for m in modules if m.split(".")[0] in FORBIDDEN[package]}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
