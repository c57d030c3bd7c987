"""A client for Neware's BTS API: XML over TCP, one request and one reply at a time.

Frames are ``<?xml ...?><bts version="1.0"><cmd>NAME</cmd>...</bts>`` followed by
``"\\n\\n#\\r\\n"``, in both directions; a reply names its command ``NAME_resp`` (the
formats follow the BTS API as an open client, aurora-neware, speaks it). Channels are
addressed by device type, device id, sub-device id and channel id. A reply that is late,
not XML, or for another command fails the exchange with the reason (:class:`~.link.Link`).
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from xml.sax.saxutils import escape

from .link import Link
from .rigfile import BtsCycler

HEAD = '<?xml version="1.0" encoding="UTF-8" ?><bts version="1.0">'
TAIL = "</bts>"
TERMINATOR = b"\n\n#\r\n"
SPELLED = {"download": "donwload_resp"}  # as BTS servers spell their reply
MAX_REPLY = 8_000_000  # bytes: a download of 1000 points is ~200 kB


@dataclass(frozen=True)
class Channel:
    """Where a channel is: ``devtype-devid-subdevid-chlid`` as BTS numbers it."""

    devtype: int
    devid: int
    subdevid: int
    chlid: int
    ip: str = "127.0.0.1"

    @classmethod
    def parse(cls, text: str, ip: str) -> Channel:
        parts = text.split("-")
        if len(parts) != 4 or not all(p.isdigit() for p in parts):
            raise ValueError(
                f"channel {text!r}: expected devtype-devid-subdevid-chlid, e.g. 27-1-1-1"
            )
        devtype, devid, subdevid, chlid = (int(p) for p in parts)
        return cls(devtype, devid, subdevid, chlid, ip=ip)

    @property
    def attributes(self) -> str:
        return (
            f'devtype="{self.devtype}" devid="{self.devid}" subdevid="{self.subdevid}" '
            f'chlid="{self.chlid}"'
        )


class BtsClient(Link):
    """One TCP connection to a BTS server, logged in on first use."""

    def __init__(self, host: str, port: int, timeout: float = 2.0,
                 login: tuple[str, str] = ("admin", "neware")):  # fmt: skip
        super().__init__(f"cycler at {host}:{port}")
        self.host, self.port, self.timeout = host, port, timeout
        self.login = login
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    @classmethod
    def for_cycler(cls, config: BtsCycler) -> BtsClient:
        """The client of a rig file's ``[cycler]``."""
        return cls(config.host, config.port, config.timeout, (config.username, config.password))

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None

    async def _connect(self) -> None:
        self.may_retry()
        try:
            async with asyncio.timeout(self.timeout):
                self._streams = await asyncio.open_connection(self.host, self.port)
        except (TimeoutError, OSError):
            self.fail("no connection")
        user, password = (escape(part) for part in self.login)
        reply = await self._exchange(
            "connect",
            f"<username>{user}</username><password>{password}</password><type>bfgs</type>",
        )
        if reply.findtext("result", "").strip() != "ok":
            self.fail("the BTS server refused the login (cycler.username, cycler.password)")

    async def command(self, name: str, body: str = "") -> ET.Element:
        """Send ``<cmd>name</cmd>body``; the reply's root element."""
        if self._streams is None:
            await self._connect()
        reply = await self._exchange(name, body)
        self.ok()
        return reply

    async def _exchange(self, name: str, body: str) -> ET.Element:
        if self._streams is None:
            self.fail("not connected")
        reader, writer = self._streams
        frame = f"{HEAD}<cmd>{name}</cmd>{body}{TAIL}".encode() + TERMINATOR
        try:
            async with asyncio.timeout(self.timeout):
                writer.write(frame)
                await writer.drain()
                data = await reader.readuntil(TERMINATOR)
        except TimeoutError:
            self.fail(f"no reply to {name} within {self.timeout:g} s")
        except asyncio.LimitOverrunError:
            self.fail(f"reply to {name} too long")
        except asyncio.IncompleteReadError:
            self.fail(f"connection lost during {name} (closed by the BTS server)")
        except OSError as ex:
            self.fail(f"connection lost during {name} ({ex.strerror or type(ex).__name__})")
        if len(data) > MAX_REPLY:
            self.fail(f"reply to {name} of {len(data)} bytes: too long")
        try:
            root = ET.fromstring(data[: -len(TERMINATOR)].decode("utf-8", "replace"))
        except ET.ParseError as ex:
            self.fail(f"malformed reply to {name} (not XML: {ex})")
        answered = root.findtext("cmd", "").strip()
        if answered not in (f"{name}_resp", SPELLED.get(name)):
            self.fail(f"reply to {name} answers {answered or 'nothing'!r}")
        return root

    # --- the commands the rig uses -----------------------------------------------------
    async def channels(self) -> list[str]:
        """Every channel the server has, as devtype-devid-subdevid-chlid."""
        reply = await self.command("getdevinfo")
        return [
            "-".join(e.get(k, "?") for k in ("devtype", "devid", "subdevid", "Channelid"))
            for e in reply.iterfind("middle/channel")
        ]

    async def start(self, channel: Channel, step_path: str, barcode: str) -> bool:
        body = (
            f'<list count="1"><start ip="{channel.ip}" {channel.attributes} '
            f'barcode="{barcode}">{step_path}</start></list>'
        )
        reply = await self.command("start", body)
        return reply.findtext("list/start", "").strip() == "ok"

    async def stop(self, channel: Channel) -> bool:
        body = f'<list count="1"><stop ip="{channel.ip}" {channel.attributes}>true</stop></list>'
        reply = await self.command("stop", body)
        return reply.findtext("list/stop", "").strip() == "ok"

    async def inquire(self, channel: Channel) -> dict[str, str]:
        body = (
            f'<list count="1"><inquire ip="{channel.ip}" {channel.attributes} aux="0" '
            'barcode="1">true</inquire></list>'
        )
        found = (await self.command("inquire", body)).find("list/inquire")
        if found is None:
            self.fail("inquire reply without a channel")
        return dict(found.attrib)

    async def download(self, channel: Channel, start: int, count: int) -> tuple[int, list[dict]]:
        """(test id, up to ``count`` points from 1-based position ``start``) of the
        channel's latest test."""
        body = (
            f'<download {channel.attributes} auxid="0" testid="0" startpos="{start}" '
            f'count="{count}"/>'
        )
        reply = await self.command("download", body)
        head = reply.find("download")
        test = int(head.get("testid", "0")) if head is not None else 0
        return test, [dict(e.attrib) for e in reply.iterfind("list/data")]
