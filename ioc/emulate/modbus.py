"""Emulated Modbus TCP instruments: a press controller, a drive and a load-cell amplifier.

Each speaks Modbus TCP through pymodbus' server with the register map of the rig file,
and is backed by the same physics as ``ssb-ioc --cell`` (:class:`~ssb_ioc.sim.Rig`): what
the IOC reads is the simulated press's pressure, position and force; what it writes (a
setpoint, a mode, a valve command) drives the simulation. Like real instruments they keep
running when the IOC goes away: the controller holds its last setpoint; the drive closes
its valve when no command arrives for ``WATCHDOG`` s.

Faults for tests and commissioning drills (:meth:`EmulatedDevice.set_fault`): ``drop``
(close every connection and refuse new ones), ``slow`` (reply after ``delay`` s),
``exception`` (answer every request with Modbus exception ``code``) and ``malformed``
(garble every reply frame).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from ..backends.modbus import decode, encode
from ..backends.rigfile import ModbusDevice, Register
from ..sim import Epid, Mode, Rig, RigError

WATCHDOG = 1.0  # s without a command after which the drive closes its valve
FAULTS = ("drop", "slow", "exception", "malformed")

logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # refused frames are the point


class ExternalCommand(Epid):
    """The simulated press's valve driven by a client's command, not by its own loop."""

    command = 0.0

    def __init__(self, template: Epid):
        super().__init__(kp=0.0, ki=0.0, kd=0.0, drvh=template.drvh, drvl=template.drvl)
        self.mdt = math.inf  # never the linear fast path: the command may jump any time

    def update(self, setpoint: float, value: float, dt: float) -> float:
        self.oval = min(max(self.command, self.drvl), self.drvh)
        return self.oval


class EmulatedDevice:
    """One emulated instrument on its own TCP port."""

    def __init__(self, device: ModbusDevice, rig: Rig):
        self.device, self.rig = device, rig
        self.fault = ""
        self.delay = 0.0
        self.code = int(ExcCodes.DEVICE_FAILURE)
        self.server: ModbusTcpServer | None = None
        self._task: asyncio.Task | None = None
        self.requests = 0

    @property
    def address(self) -> str:
        return self.device.address

    # --- the register image ---------------------------------------------------------------
    def value(self, name: str) -> float:
        rig, press = self.rig, self.rig.press
        return {
            "pressure": press.pressure,
            "position": press.platen_position,
            "gap": press.gap,
            "force": rig.load_cell.force / 1e3,
            "signal": rig.load_cell.signal,
            "clock": rig.time,
        }.get(name, math.nan)

    def accept(self, name: str, value: float) -> None:
        """A client wrote ``name``; RigError refuses it (a Modbus 'illegal data value')."""
        raise RigError(f"{name} is read-only")

    def _image(self, table: str, start: int, size: int) -> list[int]:
        words = [0] * size
        for reg in self.device.registers.values():
            if reg.table != table:
                continue
            value = self.value(reg.name)
            if not math.isfinite(value):
                continue
            try:
                encoded = encode(reg, value)
            except ValueError:
                continue  # out of the register's range: reads as 0
            words[reg.address - start : reg.address - start + reg.count] = encoded
        return words

    async def _action(self, function, start, address, count, registers, values):
        """pymodbus calls this on every request: refresh the image, apply writes, and act
        out a fault."""
        self.requests += 1
        if self.fault == "slow":
            await asyncio.sleep(self.delay)
        if self.fault == "exception":
            return ExcCodes(self.code)
        table = "input" if function == 4 else "holding"
        registers[:] = self._image(table, start, len(registers))
        if values is None:
            return None
        image = list(registers)
        image[address - start : address - start + len(values)] = list(values)
        try:
            for reg in self._written(address, len(values)):
                self.accept(reg.name, decode(reg, image[reg.address - start :][: reg.count])[1])
        except (RigError, KeyError):
            return ExcCodes.ILLEGAL_VALUE
        return None

    def _written(self, address: int, count: int) -> list[Register]:
        hit = [
            r
            for r in self.device.registers.values()
            if r.table == "holding"
            and address < r.address + r.count
            and r.address < address + count
        ]
        if any(r.address < address or r.address + r.count > address + count for r in hit):
            raise KeyError("a register written in part")
        if not all(r.writable for r in hit):
            raise KeyError("a read-only register")
        return hit

    def _blocks(
        self,
    ) -> tuple[list[SimData], list[SimData], list[SimData], list[SimData]]:
        top = {t: 0 for t in ("holding", "input")}
        for reg in self.device.registers.values():
            top[reg.table] = max(top[reg.table], reg.address + reg.count)
        blocks = {
            t: [SimData(0, count=max(n, 1), datatype=DataType.REGISTERS)] for t, n in top.items()
        }
        none = [SimData(0, count=16, datatype=DataType.BITS)]
        return (none, none, blocks["holding"], blocks["input"])

    # --- serving ----------------------------------------------------------------------------
    def _trace(self, sending: bool, data: bytes) -> bytes:
        if sending and self.fault == "malformed" and len(data) > 8:
            return data[:7] + bytes([data[7] ^ 0x7F]) + b"\x00" * 3  # wrong function, junk
        return data

    async def start(self) -> None:
        device = SimDevice(id=self.device.unit, simdata=self._blocks(), action=self._action)
        self.server = ModbusTcpServer(
            device,
            address=(self.device.host, self.device.port),
            trace_packet=self._trace,
        )
        self._task = asyncio.create_task(self.server.serve_forever())
        for _ in range(100):  # listening once the transport is up
            if self.server.transport is not None:
                return
            await asyncio.sleep(0.02)
        raise OSError(f"cannot listen on {self.device.address}")

    async def stop(self) -> None:
        if self.server is not None:
            with contextlib.suppress(Exception):
                await self.server.shutdown()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self.server = self._task = None

    async def set_fault(self, kind: str = "", delay: float = 2.0, code: int = 4) -> None:
        """Start a fault (``drop``, ``slow``, ``exception``, ``malformed``) or, with
        ``""``, clear it: a dropped link listens again."""
        if kind and kind not in FAULTS:
            raise ValueError(f"fault {kind!r}: expected one of {', '.join(FAULTS)}")
        self.delay, self.code = delay, code
        was, self.fault = self.fault, kind
        if kind == "drop" and was != "drop":
            await self.stop()
        elif was == "drop" and kind != "drop":
            await self.start()


class PressController(EmulatedDevice):
    """A servo-press controller that closes the pressure loop itself (topology
    ``controller``): setpoint (MPa), mode 0 Off / 1 Pressure / 2 Position hold."""

    def __init__(self, device: ModbusDevice, rig: Rig):
        super().__init__(device, rig)
        rig.set_ramp_rate(0.0)  # the IOC sends the ramped setpoint
        self.setpoint = 0.0

    def value(self, name: str) -> float:
        if name == "setpoint":
            return self.setpoint
        if name == "mode":
            return float(self.rig.press.mode)
        return super().value(name)

    def accept(self, name: str, value: float) -> None:
        rig = self.rig
        if name == "setpoint":
            if not 0 <= value <= rig.max_setpoint:
                raise RigError(f"setpoint {value:g} outside 0..{rig.max_setpoint:g} MPa")
            self.setpoint = value
            if rig.press.mode == Mode.PRESSURE:
                rig.set_pressure(value)
        elif name == "mode":
            mode = Mode(int(value)) if value in (0, 1, 2) else None
            if mode is None:
                raise RigError(f"mode {value:g}: expected 0, 1 or 2")
            if mode != rig.press.mode and rig.interlock and mode != Mode.OFF:
                raise RigError("controller tripped")
            rig.set_mode(mode)
            if mode == Mode.PRESSURE:
                rig.set_pressure(min(self.setpoint, rig.max_setpoint))
        else:
            super().accept(name, value)


class Drive(EmulatedDevice):
    """A servo-valve drive (topology ``ioc``): valve command (um/s) and mode 0 Off (retract)
    / 1 Run; it closes the valve when no command arrives for ``WATCHDOG`` s."""

    def __init__(self, device: ModbusDevice, rig: Rig):
        super().__init__(device, rig)
        self.valve = ExternalCommand(rig.press.pid)
        rig.press.pid = self.valve
        self.last_command = -math.inf

    def value(self, name: str) -> float:
        if name == "command":
            return self.valve.command
        if name == "mode":
            return 0.0 if self.rig.press.mode == Mode.OFF else 1.0
        return super().value(name)

    def accept(self, name: str, value: float) -> None:
        rig = self.rig
        if name == "command":
            self.valve.command = value
            self.last_command = asyncio.get_running_loop().time()
        elif name == "mode":
            if value not in (0, 1):
                raise RigError(f"mode {value:g}: expected 0 or 1")
            if rig.interlock and value:
                raise RigError("drive tripped")
            mode = Mode.PRESSURE if value else Mode.OFF
            if mode != rig.press.mode:  # the valve runs on the client's command: physics,
                rig.press.set_mode(mode)  # not a loop the rig's checks would judge
                rig.press.pid = self.valve
        else:
            super().accept(name, value)

    def watchdog(self, now: float) -> None:
        if now - self.last_command > WATCHDOG:
            self.valve.command = 0.0


class Amplifier(EmulatedDevice):
    """A load-cell amplifier: force (kN) and bridge signal (mV/V), read only."""
