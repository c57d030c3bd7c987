"""A client's two doors into a running lab, with its addresses and keys read from the lab
directory (``$SSB_LAB``, else ~/.local/share/ssb-bluesky/lab): on the lab machine, or on
one with a copy of ``lab.json`` and ``keys/`` and an SSH tunnel to the ports (the lab
listens on 127.0.0.1 only).

    from ssb_lab import connect, lab_catalog
    rig2 = connect(2)          # bluesky-queueserver-api over HTTP, with the operator's key
    catalog = lab_catalog()    # the Tiled server on PostgreSQL, with its API key
"""

from __future__ import annotations

import os
from pathlib import Path

from .layout import Layout, default_directory


def _layout(directory: str | os.PathLike | None) -> Layout:
    from .stack import LabError, layout_of, read_state

    directory = Path(directory) if directory else default_directory()
    state = read_state(directory)
    if state is None:
        raise LabError(f"no lab in {directory}: start one (`ssb lab up`) or set SSB_LAB")
    return layout_of(directory, state)


def connect(rig: int, directory: str | os.PathLike | None = None, *, observer: bool = False):
    """queueserver-api's HTTP client of rig number ``rig``, authorised with the lab's
    operator key, or with the observer's (read only) when ``observer``."""
    from bluesky_queueserver_api.http import REManagerAPI

    from .http_access import KEY_FILES

    layout = _layout(directory)
    if not 1 <= rig <= layout.rigs:
        raise ValueError(f"the lab has rigs 1 to {layout.rigs}, not {rig}")
    api = REManagerAPI(http_server_uri=layout.rig(rig).http_uri)
    name = KEY_FILES["observer" if observer else "operator"]
    api.set_authorization_key(api_key=(layout.keys / name).read_text().strip())
    return api


def lab_catalog(directory: str | os.PathLike | None = None):
    """The lab's catalog (every rig's runs; search by ``rig``, ``cell_id``, ``study``)."""
    from ssb_analysis.catalog import open_catalog

    layout = _layout(directory)
    return open_catalog(layout.tiled_uri, api_key=layout.key("tiled-api-key"))
