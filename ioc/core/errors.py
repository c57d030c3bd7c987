"""The refusal every command of the rig raises, and the check every number passes first."""

from __future__ import annotations

import math

from ssb_contract.refusals import Refused


class RigError(Refused):
    """A command the rig refuses; the message says why and what to do instead."""


def finite(name: str, value: float) -> float:
    """``value`` as a float, refused by ``name`` when it is not a finite number."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise RigError(f"{name}: {value!r} is not a number") from None
    if not math.isfinite(value):
        raise RigError(f"{name}: {value} is not a finite number")
    return value
