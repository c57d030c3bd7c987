"""The press, the load cell and the rig, as ophyd-async devices.

Learned from ophyd-async's ``epics/demo``: PVs declared by suffix, a movable whose logic is
a small object. The press's move is one put with completion (``Press:Pressure-SP``): the
IOC completes it once the pressure has settled, and fails it when it refuses the value,
so the status says what the IOC said. Checks a client can make first (the mode, the
setpoint limit) are made before anything is sent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated as A

from ophyd_async.core import (
    AsyncStatus,
    MovableLogic,
    SignalR,
    SignalRW,
    StandardMovable,
    StandardReadable,
    TimeoutCalculator,
    TriggerableCommand,
)
from ophyd_async.core import StandardReadableFormat as Format
from ophyd_async.epics.core import EpicsDevice, PvSuffix

from .compat import PutRefused, answered_put
from .enums import PressMode, YesNo


class PressureRejected(ValueError):
    """A pressure the press cannot be asked for now; the message says why."""


async def _rejected(code: SignalR[str], message: SignalR[str]) -> PressureRejected:
    """The IOC's refusal as it put it on the group's refusal PVs (before it answered)."""
    return PressureRejected(f"{await code.get_value()}: {await message.get_value()}")


@dataclass
class PressMoveLogic(MovableLogic[float]):
    mode: SignalR[PressMode]
    max_pressure: SignalR[float]
    stop_: TriggerableCommand
    refusal: SignalR[str]
    refusal_message: SignalR[str]

    async def check_move(self, new_position: float) -> None:
        if not math.isfinite(new_position):
            raise PressureRejected(f"pressure setpoint {new_position} is not a finite number")
        mode = await self.mode.get_value()
        if mode != PressMode.PRESSURE:
            raise PressureRejected(
                f"the press is in {mode.value} mode; set its mode to Pressure first"
            )
        top = await self.max_pressure.get_value()
        if not 0 <= new_position <= top:
            raise PressureRejected(
                f"{new_position:g} MPa is outside the IOC's limits 0..{top:g} MPa"
            )

    async def move(self, new_position: float, timeout: TimeoutCalculator) -> None:
        # the IOC's put-completion is the settle; its refusal fails the put
        try:
            await answered_put(self.setpoint, new_position, timeout())
        except PutRefused:
            raise await _rejected(self.refusal, self.refusal_message) from None

    async def stop(self) -> None:
        await self.stop_.trigger()  # hold the pressure measured now


class Press(EpicsDevice, StandardReadable, StandardMovable[float]):
    """The press (``{prefix}Press:``): ``set(MPa)`` completes when the pressure settled."""

    readback: A[SignalR[float], PvSuffix("Pressure-RB"), Format.HINTED_SIGNAL]
    setpoint: A[SignalRW[float], PvSuffix("Pressure-SP")]
    force: A[SignalR[float], PvSuffix("Force-RB"), Format.UNCACHED_SIGNAL]
    gap: A[SignalR[float], PvSuffix("Gap-RB"), Format.UNCACHED_SIGNAL]
    settled: A[SignalR[YesNo], PvSuffix("Settled-RB")]
    mode: A[
        SignalRW[PressMode],
        PvSuffix(read_suffix="Mode-RB", write_suffix="Mode-SP"),
        Format.CONFIG_SIGNAL,
    ]
    ramp_rate: A[SignalRW[float], PvSuffix("RampRate-SP"), Format.CONFIG_SIGNAL]
    max_pressure: A[SignalRW[float], PvSuffix("MaxPressure-SP"), Format.CONFIG_SIGNAL]
    stop_: A[TriggerableCommand, PvSuffix("Stop-Cmd")]

    refusal: A[SignalR[str], PvSuffix("Refusal-RB")]
    refusal_message: A[SignalR[str], PvSuffix("RefusalMsg-RB")]

    @AsyncStatus.wrap
    async def set_mode(self, mode: PressMode, timeout: float | None = 10.0) -> None:
        """Change the mode; fails with the IOC's reason when it refuses (``mode.set``
        would not: see :mod:`ssb_async.compat`)."""
        try:
            await answered_put(self.mode, mode, timeout)
        except PutRefused:
            raise await _rejected(self.refusal, self.refusal_message) from None

    @cached_property
    def movable_logic(self) -> MovableLogic:
        return PressMoveLogic(
            setpoint=self.setpoint,
            readback=self.readback,
            mode=self.mode,
            max_pressure=self.max_pressure,
            stop_=self.stop_,
            refusal=self.refusal,
            refusal_message=self.refusal_message,
        )


class LoadCell(EpicsDevice, StandardReadable):
    """The load cell (``{prefix}LC:``): force in kN, the bridge's output, overload."""

    force: A[SignalR[float], PvSuffix("Force-RB"), Format.HINTED_SIGNAL]
    signal: A[SignalR[float], PvSuffix("Signal-RB"), Format.UNCACHED_SIGNAL]
    overload: A[SignalR[YesNo], PvSuffix("Overload-RB")]
    capacity: A[SignalR[float], PvSuffix("Capacity-RB"), Format.CONFIG_SIGNAL]


class Rig(StandardReadable):
    """One rig: its press, load cell and clock under ``prefix`` (``ca://`` by default,
    ``pva://SSB:`` for PV Access)."""

    def __init__(self, prefix: str, name: str = "") -> None:
        with self.add_children_as_readables():
            self.press = Press(f"{prefix}Press:")
            self.load_cell = LoadCell(f"{prefix}LC:")
            self.clock = RigClock(f"{prefix}Rig:")
        super().__init__(name=name)


class RigClock(EpicsDevice, StandardReadable):
    """The rig's experiment time (s) and the cell's voltage (``{prefix}Rig:``)."""

    time: A[SignalR[float], PvSuffix("Time-RB"), Format.HINTED_UNCACHED_SIGNAL]
    cell_voltage: A[SignalR[float], PvSuffix("CellVoltage-RB"), Format.UNCACHED_SIGNAL]
