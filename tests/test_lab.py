"""A lab of two rigs, as ``ssb lab up`` starts it: IOCs, PostgreSQL, Tiled on it, Redis, an
RE Manager and an httpserver per rig, the supervisor and the overview page. Everything
is reached the way a facility reaches it: queueserver-api over HTTP with the API key (or
0MQ for the observer group), the catalog through the Tiled server, the rigs' PVs with
caproto's command-line client, the overview in headless Chromium."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest

from ssb_analysis.catalog import open_catalog
from ssb_analysis.figures import samples
from ssb_analysis.runs import Chain
from ssb_ioc.launch import loopback_ca_env
from ssb_lab.layout import Layout
from ssb_plans.demo import DEMO_CELL
from ssb_plans.metadata import cell_metadata

RIGS = 2
# the README's own speed: its lab example runs verbatim at it (an hour there is 18 s here)
README = (Path(__file__).parents[1] / "README.md").read_text()
SPEED = float(re.search(r"ssb lab up --rigs \d+ --speed (\d+)", README).group(1))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def ssb(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ssb_plans.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_base_port(rigs: int) -> int:
    """A base port whose every lab port is free, below the ephemeral ports (32768 and up),
    where a client's socket could take one between this check and the lab's start."""
    for _ in range(100):
        base = random.randrange(10000, 32000, 10)
        if not Layout(Path("/nonexistent"), rigs, base).busy_ports():
            return base
    raise RuntimeError("no free ports for a lab")


class Lab:
    def __init__(self, directory: Path, base_port: int):
        self.directory = directory
        self.layout = Layout(directory, RIGS, base_port)
        self.state = json.loads((directory / "lab.json").read_text())

    def http(self, number: int, key: str | None = None):
        """queueserver-api's HTTP client of rig ``number``, authorised with the lab's key."""
        from bluesky_queueserver_api.http import REManagerAPI

        api = REManagerAPI(http_server_uri=self.layout.rig(number).http_uri)
        api.set_authorization_key(api_key=key or self.layout.key("http-api-key"))
        return api

    def catalog(self):
        return open_catalog(self.layout.tiled_uri, api_key=self.layout.key("tiled-api-key"))

    def view(self, number: int) -> dict:
        """Rig ``number`` as the overview serves it."""
        rigs = httpx.get(f"{self.layout.overview_uri}/api/lab", timeout=5).json()["rigs"]
        return rigs[number - 1]

    def wait_view(self, number: int, predicate, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            view = self.view(number)
            if predicate(view):
                return view
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}: {view}")

    def wait_stored(self, match: tuple[str, str], stream: str, rows: int, timeout: float):
        """Until the newest run with ``match`` (key, value) holds ``rows`` rows of
        ``stream`` in the catalog."""
        from tiled.queries import Key

        catalog = self.catalog()
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                found = catalog.search(Key(match[0]) == match[1])
                run = found.values().last() if len(found) else None
                if (
                    run is not None
                    and stream in run
                    and run[stream].read().sizes.get("time", 0) >= rows
                ):
                    return
                time.sleep(0.2)
            raise AssertionError(f"no {rows} rows of {stream} stored for {match} in {timeout} s")
        finally:
            catalog.context.close()

    def caput(self, number: int, name: str, value) -> None:
        """A put with caproto's synchronous client, independent of the suite's devices (on
        the lab's port for that rig, without a repeater)."""
        from unittest import mock

        from caproto import ChannelType
        from caproto.sync.client import write

        rig = self.layout.rig(number)
        kind = ChannelType.STRING if isinstance(value, str) else None
        with mock.patch.dict(os.environ, loopback_ca_env(rig.ca_port)):
            write(rig.prefix + name, [value], notify=True, data_type=kind, timeout=10,
                  repeater=False)  # fmt: skip

    def worker_pid(self, number: int) -> int:
        watchdog = next(
            p["pid"] for p in self.state["parts"] if p["name"] == f"rig{number}-manager"
        )
        children = sorted(psutil.Process(watchdog).children(), key=lambda p: p.create_time())
        return children[-1].pid  # the manager first, then the worker


@pytest.fixture(scope="module")
def lab():
    # PostgreSQL runs as `postgres` when the tests run as root: a directory it can enter
    directory = Path(tempfile.mkdtemp(prefix="ssb-lab-")) / "lab"
    os.chmod(directory.parent, 0o755)
    base = free_base_port(RIGS)
    started = ssb(
        "lab", "up", "--dir", str(directory), "--rigs", str(RIGS),
        "--base-port", str(base), "--speed", str(SPEED),
    )  # fmt: skip
    assert started.returncode == 0, started.stdout + started.stderr
    lab = Lab(directory, base)
    try:
        yield lab
    finally:
        stopped = ssb("lab", "down", "--dir", str(directory))
        assert stopped.returncode == 0, stopped.stderr
        for part in lab.state["parts"]:  # down stopped every process it started
            assert (
                not psutil.pid_exists(part["pid"])
                or psutil.Process(part["pid"]).status() == psutil.STATUS_ZOMBIE
            ), part
        shutil.rmtree(directory.parent, ignore_errors=True)


def md(cell_id: str, study: str) -> dict:
    return {
        **cell_metadata({**DEMO_CELL, "cell_id": cell_id}),
        "purpose": "material analysis",
        "operator": "remote tester",
        "study": study,
    }


def plan(name: str, *args, **kwargs):
    from bluesky_queueserver_api import BPlan

    return BPlan(name, *args, **kwargs)


def test_status_shows_every_part_and_a_second_up_refuses(lab):
    shown = ssb("lab", "status", "--dir", str(lab.directory))
    assert shown.returncode == 0, shown.stdout + shown.stderr
    lines = shown.stdout.splitlines()
    names = [line.split()[0] for line in lines]
    assert names == [
        "postgres", "redis", "tiled", "rig1-ioc", "rig2-ioc", "rig1-manager",
        "rig2-manager", "supervisor", "rig1-http", "rig2-http", "overview",
    ]  # fmt: skip
    assert all(" up " in line for line in lines), shown.stdout
    assert f"127.0.0.1:{lab.layout.postgres_port}" in lines[0]
    assert lab.layout.rig(2).http_uri in lines[9]
    assert "worker open" in lines[5]
    again = ssb("lab", "up", "--dir", str(lab.directory), "--base-port", "30000")
    assert again.returncode == 1
    assert "already up" in again.stderr and "ssb lab down" in again.stderr
    assert json.loads((lab.directory / "lab.json").read_text()) == lab.state  # untouched


def test_a_wrong_api_key_and_an_observer_are_refused(lab):
    intruder = lab.http(1, key="not0the0key")
    with pytest.raises(Exception, match=r"401|nvalid API key|Unauthorized"):
        intruder.status()
    intruder.close()
    # the observer's key over HTTP, on every rig: it watches, and may write nothing
    from ssb_lab import connect

    for number in (1, 2):
        watcher = connect(number, lab.directory, observer=True)
        try:
            assert watcher.status()["manager_state"] in ("idle", "executing_queue")
            watcher.history_get()
            for write, args in ((watcher.item_add, (plan("count", ["rig"]),)),
                                (watcher.queue_start, ()), (watcher.re_pause, ())):  # fmt: skip
                with pytest.raises(Exception, match="Not enough permissions"):
                    write(*args)
        finally:
            watcher.close()
    # The observer group over 0MQ (queueserver-api), in a process of its own: its client
    # leaves 0MQ contexts for the garbage collector, which this test session turns into
    # errors.
    answers = subprocess.run(
        [sys.executable, "-c", OBSERVER, lab.layout.rig(1).zmq_control_addr],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert answers.returncode == 0, answers.stderr
    mv, set_pressure, count = json.loads(answers.stdout.splitlines()[-1])
    assert "not in the list of allowed plans" in mv, mv
    assert "not in the list of allowed plans" in set_pressure, set_pressure
    assert count == "added"  # a reading is allowed


OBSERVER = """
import json, sys
from bluesky_queueserver_api import BPlan
from bluesky_queueserver_api.zmq import REManagerAPI

api = REManagerAPI(zmq_control_addr=sys.argv[1])
api.user_group = "observer"
answers = []
for item in (BPlan("mv", "rig.press.pressure", 50.0), BPlan("set_pressure", "rig", 50.0),
             BPlan("count", ["rig"])):
    try:
        added = api.item_add(item)
        api.item_remove(uid=added["item"]["item_uid"])
        answers.append("added")
    except Exception as ex:
        answers.append(str(ex))
api.close()
print(json.dumps(answers))
"""


def test_two_rigs_run_remote_protocols_at_once_into_postgresql(lab):
    charge = "Set pressure to {p} MPa\nCharge at 1C for 20 minutes\nRest for 2 minutes\n"
    apis = {n: lab.http(n) for n in (1, 2)}
    try:
        apis[2].item_add(plan("run_protocol", "rig", charge.format(p=30), md=md("R2-A", "monday")))
        apis[1].item_add(plan("run_protocol", "rig", charge.format(p=20), md=md("R1-B", "monday")))
        for api in apis.values():
            api.queue_start()
        lab.wait_view(2, lambda _: all(api.status()["manager_state"] == "executing_queue"
                                       for api in apis.values()),
                      60, "the two rigs running at the same time")  # fmt: skip
        for api in apis.values():
            api.wait_for_idle(timeout=120)
            result = api.history_get()["items"][-1]["result"]
            assert result["exit_status"] == "completed", result
    finally:
        for api in apis.values():
            api.close()
    from tiled.queries import Key

    catalog = lab.catalog()
    try:
        (run2,) = catalog.search(Key("rig") == "rig2").search(Key("cell_id") == "R2-A").values()
        (run1,) = catalog.search(Key("rig") == "rig1").search(Key("cell_id") == "R1-B").values()
        assert len(catalog.search(Key("study") == "monday")) == 2
        for run, pressure in ((run1, 20.0), (run2, 30.0)):
            assert run.stop["exit_status"] == "success"
            samples = run["samples"].read()
            charging = samples["current"].values > 0
            assert charging.sum() > 10
            assert np.median(samples["pressure"].values[charging]) == pytest.approx(
                pressure, abs=0.5
            )
        uid = run2.start["uid"]
    finally:
        catalog.context.close()
    # the catalog is PostgreSQL's: the run is a row of Tiled's `nodes` table there
    password = lab.layout.key("postgres-password")
    found = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", str(lab.layout.postgres_port), "-U", "ssb",
         "-d", "catalog", "-tAc", f"SELECT count(*) FROM nodes WHERE key = '{uid}'"],
        capture_output=True, text=True, env={**os.environ, "PGPASSWORD": password}, timeout=30,
    )  # fmt: skip
    assert found.stdout.strip() == "1", found.stderr


