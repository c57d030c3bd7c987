"""Open the run catalog: a local directory (embedded Tiled SQL catalog) or a Tiled server.

Both paths give the same client, a databroker-style ``CatalogOfBlueskyRuns``:
``catalog[-1]``, ``catalog[uid]``, ``catalog.search(Key("cell_id") == "A1")``,
``run.primary.read()`` and ``catalog.v1[...]`` all work on either.

The local catalog keeps its run index in ``catalog.db`` and the event tables in
``tables.db`` (both SQLite, so a second process can read while one writes) and arrays in
``data/``.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

from .compat import structure_clients

CATALOG_ENV = "SSB_CATALOG"
API_KEY_ENV = "SSB_CATALOG_API_KEY"
_ROOT_SPECS = [{"name": "CatalogOfBlueskyRuns", "version": "3.0"}]


def default_location() -> str:
    """``$SSB_CATALOG``, else ``$XDG_DATA_HOME/ssb-bluesky/catalog`` (~/.local/share/...)."""
    if os.environ.get(CATALOG_ENV):
        return os.environ[CATALOG_ENV]
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return str(Path(data_home) / "ssb-bluesky" / "catalog")


def is_server(location: str) -> bool:
    return location.startswith(("http://", "https://"))


def open_catalog(location: str | os.PathLike | None = None, api_key: str | None = None):
    """The catalog at ``location`` (directory or ``http(s)://`` Tiled URL).

    A directory is created and initialised on first use. For a server, the API key
    comes from ``api_key`` or ``$SSB_CATALOG_API_KEY``.
    """
    location = str(location or default_location())
    if is_server(location):
        return _open_server(location, api_key or os.environ.get(API_KEY_ENV))
    return _open_local(Path(location).expanduser())


class CatalogUnreachable(ConnectionError):
    """The catalog's server does not answer; the message says where and what to check."""


REACH_TIMEOUT = 5.0  # s: a catalog server on the lab's network answers well within this


def check_reachable(url: str) -> None:
    """One plain request, no retries: tiled's client retries a refused connection for
    half a minute and then raises a page of traceback; say it in one line instead."""
    import httpx

    try:
        httpx.get(url, timeout=REACH_TIMEOUT, follow_redirects=True)
    except httpx.HTTPError as ex:
        raise CatalogUnreachable(
            f"no catalog server answers at {url} ({type(ex).__name__}: {ex}); is `tiled "
            "serve` (or the lab's data host) running, and is the URL right?"
        ) from None


def _open_server(url: str, api_key: str | None):
    check_reachable(url)  # before tiled is even imported
    from tiled.client import Context, from_context

    context, path = Context.from_any_uri(url, api_key=api_key)
    try:
        return from_context(context, structure_clients(), node_path_parts=path)
    except Exception:  # e.g. a wrong API key: do not leave the connection open
        context.close()
        raise


def _open_local(directory: Path):
    from tiled.catalog import from_uri
    from tiled.client import Context, from_context
    from tiled.server.app import build_app

    logging.getLogger("tiled.server.app").setLevel(logging.WARNING)  # no banner per open

    (directory / "data").mkdir(parents=True, exist_ok=True)
    index = directory / "catalog.db"
    adapter = from_uri(
        f"sqlite:///{index}",
        writable_storage=[str(directory / "data"), f"sqlite:///{directory / 'tables.db'}"],
        init_if_not_exists=not index.exists(),  # initialising spawns a process: once only
        specs=_ROOT_SPECS,
    )
    with warnings.catch_warnings():  # tiled's in-process transport; not the user's concern
        warnings.filterwarnings("ignore", message=".*starlette.testclient.*")
        return from_context(Context.from_app(build_app(adapter)), structure_clients())
