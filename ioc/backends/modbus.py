"""Modbus TCP instruments: the register map's codec and a client that reconnects with backoff.

Values are converted with pymodbus' own register codec; the byte order inside each 16-bit
register (some controllers swap it) is applied around it. One :meth:`ModbusInstrument.read`
fetches every mapped register of a table in one request where they are close together.
A failed exchange closes the connection and says why; the next attempt waits a backoff
(0.25 s doubling to 5 s) so that a dead controller is not hammered.
"""

from __future__ import annotations

import asyncio
import logging
import math
from struct import error as struct_error  # a malformed frame's symptom
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from .link import Link
from .rigfile import ModbusDevice, Register

EXCEPTION_CODES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # failures are reported, with context
MAX_SPAN = 120  # registers read in one request (Modbus allows 125)
# Function codes of the replies the rig asks for: read holding/input, write one/many, and
# their exception replies (code + 0x80).
REPLY_CODES = {3, 4, 6, 16} | {code | 0x80 for code in (3, 4, 6, 16)}


def garbled(frame: bytes) -> str:
    """Why a received Modbus TCP frame is malformed ("" if it looks like a reply): pymodbus
    drops such a frame silently, so that without this a garbled reply reads as none."""
    if len(frame) < 8:
        return f"{len(frame)} bytes, shorter than a header"
    length = int.from_bytes(frame[4:6], "big")
    if frame[2:4] != b"\x00\x00" or length != len(frame) - 6:
        return f"a header that does not frame its {len(frame)} bytes"
    if frame[7] not in REPLY_CODES:
        return f"function code 0x{frame[7]:02x}"
    return ""


def _swap_bytes(registers: list[int]) -> list[int]:
    return [((r & 0xFF) << 8) | (r >> 8) for r in registers]


def decode(register: Register, words: list[int]) -> tuple[float, float]:
    """(raw, engineering value) of ``register`` from its 16-bit words."""
    if register.byte_order == "little":
        words = _swap_bytes(words)
    kind = AsyncModbusTcpClient.DATATYPE[register.type.upper()]
    raw = AsyncModbusTcpClient.convert_from_registers(words, kind, register.word_order)
    if not isinstance(raw, int | float):  # one number per register of a numeric type
        raise ValueError(f"{register.name}: {raw!r} is not a number")
    return float(raw), float(raw) * register.scale + register.offset


def encode(register: Register, value: float) -> list[int]:
    """The 16-bit words that carry engineering ``value``; ValueError if it does not fit."""
    raw = (value - register.offset) / register.scale
    if not math.isfinite(raw):
        raise ValueError(f"{register.name}: {value!r} is not a finite number")
    if not register.type.startswith("float"):
        raw = round(raw)
        bits = 16 * register.count
        lo, hi = (0, 2**bits - 1) if register.type.startswith("u") else (
            -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)  # fmt: skip
        if not lo <= raw <= hi:
            raise ValueError(f"{register.name}: {value:g} does not fit a {register.type}")
    kind = AsyncModbusTcpClient.DATATYPE[register.type.upper()]
    words = AsyncModbusTcpClient.convert_to_registers(raw, kind, register.word_order)
    return _swap_bytes(words) if register.byte_order == "little" else words


def spans(registers: list[Register]) -> list[tuple[str, int, int, list[Register]]]:
    """Group registers into (table, start, count, members) requests."""
    out: list[tuple[str, int, int, list[Register]]] = []
    for reg in sorted(registers, key=lambda r: (r.table, r.address)):
        if out and out[-1][0] == reg.table and reg.address + reg.count - out[-1][1] <= MAX_SPAN:
            table, start, _, members = out[-1]
            members.append(reg)
            end = max(m.address + m.count for m in members)
            out[-1] = (table, start, end - start, members)
        else:
            out.append((reg.table, reg.address, reg.count, [reg]))
    return out


class ModbusInstrument(Link):
    """One Modbus TCP device of the rig, read and written by register name."""

    def __init__(self, device: ModbusDevice):
        super().__init__(f"{device.role.replace('_', ' ')} at {device.address}")
        self.device = device
        self._client: AsyncModbusTcpClient | None = None  # made on the event loop
        self.raw: dict[str, float] = {}
        self.values: dict[str, float] = {}
        self._requests = spans(list(device.registers.values()))
        self._garbled = ""  # why the last frame received was malformed

    @property
    def client(self) -> AsyncModbusTcpClient:
        if self._client is None:
            device = self.device
            self._client = AsyncModbusTcpClient(
                device.host, port=device.port, timeout=device.timeout, retries=0,
                reconnect_delay=0, name=device.role, trace_packet=self._trace,
            )  # fmt: skip
        return self._client

    def _trace(self, sending: bool, frame: bytes) -> bytes:
        if not sending:
            self._garbled = garbled(frame) or self._garbled
        return frame

    async def _ensure_connected(self) -> None:
        if self.client.connected:
            return
        self.may_retry()
        try:
            async with asyncio.timeout(self.device.timeout * 2):
                ok = await self.client.connect()
        except (TimeoutError, OSError):
            ok = False
        if not ok:
            self.fail("no connection")

    async def _call(self, what: str, request: Any) -> Any:  # pymodbus's reply
        self._garbled = ""
        try:
            async with asyncio.timeout(self.device.timeout):
                reply = await request
        except TimeoutError:
            if self._garbled:
                self.fail(f"malformed reply to {what} ({self._garbled})")
            self.fail(f"no reply to {what} within {self.device.timeout:g} s")
        except (ModbusException, OSError, ValueError, struct_error) as ex:
            self.fail(f"{what} failed: {ex}")
        if reply.isError():
            code = getattr(reply, "exception_code", 0)
            meaning = EXCEPTION_CODES.get(code, "unknown")
            self.fail(f"{what}: Modbus exception {code} ({meaning})")
        return reply

    async def read(self) -> dict[str, float]:
        """Every mapped register, in engineering units; CommError if any request fails."""
        await self._ensure_connected()
        unit = self.device.unit
        for table, start, count, members in self._requests:
            call = (
                self.client.read_holding_registers
                if table == "holding"
                else self.client.read_input_registers
            )
            reply = await self._call(
                f"reading {table} {start}..{start + count - 1}",
                call(start, count=count, device_id=unit),
            )
            words = list(reply.registers)
            if len(words) != count:
                self.fail(f"reading {table} {start}: {len(words)} registers, expected {count}")
            for reg in members:
                offset = reg.address - start
                self.raw[reg.name], self.values[reg.name] = decode(
                    reg, words[offset : offset + reg.count]
                )
        self.ok()
        return self.values

    async def write(self, name: str, value: float) -> None:
        """Write one mapped register (ValueError if the value cannot be encoded)."""
        reg = self.device.registers[name]
        words = encode(reg, value)
        await self._ensure_connected()
        request = (
            self.client.write_register(reg.address, words[0], device_id=self.device.unit)
            if len(words) == 1
            else self.client.write_registers(reg.address, words, device_id=self.device.unit)
        )
        await self._call(f"writing {name} ({reg.address})", request)
        self.ok()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
