"""Write runs into the catalog while they run.

bluesky-tiled-plugins' ``TiledWriter`` buffers rows (up to 10,000 per stream by default)
and writes them in bulk, which is what makes it fast, but a buffered row is neither
visible to a reader nor safe from a crash. :class:`CatalogWriter` keeps the bulk writes
and also writes whatever is buffered once ``flush_interval`` seconds (wall time) have
passed since the last write, so a reader sees a running experiment within about that
long and a killed process loses at most that much.
"""

from __future__ import annotations

import time

from bluesky_tiled_plugins import TiledWriter


class CatalogWriter(TiledWriter):
    """``TiledWriter`` with time-bounded buffering (``flush_interval`` seconds)."""

    def __init__(self, client, *, flush_interval: float = 1.0, batch_size: int = 10_000):
        # No normalizer: the RunEngine emits current event-model documents, and without
        # one each run's writer is the callback itself, which lets us flush it.
        super().__init__(client, normalizer=None, batch_size=batch_size)
        self.flush_interval = flush_interval
        self._runs: dict = {}  # run start uid -> that run's writer
        self._last_flush = time.monotonic()

    def _factory(self, name, doc):
        callbacks, subfactories = super()._factory(name, doc)
        (self._runs[doc["uid"]],) = callbacks  # one writer per run, as configured above
        return callbacks, subfactories

    def __call__(self, name, doc):
        super().__call__(name, doc)
        if name == "stop":
            self._runs.pop(doc["run_start"], None)
        elif name in ("event", "event_page") and self._flush_due():
            self.flush()

    def _flush_due(self) -> bool:
        return time.monotonic() - self._last_flush >= self.flush_interval

    def flush(self) -> None:
        """Write every buffered row of every open run now."""
        for run in self._runs.values():
            # The same steps TiledWriter takes for the rows left over at a run's stop.
            for stream, rows in run._internal_data_cache.items():
                if rows:
                    run._write_internal_data(rows, desc_node=run._desc_nodes[stream])
                    rows.clear()
        self._last_flush = time.monotonic()
