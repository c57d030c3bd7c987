"""Regenerate the README's PV table from the IOC itself: ``python docs/pv_table.py``."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from caproto import ChannelDouble, ChannelEnum, ChannelInteger

from ssb_contract.paging import PAGES, page_name
from ssb_ioc.server import RigIOC
from ssb_ioc.sim import Rig, load_cell_file

README = Path(__file__).resolve().parents[1] / "README.md"
HEADER = "| PV | type | units | access | range / choices | what |\n|---|---|---|---|---|---|\n"


def row(name: str, pv) -> str:
    access = "RW" if pv.pvspec.put is not None or not pv.pvspec.read_only else "RO"
    units = getattr(pv, "units", "") or ""
    array = getattr(pv, "max_length", 1) > 1
    if isinstance(pv, ChannelEnum):
        kind, span = "enum", " / ".join(pv.enum_strings)
    elif isinstance(pv, ChannelDouble) and array:
        kind, span = "float array", f"up to {pv.max_length}"
    elif isinstance(pv, ChannelDouble):
        kind, span = "float", f"{pv.lower_ctrl_limit:g} .. {pv.upper_ctrl_limit:g}"
    elif isinstance(pv, ChannelInteger):
        is_command = name.endswith("-Cmd")
        kind = "int"
        span = "write 1" if is_command else f"{pv.lower_ctrl_limit} .. {pv.upper_ctrl_limit}"
    else:
        kind, span = "string", ""
    doc = (pv.pvspec.doc or "").strip()
    return f"| `{name}` | {kind} | {units} | {access} | {span} | {doc} |"


def table() -> str:
    ioc = RigIOC(prefix="SSB:", backend=Rig(load_cell_file("si-nmc")))
    asyncio.run(ioc.configure())
    rows = []
    for name, pv in ioc.pvdb.items():
        if re.search(r"Page[1-9][0-9]*-RB$", name):
            continue  # a ring's pages are alike: one row for them all
        pages = f"{name} .. {name.replace('Page0-RB', page_name(PAGES - 1))}"
        rows.append(row(pages if name.endswith("Page0-RB") else name, pv))
    return HEADER + "\n".join(rows) + "\n"


def main() -> None:
    text = README.read_text()
    new = re.sub(r"\| PV \| type \|.*?\n\n(?=## )", lambda m: table() + "\n", text, flags=re.S)
    README.write_text(new)
    print(f"{README}: {len(new.splitlines()) - len(text.splitlines()):+d} lines")


if __name__ == "__main__":
    main()
