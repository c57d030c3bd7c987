"""caproto's asyncio server with TCP_NODELAY and with clients known by their address.

caproto 1.3 creates its listening socket with ``proto=0``, so asyncio does not set
TCP_NODELAY on accepted connections. A client that monitors a PV and writes with a
callback on the same connection then sees Nagle's algorithm meet delayed ACKs: a fifth
to a half of the writes stall ~40 ms. Setting the option on each accepted socket removes
the stalls (see docs/benchmarks.md for the measured put latency with and without).

Access rules (:mod:`.access`) see the address a client connects from as its host, never
the host name it claims.

Three caproto 1.3 server faults met under many monitoring clients are fixed here, because a
client coming and going must never cost the IOC memory or its life:

- a circuit's send task waits with ``asyncio.wait_for``, which on Python 3.11 can swallow
  the cancellation that closes a departed client's circuit: the circuit lived on with the
  updates it held (3 to 6 of 10 circuits, 440 to 760 MB);
- closing a killed client's circuit raised "await wasn't used with future" (logged);
- the server's one fan-out task iterates a subscription list that a disconnecting client
  changes meanwhile (``deque mutated during iteration``), which shut the whole IOC down.
"""

from __future__ import annotations

import asyncio
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

    async def _on_disconnect(self):
        """Stop the send task without awaiting it bare: caproto's ``await task`` raised
        "await wasn't used with future" when a client was killed mid-traffic."""
        task, self._sub_task = self._sub_task, None
        await super()._on_disconnect()
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.wait([task], timeout=1.0)

    async def get_from_sub_queue(self, timeout=None):
        try:
            async with asyncio.timeout(timeout):  # passes a cancellation on, unlike wait_for
                return await self.subscription_queue.get()
        except TimeoutError:
            return None


class RigContext(Context):
    """Server context: peer addresses as hosts; TCP_NODELAY unless ``nodelay=False``."""

    CircuitClass = PeerAddressCircuit

    def __init__(self, pvdb, interfaces=None, *, nodelay: bool = True):
        super().__init__(pvdb, interfaces)
        self.nodelay = nodelay

    async def _subscription_queue_iteration(self, sub_specs, metadata, values, flags, sub):
        if sub is not None:  # the first update of a new subscription
            return await super()._subscription_queue_iteration(
                sub_specs, metadata, values, flags, sub
            )
        for sub_spec in sub_specs:
            for each in list(self.subscriptions[sub_spec]):  # clients may leave meanwhile
                await self._subscription_queue_send(
                    sub_spec, each, metadata=metadata, values=values, flags=flags
                )

    async def tcp_handler(self, client, addr):
        sock = client.writer.get_extra_info("socket")
        if sock is not None and self.nodelay:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return await super().tcp_handler(client, addr)


def is_loopback(interface: str) -> bool:
    """Whether serving ``interface`` (an address or a host name) reaches this host only."""
    try:
        return ipaddress.ip_address(socket.gethostbyname(interface)).is_loopback
    except (OSError, ValueError):
        return False


def beacon_addresses(interfaces: list[str]) -> list[str]:
    """Where beacons go when serving ``interfaces``: the broadcast address of each served
    interface (127.0.0.1 for loopback), never the whole world's 255.255.255.255."""
    import psutil

    served = {ipaddress.ip_address(socket.gethostbyname(i)) for i in interfaces}
    served = {a for a in served if not a.is_loopback}
    everything = ipaddress.ip_address("0.0.0.0") in served
    out = ["127.0.0.1"] if everything or len(served) < len(interfaces) else []
    for addresses in psutil.net_if_addrs().values():
        for a in addresses:
            if a.family != socket.AF_INET or is_loopback(a.address):
                continue
            if everything or ipaddress.ip_address(a.address) in served:
                out.append(a.broadcast or a.address)
    return list(dict.fromkeys(out))
