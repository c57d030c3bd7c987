"""Write runs into the catalog while they run.

bluesky-tiled-plugins' ``TiledWriter`` buffers rows (up to 10,000 per stream by default)
and writes them in bulk, which is what makes it fast, but a buffered row is neither
visible to a reader nor safe from a crash. :class:`CatalogWriter` keeps the bulk writes
and also writes whatever is buffered once ``flush_interval`` seconds (wall time) have
passed since the last write, so a reader sees a running experiment within about that
long and a killed process loses at most that much.

A run whose writer dies keeps no stop document. So that readers can tell such a run from
one still being written, the writer refreshes ``heartbeat: {last_seen, interval, host,
pid, started}`` in the metadata of every open run every ``heartbeat`` seconds (wall
time), from a thread that takes turns with the RunEngine's writes (one writer at a time,
as SQLite wants it). On the writer's own host a reader can tell at once that the process
is gone (``ssb_analysis.runs.status``); elsewhere, once three beats are missed.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from pathlib import Path

from bluesky_tiled_plugins import TiledWriter

from .compat import flush_run_writer, run_writer_of

HEARTBEAT = 10.0  # s of wall time between the `last_seen` updates of an open run
log = logging.getLogger(__name__)


class StorageLost(RuntimeError):
    """The catalog could not be written (a full disk, a server gone, a permission lost).
    The acquisition stops and leaves the protocol going on on the instrument; ``ssb
    attach`` stores what the instrument still holds once the catalog can be written."""


def default_spool() -> Path:
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data) / "ssb-bluesky" / "spool"


class CatalogWriter(TiledWriter):
    """``TiledWriter`` with time-bounded buffering (``flush_interval`` seconds) and a
    heartbeat in each open run's metadata (every ``heartbeat`` seconds)."""

    def __init__(
        self,
        client,
        *,
        flush_interval: float = 1.0,
        batch_size: int = 10_000,
        heartbeat: float = HEARTBEAT,
        spool: str | os.PathLike | None = None,
    ):
        # No normalizer: the RunEngine emits current event-model documents, and without
        # one each run's writer is the callback itself, which lets us flush it.
        super().__init__(client, normalizer=None, batch_size=batch_size)
        self.flush_interval = flush_interval
        self.heartbeat = heartbeat
        self._runs: dict = {}  # run start uid -> that run's writer
        self._last_flush = time.monotonic()
        self._lock = threading.Lock()  # one write at a time: documents or heartbeat
        self._closed = threading.Event()
        self.spool = Path(spool) if spool is not None else default_spool()
        self.failed: Exception | None = None  # why the catalog stopped taking this run
        self.spooled = 0  # documents kept in the spool since (-1: the spool failed too)
        self._run_of: dict[str, str] = {}  # descriptor uid -> run uid, for the spool
        self._beats = threading.Thread(target=self._beat, name="ssb-heartbeat", daemon=True)
        self._beats.start()

    def _beat(self) -> None:
        while not self._closed.wait(self.heartbeat):
            with self._lock:
                if self.failed is None:  # a run that cannot be written looks orphaned
                    self.touch()

    def touch(self) -> None:
        """Tell readers that the writer of every open run is alive, and which it is."""
        beat = {
            "heartbeat": {
                "last_seen": time.time(),
                "interval": self.heartbeat,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "started": _process_started(),
            }
        }
        for uid, run in list(self._runs.items()):
            try:
                run.root_node.update_metadata(metadata=beat, drop_revision=True)
            except Exception as ex:  # a missed beat must not stop the run
                log.warning("heartbeat of run %s not written: %s", uid[:8], ex)

    def close(self) -> None:
        """Stop the heartbeat (runs left open then look orphaned to readers)."""
        self._closed.set()
        self._beats.join(timeout=5)

    def _factory(self, name, doc):  # TiledWriter's, see ssb_plans.compat
        made = super()._factory(name, doc)
        self._runs[doc["uid"]] = run_writer_of(made)  # one writer per run, as configured
        return made

    def __call__(self, name, doc):
        with self._lock:
            if name == "descriptor":
                self._run_of[doc["uid"]] = doc["run_start"]
            if name == "start":
                self.failed = None  # a new run: try the catalog again
            if self.failed is not None:
                self._keep(name, doc)
                return
            try:
                super().__call__(name, doc)
                if name == "start":
                    self.touch()
                elif name == "stop":
                    self._runs.pop(doc["run_start"], None)
                elif name in ("event", "event_page") and self._flush_due():
                    self.flush()
            except Exception as ex:  # once per run: say it in one line, keep the rest
                self.failed = ex
                self._keep(name, doc)
                why = f"{type(ex).__name__}: {ex}".splitlines()[0][:300]
                raise StorageLost(
                    f"the catalog cannot be written ({why}); the protocol goes on on the "
                    f"instrument and this run's documents from here on are kept in "
                    f"{self.spool}; once the catalog can be written again, `ssb attach` "
                    "stores all the instrument still holds"
                ) from None

    def _keep(self, name: str, doc: dict) -> None:
        """Spool a document the catalog did not take: one JSON line per document."""
        try:
            self.spool.mkdir(parents=True, exist_ok=True)
            uid = doc.get("run_start") or doc.get("uid", "run")
            if name in ("event", "event_page", "datum", "datum_page", "stream_datum"):
                uid = self._run_of.get(doc.get("descriptor", ""), uid)
            with open(self.spool / f"{uid}.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps([name, doc], default=repr) + "\n")
            self.spooled += 1
        except OSError as ex:
            if self.spooled >= 0:
                log.error("the spool %s cannot be written either (%s)", self.spool, ex)
                self.spooled = -1  # said once

    def _flush_due(self) -> bool:
        return time.monotonic() - self._last_flush >= self.flush_interval

    def flush(self) -> None:
        """Write every buffered row of every open run now."""
        for run in self._runs.values():
            flush_run_writer(run)
        self._last_flush = time.monotonic()


def _process_started() -> float:
    """This process's start (Unix time): with the pid, it names the process uniquely."""
    import psutil

    return psutil.Process().create_time()
