"""The IOC's memory stays bounded while clients monitor every PV, bulk arrays included.

caproto keeps the last updates of every subscription, sent or not; before the backlogs
were bounded, four clients monitoring everything grew the IOC by hundreds of MB as the
acquiring process read its buffers. (benchmarks/monitor_memory.py measures more clients
for longer; docs/benchmarks.md has the figures.)
"""

from __future__ import annotations

import psutil
import pytest
from caproto import ChannelType
from caproto.threading.client import Context

from ssb_ioc.server import RigIOC
from ssb_ioc.sim import Rig, load_cell_file

pytestmark = pytest.mark.network

CLIENTS, ROUNDS, CYCLES = 4, 8, 25
BUFFERS = ("Cyc:Buf:Page0-RB", "Evt:Buf:Page0-RB", "LC:Fast:Page0-RB")  # 2000+ samples


def test_resident_memory_is_flat_after_warm_up_under_monitoring_clients(fast_ioc):
    ioc = fast_ioc
    names = list(RigIOC(prefix=ioc.prefix, backend=Rig(load_cell_file("si-nmc"))).pvdb)
    ioc.put("Cyc:LogPeriod-SP", 1.0)
    ioc.put("Rig:CellCurrent-SP", 1e-3)
    ioc.wait_for(lambda: ioc.get("Cyc:Buf:NextSeq-RB") > 2000, what="samples logged")
    process = psutil.Process(ioc.process.pid)
    received = [0] * CLIENTS
    contexts, keep = [], []
    try:
        # Every client connects before any subscribes: a circuit's handshake waits behind
        # the monitor traffic of the clients before it, and caproto's search thread dies
        # on a handshake slower than its timeout (tests/conftest.py).
        clients = []
        for _ in range(CLIENTS):
            context = Context()
            contexts.append(context)
            clients.append(context.get_pvs(*names, timeout=30))
        for pvs in clients:
            for pv in pvs:
                pv.wait_for_connection(timeout=30)  # 400 searches on a loaded machine
        for k, pvs in enumerate(clients):

            def count(sub, response, k=k):
                received[k] += 1

            keep.append(count)  # caproto holds callbacks by weak reference
            for pv in pvs:
                sub = pv.subscribe(data_type=ChannelType.TIME_DOUBLE)
                if pv.channel.native_data_type in (ChannelType.CHAR, ChannelType.ENUM):
                    sub = pv.subscribe()
                sub.add_callback(count)
                keep.append(sub)
        pages = [ioc.pv(name) for name in BUFFERS]
        rss, largest = [], 0
        for _ in range(ROUNDS):
            for _ in range(CYCLES):
                for pv in pages:
                    largest = max(largest, len(pv.read(timeout=10).data))  # each read: a page
            rss.append(process.memory_info().rss / 1e6)
            last = [-1]

            def drained(last=last) -> bool:
                now, before = sum(received), last[0]
                last[0] = now
                return now == before

            # caproto's threading client queues what it has not handled yet: let the
            # clients catch up, or on a busy machine this process holds gigabytes
            ioc.wait_for(drained, timeout=60, what="the clients to catch up")
    finally:
        for context in contexts:
            context.disconnect()
    assert largest >= 2000 * 14  # the pages really were large
    assert min(received) > CYCLES * ROUNDS  # every client was really monitoring
    growth = rss[-1] - rss[2]
    assert growth < 25, f"IOC grew {growth:.0f} MB after warm-up: {[round(r) for r in rss]}"
    assert max(rss) < 250, f"IOC at {max(rss):.0f} MB: {[round(r) for r in rss]}"