def end_while_paused(lab, api, end, status: str) -> dict:
    """Pause rig 1's running plan, end it with ``end`` (stop or abort): the sequence ends
    with the cell at open circuit and the press holding; the history says ``status``."""
    api.re_pause(option="immediate")
    api.wait_for_condition(lambda s: s["manager_state"] == "paused", timeout=30)
    end()
    api.wait_for_idle(timeout=60)
    ended = lab.wait_view(1, lambda v: v["state"] == "Aborted", 15, "the sequence ended")
    assert ended["current"] == 0.0 and ended["mode"] == "Pressure"
    assert ended["pressure"] == pytest.approx(25.0, abs=0.5)
    item = api.history_get()["items"][-1]
    assert item["result"]["exit_status"] == status
    return item


def test_pause_resume_and_stop_through_the_queue_keep_their_meaning(lab):
    protocol = "Set pressure to 25 MPa\nCharge at C/2 for 2 hours\nRest for 10 minutes\n"
    api = lab.http(1)
    try:
        api.item_add(plan("run_protocol", "rig", protocol, md=md("R1-PAUSE", "pauses")))
        api.queue_start()
        lab.wait_view(1, lambda v: v["step"] == 2 and v["current"] > 0, 60, "the charge")
        api.re_pause(option="immediate")
        api.wait_for_condition(lambda s: s["manager_state"] == "paused", timeout=30)
        paused = lab.wait_view(1, lambda v: v["state"] == "Paused", 15, "a paused sequence")
        # paused: the cell at open circuit, the press holding its pressure
        assert paused["current"] == 0.0 and paused["mode"] == "Pressure"
        assert paused["pressure"] == pytest.approx(25.0, abs=0.5)
        assert paused["level"] == "attention"
        api.re_resume()
        lab.wait_view(1, lambda v: v["state"] == "Running" and v["current"] > 0, 30, "resumed")
        item = end_while_paused(lab, api, api.re_stop, "stopped")
        assert api.queue_get()["items"] == []  # a stopped plan is not queued again
        # an abort: the same safe state, the run marked aborted, its data kept
        api.item_add(plan("run_protocol", "rig", protocol, md=md("R1-ABORT", "pauses")))
        api.queue_start()
        lab.wait_view(1, lambda v: v["step"] == 2 and v["current"] > 0, 60, "the charge")
        abort_item = end_while_paused(lab, api, api.re_abort, "aborted")
    finally:
        api.close()
    catalog = lab.catalog()
    try:
        run = catalog[item["result"]["run_uids"][0]]
        assert run.stop["exit_status"] == "success"  # a stop keeps its data as a success
        assert run["samples"].read().sizes["time"] > 5
        run = catalog[abort_item["result"]["run_uids"][0]]
        assert run.stop["exit_status"] == "abort"
        assert run["samples"].read().sizes["time"] > 5
    finally:
        catalog.context.close()


