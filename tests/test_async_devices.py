"""The ophyd-async devices (ssb_async): in mock mode, no IOC (what a move sends, what is
refused before anything is sent, the contract's enums and PV names); then against a
real IOC over Channel Access (marked network)."""

from __future__ import annotations

import asyncio

import pytest
from ophyd_async.core import (
    SignalRW,
    callback_on_mock_put,
    get_mock_put,
    init_devices,
    set_mock_value,
)

from ssb_async import LoadCell, Press, PressMode, Rig, YesNo
from ssb_async.rig import PressureRejected
from ssb_contract.pvs import RIG_PVS
from ssb_contract.states import PRESS_MODES


def run(coroutine):
    return asyncio.run(coroutine)


async def mock_rig(prefix: str = "SSB:") -> Rig:
    async with init_devices(mock=True):
        rig = Rig(prefix)
    set_mock_value(rig.press.mode, PressMode.PRESSURE)
    set_mock_value(rig.press.max_pressure, 200.0)
    return rig


def test_a_move_is_one_put_with_completion_and_the_readback_follows():
    async def main():
        rig = await mock_rig()
        await rig.press.set(50.0)
        get_mock_put(rig.press.setpoint).assert_called_once_with(50.0)
        return await rig.press.readback.get_value(), await rig.press.locate()

    value, location = run(main())
    assert value == 50.0 and location == {"setpoint": 50.0, "readback": 50.0}


@pytest.mark.parametrize(
    ("mode", "target", "says"),
    [
        (PressMode.OFF, 50.0, "in Off mode; set its mode to Pressure"),
        (PressMode.GAP, 50.0, "in Gap mode"),
        (PressMode.PRESSURE, 250.0, "250 MPa is outside the IOC's limits 0..200 MPa"),
        (PressMode.PRESSURE, -1.0, "outside the IOC's limits"),
        (PressMode.PRESSURE, float("nan"), "not a finite number"),
    ],
)
def test_what_the_ioc_would_refuse_is_refused_before_anything_is_sent(mode, target, says):
    async def main():
        rig = await mock_rig()
        set_mock_value(rig.press.mode, mode)
        with pytest.raises(PressureRejected, match=says):
            await rig.press.set(target)
        return get_mock_put(rig.press.setpoint).call_count

    assert run(main()) == 0


def test_a_put_the_ioc_fails_fails_the_move_with_its_reason():
    async def main():
        rig = await mock_rig()

        def refuse(value):
            raise RuntimeError(f"ECA_PUTFAIL: {value:g} MPa refused (the IOC's words)")

        callback_on_mock_put(rig.press.setpoint, refuse)
        with pytest.raises(RuntimeError, match="the IOC's words"):
            await rig.press.set(20.0)

    run(main())


def test_a_refusal_over_channel_access_fails_the_move_with_the_iocs_code_and_words():
    """aioca reports a refused put with a falsy CANothing; the move still fails, saying
    what the IOC put on the group's refusal PVs."""
    from aioca import CANothing

    async def main():
        rig = await mock_rig()
        set_mock_value(rig.press.refusal, "STATE")
        set_mock_value(rig.press.refusal_message, "SSB:Press:Pressure-SP refused: busy")

        def refuse(value):
            raise CANothing("SSB:Press:Pressure-SP", 160)  # ECA_PUTFAIL

        callback_on_mock_put(rig.press.setpoint, refuse)
        with pytest.raises(PressureRejected, match="STATE: SSB:Press:Pressure-SP refused: busy"):
            await rig.press.set(20.0)
        callback_on_mock_put(rig.press.mode, refuse)
        with pytest.raises(PressureRejected, match="STATE"):
            await rig.press.set_mode(PressMode.OFF)

    run(main())


def test_the_rig_reads_pressure_force_and_time_and_configures_the_press():
    async def main():
        rig = await mock_rig()
        set_mock_value(rig.press.readback, 99.5)
        set_mock_value(rig.load_cell.force, 7.8)
        set_mock_value(rig.clock.time, 1234.0)
        return await rig.read(), await rig.read_configuration()

    reading, configuration = run(main())
    values = {key: value["value"] for key, value in reading.items()}
    assert values["rig-press"] == 99.5  # a movable reads as itself
    assert values["rig-load_cell-force"] == 7.8 and values["rig-clock-time"] == 1234.0
    assert configuration["rig-press-mode"]["value"] == PressMode.PRESSURE
    assert configuration["rig-press-max_pressure"]["value"] == 200.0


def test_the_enums_are_the_contracts():
    assert [m.value for m in PressMode] == list(PRESS_MODES)
    assert [v.value for v in YesNo] == ["No", "Yes"]


def test_every_pv_the_devices_name_is_a_rig_pv_and_writes_go_to_writable_ones():
    """As tests/test_contract.py does for the ophyd devices, from the devices' own
    declarations (each signal's PvSuffix): a PV the contract does not list, or a write to
    a read-only one, fails here."""
    import typing

    from ophyd_async.core import TriggerableCommand
    from ophyd_async.epics.core import PvSuffix

    from ssb_async.rig import RigClock

    checked = 0
    for cls, group in ((Press, "Press:"), (LoadCell, "LC:"), (RigClock, "Rig:")):
        for name, hint in typing.get_type_hints(cls, include_extras=True).items():
            suffix = next(
                (m for m in getattr(hint, "__metadata__", ()) if isinstance(m, PvSuffix)), None
            )
            if suffix is None:
                continue
            kind = typing.get_origin(hint.__origin__) or hint.__origin__
            read = group + suffix.read_suffix
            write = group + (suffix.write_suffix or suffix.read_suffix)
            writes = kind in (SignalRW, TriggerableCommand)
            assert read in RIG_PVS, (cls.__name__, name, read)
            if writes:
                assert write in RIG_PVS and RIG_PVS[write].writable, (cls.__name__, name, write)
            checked += 1
    assert checked >= 15


@pytest.mark.network
def test_the_async_rig_presses_a_real_ioc_over_channel_access(ioc):
    """Against the IOC: the move completes on its put-completion at the settled pressure;
    what the IOC refuses fails the put, with its code and reason (through
    ssb_async.compat: ophyd-async's own ``set`` lets a refused put pass, shown here)."""
    from aioca import purge_channel_caches

    from ssb_async.compat import PutRefused, answered_put

    async def main():
        async with init_devices():
            rig = Rig(ioc.prefix)
        await rig.press.set_mode(PressMode.PRESSURE)
        await rig.press.set(20.0, timeout=60.0)
        settled = await rig.press.settled.get_value()
        pressure = await rig.press.readback.get_value()
        with pytest.raises(PressureRejected, match=r"OWNED: .*would release the stack"):
            await rig.press.set_mode(PressMode.OFF)  # a held stack needs an override
        await rig.press.mode.set(PressMode.OFF)  # upstream: the same refusal, no error
        with pytest.raises(PutRefused, match="Pressure-SP: the IOC refused the put"):
            await answered_put(rig.press.setpoint, 500.0, timeout=10.0)  # past its limit
        mode = await rig.press.mode.get_value()
        purge_channel_caches()  # close the channels in this loop, before it ends
        return settled, pressure, mode

    settled, pressure, mode = run(main())
    assert settled == YesNo.YES and abs(pressure - 20.0) < 1.0
    assert mode == PressMode.PRESSURE  # neither refused change took effect
    assert ioc.enum("Press:Refusal-RB") == "LIMIT"
