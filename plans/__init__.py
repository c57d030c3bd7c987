"""Bluesky plans for the pressure-controlled ASSB rig, and the session that runs them."""

from .attach import AttachError, attach
from .metadata import PURPOSES, MetadataError, cell_metadata, validate_cell, validate_run_metadata
from .pressure import hold_pressure, pressure_steps, ramp_pressure, set_pressure
from .session import Session, start_session
from .suspenders import SuspendOutsidePressureBand

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
