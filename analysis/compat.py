"""The one place the analysis reaches below tiled's public API, with its reason.
tests/test_upstream_internals.py checks the name used here; tiled is capped in
pyproject.toml.

- **A structure-client map that copies whole** (tiled): bluesky-tiled-plugins sets the
  run class on a ``copy.copy`` of tiled's ``OneShotCachedMap``, whose copy shares its
  entries; tiled offers no copy nor a constructor from another map, so the entries are
  reached under their mangled name ``_OneShotCachedMap__mapping``.
"""

from __future__ import annotations


def structure_clients():
    """tiled's structure clients for one catalog, copied whole when copied.

    bluesky-tiled-plugins' ``catalog.v1``, ``.v2`` and ``run.v2`` set the run class on a
    ``copy.copy`` of this map, and ``copy.copy`` of tiled's map shares its entries: one
    ``catalog.v1[uid]`` anywhere in a process would turn every later run of every catalog
    into the v2 layout (``stream["data"]["xrd_image"]`` instead of ``stream["xrd_image"]``).
    """
    from bluesky_tiled_plugins import BlueskyRun
    from tiled.client.container import DEFAULT_STRUCTURE_CLIENT_DISPATCH, Container
    from tiled.utils import OneShotCachedMap

    class StructureClients(OneShotCachedMap):
        __slots__ = ()

        def __copy__(self) -> StructureClients:
            twin = StructureClients()
            twin._OneShotCachedMap__mapping = dict(self._OneShotCachedMap__mapping)
            return twin

    Container.discover_clients_from_entrypoints()
    clients = StructureClients()
    clients._OneShotCachedMap__mapping = dict(
        DEFAULT_STRUCTURE_CLIENT_DISPATCH["numpy"]._OneShotCachedMap__mapping
    )
    clients.set("BlueskyRun", lambda: BlueskyRun)  # v3 runs as v3, whatever came before
    return clients
