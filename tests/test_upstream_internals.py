"""Every name below a library's public API that the suite uses, checked by name, with the
place that uses it and why (no IOC, no network: the shapes only). Each test fails when
an upstream release moves what we lean on; the libraries are capped in pyproject.toml,
and a failure here is the signal to revisit the workaround, not to raise the cap.

The workarounds that need a live IOC to show their reason are in tests/test_compat.py.
"""

from __future__ import annotations

import inspect
import threading

import pytest


def test_ophyd_positioner_hooks_the_press_overrides():
    """ssb_devices/press.py and compat.py: the press's move completes on the IOC's
    put-completion, so it overrides PVPositioner's ``_setup_move`` and ``_done_moving``,
    marks the move with ``_move_changed``, finishes the status with
    ``_reset_sub(_SUB_REQ_DONE)`` and reads the travel limits from ``_limits``."""
    from ophyd import PVPositioner
    from ophyd.ophydobj import OphydObject
    from ophyd.positioner import PositionerBase

    for name in ("_setup_move", "_done_moving", "_move_changed"):
        assert callable(getattr(PVPositioner, name)), name
    assert "success" in inspect.signature(PositionerBase._done_moving).parameters
    assert "value" in inspect.signature(PVPositioner._move_changed).parameters
    assert callable(OphydObject._reset_sub)
    assert hasattr(PVPositioner, "_SUB_REQ_DONE")
    assert "self._limits" in inspect.getsource(PVPositioner.__init__)


def test_ophyd_status_keeps_its_watchers_in_a_list():
    """ssb_devices/compat.py, for rig.py, cycler.py and sequencer.py: a status's progress
    (a protocol's step, a step's time) is reported to ``DeviceStatus._watchers``, the
    list ``watch()`` appends to, so that bluesky's progress bar shows it."""
    from ophyd.status import DeviceStatus

    source = inspect.getsource(DeviceStatus.watch)
    assert "self._watchers.append" in source
    assert "self._watchers = []" in inspect.getsource(DeviceStatus.__init__)


def test_caproto_keeps_one_shared_pyepics_context_behind_a_cache():
    """ssb_devices/compat.py: ``disconnect()`` closes ophyd's shared client context
    only if one was made, which ``pyepics_compat._make_context``'s cache tells."""
    from caproto.threading import pyepics_compat

    assert "currsize" in pyepics_compat._make_context.cache_info()._fields  # an lru_cache
    assert "_make_context()" in inspect.getsource(pyepics_compat.PV.default_context)
    assert callable(pyepics_compat.PV.default_context)


def test_cpython_still_offers_the_thread_pools_atexit_hook():
    """ssb_devices/compat.py: the client context is closed before the interpreter
    stops its thread pools, through the hook concurrent.futures itself uses."""
    assert callable(threading._register_atexit)  # type: ignore[attr-defined]
    import concurrent.futures.thread as pools

    assert "threading._register_atexit" in inspect.getsource(pools)


def test_caproto_server_internals_the_ioc_context_overrides():
    """ioc/server/context.py: the IOC's crash fixes for clients that vanish mid-traffic
    override ``VirtualCircuit._on_disconnect`` (and take ``_sub_task``),
    ``get_from_sub_queue`` and ``Context._subscription_queue_iteration`` /
    ``_subscription_queue_send``, with their present signatures."""
    from caproto.asyncio.server import Context, VirtualCircuit

    assert inspect.iscoroutinefunction(VirtualCircuit._on_disconnect)
    assert "_sub_task" in inspect.getsource(VirtualCircuit)
    assert list(inspect.signature(VirtualCircuit.get_from_sub_queue).parameters) == [
        "self",
        "timeout",
    ]
    assert list(inspect.signature(Context._subscription_queue_iteration).parameters) == [
        "self", "sub_specs", "metadata", "values", "flags", "sub",
    ]  # fmt: skip
    assert callable(Context._subscription_queue_send)


def test_bluesky_persistent_dict_writes_through_a_finalizer():
    """plans/compat.py: ``Session.close`` writes ``RE.md`` to disk at once by calling
    ``PersistentDict._finalizer`` (a ``weakref.finalize``), not at garbage collection."""
    from bluesky.utils import PersistentDict

    assert "self._finalizer = weakref.finalize(" in inspect.getsource(PersistentDict.__init__)


