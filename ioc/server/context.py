"""caproto's asyncio server with TCP_NODELAY and with clients known by their address.

caproto 1.3 creates its listening socket with ``proto=0``, so asyncio does not set
TCP_NODELAY on accepted connections. A client that monitors a PV and writes with a
callback on the same connection then sees Nagle's algorithm meet delayed ACKs: a fifth
to a half of the writes stall ~40 ms. Setting the option on each accepted socket removes
the stalls (see docs/benchmarks.md for the measured put latency with and without).

Access rules (:mod:`.access`) see the address a client connects from as its host, never
the host name it claims.
"""

from __future__ import annotations

import ipaddress
import socket

from caproto.asyncio.server import Context, VirtualCircuit


class PeerAddressCircuit(VirtualCircuit):
    """A client connection whose host, for access checks, is its peer address."""

    @property
    def client_hostname(self) -> str:
        return self.circuit.address[0]

    @client_hostname.setter
    def client_hostname(self, claimed: str | None) -> None:
        self.claimed_hostname = claimed  # kept for logs; never trusted


class RigContext(Context):
    """Server context: peer addresses as hosts; TCP_NODELAY unless ``nodelay=False``."""

    CircuitClass = PeerAddressCircuit

    def __init__(self, pvdb, interfaces=None, *, nodelay: bool = True):
        super().__init__(pvdb, interfaces)
        self.nodelay = nodelay

    async def tcp_handler(self, client, addr):
        sock = client.writer.get_extra_info("socket")
        if sock is not None and self.nodelay:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return await super().tcp_handler(client, addr)


def is_loopback(interface: str) -> bool:
    try:
        return ipaddress.ip_address(interface).is_loopback
    except ValueError:
        return False


def beacon_addresses(interfaces: list[str]) -> list[str]:
    """Where beacons go when serving ``interfaces``: the broadcast address of each served
    interface (127.0.0.1 for loopback), never the whole world's 255.255.255.255."""
    import psutil

    served = {ipaddress.ip_address(i) for i in interfaces if not is_loopback(i)}
    everything = ipaddress.ip_address("0.0.0.0") in served
    out = ["127.0.0.1"] if everything or len(served) < len(interfaces) else []
    for addresses in psutil.net_if_addrs().values():
        for a in addresses:
            if a.family != socket.AF_INET or is_loopback(a.address):
                continue
            if everything or ipaddress.ip_address(a.address) in served:
                out.append(a.broadcast or a.address)
    return list(dict.fromkeys(out))
