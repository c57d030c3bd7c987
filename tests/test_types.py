"""A type checker in CI: mypy --strict on the contract (both sides of the wire import it),
mypy's defaults on every other package, clean (libraries without type information are
taken as untyped).

The packages are installed under names other than their folders' (``ssb_ioc`` is
``ioc/``, through the editable install's import hook), which mypy cannot follow: it would
take every ``import ssb_contract`` as missing and check nothing across packages. So mypy
runs on a tree of links with the import names, and sees each package's real types.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STRICT = ["ssb_contract"]  # packages checked with --strict, no error allowed
CHECKED = ["ssb_ioc", "ssb_devices", "ssb_async", "ssb_plans", "ssb_analysis", "ssb_lab"]


@pytest.fixture(scope="module")
def named_tree(tmp_path_factory) -> Path:
    """A folder of links, one per package, named as Python imports it."""
    tree = tmp_path_factory.mktemp("packages")
    folders = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for name, folder in folders["package-dir"].items():
        (tree / name).symlink_to(ROOT / folder, target_is_directory=True)
    return tree


def mypy(tree: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir", "/dev/null", *args],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_package_is_in_the_tree(named_tree):
    assert sorted(p.name for p in named_tree.iterdir()) == sorted([*STRICT, *CHECKED])


def test_the_contract_type_checks_strictly(named_tree):
    result = mypy(named_tree, "--strict", *(f"-p{name}" for name in STRICT))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout


def test_the_other_packages_type_check(named_tree):
    result = mypy(named_tree, "--ignore-missing-imports", *(f"-p{name}" for name in CHECKED))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout
