"""The contract's enumerations as ophyd-async ``StrictEnum``: a value not among a PV's
choices is refused when the device connects (tests/test_async_devices.py checks each
against :mod:`ssb_contract.states`)."""

from __future__ import annotations

from ophyd_async.core import StrictEnum


class PressMode(StrictEnum):
    """``Press:Mode-SP`` / ``Mode-RB`` (:data:`ssb_contract.states.PRESS_MODES`)."""

    OFF = "Off"
    PRESSURE = "Pressure"
    GAP = "Gap"


class YesNo(StrictEnum):
    """The rig's No/Yes readbacks (``Settled-RB``, ``Overload-RB``)."""

    NO = "No"
    YES = "Yes"
