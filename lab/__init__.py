"""A lab of several rigs on one machine: IOCs, PostgreSQL, a Tiled server, Redis, one
bluesky-queueserver RE Manager per rig behind bluesky-httpserver, a supervisor and a
live overview page. ``ssb lab up | status | down``; :func:`connect` and
:func:`lab_catalog` for clients (imported when first used)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["connect", "lab_catalog"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import client

    return getattr(client, name)


if TYPE_CHECKING:
    from .client import connect, lab_catalog
