"""The names both sides of the wire use for states and choices: the enum strings of the
IOC's PVs, in index order, and what the clients send and compare against.

tests/test_contract.py checks the IOC's enumerations and PVs against these."""

from __future__ import annotations

PRESS_MODES: tuple[str, ...] = ("Off", "Pressure", "Gap")  # Press:Mode-SP / Mode-RB
STEP_KINDS: tuple[str, ...] = ("Rest", "CC", "CV", "CCCV", "CP", "CR", "PEIS")  # Cyc:StepType-SP
LIMITS: tuple[str, ...] = ("Voltage", "Current", "Time", "Capacity")  # what ends a step
NO_LIMIT = "None"  # an unused termination slot (Cyc:Term<k>Type-SP)
DIRECTIONS: tuple[str, ...] = ("Auto", "Rising", "Falling")  # a voltage limit's crossing
SEQUENCE_STATES: tuple[str, ...] = (  # Seq:State-RB
    "Idle",
    "Running",
    "Paused",
    "Done",
    "Aborted",
    "Failed",
    "Held",
)
SEQUENCE_ACTIVE: tuple[str, ...] = ("Running", "Paused", "Held")  # it owns the rig
