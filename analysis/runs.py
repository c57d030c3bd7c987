"""List, search and describe runs in the catalog (``ssb runs``, ``ssb show``)."""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterable, Mapping
from typing import Any

SEARCH_KEYS = ("cell_id", "purpose", "plan_name", "operator")


def search(catalog, **criteria: Any):
    """The runs whose start document matches every ``key=value`` given."""
    from tiled.queries import Key

    for key, value in criteria.items():
        if value is not None:
            catalog = catalog.search(Key(key) == value)
    return catalog


def stop_document(run) -> dict[str, Any] | None:
    """The run's stop document, or None while it is running (or if it died)."""
    try:
        return run.stop
    except KeyError:
        return None


MISSED_BEATS = 3  # a run whose writer missed this many heartbeats is orphaned


def status(run, now: float | None = None) -> str:
    """The run's exit status; "running" while its writer's heartbeat is fresh,
    "orphaned" when the writer is gone without a stop document (killed, crashed): at
    once if it wrote from this host and its process is gone, else after three missed
    beats."""
    stop = stop_document(run)
    if stop is not None:
        return stop.get("exit_status", "unknown")
    beat = run.metadata.get("heartbeat") or {}
    last, interval = beat.get("last_seen"), beat.get("interval")
    if last is None or interval is None:
        return "unclosed"  # written before heartbeats: cannot tell
    if writer_gone(beat):
        return "orphaned"
    now = time.time() if now is None else now
    return "orphaned" if now - last > MISSED_BEATS * interval + 1.0 else "running"


def writer_gone(beat: Mapping[str, Any]) -> bool:
    """The heartbeat's writer ran on this host and that process no longer exists."""
    import socket

    import psutil

    pid, started = beat.get("pid"), beat.get("started")
    if beat.get("host") != socket.gethostname() or not isinstance(pid, int) or not started:
        return False  # another host (or an older writer): only missed beats tell
    try:
        return abs(psutil.Process(pid).create_time() - float(started)) > 1.0  # pid reused
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def orphaned_in(run, now: float | None = None) -> float:
    """Seconds until a running run counts as orphaned if its writer misses its beats."""
    beat = run.metadata.get("heartbeat") or {}
    now = time.time() if now is None else now
    return max(0.0, beat["last_seen"] + MISSED_BEATS * beat["interval"] + 1.0 - now)


def chain_of(catalog, run) -> list:
    """The runs of ``run``'s acquisition, oldest first: a run lost with its process and
    the runs that ``ssb attach`` continued it in (linked by ``continues``)."""
    from tiled.queries import Key

    sequence_id = run.start.get("sequence_id")
    if not sequence_id:
        return [run]
    found = catalog.search(Key("sequence_id") == sequence_id)
    return sorted((found[uid] for uid in list(found)), key=lambda r: r.start["time"])


def in_instrument_order(data):
    """A samples table in the order the instrument logged it (by ``seq``). Writers store
    pages as they collect them; a continuation run catching up on a backlog while it
    follows the live protocol stores some pages out of that order."""
    import numpy as np

    if "seq" not in data or data.sizes.get("time", 0) < 2:
        return data
    seq = data["seq"].values
    if (np.diff(seq) >= 0).all():
        return data
    return data.isel(time=np.argsort(seq, kind="stable"))


class _ChainStream:
    def __init__(self, parts: list):
        self.parts = parts

    @property
    def descriptors(self) -> list:
        return [d for part in self.parts for d in part.descriptors]

    @property
    def metadata(self):
        """The newest part's: its descriptors' configuration (a detector's axis)."""
        return self.parts[-1].metadata

    def __contains__(self, key: str) -> bool:
        return any(key in part for part in self.parts)

    def read(self, *args, **kwargs):
        import xarray as xr

        data = [part.read(*args, **kwargs) for part in self.parts]
        data = [d for d in data if d.sizes.get("time", 0)] or data[:1]
        return xr.concat(data, dim="time") if len(data) > 1 else data[0]


