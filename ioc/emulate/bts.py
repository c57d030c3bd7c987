"""An emulated Neware BTS server with one channel, run by the simulated rig's cycler.

It answers the BTS API's XML frames (connect, getdevinfo, start, stop, inquire, download)
the way a BTS server does, including its reply spelling (``donwload_resp``). ``start``
reads the step file at the path it is given, runs its first step on the simulated cell
(the cell in the emulated press: its swelling is what the press feels) and numbers a new
test; ``download`` serves that test's points with the test time in ms, capacity in Ah and
energy in Wh.

Faults: ``drop`` (close connections, refuse new ones), ``slow`` (reply after ``delay``
s), ``malformed`` (a reply that is not XML) and ``refuse`` (the channel answers ``false``
to ``start``, as a channel in use or in alarm does). ``slow`` and ``malformed`` may be
limited to one ``command``'s replies: the command is carried out, its reply is what fails
(a start whose answer is lost on the way back).
"""

from __future__ import annotations

import asyncio
import contextlib
import xml.etree.ElementTree as ET
from pathlib import Path
from xml.sax.saxutils import quoteattr

from ..backends.bts import SPELLED, TERMINATOR, Channel
from ..backends.rigfile import BtsCycler
from ..backends.stepfile import read_step_file
from ..core.channel import SAMPLE_FIELDS, CyclerError
from ..sim import Rig

FAULTS = ("drop", "slow", "malformed", "refuse")
COLUMN = {name: i for i, name in enumerate(SAMPLE_FIELDS)}
KINDS = {"rest": "rest", "cc": "cc", "cccv": "cccv"}


