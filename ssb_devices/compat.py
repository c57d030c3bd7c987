"""The one place the devices reach below a library's public API, each with its reason.

tests/test_compat.py fails when an upstream change moves what is used here; the
versions are capped in pyproject.toml.

- **A put-completion's status** (caproto's threading client, under ophyd's caproto
  control layer). ophyd's ``EpicsSignal.set`` and pyepics-compatible ``PV.put`` call the
  completion callback without the ``WriteNotifyResponse``, so a put the IOC answers with
  ``ECA_PUTFAIL`` looks like success (ophyd 1.11: ``_caproto_shim.PV.put``; caproto 1.3:
  ``pyepics_compat.PV.put`` drops ``cmd.status``). We write through the caproto PV that
  the compat PV wraps (``_caproto_pv``), whose own ``write`` hands the callback the
  response.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

import caproto

Response = Any  # caproto's WriteNotifyResponse


def write_with_status(
    signal, value, on_response: Callable[[bool, Response], None], timeout: float | None
) -> None:
    """Put ``value`` to ``signal``'s write PV asking for completion; ``on_response(ok,
    response)`` runs in a thread of its own when the IOC answers: never on caproto's
    callback thread, which every later connection and monitor callback of the client
    waits behind (what the status's callbacks do may block). ``timeout`` None: wait for
    as long as the IOC takes (a press settling)."""
    pv = signal._write_pv  # ophyd: the control layer's PV object of the signal
    raw = getattr(pv, "_caproto_pv", None)
    if raw is None:
        raise RuntimeError(
            f"{signal.name}: put status needs ophyd's caproto control layer "
            f"(OPHYD_CONTROL_LAYER=caproto); this is {type(pv).__module__}"
        )
    signal.wait_for_connection(timeout=signal.connection_timeout)

    def answered(response) -> None:  # on caproto's callback thread: hand it on at once
        ok = bool(response.status.success)
        threading.Thread(
            target=on_response, args=(ok, response), daemon=True, name=f"answer {signal.name}"
        ).start()

    raw.write(_wire_value(pv, value), wait=False, notify=True, callback=answered, timeout=timeout)


def _wire_value(pv, value) -> tuple | bytes:
    """What pyepics_compat.PV.put sends for ``value``: an enum name as its index, text as
    NUL-terminated bytes for a CHAR waveform, a scalar as a 1-tuple."""
    if pv.typefull in caproto.enum_types and isinstance(value, str):
        try:
            value = pv.enum_strs.index(value)
        except ValueError:
            raise ValueError(f"{value!r} is not one of {list(pv.enum_strs)}") from None
    if isinstance(value, str):
        if pv.typefull in caproto.char_types:
            return value.encode("utf-8") + b"\0"
        return (value.encode("utf-8"),)
    if isinstance(value, bytes):
        return value
    if isinstance(value, Iterable):
        return tuple(value)
    return (value,)
