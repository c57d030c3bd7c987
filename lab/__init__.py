"""A lab of several rigs on one machine: IOCs, PostgreSQL, a Tiled server, Redis, one
bluesky-queueserver RE Manager per rig behind bluesky-httpserver, a supervisor and a
live overview page. ``ssb lab up | status | down``; :func:`connect` and
:func:`lab_catalog` for clients."""

from .client import connect, lab_catalog

__all__ = ["connect", "lab_catalog"]
