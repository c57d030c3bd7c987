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
import os

from .compat import before_thread_pools_stop, shared_context_made


def use_caprotos_client() -> None:
    """Run ophyd on caproto's client unless the user chose (``OPHYD_CONTROL_LAYER``).

    ophyd takes pyepics whenever it is installed (a beamline's environment often has it,
    and so do our tests, as an ordinary client of the IOC). These devices are built and
    tested on caproto's client: its disconnect events, its put timeouts and the orderly
    exit below. Called before any device exists (``ssb_devices`` is imported)."""
    import ophyd

    if "OPHYD_CONTROL_LAYER" not in os.environ and ophyd.cl.name != "caproto":
        ophyd.set_cl("caproto")


use_caprotos_client()  # on import, before any device of this package is made


def disconnect() -> None:
    """Close the shared Channel Access client context (ophyd's), if one was made.

    Monitor updates the IOC sent before it heard of the closing still arrive for closed
    channels; caproto logs each as an error with a traceback. They mean nothing at this
    point, so caproto's log is quietened for the shutdown."""
    from caproto.threading import pyepics_compat

    if shared_context_made():
        logging.getLogger("caproto").setLevel(logging.CRITICAL)
        pyepics_compat.PV.default_context().disconnect()


def disconnect_at_exit() -> None:
    """Disconnect before the interpreter stops its thread pools (they are stopped in the
    reverse order of registration, so this runs first)."""
    before_thread_pools_stop(disconnect)
