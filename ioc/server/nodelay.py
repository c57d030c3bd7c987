"""caproto's asyncio server with TCP_NODELAY on every client connection.

caproto 1.3 creates its listening socket with ``proto=0``, so asyncio does not set
TCP_NODELAY on accepted connections. A client that monitors a PV and writes with a
callback on the same connection then sees Nagle's algorithm meet delayed ACKs: a fifth
to a half of the writes stall ~40 ms. Setting the option on each accepted socket removes
the stalls (see docs/benchmarks.md for the measured put latency with and without).
"""

from __future__ import annotations

import socket

from caproto.asyncio.server import Context


class NoDelayContext(Context):
    """Server context that disables Nagle's algorithm on each accepted connection."""

    async def tcp_handler(self, client, addr):
        sock = client.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return await super().tcp_handler(client, addr)
