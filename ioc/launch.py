"""Start ``ssb-ioc`` as a subprocess on loopback: free ports, random prefix, readiness.

Used by the tests, the benchmarks and ``ssb demo``. Channel Access is kept on loopback
with non-default ports so that runs on one machine never see each other's PVs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from . import probe


def free_port_pair(host: str = "127.0.0.1") -> int:
    """A port free for TCP and UDP whose successor is free for UDP (the repeater/beacons),
    and whose next one is free for TCP and UDP (a detector IOC beside the rig: see
    :func:`detector_ca_env`)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port > 65000:
            continue
        try:
            for p in (port, port + 1, port + 2):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                    u.bind((host, p))
            with socket.socket() as t:
                t.bind((host, port + 2))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair on loopback")


def loopback_ca_env(port: int) -> dict[str, str]:
    """EPICS environment for client and server: loopback only, on ``port``; clients also
    search ``port + 2``, where a detector IOC beside the rig serves."""
    return {
        "EPICS_CA_ADDR_LIST": f"127.0.0.1 127.0.0.1:{port + 2}",
        "EPICS_CA_AUTO_ADDR_LIST": "NO",
        "EPICS_CA_SERVER_PORT": str(port),
        "EPICS_CA_REPEATER_PORT": str(port + 1),
        "EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1",
        "EPICS_CAS_BEACON_ADDR_LIST": "127.0.0.1",
        "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
        "EPICS_CAS_BEACON_PORT": str(port + 1),
    }


def detector_ca_env(port: int) -> dict[str, str]:
    """EPICS environment of a detector IOC beside the rig served on ``port``: it serves on
    ``port + 2`` (two servers cannot share a UDP search port on one host), beacons to the
    same repeater port, and finds the rig, its sample, on ``port``."""
    return loopback_ca_env(port) | {
        "EPICS_CA_ADDR_LIST": f"127.0.0.1:{port}",
        "EPICS_CA_SERVER_PORT": str(port + 2),
    }


def beating(address: probe.Address, heartbeat: str) -> bool:
    """The heartbeat PV (``Rig:Beat-RB``) at ``address`` answers, counting: the IOC's PVs
    are served and its clock runs (readiness, not a line of output)."""
    beats = probe.read_value(address, heartbeat, timeout=0.5)
    return beats is not None and beats > 0


def random_prefix(stem: str = "T") -> str:
    return f"{stem}{uuid.uuid4().hex[:8]}:"


