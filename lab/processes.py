"""Start services detached from the shell, know them again later, stop only those.

A lab outlives the ``ssb lab up`` that started it, so each service is a process in a
session of its own, its output in a log file, its pid and start time written down. A pid
is only trusted while the process with it still has the recorded start time: a pid reused
by the system after a reboot is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

# The Popen objects of the processes started here: a service outlives the Popen, but Python
# warns about a Popen collected while its process runs, and reaps only through it.
_STARTED: dict[int, subprocess.Popen] = {}


@dataclass
class Started:
    """What is needed to find a started process again: its pid and its start time."""

    pid: int
    created: float

    def process(self) -> psutil.Process | None:
        """The process, if it is still the one that was started."""
        try:
            process = psutil.Process(self.pid)
            if abs(process.create_time() - self.created) > 0.5 or not process.is_running():
                return None
            if process.status() == psutil.STATUS_ZOMBIE:
                return None
            return process
        except psutil.Error:
            return None

    def alive(self) -> bool:
        return self.process() is not None


def start(
    argv: Sequence[str],
    log: Path,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> Started:
    """Start ``argv`` in a new session with stdout and stderr appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,  # neither Ctrl-C nor the shell's exit reaches it
            user=user,
        )
    _STARTED[process.pid] = process
    return Started(process.pid, psutil.Process(process.pid).create_time())


def wait_ready(
    started: Started, ready: Callable[[], bool], timeout: float, what: str, log: Path
) -> None:
    """Poll ``ready`` until true; a process that exits or takes too long is reported with
    the end of its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not started.alive():
            raise RuntimeError(f"{what} exited while starting:\n{tail(log)}")
        try:
            if ready():
                return
        except Exception:  # not listening yet
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} was not ready within {timeout:g} s:\n{tail(log)}")


def tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {log})"


def _gone(process: psutil.Process) -> bool:
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def stop_all(
    parts: list[tuple[Started, signal.Signals, bool]], timeout: float = 15.0
) -> list[bool]:
    """Stop several processes at once. Each ``(started, sig, children)``: send ``sig`` to
    the process (and, with ``children``, to its children too); SIGKILL whatever of the
    families is left after ``timeout``. A server that shuts its own workers down
    (PostgreSQL, queueserver's watchdog) gets ``children=False``. Returns, for each,
    whether it was running."""
    families: list[list[psutil.Process] | None] = []
    for started, sig, children in parts:
        process = started.process()
        if process is None:
            families.append(None)
            continue
        family = [process, *process.children(recursive=True)]
        for member in family if children else [process]:
            with contextlib.suppress(psutil.Error):
                member.send_signal(sig)
        families.append(family)
    members = [m for family in families if family for m in family]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(_gone(m) for m in members):
        time.sleep(0.05)
    for member in members:
        if not _gone(member):
            with contextlib.suppress(psutil.Error):
                member.kill()
    for started, _, _ in parts:
        popen = _STARTED.pop(started.pid, None)
        if popen is not None:
            popen.wait(timeout=5)  # reaped: no zombie left in a long-lived starter
    return [family is not None for family in families]


def stop(
    started: Started,
    timeout: float = 15.0,
    sig: signal.Signals = signal.SIGTERM,
    children: bool = True,
) -> bool:
    """:func:`stop_all` of one process; False if it was already gone."""
    return stop_all([(started, sig, children)], timeout)[0]
