"""One call for an IPython profile: RunEngine, catalog writer, persistent metadata.

    from ssb_plans import start_session
    session = start_session()                      # local catalog (default directory)
    session = start_session("https://tiled.example.org/api", api_key="...")  # a server
    RE, catalog = session.RE, session.catalog
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bluesky import RunEngine
from bluesky.utils import PersistentDict, ProgressBarManager

from ssb_analysis.catalog import default_location, is_server, open_catalog

from .metadata import cell_metadata, validate_run_metadata
from .writer import CatalogWriter


@dataclass
class Session:
    RE: RunEngine
    catalog: Any
    writer: CatalogWriter
    location: str
    tokens: list[int] = field(default_factory=list)

    def describe_experiment(self, *, cell: dict[str, Any], purpose: str, operator: str,
                            **extra: Any) -> None:
        """Set the cell, purpose and operator every following run will carry (kept in
        the persistent ``RE.md``); checked now, so a mistake shows before any run."""
        md = {**cell_metadata(cell), "purpose": purpose, "operator": operator, **extra}
        validate_run_metadata(md)
        self.RE.md.update(md)

    def close(self) -> None:
        for token in self.tokens:
            self.RE.unsubscribe(token)
        self.tokens.clear()


def default_md_dir() -> Path:
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "ssb-bluesky" / "runengine-md"


def start_session(catalog: str | os.PathLike | None = None, *, api_key: str | None = None,
                  md_dir: str | os.PathLike | None = None, live: str | None = None,
                  progress: bool = True, flush_interval: float = 1.0,
                  context_managers: list | None = None) -> Session:
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
    Path(md_dir).mkdir(parents=True, exist_ok=True)
    kwargs = {} if context_managers is None else {"context_managers": context_managers}
    RE = RunEngine(md_validator=validate_run_metadata, **kwargs)
    RE.md = PersistentDict(str(md_dir))
    if progress:
        RE.waiting_hook = ProgressBarManager()
    writer = CatalogWriter(client, flush_interval=flush_interval)
    session = Session(RE=RE, catalog=client, writer=writer, location=location)
    session.tokens.append(RE.subscribe(writer))
    if live:
        from bluesky.callbacks.best_effort import BestEffortCallback

        bec = BestEffortCallback()
        if live != "plot":
            bec.disable_plots()
        session.tokens.append(RE.subscribe(bec))
    return session
