"""Building blocks for the rig's PVs: guarded setpoints, readbacks, metadata helpers.

Each PV gets its own alarm (caproto's default is one alarm shared by a whole group).
Every writable PV of the rig reports a refused put on the rig's message PV before the
put fails, so that clients that do not surface a server-side put failure (pyepics'
``caput``, or a client that only times out) can still read why.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

from caproto import ChannelType, SkipWrite
from caproto.server import PVGroup, pvproperty
from caproto.server.server import (
    PvpropertyBoolEnum,
    PvpropertyDouble,
    PvpropertyEnum,
    PvpropertyInteger,
)


class _ReportsRejections:
    """Mixin for pvproperty data: refuse non-finite numbers, report every refusal."""

    async def verify_value(self, value):
        try:
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{value} is not a finite number")
            return await super().verify_value(value)
        except SkipWrite:
            raise
        except Exception as ex:
            await self.group.root.report(f"{self.pvname} refused {value}: {ex}")
            raise


GuardedDouble = type("GuardedDouble", (_ReportsRejections, PvpropertyDouble), {})
GuardedInteger = type("GuardedInteger", (_ReportsRejections, PvpropertyInteger), {})
GuardedEnum = type("GuardedEnum", (_ReportsRejections, PvpropertyEnum), {})
GuardedBoolEnum = type("GuardedBoolEnum", (_ReportsRejections, PvpropertyBoolEnum), {})


class RigPVGroup(PVGroup):
    """PVGroup whose writable PVs report refusals to the root group's message PV."""

    type_map: ClassVar[dict] = {
        **PVGroup.type_map,
        float: GuardedDouble,
        int: GuardedInteger,
        bool: GuardedBoolEnum,
        ChannelType.DOUBLE: GuardedDouble,
        ChannelType.LONG: GuardedInteger,
        ChannelType.ENUM: GuardedEnum,
    }

    @property
    def root(self) -> RigPVGroup:
        group = self
        while getattr(group, "parent", None) is not None:
            group = group.parent
        return group

    @property
    def rig(self):
        return self.root.backend


def limits(lo: float, hi: float) -> dict[str, float]:
    """Control and display limits (caproto refuses puts outside the control limits)."""
    return {
        "lower_ctrl_limit": lo,
        "upper_ctrl_limit": hi,
        "lower_disp_limit": lo,
        "upper_disp_limit": hi,
    }


def _numeric(name: str, units: str, lo: float, hi: float, doc: str, precision: int, **kwargs):
    return pvproperty(
        name=name,
        value=0.0,
        dtype=float,
        units=units,
        precision=precision,
        doc=doc,
        alarm_group=name,
        **limits(lo, hi),
        **kwargs,
    )


def setting(
    name: str,
    units: str,
    lo: float,
    hi: float,
    doc: str,
    precision: int = 3,
    apply: Callable[[Any, float], None] | None = None,
):
    """A writable numeric PV with units, precision and limits; ``apply(rig, value)``,
    if given, hands an accepted value to the rig backend (which may still refuse it)."""
    if apply is None:
        return _numeric(name, units, lo, hi, doc, precision)

    async def put(group, instance, value):
        apply(group.rig, value)
        return value

    return _numeric(name, units, lo, hi, doc, precision, put=put)


def reading(name: str, units: str, lo: float, hi: float, doc: str, precision: int = 3):
    """A read-only numeric PV with units, precision and display/control range."""
    return _numeric(name, units, lo, hi, doc, precision, read_only=True)


def text(name: str, doc: str, writable: bool = False):
    """A long-string PV (CHAR waveform, read it as a string): messages, names, reasons."""
    return pvproperty(
        name=name,
        value="",
        dtype=str,
        max_length=256,
        read_only=not writable,
        doc=doc,
        alarm_group=name,
    )


def command(name: str, doc: str):
    """A push-button PV: write 1 to act."""
    return pvproperty(name=name, value=0, dtype=int, doc=doc, alarm_group=name, **limits(0, 1))


def choice(name: str, choices: list[str], doc: str, read_only: bool = False):
    """An enum PV (mbbo/mbbi-like)."""
    return pvproperty(
        name=name,
        value=choices[0],
        dtype=ChannelType.ENUM,
        enum_strings=choices,
        read_only=read_only,
        doc=doc,
        alarm_group=name,
    )


async def publish(pv, value) -> None:
    """Update a readback if it changed; values outside its range are clamped to it."""
    if isinstance(value, float):
        lo, hi = pv.lower_ctrl_limit, pv.upper_ctrl_limit
        if lo != hi:
            value = min(max(value, lo), hi)
    if pv.value != value:
        await pv.write(value)
