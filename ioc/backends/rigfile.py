"""Rig files: which driver serves each instrument of a rig, where it is, and its register map.

A rig file is TOML (see ``rigs/example-lab.toml`` for every field, commented). The cell
file it names still gives the cell's area (pressure = force / area) and the rig's limits;
the rig file adds the instruments. Anything missing, unknown or impossible is refused with
a :class:`RigFileError` that names the key, before any connection is made.
"""

from __future__ import annotations

import itertools
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

TYPES = {  # register data type -> number of 16-bit registers
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "float32": 2,
    "float64": 4,
}
TABLES = ("holding", "input")
ORDERS = ("big", "little")
Order = Literal["big", "little"]
TOPOLOGIES = ("controller", "ioc")
MAX_FILE_BYTES = 1_000_000  # a rig file is a page of TOML

# What each instrument must (and may) map, per topology: name -> (unit, writable).
PRESS_CONTROLLER = {
    "pressure": ("MPa", False),
    "position": ("um", False),
    "setpoint": ("MPa", True),
    "mode": ("", True),
}
PRESS_CONTROLLER_OPTIONAL = {"force": ("kN", False), "gap": ("um", False), "clock": ("s", False)}
PRESS_IOC = {"position": ("um", False), "command": ("um/s", True), "mode": ("", True)}
PRESS_IOC_OPTIONAL = {"gap": ("um", False), "clock": ("s", False)}
LOAD_CELL = {"force": ("kN", False)}
LOAD_CELL_OPTIONAL = {"signal": ("mV/V", False), "clock": ("s", False)}


class RigFileError(ValueError):
    """A rig file that cannot be used; the message names the offending key."""


@dataclass(frozen=True)
class Register:
    """One mapped value: engineering = raw * scale + offset, in ``unit``."""

    name: str
    address: int
    table: str = "holding"
    type: str = "float32"
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    word_order: Order = "big"
    byte_order: Order = "big"
    writable: bool = False

    @property
    def count(self) -> int:
        return TYPES[self.type]

    @property
    def function(self) -> int:
        """The Modbus function code that reads it (3 holding, 4 input)."""
        return 3 if self.table == "holding" else 4


@dataclass(frozen=True)
class ModbusDevice:
    """A Modbus TCP peer: a press controller, a drive or a load-cell amplifier."""

    role: str  # "press" | "load_cell"
    host: str
    port: int
    unit: int = 1
    timeout: float = 0.5  # s for one reply
    registers: dict[str, Register] = field(default_factory=dict)
    topology: str = "controller"  # press only
    loop: dict[str, float] = field(default_factory=dict)  # epid gains where the IOC closes it

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class RigFile:
    name: str
    cell: str  # cell file or preset: the area and the limits
    press: ModbusDevice
    load_cell: ModbusDevice | None  # the IOC topology reads its own amplifier
    clock: str  # "wall", or the role of a device with a ``clock`` register
    cycler: BtsCycler | None = None  # None: a rig without a cycler channel
    source: str = ""
    emulator: dict[str, Any] = field(default_factory=dict)
    link_timeout: float = 5.0  # s of silence from the press or load cell before safe state

    @property
    def devices(self) -> list[ModbusDevice]:  # the Modbus ones
        return [d for d in (self.press, self.load_cell) if d is not None]


@dataclass(frozen=True)
class BtsCycler:
    """A Neware BTS channel: where its BTS server is, which channel, where step files go."""

    host: str
    port: int
    channel: str  # devtype-devid-subdevid-chlid
    step_dir: str  # where the IOC writes step files
    remote_step_dir: str  # the same folder as the BTS server sees it
    timeout: float = 2.0
    username: str = "admin"  # the BTS API's login (its factory default)
    password: str = "neware"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def _cycler(raw: Any) -> BtsCycler | None:
    if not isinstance(raw, dict):
        raise RigFileError("cycler: expected a table")
    raw = dict(raw)
    driver = _choice(raw, "driver", "cycler", ("none", "bts"), "none")
    if driver == "none":
        _no_more(raw, "cycler")
        return None
    host = _take(raw, "host", "cycler", str)
    port = _take(raw, "port", "cycler", int, 502)
    if not 0 < port < 65536:
        raise RigFileError(f"cycler.port: {port} outside 1..65535")
    channel = _take(raw, "channel", "cycler", str)
    parts = channel.split("-")
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        raise RigFileError(f"cycler.channel: {channel!r}; expected devtype-devid-subdevid-chlid")
    step_dir = _take(raw, "step_dir", "cycler", str)
    remote = _take(raw, "remote_step_dir", "cycler", str, step_dir)
    timeout = _take(raw, "timeout", "cycler", float, 2.0)
    if not 0 < timeout <= 30:
        raise RigFileError(f"cycler.timeout: {timeout:g} s outside (0, 30]")
    username = _take(raw, "username", "cycler", str, "admin")
    password = _take(raw, "password", "cycler", str, "neware")
    _no_more(raw, "cycler")
    return BtsCycler(host, port, channel, step_dir, remote, timeout, username, password)


