"""A second process sees a running experiment's data within seconds, and SIGKILL of the
acquiring process loses at most the last few seconds."""

import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ssb_analysis.catalog import open_catalog
from ssb_analysis.runs import MISSED_BEATS, status, stop_document

FLUSH_BOUND = 3.0  # s: CatalogWriter flushes every 1 s; margin for a busy machine
HEARTBEAT = 0.5  # s between the writer's heartbeats in the test
HERE = Path(__file__).parent


def newest_reading(catalog_dir):
    """(wall time of the newest stored reading, row count, stop doc, wall time the read
    began) of the LIVE-1 run; the lag is judged from when the reader asked, not from when a
    loaded machine got round to answering."""
    asked = time.time()
    catalog = open_catalog(catalog_dir)
    if len(catalog) == 0:
        return None
    run = catalog[-1]
    if run.start.get("cell_id") != "LIVE-1" or "primary" not in list(run):
        return None
    times = run.primary.read()["time"].values
    return (float(times.max()), len(times), stop_document(run), asked) if len(times) else None


def poll(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception:  # the writer may hold the SQLite lock for a moment
            value = None
        if value:
            return value
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.network
def test_live_visibility_and_sigkill_loss(ioc, tmp_path):
    catalog_dir = tmp_path / "catalog"
    open_catalog(catalog_dir)  # initialise before two processes use it
    writer = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "acquire_hold.py"),
            str(catalog_dir),
            str(tmp_path / "md"),
            ioc.prefix,
            str(HEARTBEAT),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready, _, _ = select.select([writer.stdout], [], [], 60)
        assert ready and "acquiring" in writer.stdout.readline(), writer.stderr.read()
        # While it runs: rows keep arriving, and the newest is only seconds old.
        lags = []
        for _ in range(3):
            newest, rows, stop, asked = poll(lambda: newest_reading(catalog_dir), 30, "rows")
            assert stop is None  # still running
            assert status(open_catalog(catalog_dir)[-1]) == "running"
            lags.append(asked - newest)
        assert rows > 10
        assert max(lags) < FLUSH_BOUND, f"reader lag {lags}"
        poll(lambda: (newest_reading(catalog_dir) or (0, 0))[1] > rows, 30, "more rows")
        killed_at = time.time()
        writer.kill()  # SIGKILL: no chance to flush or close the run
        writer.wait(10)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
        writer.stdout.close()
        writer.stderr.close()
    newest, rows, stop, _ = newest_reading(catalog_dir)
    assert stop is None  # the run was never closed: it died
    assert killed_at - newest < FLUSH_BOUND, f"lost {killed_at - newest:.2f} s of data"
    # no stop document and no heartbeat: the run is orphaned, not running
    run = open_catalog(catalog_dir)[-1]
    last_seen = run.metadata["heartbeat"]["last_seen"]
    assert status(run, now=last_seen + MISSED_BEATS * HEARTBEAT + 2) == "orphaned"
    poll(lambda: status(open_catalog(catalog_dir)[-1]) == "orphaned", 30, "orphaned")
