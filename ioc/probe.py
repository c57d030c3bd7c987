"""Read one PV of one known server: how a launcher tells that an IOC it started is ready.

A launcher knows where its IOC serves (the ``EPICS_CA_SERVER_PORT`` it gave it), while
caproto's clients take their search addresses from this process's own environment only.
So the search goes to that one address, with caproto's sans-I/O layer (its public
``Broadcaster``, ``VirtualCircuit`` and ``ClientChannel``): one UDP search, one TCP
circuit, one read, closed again. A server that does not answer in time is ``None``.
"""

from __future__ import annotations

import os
import random
import socket
import time
from collections.abc import Mapping
from typing import Any

import caproto as ca

Address = tuple[str, int]


def server_address(env: Mapping[str, str] = os.environ) -> Address:
    """Where an IOC started with ``env`` answers searches on this host."""
    interfaces = env.get("EPICS_CAS_INTF_ADDR_LIST", "").split()
    host = interfaces[0] if interfaces and interfaces[0] != "0.0.0.0" else "127.0.0.1"
    return host, int(env.get("EPICS_CA_SERVER_PORT", "5064"))


def read_value(address: Address, name: str, timeout: float = 1.0) -> Any | None:
    """The value of PV ``name`` at the server searched at ``address`` (its first element
    for a scalar), or ``None`` if the server did not find it or answer within
    ``timeout`` s."""
    deadline = time.monotonic() + timeout
    try:
        found = _search(address, name, deadline)
        if found is None:
            return None
        return _read(found, name, deadline)
    except (OSError, ca.CaprotoError):
        return None  # refused, reset, or not a CA server: not ready


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _search(address: Address, name: str, deadline: float) -> Address | None:
    broadcaster = ca.Broadcaster(our_role=ca.CLIENT)
    cid = random.randint(0, 0xFFFF)
    request = broadcaster.send(
        ca.VersionRequest(0, ca.DEFAULT_PROTOCOL_VERSION),
        ca.SearchRequest(name, cid, ca.DEFAULT_PROTOCOL_VERSION),
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(request, address)
        while True:
            udp.settimeout(_left(deadline))
            data, sender = udp.recvfrom(ca.MAX_UDP_RECV)
            commands = broadcaster.recv(data, sender)
            broadcaster.process_commands(commands)
            for command in commands:
                if isinstance(command, ca.SearchResponse) and command.cid == cid:
                    host, port = ca.extract_address(command)
                    return (sender[0] if host == "0.0.0.0" else host), port


def _read(address: Address, name: str, deadline: float) -> Any | None:
    circuit = ca.VirtualCircuit(our_role=ca.CLIENT, address=address, priority=0)
    channel = ca.ClientChannel(name, circuit)
    with socket.create_connection(address, timeout=_left(deadline)) as sock:
        circuit.our_address = sock.getsockname()
        sock.sendmsg(
            circuit.send(
                ca.VersionRequest(priority=0, version=ca.DEFAULT_PROTOCOL_VERSION),
                channel.host_name(socket.gethostname()),
                channel.client_name("ssb-launch"),
                channel.create(),
            )
        )
        ioid = None  # of the read, once the channel is connected
        while True:
            sock.settimeout(_left(deadline))
            data = sock.recv(65536)
            if not data:
                return None  # the server closed the circuit
            commands, _ = circuit.recv(data)
            for command in commands:
                if command is ca.DISCONNECTED:
                    return None
                circuit.process_command(command)
                if isinstance(command, ca.ReadNotifyResponse) and command.ioid == ioid:
                    value = command.data
                    return value[0] if len(value) == 1 else value
                if isinstance(command, ca.ErrorResponse):
                    return None
            if ioid is None and channel.states[ca.CLIENT] is ca.CONNECTED:
                request = channel.read()
                ioid = request.ioid
                sock.sendmsg(circuit.send(request))
