"""Fixtures: an ssb-ioc subprocess on loopback with a random prefix and free ports.

Channel Access is forced onto loopback with non-default ports chosen per test session,
so runs on the same machine never see each other's PVs.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import tempfile
import sys
import time
import typing
import uuid
from dataclasses import dataclass

import pytest
from caproto import ChannelType


def _free_port_pair() -> int:
    """A port free for TCP and UDP whose successor is free for UDP too."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port > 65000:
            continue
        try:
            for p in (port, port + 1):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                    u.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair on loopback")


_PORT = _free_port_pair()
CA_ENV = {
    "EPICS_CA_ADDR_LIST": "127.0.0.1",
    "EPICS_CA_AUTO_ADDR_LIST": "NO",
    "EPICS_CA_SERVER_PORT": str(_PORT),
    "EPICS_CA_REPEATER_PORT": str(_PORT + 1),
    "EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1",
    "EPICS_CAS_BEACON_ADDR_LIST": "127.0.0.1",
    "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
    "EPICS_CAS_BEACON_PORT": str(_PORT + 1),
}
os.environ.update(CA_ENV)  # before any caproto client context exists


@dataclass
class RunningIOC:
    prefix: str
    process: subprocess.Popen
    context: object
    log: typing.IO[str]
    stderr: str = ""

    def pv(self, name: str, timeout: float = 5.0):
        (pv,) = self.context.get_pvs(self.prefix + name, timeout=timeout)
        pv.wait_for_connection(timeout=timeout)
        return pv

    def get(self, name: str) -> float:
        return self.pv(name).read(timeout=5.0).data[0]

    def enum(self, name: str) -> str:
        return self.pv(name).read(data_type=ChannelType.STRING, timeout=5.0).data[0].decode()

    def text(self, name: str) -> str:
        data = self.pv(name).read(timeout=5.0).data
        return bytes(data).rstrip(b"\0").decode()

    def put(self, name: str, value, wait: bool = True, timeout: float = 10.0):
        kind = ChannelType.STRING if isinstance(value, str) else None
        return self.pv(name).write([value], wait=wait, timeout=timeout, data_type=kind)

    def wait_for(self, predicate, timeout: float = 10.0, what: str = "condition"):
        """Poll a condition on the IOC's PVs until true (no fixed sleeps)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.02)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def start_ioc(context, *args: str, speed: float = 100.0, cell: str = "si-nmc") -> RunningIOC:
    prefix = f"T{uuid.uuid4().hex[:8]}:"
    log = tempfile.TemporaryFile(mode="w+")  # stderr: a file cannot fill up like a pipe
    env = {**os.environ, **CA_ENV}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ssb_ioc.cli",
            "--prefix",
            prefix,
            "--speed",
            str(speed),
            "--cell",
            cell,
            "--seed",
            "1",
            *args,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    ioc = RunningIOC(prefix, process, context, log)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # readiness: the IOC says so once its PVs are live
        ready, _, _ = select.select([process.stdout], [], [], 0.5)
        if ready:
            line = process.stdout.readline()
            if "ready" in line:
                ioc.pv("Rig:Cell-RB")
                return ioc
        if process.poll() is not None:
            stop_ioc(ioc)
            raise RuntimeError(f"ssb-ioc exited early: {ioc.stderr}")
    stop_ioc(ioc)
    raise RuntimeError(f"ssb-ioc did not become ready in 20 s: {ioc.stderr}")


def stop_ioc(ioc: RunningIOC) -> int:
    """SIGTERM, wait, collect stderr into ``ioc.stderr``, close the pipes."""
    process = ioc.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    process.stdout.close()
    if not ioc.log.closed:
        ioc.log.seek(0)
        ioc.stderr = ioc.log.read()
        ioc.log.close()
    return process.returncode


@pytest.fixture(scope="session")
def ca_context():
    from caproto.threading.client import Context

    context = Context()
    yield context
    context.disconnect()


@pytest.fixture
def ioc(ca_context):
    running = start_ioc(ca_context)
    yield running
    assert stop_ioc(running) == 0, running.stderr
