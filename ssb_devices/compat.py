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
- **Progress of a status** (ophyd). ``DeviceStatus.watch(func)`` keeps ``func`` in
  ``_watchers``; ophyd calls it only from its own statuses' update paths and offers no
  public way for a status of ours (a protocol's steps, a step's time, the rig's clock) to
  report progress to it: :func:`tell_watchers` calls them.
- **The shared client context** (caproto's pyepics layer, under ophyd): whether one was
  made is only known from ``pyepics_compat._make_context``'s cache
  (:func:`shared_context_made`).
- **Closing before the thread pools stop** (CPython): ``threading._register_atexit`` is
  the hook ``concurrent.futures`` itself uses (:func:`before_thread_pools_stop`).
- **A move that completes on put-completion** (ophyd). The press overrides
  ``PVPositioner``'s move hooks ``_setup_move`` and ``_done_moving`` (its designed
  override points, in ``press.py``); what else it needs of the positioner's bookkeeping
  is here: mark the move started (``_move_changed``), finish it (``_done_moving``), drop
  the done subscription of a move that failed (``_reset_sub``), and the user's limits
  (``_limits``).
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


def tell_watchers(status: Any, **progress: Any) -> None:
    """Report ``progress`` (name, current, initial, target, unit) to whatever watches
    ``status`` (bluesky's progress bars, through ``DeviceStatus.watch``)."""
    for watcher in list(status._watchers):
        watcher(**progress)


def shared_context_made() -> bool:
    """ophyd's shared caproto client context exists (made at the first PV)."""
    from caproto.threading import pyepics_compat

    return bool(pyepics_compat._make_context.cache_info().currsize)


def before_thread_pools_stop(func: Callable[[], None]) -> None:
    """Run ``func`` at interpreter exit before the thread pools stop (their hooks run in
    the reverse order of registration, so this runs first)."""
    threading._register_atexit(func)  # type: ignore[attr-defined]  # not in the stubs


def mark_moving(positioner: Any) -> None:
    """The positioner's move has started (its done signal reads "moving")."""
    positioner._move_changed(value=1 - positioner.done_value)


def finish_move(positioner: Any, success: bool) -> None:
    """End the positioner's move bookkeeping, as a done signal would."""
    positioner._done_moving(success=success)


def drop_done_subscription(positioner: Any) -> None:
    """Forget the callbacks of the move in progress (its status is finished elsewhere)."""
    positioner._reset_sub(positioner._SUB_REQ_DONE)


def user_limits(positioner: Any) -> tuple[float, float] | None:
    """The limits the positioner was made with (``limits=``), if any."""
    limits = positioner._limits
    return None if limits is None else (float(limits[0]), float(limits[1]))