def test_a_dead_worker_is_reported_and_the_queue_continues(lab):
    protocol = "Set pressure to 20 MPa\nCharge at C/2 for 1 hour\nRest for 5 minutes\n"
    api = lab.http(2)
    try:
        api.item_add(plan("run_protocol", "rig", protocol, md=md("R2-KILL", "worker")))
        api.item_add(plan("set_pressure", "rig", 22.0, md=md("R2-KILL", "worker")))
        api.queue_start()
        lab.wait_view(2, lambda v: v["step"] == 2 and v["current"] > 0, 60, "the charge")
        lab.wait_stored(("cell_id", "R2-KILL"), "samples", 3, timeout=30)  # in mid-run
        os.kill(lab.worker_pid(2), signal.SIGKILL)
        # reported: red while the worker is gone, then the lab's event on the tile
        lab.wait_view(2, lambda v: v["level"] == "fault", 30, "a red tile")
        view = lab.wait_view(
            2, lambda v: "worker restarted" in v["lab_event"], 90, "the restart reported"
        )
        assert "replaced by attach" in view["lab_event"]
        api.wait_for_condition(
            lambda s: s["manager_state"] == "idle" and s["items_in_queue"] == 0, timeout=120
        )
        history = api.history_get()["items"]
    finally:
        api.close()
    results = [(i["name"], i["result"]["exit_status"]) for i in history[-3:]]
    assert results == [
        ("run_protocol", "failed"),
        ("attach", "completed"),
        ("set_pressure", "completed"),
    ], results
    assert "destroyed" in history[-3]["result"]["msg"]
    status = ssb("lab", "status", "--dir", str(lab.directory))
    assert "worker restarted" in status.stdout
    from tiled.queries import Key

    catalog = lab.catalog()
    try:
        runs = list(catalog.search(Key("cell_id") == "R2-KILL").values())
        assert [r.start["plan_name"] for r in runs] == ["run_protocol"] * 2 + ["set_pressure"]
        lost, continued = runs[0], runs[1]
        assert lost.stop["exit_status"] == "fail" and "acquisition lost" in lost.stop["reason"]
        assert continued.start["continues"] == lost.start["uid"]
        assert continued.stop["exit_status"] == "success"
        steps = continued["steps"].read()
        assert 3 in steps["step_step"].values  # the rest, after the charge, was recorded
        # the protocol went on on the instrument, and no sample was lost or taken twice:
        # the continuation's samples start where the lost run's stored ones stop (the
        # catch-up and the live pages are stored as collected; readers order them by seq)
        before = lost["samples"].read()["seq"].values.astype(int)
        after = continued["samples"].read()["seq"].values.astype(int)
        assert after.min() == before.max() + 1
        seq = np.concatenate([before, after])
        assert len(np.unique(seq)) == len(seq)  # none twice
        assert seq.max() - seq.min() + 1 == len(seq)  # none missing
        ordered = samples(Chain([lost, continued]))["seq"]
        assert (np.diff(ordered) == 1).all()  # as the instrument logged them
    finally:
        catalog.context.close()


