"""Readers of one buffer at once, over Channel Access: nothing any reader does changes
what another reads (the page PVs of ssb_contract.paging are filled at the read)."""

from __future__ import annotations

import threading
import time

import pytest

from ssb_devices.cycler import SampleLog

pytestmark = pytest.mark.network

READERS, ROWS = 3, 8_000  # rows span pages: 100,000 kept -> 3,334 a page


def test_three_readers_at_once_each_get_every_row_exactly_once(ioc):
    ioc.put("Cyc:LogPeriod-SP", 1.0)
    ioc.put("Rig:CellCurrent-SP", 1e-3)
    logs = [SampleLog(ioc.prefix + "Cyc:Buf:", name=f"reader{k}") for k in range(READERS)]
    for log in logs:
        log.wait_for_connection(timeout=30)
        log.kickoff(start=0)
    ioc.put("Rig:Speed-SP", 5000.0)  # some 5,000 rows a second while they read
    seen: list[list[int]] = [[] for _ in logs]
    failures: list[BaseException] = []

    def read(k: int) -> None:
        deadline = time.monotonic() + 120
        try:
            while len(seen[k]) < ROWS and time.monotonic() < deadline:
                for columns in logs[k].read_pages():
                    seen[k].extend(int(seq) for seq in columns["seq"])
        except BaseException as ex:  # reported below, by the test thread
            failures.append(ex)

    threads = [threading.Thread(target=read, args=(k,)) for k in range(READERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    for log in logs:
        log.destroy()
    assert not failures, failures
    for k, log in enumerate(logs):
        assert len(seen[k]) >= ROWS, f"reader {k} read {len(seen[k])} rows"
        assert seen[k] == list(range(len(seen[k]))), f"reader {k}: a row lost or read twice"
        assert log.lost == 0 and not log.gaps