def _take(table: dict, key: str, where: str, kind: type, default: Any = ...) -> Any:
    if key not in table:
        if default is ...:
            raise RigFileError(f"{where}.{key}: missing")
        return default
    value = table.pop(key)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) is not (kind is bool):
        spelled = {float: "number", int: "whole number", str: "string", bool: "true or false"}
        raise RigFileError(f"{where}.{key}: {value!r} is not a {spelled.get(kind, kind.__name__)}")
    if kind is float and not math.isfinite(cast(float, value)):
        raise RigFileError(f"{where}.{key}: {value} is not a finite number")
    return value


def _order(table: dict, key: str, where: str, default: str) -> Order:
    return cast(Order, _choice(table, key, where, ORDERS, default))


def _choice(table: dict, key: str, where: str, choices: tuple[str, ...], default: str) -> str:
    value = _take(table, key, where, str, default)
    if value not in choices:
        raise RigFileError(f"{where}.{key}: {value!r} is not one of {', '.join(choices)}")
    return value


def _table(value: Any, where: str) -> dict:
    """A copy of a TOML table (absent = empty); anything else is refused."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RigFileError(f"{where}: expected a table ([{where}]), not {value!r}")
    return dict(value)


def _no_more(table: dict, where: str) -> None:
    if table:
        raise RigFileError(f"{where}: unknown keys {', '.join(sorted(table))}")


def _register(name: str, raw: Any, where: str, defaults: dict, writable: bool) -> Register:
    if not isinstance(raw, dict):
        raise RigFileError(f"{where}: expected a table {{ address = ..., type = ... }}")
    raw = dict(raw)
    address = _take(raw, "address", where, int)
    kind = _choice(raw, "type", where, tuple(TYPES), "float32")
    if not 0 <= address <= 65536 - TYPES[kind]:
        raise RigFileError(f"{where}.address: {address} outside 0..{65536 - TYPES[kind]}")
    table = _choice(raw, "table", where, TABLES, "holding")
    if writable and table != "holding":
        raise RigFileError(f"{where}.table: {name} is written, so it must be a holding register")
    scale = _take(raw, "scale", where, float, 1.0)
    if scale == 0:
        raise RigFileError(f"{where}.scale: must not be 0")
    register = Register(
        name=name,
        address=address,
        table=table,
        type=kind,
        scale=scale,
        offset=_take(raw, "offset", where, float, 0.0),
        unit=_take(raw, "unit", where, str, ""),
        word_order=_order(raw, "word_order", where, defaults["word_order"]),
        byte_order=_order(raw, "byte_order", where, defaults["byte_order"]),
        writable=writable,
    )
    _no_more(raw, where)
    return register


def _check_unit(register: Register, unit: str, where: str) -> None:
    if unit and register.unit and register.unit != unit:
        raise RigFileError(
            f"{where}.unit: {register.unit!r}; {register.name} is scaled to {unit!r} "
            "(set scale and offset so that raw * scale + offset is in that unit)"
        )


def _device(role: str, raw: Any, where: str, needed: dict, optional: dict) -> ModbusDevice:
    if not isinstance(raw, dict):
        raise RigFileError(f"{where}: missing (a [{where}] table)")
    raw = dict(raw)
    driver = _take(raw, "driver", where, str)
    if driver != "modbus":
        raise RigFileError(f"{where}.driver: {driver!r}; this version drives modbus (TCP)")
    topology = raw.pop("topology", "controller") if role == "press" else "controller"
    if topology not in TOPOLOGIES:
        raise RigFileError(f"{where}.topology: {topology!r} is not one of controller, ioc")
    host = _take(raw, "host", where, str)
    port = _take(raw, "port", where, int, 502)
    if not 0 < port < 65536:
        raise RigFileError(f"{where}.port: {port} outside 1..65535")
    unit = _take(raw, "unit", where, int, 1)
    if not 0 <= unit <= 247:
        raise RigFileError(f"{where}.unit: {unit} outside 0..247 (the Modbus unit id)")
    timeout = _take(raw, "timeout", where, float, 0.5)
    if not 0 < timeout <= 10:
        raise RigFileError(f"{where}.timeout: {timeout:g} s outside (0, 10]")
    defaults = {
        "word_order": _choice(raw, "word_order", where, ORDERS, "big"),
        "byte_order": _choice(raw, "byte_order", where, ORDERS, "big"),
    }
    loop = _table(raw.pop("loop", None), f"{where}.loop")
    gains = {k: _take(loop, k, f"{where}.loop", float) for k in ("kp", "ki", "kd") if k in loop}
    _no_more(loop, f"{where}.loop")
    if any(g < 0 for g in gains.values()):
        raise RigFileError(f"{where}.loop: gains must not be negative")
    if gains and topology != "ioc":
        raise RigFileError(
            f"{where}.loop: only with topology = 'ioc' (the controller has its own)"
        )
    table = raw.pop("registers", None)
    if not isinstance(table, dict):
        raise RigFileError(f"{where}.registers: missing (a [{where}.registers] table)")
    _no_more(raw, where)
    if role == "press" and topology == "ioc":
        needed, optional = PRESS_IOC, PRESS_IOC_OPTIONAL
    missing = [name for name in needed if name not in table]
    if missing:
        raise RigFileError(f"{where}.registers: missing {', '.join(missing)}")
    unknown = set(table) - set(needed) - set(optional)
    if unknown:
        known = ", ".join([*needed, *optional])
        raise RigFileError(
            f"{where}.registers: unknown {', '.join(sorted(unknown))} (known: {known})"
        )
    registers = {}
    for name, spec in table.items():
        expected_unit, writable = {**needed, **optional}[name]
        register = _register(name, spec, f"{where}.registers.{name}", defaults, writable)
        _check_unit(register, expected_unit, f"{where}.registers.{name}")
        registers[name] = register
    _overlaps(registers, where)
    return ModbusDevice(role, host, port, unit, timeout, registers, topology, gains)


def _overlaps(registers: dict[str, Register], where: str) -> None:
    spans = sorted((r.table, r.address, r.address + r.count, r.name) for r in registers.values())
    for (t1, _, end1, n1), (t2, start2, _, n2) in itertools.pairwise(spans):
        if t1 == t2 and start2 < end1:
            raise RigFileError(f"{where}.registers: {n1} and {n2} overlap in the {t1} registers")


def parse_rig(data: dict, source: str = "") -> RigFile:
    """Validate a parsed rig file."""
    data = dict(data)
    rig = _table(data.pop("rig", None), "rig")
    name = _take(rig, "name", "rig", str)
    cell = _take(rig, "cell", "rig", str, "si-nmc")
    clock = _choice(rig, "clock", "rig", ("wall", "press", "load_cell"), "wall")
    link_timeout = _take(rig, "link_timeout", "rig", float, 5.0)
    if not 0 < link_timeout <= 300:
        raise RigFileError(f"rig.link_timeout: {link_timeout:g} s outside (0, 300]")
    _no_more(rig, "rig")
    press_raw = data.pop("press", None)
    topology = press_raw.get("topology", "controller") if isinstance(press_raw, dict) else ""
    press = _device("press", press_raw, "press", PRESS_CONTROLLER, PRESS_CONTROLLER_OPTIONAL)
    load_cell = None
    if "load_cell" in data:
        load_cell = _device("load_cell", data.pop("load_cell"), "load_cell", LOAD_CELL,
                            LOAD_CELL_OPTIONAL)  # fmt: skip
    if topology == "ioc" and load_cell is None:
        raise RigFileError(
            "load_cell: missing; with press.topology = 'ioc' the IOC closes the loop on "
            "the load-cell amplifier's reading"
        )
    if clock != "wall":
        device = {"press": press, "load_cell": load_cell}[clock]
        if device is None or "clock" not in device.registers:
            raise RigFileError(f"rig.clock: {clock!r} has no 'clock' register mapped")
    cycler = _cycler(data.pop("cycler", None) or {"driver": "none"})
    emulator = _table(data.pop("emulator", None), "emulator")
    speed = _take(emulator, "speed", "emulator", float, 1.0)
    if not 0 < speed <= 1e4:
        raise RigFileError(f"emulator.speed: {speed:g} outside (0, 10000]")
    _no_more(emulator, "emulator")
    emulator = {"speed": speed}
    _no_more(data, "rig file")
    return RigFile(name, cell, press, load_cell, clock, cycler, source, emulator, link_timeout)


def load_rig_file(path: str | Path) -> RigFile:
    """Read and validate a rig file."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise RigFileError(f"{path}: {path.stat().st_size:,} bytes is not a rig file")
        text = path.read_bytes().decode("utf-8")
    except OSError as ex:
        raise RigFileError(f"cannot read {path}: {ex.strerror or ex}") from None
    except UnicodeDecodeError as ex:
        raise RigFileError(f"{path}: not a text file (byte {ex.start} is not UTF-8)") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as ex:
        raise RigFileError(f"{path}: not valid TOML ({ex})") from None
    return parse_rig(data, str(path))