def ensure_a_run(lab, number: int) -> None:
    """A run of rig ``number`` in the catalog (the other tests may not have run)."""
    from tiled.queries import Key

    catalog = lab.catalog()
    try:
        if len(catalog.search(Key("rig") == f"rig{number}")):
            return
    finally:
        catalog.context.close()
    api = lab.http(number)
    try:
        api.item_add(plan("set_pressure", "rig", 15.0, md=md(f"R{number}-ANY", "overview")))
        api.queue_start()
        api.wait_for_condition(
            lambda s: s["manager_state"] == "idle" and s["items_in_queue"] == 0, timeout=60
        )
    finally:
        api.close()


def test_the_overview_in_headless_chromium(lab, tmp_path):
    assert CHROMIUM, "the overview is tested in Chromium: apt-get install chromium"
    ensure_a_run(lab, 2)
    from PIL import Image
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 600})
            page.goto(lab.layout.overview_uri)
            page.wait_for_selector(".tile[data-rig=rig2]", timeout=15000)
            assert page.locator(".tile").count() == RIGS
            # live: the test time on a tile moves while we watch
            clock = page.locator(".tile[data-rig=rig1] [data-f=time]")
            first = clock.inner_text()
            page.wait_for_function(
                "t => document.querySelector('.tile[data-rig=rig1] [data-f=time]')"
                ".textContent !== t",
                arg=first,
                timeout=15000,
            )
            # and the measured values: the tile's numbers change on screen, not only in
            # the page's text
            values = "[...document.querySelectorAll('.tile[data-rig=rig1] .big span')]" \
                ".map(e => e.textContent).join(' ')"  # fmt: skip
            page.screenshot(path=tmp_path / "ok.png")
            shown = page.evaluate(values)
            page.wait_for_function(f"t => {values} !== t", arg=shown, timeout=15000)
            page.screenshot(path=tmp_path / "later.png")
            big = page.locator(".tile[data-rig=rig1] .big").bounding_box()
            assert _region(tmp_path / "ok.png", big) != _region(tmp_path / "later.png", big)
            for rig in ("rig1", "rig2"):  # every tile drawn, none in fault
                assert _border_colour(tmp_path / "ok.png", page, rig) in ("green", "amber", "idle")
            assert page.locator(".tile[data-rig=rig1] [data-f=alarms]").inner_text()
            # a fault injected at the IOC: a 300 um swelling against a locked gap
            lab.caput(1, "Rig:InterlockReset-Cmd", 1)
            lab.caput(1, "Press:Mode-SP", "Pressure")
            lab.caput(1, "Press:Pressure-SP", 20.0)
            lab.wait_view(1, lambda v: abs(v["pressure"] - 20) < 1, 30, "20 MPa")
            lab.caput(1, "Press:Mode-SP", "Gap")
            lab.caput(1, "Rig:FaultType-SP", "PressureSpike")
            lab.caput(1, "Rig:FaultSize-SP", 300)
            lab.caput(1, "Rig:FaultAt-SP", 0)
            lab.caput(1, "Rig:InjectFault-Cmd", 1)
            page.wait_for_selector(".tile[data-rig=rig1][data-level=fault]", timeout=15000)
            why = page.locator(".tile[data-rig=rig1] .why").inner_text()
            assert "interlock" in why and "over-pressure" in why, why
            page.screenshot(path=tmp_path / "fault.png")
            assert _border_colour(tmp_path / "fault.png", page, "rig1") == "red"
            assert _border_colour(tmp_path / "fault.png", page, "rig2") != "red"
            # a click opens the rig's latest run, with its figures from the catalog
            with page.context.expect_page() as opened:
                page.click(".tile[data-rig=rig2]")
            run_page = opened.value
            run_page.wait_for_load_state()
            assert "rig2" in run_page.locator("h1").inner_text()
            figures = run_page.locator("img")
            assert figures.count() >= 1
            run_page.wait_for_function(
                "() => [...document.images].every(i => i.complete && i.naturalWidth > 300)"
            )
            run_page.screenshot(path=tmp_path / "run.png", full_page=True)
        finally:
            browser.close()
    lab.caput(1, "Rig:InterlockReset-Cmd", 1)
    Image.open(tmp_path / "run.png").verify()


