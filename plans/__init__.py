"""Bluesky plans for the pressure-controlled ASSB rig, and the session that runs them.

The names below are imported when first used (PEP 562), so that ``ssb --help`` and the
commands that need neither EPICS nor the catalog start at once.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "AttachError": "attach",
    "attach": "attach",
    "PURPOSES": "metadata",
    "MetadataError": "metadata",
    "cell_metadata": "metadata",
    "validate_cell": "metadata",
    "validate_run_metadata": "metadata",
    "hold_pressure": "pressure",
    "pressure_steps": "pressure",
    "ramp_pressure": "pressure",
    "set_pressure": "pressure",
    "Session": "session",
    "start_session": "session",
    "SuspendOutsidePressureBand": "suspenders",
}
__all__ = [
    "PURPOSES",
    "AttachError",
    "MetadataError",
    "Session",
    "SuspendOutsidePressureBand",
    "attach",
    "cell_metadata",
    "hold_pressure",
    "pressure_steps",
    "ramp_pressure",
    "set_pressure",
    "start_session",
    "validate_cell",
    "validate_run_metadata",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what a type checker and an IDE see
    from .attach import AttachError, attach
    from .metadata import (
        PURPOSES,
        MetadataError,
        cell_metadata,
        validate_cell,
        validate_run_metadata,
    )
    from .pressure import hold_pressure, pressure_steps, ramp_pressure, set_pressure
    from .session import Session, start_session
    from .suspenders import SuspendOutsidePressureBand
