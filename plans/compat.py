"""The one place the plans reach below bluesky's and bluesky-tiled-plugins' public API,
each with its reason. tests/test_upstream_internals.py checks every name used here; both
libraries are capped in pyproject.toml.

- **RE.md written now** (bluesky): ``PersistentDict`` writes to disk at garbage
  collection, through its ``weakref.finalize`` (``_finalizer``); a session that closes
  must write it at once, or a stale copy could later overwrite a newer session's
  ``scan_id`` (:func:`write_persistent_md_now`).
- **Rows written on a timer** (bluesky-tiled-plugins): ``TiledWriter`` writes a run's
  buffered rows only when a stream's batch is full or the run stops. The catalog writer
  flushes them every second with the steps TiledWriter takes at the stop
  (:func:`flush_run_writer`), and finds each run's writer where TiledWriter makes it
  (:func:`run_writer_of`, from ``TiledWriter._factory``'s result).
"""

from __future__ import annotations

from typing import Any

from bluesky.utils import PersistentDict


def write_persistent_md_now(md: Any) -> None:
    """Write ``md`` to disk now if it is a PersistentDict (runs once: the finalizer is
    dead afterwards); any other mapping has nothing to write."""
    if isinstance(md, PersistentDict):
        md._finalizer()


def run_writer_of(factory_result: tuple[list, list]) -> Any:
    """The one run writer ``TiledWriter._factory`` made for a run (no normalizer)."""
    callbacks, _ = factory_result
    (writer,) = callbacks
    return writer


def flush_run_writer(run: Any) -> None:
    """Write every row ``run`` (a TiledWriter run writer) holds in its buffers."""
    for stream, rows in run._internal_data_cache.items():
        if rows:
            run._write_internal_data(rows, desc_node=run._desc_nodes[stream])
            rows.clear()
