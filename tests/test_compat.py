"""The library internals ssb_devices.compat leans on, and why it still must: each test
fails when upstream changes under the workaround (or makes it unnecessary)."""

from __future__ import annotations

import pytest
from ophyd import EpicsSignal

import ssb_devices  # noqa: F401  (ophyd on caproto's client, as the devices run it)

pytestmark = pytest.mark.network


def test_ophyd_still_reports_a_refused_put_as_done(ioc):
    """Why ``write_with_status`` exists: ophyd's put-completion drops the IOC's answer,
    so a put the IOC refused (ECA_PUTFAIL) completes as a success. When this fails,
    ophyd passes the status on: use ``EpicsSignal.set`` and drop the workaround."""
    ramp = EpicsSignal(ioc.prefix + "Press:RampRate-SP", name="ramp", put_complete=True)
    try:
        ramp.wait_for_connection(timeout=10)
        status = ramp.set(-1.0)  # refused: a negative ramp rate
        status.wait(10)
        assert status.success
        assert ioc.enum("Press:Refusal-RB") == "LIMIT"  # yet the IOC refused it
    finally:
        ramp.destroy()  # a PV left behind is searched for again once its IOC is gone


def test_the_compat_pv_still_wraps_a_caproto_pv_whose_write_gives_the_answer(ioc):
    """What ``write_with_status`` reaches: the control layer's PV (``_write_pv``) and the
    caproto PV inside it (``_caproto_pv``) with ``write(..., notify, callback)``."""
    import inspect

    ramp = EpicsSignal(ioc.prefix + "Press:RampRate-SP", name="ramp")
    try:
        ramp.wait_for_connection(timeout=10)
        raw = ramp._write_pv._caproto_pv
        assert {"wait", "callback", "timeout", "notify"} <= set(
            inspect.signature(raw.write).parameters
        )
        assert ramp._write_pv.typefull is not None and isinstance(
            ramp._write_pv.enum_strs, tuple | list | type(None)
        )
    finally:
        ramp.destroy()


def test_caproto_still_waits_for_a_circuit_inside_its_search_thread():
    """Why tests/conftest.py sets CAPROTO_DEFAULT_TIMEOUT: the search-results thread
    itself opens new circuits (``get_circuit_manager``), and a circuit waits for its
    handshake for the global default timeout. When this fails upstream has moved the
    wait out of that thread: drop the setting."""
    import inspect

    from caproto.threading.client import Context, VirtualCircuitManager

    assert "self.get_circuit_manager(" in inspect.getsource(Context._process_search_results_loop)
    timeout = inspect.signature(VirtualCircuitManager.__init__).parameters["timeout"]
    assert timeout.default == 10.0  # the setting took: handshakes get 10 s here