class IOCProcess:
    """An ``ssb-ioc`` subprocess; ``start()`` returns once its PVs are live.

    Use as a context manager; leaving it sends SIGTERM (then SIGKILL after a timeout),
    so no process is left behind.
    """

    def __init__(
        self,
        prefix: str | None = None,
        *,
        cell: str = "si-nmc",
        speed: float = 1.0,
        seed: int | None = None,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        autosave: str | os.PathLike | None = None,
    ):
        self.prefix = prefix or random_prefix()
        self.args = ["--prefix", self.prefix, "--cell", cell, "--speed", str(speed)]
        if seed is not None:
            self.args += ["--seed", str(seed)]
        # throwaway IOCs (tests, demos, random prefixes) save nothing unless asked
        self.args += ["--autosave", str(autosave)] if autosave else ["--no-autosave"]
        self.args += ["--lifeline", *extra_args]  # exits if we die without stopping it
        self.command = [sys.executable, "-m", "ssb_ioc.cli", *self.args]
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen | None = None
        self.stderr = ""
        self.stdout_lines: list[str] = []
        self.heartbeat = f"{self.prefix}Rig:Beat-RB"  # counts from 1 once the IOC serves
        self._reader: threading.Thread | None = None
        self._log: IO[str] | None = None

    def start(self, timeout: float = 20.0) -> IOCProcess:
        # stderr to a file (closed in stop()): a file cannot fill up and block like a pipe
        self._log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        self.process = subprocess.Popen(
            self.command,
            env=self.env,
            stdin=subprocess.PIPE,  # the lifeline: closed when this process goes
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            start_new_session=True,  # Ctrl-C in a terminal reaches us, we stop the IOC
        )
        # A reader thread, not select() on the pipe: both banner lines can arrive in one
        # read, and a buffered second line would never make the pipe readable again.
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process.poll() is not None:
                self.stop()
                raise RuntimeError(
                    f"ssb-ioc exited with {self.process.returncode}: {self.stderr.strip()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"ssb-ioc was not ready within {timeout:g} s: {self.stderr.strip()}"
                )
        return self

    @property
    def pid(self) -> int:
        """The process's id (once started)."""
        if self.process is None:
            raise RuntimeError(f"{' '.join(self.command[:3])}: not started")
        return self.process.pid

    def ready(self) -> bool:
        return beating(probe.server_address(self.env), self.heartbeat)

    def _read_stdout(self) -> None:
        assert self.process is not None and self.process.stdout is not None  # start() made it
        for line in self.process.stdout:
            self.stdout_lines.append(line.rstrip("\n"))

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait, then SIGKILL if needed; returns the exit code."""
        process = self.process
        if process is None:
            return 0
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdin and not process.stdin.closed:
            process.stdin.close()  # after the exit: closing first races with SIGTERM
        reader = self._reader
        if reader is not None:
            reader.join(timeout)  # EOF once the process is gone
        if process.stdout and not (reader and reader.is_alive()):
            process.stdout.close()
        if self._log is not None and not self._log.closed:
            self._log.seek(0)
            self.stderr = self._log.read()
            self._log.close()
        return process.returncode

    def __enter__(self) -> IOCProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def rig_file_on_free_ports(
    template: str | os.PathLike, directory: str | os.PathLike, ports: Iterator[int] | None = None
) -> str:
    """A copy of rig file ``template`` in ``directory`` with every ``port = N`` replaced by
    a free loopback port (or the next of ``ports``) and step files kept in ``directory``:
    emulated rigs of parallel runs never meet."""
    import re
    from pathlib import Path

    def port(_) -> str:
        return f"port = {next(ports) if ports is not None else free_port_pair()}"

    text = Path(template).read_text()
    text = re.sub(r"(?m)^port = \d+", port, text)
    text = re.sub(r'(?m)^step_dir = "[^"]*"', f'step_dir = "{Path(directory) / "steps"}"', text)
    path = Path(directory) / Path(template).name
    path.write_text(text)
    return str(path)


class DetectorProcess(IOCProcess):
    """``ssb-ioc --xrd`` as a subprocess: the diffraction detector whose sample is the
    rig ``sample`` served on CA port ``port`` (the detector serves on ``port + 2``)."""

    def __init__(self, sample: str, port: int, *, seed: int | None = None, prefix: str = ""):
        super().__init__(prefix or random_prefix("X"), env=detector_ca_env(port), seed=seed)
        self.heartbeat = f"{self.prefix}cam1:Beat-RB"
        self.command = [
            sys.executable, "-m", "ssb_ioc.cli", "--xrd", "--prefix", self.prefix,
            "--sample", sample, "--lifeline",
            *(["--seed", str(seed)] if seed is not None else []),
        ]  # fmt: skip


def instruments_listen(rig_file: str | os.PathLike) -> bool:
    """Every instrument of the rig file accepts a TCP connection (an emulator is ready)."""
    from .backends.rigfile import load_rig_file

    rig = load_rig_file(Path(rig_file))
    for device in (rig.press, rig.load_cell, rig.cycler):
        if device is None:
            continue
        try:
            with socket.create_connection((device.host, device.port), timeout=0.5):
                pass
        except OSError:
            return False
    return True


class EmulatorProcess(IOCProcess):
    """``ssb-emulate RIG.toml`` as a subprocess; ``start()`` returns once it listens."""

    def __init__(self, rig_file: str | os.PathLike, *, speed: float = 1.0, seed: int = 1):
        super().__init__()
        self.rig_file = rig_file
        self.command = [
            sys.executable, "-m", "ssb_ioc.emulate.emulator", str(rig_file),
            "--speed", str(speed), "--seed", str(seed), "--lifeline",
        ]  # fmt: skip

    def ready(self) -> bool:
        return instruments_listen(self.rig_file)