def test_tiled_writer_buffers_rows_per_stream_in_its_run_writer():
    """plans/compat.py: rows are flushed on a timer with the steps TiledWriter takes at a
    run's stop (``_internal_data_cache``, ``_write_internal_data(rows, desc_node=)``,
    ``_desc_nodes``), and each run's writer is caught in ``TiledWriter._factory``."""
    from bluesky_tiled_plugins.writing.tiled_writer import TiledWriter, _RunWriter

    assert callable(TiledWriter._factory)
    source = inspect.getsource(_RunWriter)
    for name in ("self._internal_data_cache", "self._desc_nodes"):
        assert name in source, name
    assert "desc_node" in inspect.signature(_RunWriter._write_internal_data).parameters


def test_tiled_one_shot_cached_map_keeps_its_mapping_under_a_mangled_name():
    """analysis/compat.py: a copy of tiled's structure-client map with BlueskyRun in it
    is made through ``OneShotCachedMap.__mapping`` (no public copy or constructor from
    another map)."""
    from tiled.utils import OneShotCachedMap

    mapping = OneShotCachedMap(a=lambda: 1)
    assert mapping._OneShotCachedMap__mapping == {"a": mapping._OneShotCachedMap__mapping["a"]}
    assert mapping["a"] == 1


def test_a_refused_aioca_put_still_passes_ophyd_asyncs_retry_block():
    """ssb_async/compat.py: ``SignalW.set`` puts inside stamina's retry block (timeouts
    only); aioca raises a refused put as a falsy ``CANothing``, which the block's
    ``concurrent.futures.Future`` does not re-raise. When this fails, upstream re-raises
    it: ``signal.set`` then reports refusals and ``answered_put`` can go."""
    import asyncio

    from aioca import CANothing
    from ophyd_async.core import SignalW
    from stamina import retry_context

    assert not bool(CANothing("SSB:Press:Mode-SP", 160))  # ECA_PUTFAIL, falsy
    assert "retry_context(" in inspect.getsource(SignalW.set)

    async def refused_put():
        async for attempt in retry_context(on=asyncio.TimeoutError, attempts=1):
            with attempt:
                raise CANothing("SSB:Press:Mode-SP", 160)
        return "passed as a success"

    assert asyncio.run(refused_put()) == "passed as a success"
    from ophyd_async.core import soft_signal_rw

    signal = soft_signal_rw(float)  # answered_put reaches the transport as set() does
    assert inspect.iscoroutinefunction(signal._connector.backend.put)
    assert "self._connector.backend.put(value)" in inspect.getsource(SignalW.set)


# Private names of each library, and the one module (per package) allowed to use them.
PRIVATE = {
    "_finalizer": "plans/compat.py",
    "_internal_data_cache": "plans/compat.py",
    "_write_internal_data": "plans/compat.py",
    "_desc_nodes": "plans/compat.py",
    "_OneShotCachedMap__mapping": "analysis/compat.py",
    "_watchers": "ssb_devices/compat.py",
    "_make_context": "ssb_devices/compat.py",
    "_register_atexit": "ssb_devices/compat.py",
    "_caproto_pv": "ssb_devices/compat.py",
    "_move_changed": "ssb_devices/compat.py",
    "_reset_sub": "ssb_devices/compat.py",
    "_SUB_REQ_DONE": "ssb_devices/compat.py",
    "_limits": "ssb_devices/compat.py",
    "_connector": "ssb_async/compat.py",
}


@pytest.mark.parametrize("name", sorted(PRIVATE))
def test_each_private_name_is_used_in_its_compat_module_only(name):
    """A workaround lives in one place: its library's compat module; a private name that
    turns up elsewhere fails here, and a rename upstream fails the tests above."""
    import re
    from pathlib import Path

    root = Path(__file__).parent.parent
    used = re.compile(rf"[.\"']{name}\b")  # an attribute, or its name in a getattr
    users = sorted(
        str(path.relative_to(root))
        for folder in ("ssb_devices", "ssb_async", "plans", "analysis", "lab", "contract")
        for path in (root / folder).rglob("*.py")
        if used.search(path.read_text())
    )
    assert users == [PRIVATE[name]]


def test_a_renamed_internal_fails_loudly_where_it_is_used():
    """A private name that is gone must not be skipped in silence: ``getattr(md,
    "_finalizer", None)`` would leave RE.md unwritten without a word; the compat module
    calls it, so a rename raises at the session's close."""
    from pathlib import Path

    source = (Path(__file__).parent.parent / "plans" / "compat.py").read_text()
    assert "md._finalizer()" in source and '"_finalizer", None' not in source
