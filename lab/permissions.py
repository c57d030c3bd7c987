"""What a queue accepts: ``existing_plans_and_devices.yaml`` and the user groups.

The list of plans and devices is generated from the startup module itself
(``qserver-list-plans-devices``), so it never disagrees with what a worker loads. The
groups:

- ``primary`` (operators; what the httpserver's accounts submit as): every plan of the suite,
  bluesky's ``count`` and the raw ``mv`` on any device.
- ``observer``: ``count`` only (a reading changes nothing); every plan that writes to a
  device, ``mv`` above all, is refused by the RE Manager with the reason.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

SUITE_PLANS = [
    "run_protocol",
    "set_pressure",
    "ramp_pressure",
    "hold_pressure",
    "pressure_steps",
    "minimum_pressure_study",
    "rate_capability",
    "pressure_impedance_scan",
    "attach",
]
GROUPS = {
    "user_groups": {
        "root": {  # the filter every group's rules pass through first
            "allowed_plans": [None],
            "forbidden_plans": [":^_"],
            "allowed_devices": [None],
            "forbidden_devices": [":^_:?.*"],
            "allowed_functions": [None],
            "forbidden_functions": [":^_"],
        },
        "primary": {
            "allowed_plans": [*SUITE_PLANS, "count", "mv"],
            "forbidden_plans": [None],
            "allowed_devices": [":?.*:depth=5"],
            "forbidden_devices": [None],
            "allowed_functions": [None],
            "forbidden_functions": [None],
        },
        "observer": {
            "allowed_plans": ["count"],
            "forbidden_plans": ["mv", *SUITE_PLANS],
            "allowed_devices": [":?.*:depth=5"],
            "forbidden_devices": [None],
            "allowed_functions": [None],
            "forbidden_functions": [":.*"],
        },
    }
}


def write_permissions(directory: Path) -> tuple[Path, Path]:
    """Write both files into ``directory``; returns their paths."""
    plans = directory / "existing_plans_and_devices.yaml"
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "qserver-list-plans-devices"),
            "--startup-module",
            "ssb_lab.profile",
            "--file-dir",
            str(directory),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "SSB_LAB_LISTING": "1"},
        cwd=directory,
        timeout=120,
    )
    if done.returncode != 0 or not plans.exists():
        raise RuntimeError(f"listing the plans and devices failed:\n{done.stderr[-2000:]}")
    groups = directory / "user_group_permissions.yaml"
    groups.write_text(yaml.safe_dump(GROUPS, sort_keys=False))
    return plans, groups