def _region(screenshot: Path, box: dict) -> bytes:
    """The pixels of a page region in a screenshot."""
    from PIL import Image

    corners = (box["x"], box["y"], box["x"] + box["width"], box["y"] + box["height"])
    return Image.open(screenshot).convert("RGB").crop(tuple(map(int, corners))).tobytes()


def _border_colour(screenshot: Path, page, rig: str) -> str:
    """The colour of a tile's top border in a screenshot: 'red', 'green', 'amber', 'idle'
    (slate), or 'other' (not a tile's border: the page behind it)."""
    from PIL import Image

    box = page.locator(f".tile[data-rig={rig}]").bounding_box()
    image = Image.open(screenshot).convert("RGB")
    r, g, b = image.getpixel((int(box["x"] + box["width"] / 2), int(box["y"] + 3)))
    if r > 150 and g < 90 and b < 90:
        return "red"
    if g > 100 and r < 90:
        return "green"
    if r > 200 and g > 140 and b < 90:
        return "amber"
    if abs(r - 96) < 25 and abs(g - 125) < 25 and abs(b - 139) < 25:
        return "idle"
    return "other"


def test_the_readme_lab_example_runs_verbatim(lab):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```py\n(.+?)```", readme, re.S)
    assert blocks, "the README's lab section has no example"
    done = subprocess.run(
        [sys.executable, "-c", "\n".join(blocks)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "SSB_LAB": str(lab.directory)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["completed", "success"]
