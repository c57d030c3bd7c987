"""A type checker in CI: mypy --strict on the packages that pass it whole (the contract
both sides of the wire import), mypy's defaults on the IOC, the devices, the analysis and
the lab, clean (libraries without type information are taken as untyped); the plans join
as they become clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STRICT = ["contract"]  # folders checked with --strict, no error allowed
CHECKED = [
    "ssb_devices",
    "lab",
    "ioc",
    "analysis",
]  # folders checked with mypy's defaults, no error


def mypy(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_contract_type_checks_strictly():
    result = mypy("--strict", *STRICT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout


def test_the_client_packages_type_check():
    result = mypy("--ignore-missing-imports", *CHECKED)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout
