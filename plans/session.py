"""One call for an IPython profile: RunEngine, catalog writer, persistent metadata.

from ssb_plans import start_session
session = start_session()                      # local catalog (default directory)
session = start_session("https://tiled.example.org/api", api_key="...")  # a server
RE, catalog = session.RE, session.catalog
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bluesky import RunEngine
from bluesky.run_engine import RunEngineResult
from bluesky.utils import PersistentDict

from ssb_analysis.catalog import default_location, is_server, open_catalog

from .compat import write_persistent_md_now
from .metadata import cell_metadata, validate_run_metadata
from .progress import ProgressBars
from .writer import HEARTBEAT, CatalogWriter


@dataclass
class Session:
    RE: RunEngine
    catalog: Any
    writer: CatalogWriter
    location: str
    tokens: list[int] = field(default_factory=list)
    md_lock: Any = None

    def describe_experiment(
        self, *, cell: dict[str, Any], purpose: str, operator: str, **extra: Any
    ) -> None:
        """Set the cell, purpose and operator every following run will carry (kept in
        the persistent ``RE.md``); checked now, so a mistake shows before any run."""
        md = {**cell_metadata(cell), "purpose": purpose, "operator": operator, **extra}
        validate_run_metadata(md)
        self.RE.md.update(md)

    def close(self) -> None:
        """Unsubscribe the writer, write ``RE.md`` to disk now (not at garbage collection,
        where a stale copy could overwrite a newer session's scan_id), close the catalog
        connection. Idempotent."""
        for token in self.tokens:
            self.RE.unsubscribe(token)
        self.tokens.clear()
        self.writer.close()
        write_persistent_md_now(self.RE.md)
        if self.md_lock is not None:
            self.md_lock.close()  # releases the flock
            self.md_lock = None
        self.catalog.context.close()  # the HTTP connections (or the in-process app)


def run_uid(result: Any) -> str:
    """The one run's uid from what ``RE(plan)`` returns: a tuple of uids, or a
    ``RunEngineResult`` when the RunEngine is made to return one."""
    uids = result.run_start_uids if isinstance(result, RunEngineResult) else result
    (uid,) = uids
    return str(uid)


def default_md_dir() -> Path:
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "ssb-bluesky" / "runengine-md"


def _lock_md_dir(md_dir: Path):
    """Hold an exclusive lock on the RE.md directory: two sessions writing the same files
    corrupt them (zict), so a second one is refused with what to do instead."""
    md_dir.mkdir(parents=True, exist_ok=True)
    # Beside the directory, not in it: every file in it is an RE.md key.
    lock_path = md_dir.with_name(md_dir.name + ".lock")
    handle = open(lock_path, "w")  # noqa: SIM115 - held for the session
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise RuntimeError(
            f"another session is using {md_dir}: close it (session.close()) or pass "
            "md_dir=... for a separate RE.md"
        ) from None
    return handle


def start_session(
    catalog: str | os.PathLike | None = None,
    *,
    api_key: str | None = None,
    md_dir: str | os.PathLike | None = None,
    live: str | None = None,
    progress: bool = True,
    flush_interval: float = 1.0,
    heartbeat: float = HEARTBEAT,
    context_managers: list | None = None,
) -> Session:
    """A RunEngine writing every run into ``catalog`` as it runs.

    ``catalog``: a directory (default ``$SSB_CATALOG`` or ~/.local/share/ssb-bluesky/
    catalog) or a Tiled server URL (with ``api_key`` or ``$SSB_CATALOG_API_KEY``).
    ``md_dir``: where ``RE.md`` persists (scan_id survives restarts); defaults to the
    catalog directory's ``runengine-md`` for a local catalog.
    ``live``: None, ``"table"`` or ``"plot"`` for a live table (and plots) of each run.
    Every run's start document must describe the cell, purpose and operator: see
    :meth:`Session.describe_experiment`; the RunEngine refuses a run without them before
    it starts.
    """
    location = str(catalog or default_location())
    client = open_catalog(location, api_key=api_key)
    if md_dir is None:
        md_dir = default_md_dir() if is_server(location) else Path(location) / "runengine-md"
    md_lock = _lock_md_dir(Path(md_dir))
    kwargs: dict[str, Any] = {}
    if context_managers is not None:
        kwargs["context_managers"] = context_managers
    RE = RunEngine(md_validator=validate_run_metadata, **kwargs)
    try:
        RE.md = PersistentDict(str(md_dir))  # type: ignore[assignment]  # bluesky's own way
    except Exception:
        md_lock.close()
        raise
    if progress:
        RE.waiting_hook = ProgressBars()  # type: ignore[assignment]  # typed None upstream
    writer = CatalogWriter(client, flush_interval=flush_interval, heartbeat=heartbeat)
    session = Session(RE=RE, catalog=client, writer=writer, location=location, md_lock=md_lock)
    session.tokens.append(RE.subscribe(writer))
    if live:
        from bluesky.callbacks.best_effort import BestEffortCallback

        bec = BestEffortCallback()
        if live != "plot":
            bec.disable_plots()
        session.tokens.append(RE.subscribe(bec))
    return session
