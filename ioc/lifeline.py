"""A child process started with ``--lifeline`` exits when its parent goes away."""

from __future__ import annotations

import asyncio
import os
import signal
import sys


def watch_lifeline(task: asyncio.Task) -> None:
    """Cancel ``task`` when stdin closes (the parent holds the other end of the pipe) or
    on SIGTERM, so that the task's cleanup runs."""
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno()

    def on_stdin() -> None:
        if not os.read(fd, 4096):  # EOF: our parent has gone
            loop.remove_reader(fd)
            task.cancel()

    loop.add_reader(fd, on_stdin)
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
