"""Imports flow one way: analysis reads the catalog only; the IOC never imports clients."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {
    "ssb_ioc": "ioc",
    "ssb_devices": "ssb_devices",
    "ssb_plans": "plans",
    "ssb_analysis": "analysis",
}
FORBIDDEN = {
    "ssb_ioc": {"ssb_devices", "ssb_plans", "ssb_analysis", "ophyd", "bluesky", "databroker"},
    "ssb_devices": {"ssb_plans", "ssb_analysis", "bluesky", "databroker"},
    "ssb_plans": {"ssb_analysis"},
    "ssb_analysis": {"ssb_ioc", "ssb_devices", "ssb_plans", "ophyd", "caproto", "bluesky"},
}


def imported_top_levels(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layer_imports(package):
    files = sorted((ROOT / FOLDERS[package]).rglob("*.py"))
    assert files
    for path in files:
        bad = imported_top_levels(path) & FORBIDDEN[package]
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
