"""Where a lab lives: its directory, its ports and its keys.

Ports follow one rule from a base port B, so a facility can open them in a firewall and
write them in a wiki once: PostgreSQL B, Redis B+1, the Tiled server B+2, the overview
page B+3; rig i (1, 2, ...) serves Channel Access on B+10i (its repeater and beacons on
B+10i+1), its RE Manager listens on B+10i+2 (control) and B+10i+3 (info), its
bluesky-httpserver on B+10i+4, and the instruments of an emulated rig on B+10i+5 and up.

Keys are made once and kept in ``DIR/keys`` (readable by the owner only), so a client
configured with them keeps working across ``ssb lab down`` and ``up``.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BASE_PORT = 7100
MAX_RIGS = 16
PREFIX_STEM = "LAB"
HEARTBEAT = 2.0  # s between a running run's heartbeats: a dead worker's run is seen
# orphaned within seconds, so the supervisor can attach to the protocol the IOC runs on


def default_directory() -> Path:
    if os.environ.get("SSB_LAB"):
        return Path(os.environ["SSB_LAB"])
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "ssb-bluesky" / "lab"


@dataclass(frozen=True)
class RigPlaces:
    """One rig's name, PV prefix and ports."""

    number: int
    ca_port: int
    zmq_control: int
    zmq_info: int
    http_port: int

    @property
    def instrument_ports(self) -> range:
        """Ports for an emulated rig's instruments (Modbus, BTS): B+10i+5 to B+10i+9."""
        return range(self.ca_port + 5, self.ca_port + 10)

    @property
    def name(self) -> str:
        return f"rig{self.number}"

    @property
    def prefix(self) -> str:
        return f"{PREFIX_STEM}{self.number}:"

    @property
    def http_uri(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def zmq_control_addr(self) -> str:
        return f"tcp://127.0.0.1:{self.zmq_control}"

    @property
    def zmq_info_addr(self) -> str:
        return f"tcp://127.0.0.1:{self.zmq_info}"


@dataclass(frozen=True)
class Layout:
    directory: Path
    rigs: int
    base_port: int = DEFAULT_BASE_PORT
    emulated: bool = False  # instruments behind wire protocols (ssb-emulate), not the sim

    def __post_init__(self) -> None:
        if not 1 <= self.rigs <= MAX_RIGS:
            raise ValueError(f"a lab has 1 to {MAX_RIGS} rigs, not {self.rigs}")
        if not 1024 <= self.base_port <= 65535 - 10 * (MAX_RIGS + 1):
            raise ValueError(
                f"base port {self.base_port} leaves no room: choose 1024..{65535 - 170}"
            )

    @property
    def postgres_port(self) -> int:
        return self.base_port

    @property
    def redis_port(self) -> int:
        return self.base_port + 1

    @property
    def tiled_port(self) -> int:
        return self.base_port + 2

    @property
    def overview_port(self) -> int:
        return self.base_port + 3

    @property
    def tiled_uri(self) -> str:
        return f"http://127.0.0.1:{self.tiled_port}/api"

    @property
    def overview_uri(self) -> str:
        return f"http://127.0.0.1:{self.overview_port}"

    def rig(self, number: int) -> RigPlaces:
        port = self.base_port + 10 * number
        return RigPlaces(number, port, port + 2, port + 3, port + 4)

    def all_rigs(self) -> list[RigPlaces]:
        return [self.rig(i) for i in range(1, self.rigs + 1)]

    def ports(self) -> dict[int, str]:
        """Every TCP port the lab will listen on, and who."""
        ports = {
            self.postgres_port: "PostgreSQL",
            self.redis_port: "Redis",
            self.tiled_port: "Tiled",
            self.overview_port: "overview",
        }
        for rig in self.all_rigs():
            ports[rig.ca_port] = f"{rig.name} IOC"
            ports[rig.zmq_control] = f"{rig.name} RE Manager"
            ports[rig.zmq_info] = f"{rig.name} RE Manager (info)"
            ports[rig.http_port] = f"{rig.name} HTTP server"
            if self.emulated:
                for port in rig.instrument_ports:
                    ports[port] = f"{rig.name} emulated instruments"
        return ports

    def busy_ports(self) -> list[str]:
        """'PORT (who)' for every port of the lab that something else already holds."""
        udp = {r.ca_port for r in self.all_rigs()} | {r.ca_port + 1 for r in self.all_rigs()}
        busy = []
        for port, who in self.ports().items():
            kinds = (
                [socket.SOCK_STREAM, socket.SOCK_DGRAM] if port in udp else [socket.SOCK_STREAM]
            )
            for kind in kinds:  # an IOC searches and beacons over UDP on its port and the next
                with socket.socket(socket.AF_INET, kind) as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    try:
                        s.bind(("127.0.0.1", port))
                    except OSError:
                        busy.append(f"{port} ({who})")
                        break
        return busy

    # -- places on disk ---------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.directory / "lab.json"

    @property
    def logs(self) -> Path:
        return self.directory / "logs"

    @property
    def keys(self) -> Path:
        return self.directory / "keys"

    def rig_dir(self, rig: RigPlaces) -> Path:
        return self.directory / rig.name

    def key(self, name: str) -> str:
        """The secret ``name`` (made on first use, owner-only), e.g. ``tiled-api-key``."""
        path = self.keys / name
        if not path.exists():
            self.write_key(name, secrets.token_hex(24))  # alphanumeric: httpserver needs it
        return path.read_text().strip()

    def write_key(self, name: str, value: str) -> None:
        """Keep the secret ``name`` (owner-only, never readable by others on the way),
        replacing what was there."""
        self.keys.mkdir(parents=True, exist_ok=True)
        os.chmod(self.keys, 0o700)
        path = self.keys / name
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(value)
