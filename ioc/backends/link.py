"""What every instrument link shares: the reason it is down, and a backoff before retrying.

A failed exchange closes the connection and says why; the next attempt waits a backoff
(0.25 s doubling to 5 s) so that a dead instrument is not hammered, and the reason stays
readable (with the time to the next try) until an exchange works again.
"""

from __future__ import annotations

import time
from typing import NoReturn

BACKOFF = (0.25, 5.0)  # s: first retry, longest wait


class CommError(IOError):
    """An exchange with an instrument failed; the message says which and why."""


class Link:
    """Bookkeeping of one instrument connection; subclasses ``close()`` it."""

    def __init__(self, name: str):
        self.name = name
        self.error = "not connected yet"  # "" while the last exchange worked
        self.last_ok = 0.0  # time.time() of the last good exchange
        self._retry_at = 0.0
        self._backoff = BACKOFF[0]

    def close(self) -> None:  # pragma: no cover - every link overrides it
        pass

    def may_retry(self) -> None:
        """CommError while the backoff after a failure lasts."""
        now = time.monotonic()
        if now < self._retry_at:
            wait = self._retry_at - now
            raise CommError(f"{self.name}: {self.error} (retrying in {wait:.1f} s)")

    def fail(self, why: str) -> NoReturn:
        """Close, remember why, back off, and raise CommError."""
        self.close()
        self.error = why
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, BACKOFF[1])
        raise CommError(f"{self.name}: {why}")

    def ok(self) -> None:
        self.error = ""
        self.last_ok = time.time()
        self._backoff = BACKOFF[0]