class BtsServer:
    """One BTS channel over the rig's simulated cycler."""

    def __init__(self, config: BtsCycler, rig: Rig):
        self.config, self.rig = config, rig
        self.channel = Channel.parse(config.channel, config.host)
        self.fault = ""
        self.delay = 3.0
        self.command = ""  # the only command the fault hits ("" = every one)
        self.test = 0  # id of the latest test
        self._first = 0  # sequence number of its first sample
        self._start_time = 0.0
        self._ends = 0  # cycler.starts_and_ends when the test started
        self._base = (0.0, 0.0, 0.0, 0.0)
        self.server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> str:
        return self.config.address

    # --- serving ------------------------------------------------------------------------------
    async def start(self) -> None:
        self.server = await asyncio.start_server(
            self._client, self.config.host, self.config.port, limit=1 << 20
        )

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for writer in list(self._writers):
                writer.close()
            with contextlib.suppress(Exception):
                await self.server.wait_closed()
        self.server = None

    async def set_fault(self, kind: str = "", delay: float = 3.0, command: str = "") -> None:
        if kind and kind not in FAULTS:
            raise ValueError(f"fault {kind!r}: expected one of {', '.join(FAULTS)}")
        was, self.fault, self.delay, self.command = self.fault, kind, delay, command
        if kind == "drop" and was != "drop":
            await self.stop()
        elif was == "drop" and kind != "drop":
            await self.start()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                frame = await reader.readuntil(TERMINATOR)
                reply = self.respond(frame[: -len(TERMINATOR)].decode("utf-8", "replace"))
                hit = not self.command or f"<cmd>{self.command}</cmd>" in frame.decode()
                if self.fault == "slow" and hit:
                    await asyncio.sleep(self.delay)
                if self.fault == "malformed" and hit:
                    reply = "<bts version='1.0'><cmd>inquire_resp</cmd><list count=<<garbage"
                writer.write(reply.encode() + TERMINATOR)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    # --- the API ------------------------------------------------------------------------------
    def respond(self, text: str) -> str:
        try:
            root = ET.fromstring(text)
        except ET.ParseError:
            return self._reply("error", "<result>not xml</result>")
        command = root.findtext("cmd", "").strip()
        handler = getattr(self, f"_on_{command}", None)
        if handler is None:
            return self._reply(command, "<result>unknown command</result>")
        return self._reply(command, handler(root))

    @staticmethod
    def _reply(command: str, body: str) -> str:
        name = SPELLED.get(command, f"{command}_resp")
        head = '<?xml version="1.0" encoding="UTF-8"?><bts version="1.0">'
        return f"{head}<cmd>{name}</cmd>{body}</bts>"

    def _where(self) -> str:
        return f'ip="{self.channel.ip}" {self.channel.attributes}'

    def _on_connect(self, root: ET.Element) -> str:
        given = (root.findtext("username", ""), root.findtext("password", ""))
        ok = given == (self.config.username, self.config.password)
        return f"<result>{'ok' if ok else 'fail'}</result>"

    def _on_getdevinfo(self, root: ET.Element) -> str:
        ch = self.channel
        return (
            f'<middle count="1"><channel ip="{ch.ip}" devtype="{ch.devtype}" devid="{ch.devid}" '
            f'subdevid="{ch.subdevid}" Channelid="{ch.chlid}">true</channel></middle>'
        )

    def _on_start(self, root: ET.Element) -> str:
        cycler = self.rig.cycler
        ok = "false"
        element = root.find("list/start")
        if element is not None and self.fault != "refuse" and not cycler.running:
            try:
                step, period = read_step_file(Path((element.text or "").strip()).read_text())
                cycler.log_period = period
                c = cycler.counters
                self._base = (
                    c.charge_capacity, c.discharge_capacity, c.charge_energy, c.discharge_energy
                )  # fmt: skip
                self._first = cycler.buffer.next_seq
                cycler.start(step)
                self.test += 1
                self._start_time, self._ends = self.rig.time, cycler.starts_and_ends
                ok = "ok"
            except (OSError, ValueError, CyclerError):
                ok = "false"
        return f'<list count="1"><start {self._where()}>{ok}</start></list>'

    def _on_stop(self, root: ET.Element) -> str:
        cycler = self.rig.cycler
        ok = "ok" if cycler.running else "false"
        cycler.stop("stopped by the BTS client")
        return f'<list count="1"><stop {self._where()}>{ok}</stop></list>'

    def _workstatus(self) -> str:
        cycler = self.rig.cycler
        if cycler.running and cycler.starts_and_ends == self._ends:
            return "working"
        if cycler.reason.startswith("safety"):
            return "protect"
        if cycler.reason.startswith("stopped"):
            return "stop"
        return "finish"

    def _on_inquire(self, root: ET.Element) -> str:
        cycler, cell = self.rig.cycler, self.rig.cell
        c, work = cycler.counters, self._workstatus()
        kind = cycler.step.kind.value if work == "working" else "--"
        cap = (c.step_charge + c.step_discharge) / 1e3
        attributes = {
            "dev": f"{self.config.channel}-0",
            "cycle_id": "1",
            "step_id": "1",
            "step_type": KINDS.get(kind, kind),
            "workstatus": work,
            "current": f"{cell.current if work == 'working' else 0.0:.9g}",
            "voltage": f"{cell.voltage:.9g}",
            "capacity": f"{cap:.9g}",
            "totaltime": f"{self.rig.time - self._start_time:.3f}",
            "relativetime": f"{c.step_time:.3f}",
            "open_or_close": "0" if work == "working" else "1",
            "log_code": "0",
        }
        text = " ".join(f"{k}={quoteattr(v)}" for k, v in attributes.items())
        return f'<list count="1"><inquire {text} /></list>'

    def _on_download(self, root: ET.Element) -> str:
        element = root.find("download")
        start = int(element.get("startpos", "1")) if element is not None else 1
        count = int(element.get("count", "0")) if element is not None else 0
        cycler = self.rig.cycler
        last = cycler.buffer.next_seq
        if cycler.starts_and_ends != self._ends:  # the test is over: nothing after its end
            last = cycler.end_seq
        first = self._first + max(start, 1) - 1
        rows = [row for row in cycler.buffer.since(first, limit=count) if row[0] < last]
        head = (
            f'<download {self.channel.attributes} testid="{self.test}" startpos="{start}" '
            f'count="{count}" auxid="0" />'
        )
        points = "".join(self._point(row) for row in rows)
        return f'{head}<list count="{len(rows)}">{points}</list>'

    def _point(self, row) -> str:
        v = {name: float(row[i]) for name, i in COLUMN.items()}
        charge, discharge, charge_e, discharge_e = self._base
        cap = (v["charge_capacity"] - charge) + (v["discharge_capacity"] - discharge)
        eng = (v["charge_energy"] - charge_e) + (v["discharge_energy"] - discharge_e)
        return (
            f'<data seqid="{int(v["seq"]) - self._first + 1}" stepid="1" cycleid="1" '
            f'testtime="{(v["test_time"] - self._start_time) * 1e3:.0f}" '
            f'volt="{v["voltage"]:.9g}" curr="{v["current"]:.9g}" cap="{cap / 1e3:.9g}" '
            f'eng="{eng / 1e3:.9g}" />'
        )