class Chain:
    """Linked runs read as one experiment: the first run's start, the last one's stop,
    each stream the runs' streams one after the other (reports, exports, studies)."""

    def __init__(self, runs: list):
        self.runs = runs

    @property
    def start(self):
        return self.runs[0].start

    @property
    def stop(self):
        return self.runs[-1].stop

    @property
    def metadata(self):
        return self.runs[-1].metadata

    def __iter__(self):
        seen: dict[str, None] = {}
        for run in self.runs:
            seen.update(dict.fromkeys(run))
        return iter(seen)

    def __contains__(self, stream: str) -> bool:
        return any(stream in run for run in self.runs)

    def __getitem__(self, stream: str) -> _ChainStream:
        parts = [run[stream] for run in self.runs if stream in run]
        if not parts:
            raise KeyError(stream)
        return _ChainStream(parts)

    @property
    def primary(self) -> _ChainStream:
        return self["primary"]


def whole(catalog, run):
    """``run``, or the :class:`Chain` of its acquisition if it was continued."""
    runs = chain_of(catalog, run)
    return Chain(runs) if len(runs) > 1 else run


def _when(start: Mapping[str, Any]) -> str:
    return datetime.datetime.fromtimestamp(start.get("time", 0)).strftime("%Y-%m-%d %H:%M")


def summarize(runs: Iterable[Any]) -> list[dict[str, Any]]:
    rows = []
    for run in runs:
        start, stop = run.start, stop_document(run) or {}
        rows.append(
            {
                "scan_id": start.get("scan_id", ""),
                "uid": start["uid"][:8],
                "time": _when(start),
                "plan": start.get("plan_name", ""),
                "cell_id": start.get("cell_id", ""),
                "purpose": start.get("purpose", ""),
                "status": status(run),
                "events": sum((stop.get("num_events") or {}).values()),
                "continues": start.get("continues", "")[:8],  # attach's link in a chain
                "notes": notes(stop),
            }
        )
    return rows


def notes(stop: Mapping[str, Any], width: int = 60) -> str:
    """What a person must know of a run's end in one short cell: lost data first."""
    counts = stop.get("num_events") or {}
    text = shown(stop.get("reason") or "")
    if counts.get("data_loss"):
        text = "DATA LOST: " + text
    return text if len(text) <= width else text[: width - 3] + "..."


def shown(text: Any, width: int = 200) -> str:
    """Text from a catalog as a terminal may print it: printable characters only (no
    escape sequences, no newlines), at most ``width`` of them."""
    text = "".join(c if c.isprintable() else "?" for c in str(text))
    return text if len(text) <= width else text[: width - 3] + "..."


def latest(catalog, limit: int) -> list[Any]:
    """The ``limit`` most recent runs, newest first."""
    count = len(catalog)
    return [catalog[-k] for k in range(1, min(limit, count) + 1)]


def format_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no runs match"
    columns = list(rows[0])
    cells = [{c: shown(r[c], 60) for c in columns} for r in rows]
    widths = {c: max(len(c), *(len(r[c]) for r in cells)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines = [lines[0].rstrip()]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in columns).rstrip() for r in cells]
    return "\n".join(lines)


def describe(run) -> str:
    """Metadata, streams (with units and row counts) and outcome of one run."""
    start, stop = run.start, stop_document(run) or {}
    lines = [f"run {start['uid']}  scan_id {start.get('scan_id')}  {_when(start)}"]
    for key in (
        "plan_name",
        "plan_args",
        "purpose",
        "operator",
        "cell_id",
        "rig_prefix",
        "continues",
    ):
        if key in start:
            lines.append(f"  {key}: {start[key]}")
    cell = start.get("cell") or {}
    for key, value in cell.items():
        lines.append(f"  cell.{key}: {value}")
    outcome = stop.get("exit_status") or f"{status(run)} (no stop document)"
    reason = stop.get("reason")
    lines.append(f"  exit_status: {outcome}" + (f" ({reason})" if reason else ""))
    for name in run:
        stream = run[name]
        keys = stream.descriptors[0]["data_keys"] if stream.descriptors else {}
        rows = (stop.get("num_events") or {}).get(name, "?")
        lines.append(f"stream {name}: {rows} events")
        for key, info in keys.items():
            unit = info.get("units") or ""
            lines.append(f"  {key:32s} {info.get('dtype', ''):8s} {unit}")
    return "\n".join(shown(line, 1000) for line in lines)
