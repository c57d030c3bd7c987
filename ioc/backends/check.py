"""``ssb-ioc --rig RIG.toml --check``: talk to every instrument once, write nothing.

Reads every mapped register on its own (so that one bad address does not hide the others)
and prints a table a technician can compare with the instrument's manual and front panel:
name, where, type, raw value, scaled value with its unit, and ok or what went wrong.
"""

from __future__ import annotations

import asyncio
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..params import CellFileError, load_cell_file
from .bts import BtsClient, Channel
from .link import CommError
from .modbus import ModbusInstrument
from .rigfile import BtsCycler, ModbusDevice, RigFile

HINTS = {
    "no connection": "is it powered and on the network, and are host and port right?",
    "no reply": "wrong unit id, or the device is busy; check unit and timeout",
    "illegal data address": "the address is not mapped in the device; check the manual's "
    "register table (0-based here; 40001 in a manual is holding address 0)",
    "illegal function": "the device does not serve this table; try table = 'holding' or 'input'",
}
PLAUSIBLE = {  # name -> (low, high) in the rig file's units: outside is suspicious
    "pressure": (-5.0, 500.0),
    "force": (-100.0, 100.0),
    "position": (-1e5, 1e5),
    "gap": (0.0, 1e5),
    "mode": (0, 2),
    "clock": (0.0, 1e10),
    "setpoint": (0.0, 500.0),
    "command": (-1e4, 1e4),
    "signal": (-10.0, 10.0),
}
EXTREME = (1e-20, 1e20)  # a float read in the wrong word or byte order lands out here


def implausible(name: str, kind: str, raw: float, value: float) -> str:
    """Why a value read is suspicious ("" if it is not)."""
    low, high = PLAUSIBLE.get(name, (-math.inf, math.inf))
    in_range = math.isfinite(value) and low <= value <= high
    ordered = not kind.startswith("float") or raw == 0 or EXTREME[0] <= abs(raw) <= EXTREME[1]
    if in_range and ordered:
        return ""
    return (
        f"{value:g} is implausible (expected {low:g}..{high:g}): check scale, type, word "
        "and byte order"
    )


@dataclass
class Line:
    device: str
    name: str
    where: str
    type: str
    raw: float
    value: float
    unit: str
    problem: str
    text: str = ""  # shown instead of the scaled value (a channel's state)

    @property
    def ok(self) -> bool:
        return not self.problem


def _hint(error: str) -> str:
    return next((f"{error}: {hint}" for key, hint in HINTS.items() if key in error), error)


async def check_device(device: ModbusDevice) -> list[Line]:
    """One line per mapped register of ``device``."""
    lines = []
    for reg in device.registers.values():
        single = ModbusDevice(
            device.role, device.host, device.port, device.unit, device.timeout, {reg.name: reg}
        )
        instrument = ModbusInstrument(single)
        raw = value = math.nan
        try:
            await instrument.read()
            raw, value = instrument.raw[reg.name], instrument.values[reg.name]
            problem = implausible(reg.name, reg.type, raw, value)
        except CommError as ex:
            problem = _hint(str(ex).split(": ", 1)[-1])
        finally:
            instrument.close()
        lines.append(
            Line(
                device.role,
                reg.name,
                f"{reg.table} {reg.address}",
                reg.type,
                raw,
                value,
                reg.unit,
                problem,
            )
        )
        if "no connection" in problem:  # the rest would say the same
            break
    return lines


async def check_cycler(config: BtsCycler) -> list[Line]:
    """The BTS server: is the channel there, and what does it say."""
    client = BtsClient.for_cycler(config)
    channel = Channel.parse(config.channel, config.host)
    where = f"BTS {config.channel}"
    try:
        found = await client.channels()
        if config.channel not in found:
            shown = ", ".join(found[:8]) or "none"
            problem = f"channel {config.channel} is not on this server (it has: {shown})"
            return [Line("cycler", "channel", where, "bts", math.nan, math.nan, "", problem)]
        status = await client.inquire(channel)
    except CommError as ex:
        problem = _hint(str(ex).split(": ", 1)[-1])
        return [Line("cycler", "channel", where, "bts", math.nan, math.nan, "", problem)]
    finally:
        client.close()
    state = status.get("workstatus", "?")
    lines = [Line("cycler", "channel", where, "bts", math.nan, math.nan, "", "", state)]
    for name, unit, (low, high) in (("voltage", "V", (-1.0, 6.0)), ("current", "A", (-1, 1))):
        try:
            value = float(status.get(name, "nan"))
        except ValueError:
            value = math.nan
        problem = "" if low <= value <= high else f"{status.get(name)!r} is implausible"
        lines.append(Line("cycler", name, where, "bts", value, value, unit, problem))
    return lines


def check_files(rig: RigFile) -> list[Line]:
    """What the IOC needs on this host besides the instruments: the cell file (area and
    limits) and, for a BTS channel, a step-file folder it can write."""
    try:
        load_cell_file(rig.cell)
        problem = ""
    except CellFileError as ex:
        problem = f"cell file refused: {ex}"
    shown = "" if problem else "found"
    lines = [Line("rig", "cell", rig.cell, "file", math.nan, math.nan, "", problem, shown)]
    if rig.cycler is not None:
        folder = Path(rig.cycler.step_dir)
        where = next(p for p in (folder, *folder.parents) if p.exists())  # the IOC makes
        try:  # the rest; a file written and removed says that it can write there
            if not where.is_dir():
                raise NotADirectoryError(0, "not a folder")
            with tempfile.NamedTemporaryFile(dir=where, prefix=".ssb-check-"):
                problem = ""
        except OSError as ex:
            problem = f"cannot write step files in {where}: {ex.strerror or ex}"
        shown = "" if problem else "writable"
        lines.append(Line("cycler", "step_dir", str(folder), "folder", math.nan, math.nan,
                          "", problem, shown))  # fmt: skip
    return lines


async def check_rig(rig: RigFile) -> list[Line]:
    checks = [check_device(d) for d in rig.devices]
    if rig.cycler is not None:
        checks.append(check_cycler(rig.cycler))
    found = await asyncio.gather(*checks)
    return [line for lines in found for line in lines]


def table(lines: list[Line]) -> str:
    rows = [("instrument", "name", "register", "type", "raw", "scaled", "unit", "ok")]
    for line in lines:
        rows.append(
            (
                line.device,
                line.name,
                line.where,
                line.type,
                "-" if math.isnan(line.raw) else f"{line.raw:g}",
                line.text or ("-" if math.isnan(line.value) else f"{line.value:.6g}"),
                line.unit,
                "ok" if line.ok else "NO",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    problems = [f"{line.device}.{line.name}: {line.problem}" for line in lines if not line.ok]
    return "\n".join(text + (["", *problems] if problems else []))


def run_check(rig: RigFile) -> tuple[str, bool]:
    """The commissioning table and whether everything answered plausibly."""
    lines = check_files(rig) + asyncio.run(check_rig(rig))
    where = [f"{d.role} at {d.address} (unit {d.unit})" for d in rig.devices]
    if rig.cycler is not None:
        where.append(f"cycler at {rig.cycler.address} (channel {rig.cycler.channel})")
    summary = [f"rig {rig.name!r} ({rig.source}): " + ", ".join(where)]
    return "\n".join([*summary, table(lines)]), all(line.ok for line in lines)
