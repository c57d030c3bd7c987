"""Close Channel Access in order when the process ends.

caproto's threading client hands callbacks to thread pools. At interpreter exit Python
shuts those pools down before ``atexit`` handlers run, and a circuit still receiving
then prints a traceback per channel ("cannot schedule new futures after interpreter
shutdown"). Disconnecting the shared client context first, from the hook the pools
themselves use, ends every process cleanly: scripts, ``ssb`` commands, IPython.
"""

from __future__ import annotations

import concurrent.futures.thread  # noqa: F401 - its exit hook first, so that ours runs before it
import logging
import threading


def disconnect() -> None:
    """Close the shared Channel Access client context (ophyd's), if one was made.

    Monitor updates the IOC sent before it heard of the closing still arrive for closed
    channels; caproto logs each as an error with a traceback. They mean nothing at this
    point, so caproto's log is quietened for the shutdown."""
    from caproto.threading import pyepics_compat

    if pyepics_compat._make_context.cache_info().currsize:
        logging.getLogger("caproto").setLevel(logging.CRITICAL)
        pyepics_compat.PV.default_context().disconnect()


def disconnect_at_exit() -> None:
    """Disconnect before the interpreter stops its thread pools (they are stopped in the
    reverse order of registration, so this runs first)."""
    threading._register_atexit(disconnect)  # the hook concurrent.futures uses
