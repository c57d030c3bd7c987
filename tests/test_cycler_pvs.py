"""The cycler's PVs in process: define, start (completes at the step's end), refuse,
trip, and bulk-read the instrument's sample buffer by sequence number."""

import asyncio

import numpy as np
import pytest
from caproto import AlarmSeverity, ChannelType

from ssb_contract.paging import HEADER, PAGES, Lost, Page, Paging, follow
from ssb_contract.records import SAMPLE
from ssb_ioc.server import RigIOC
from ssb_ioc.sim import Rig, load_cell_file


@pytest.fixture
def ioc():
    """A cell under 50 MPa (an unpressed ASSB has so much contact resistance that even
    C/2 runs into the voltage limit)."""
    rig = Rig(load_cell_file("si-nmc"), seed=2)
    rig.set_mode("Pressure")
    rig.set_pressure(50.0)
    rig.advance(5.0)
    ioc = RigIOC(prefix="U:", backend=rig, speed=20000.0)
    asyncio.run(ioc.configure())
    return ioc


async def tick_until(ioc, task, timeout=10.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not task.done():
        assert loop.time() < deadline, "put did not complete"
        await asyncio.sleep(0.005)
        await ioc.tick()
    return task.result()


async def define(cyc, kind, current=0.0, voltage=0.0, terms=()):
    await cyc.step_type.write(kind)
    await cyc.current_sp.write(current)
    if voltage:
        await cyc.voltage_sp.write(voltage)
    slots = [
        (cyc.term1_type, cyc.term1_value),
        (cyc.term2_type, cyc.term2_value),
        (cyc.term3_type, cyc.term3_value),
    ]
    for (type_pv, value_pv), (kind_, value) in zip(slots, terms, strict=False):
        await type_pv.write(kind_)
        await value_pv.write(value)


def test_start_completes_when_the_step_terminates(ioc):
    async def go():
        cyc = ioc.cycler
        await define(cyc, "CC", 1e-3, terms=[("Time", 1800.0)])
        start = asyncio.create_task(cyc.start_cmd.write(1))
        await asyncio.sleep(0)
        await ioc.tick()
        assert cyc.running_rb.value == "Yes"
        await tick_until(ioc, start)
        assert cyc.running_rb.value == "No"
        assert cyc.reason_rb.value == "time 1800 s"
        assert cyc.step_charge_rb.value == pytest.approx(0.5, rel=1e-3)  # 1 mA x 0.5 h

    asyncio.run(go())


def test_a_refused_step_changes_nothing_and_says_why(ioc):
    async def go():
        cyc = ioc.cycler
        await define(cyc, "CV", 1e-3)  # no voltage set: 0 V is outside the window
        with pytest.raises(Exception, match="step refused"):
            await cyc.start_cmd.write(1)
        assert not ioc.backend.cycler.running
        assert "Cyc:Start-Cmd refused" in ioc.msg_rb.value
        with pytest.raises(Exception, match="outside the limits"):
            await cyc.current_sp.write(0.5)  # beyond the channel's 20 mA

    asyncio.run(go())


def test_a_safety_trip_fails_the_start_and_latches(ioc):
    async def go():
        cyc = ioc.cycler
        await define(cyc, "CC", 1e-2)  # 5C with no termination: runs into 4.5 V
        start = asyncio.create_task(cyc.start_cmd.write(1))
        with pytest.raises(Exception, match="safety"):
            await tick_until(ioc, start, timeout=20)
        assert cyc.tripped_rb.value == "Tripped"
        assert cyc.tripped_rb.alarm.severity == AlarmSeverity.MAJOR_ALARM
        assert cyc.current_rb.value == 0.0
        await cyc.reset_cmd.write(1)
        assert cyc.tripped_rb.value == "OK"

    asyncio.run(go())


def test_bulk_reads_by_sequence_lose_and_repeat_nothing(ioc):
    async def go():
        cyc = ioc.cycler
        await define(cyc, "CC", 1e-3, terms=[("Time", 3600.0)])
        start = asyncio.create_task(cyc.start_cmd.write(1))
        seen, next_seq = [], 0
        while not start.done():
            await asyncio.sleep(0.005)
            await ioc.tick()
            end = int(cyc.buf.next_seq_rb.value)
            pages = await read_pages(cyc.buf.pages)
            for item in follow(Paging(int(cyc.buf.kept_rb.value)), next_seq, end, pages):
                assert not isinstance(item, Lost)
                seen += [int(seq) for seq in item[:, 0]]
                next_seq = seen[-1] + 1
        assert seen == list(range(len(seen)))  # contiguous: none lost, none twice
        assert len(seen) >= 360  # a sample every 10 s for an hour

    asyncio.run(go())


async def read_pages(group):
    """Read every page PV of a group as a client would (each read fills its page); the
    pages as :func:`ssb_contract.paging.follow` takes them."""
    values = []
    for k in range(PAGES):
        pv = getattr(group, f"page{k}")
        await pv.read(ChannelType.DOUBLE)
        values.append(np.asarray(pv.value, dtype=float))

    def fetch(index):
        value = values[index]
        rows = value[HEADER : HEADER + int(value[1]) * SAMPLE.width].reshape(-1, SAMPLE.width)
        return Page(int(value[0]), rows[:, 0].astype(int), rows)

    return fetch


def test_impedance_step_publishes_a_whole_spectrum(ioc):
    async def go():
        cyc = ioc.cycler
        await cyc.eis_f_start.write(1e5)
        await cyc.eis_f_end.write(1.0)
        await cyc.eis_ppd.write(5)
        await cyc.step_sp.write(7)
        await define(cyc, "PEIS")
        await tick_until(ioc, asyncio.create_task(cyc.start_cmd.write(1)))
        assert cyc.reason_rb.value == "impedance sweep done (26 points)"
        assert cyc.step_rb.value == 7  # the index the client asked for
        assert cyc.eis_count.value == 1
        assert len(cyc.eis_freq.value) == len(cyc.eis_z_re.value) == 26
        assert cyc.eis_freq.value[0] == pytest.approx(1e5)
        assert cyc.eis_pressure.value == pytest.approx(50.0, abs=0.5)
        e = ioc.rig.params.electrochemistry
        r_int = ioc.rig.cell.interfacial_resistance(50.0)
        assert cyc.eis_z_re.value[-1] == pytest.approx(e.r_bulk + r_int, rel=0.05)

    asyncio.run(go())
