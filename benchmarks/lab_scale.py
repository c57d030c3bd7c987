"""A lab at scale, side by side in one run: 1, 2, 4 and 8 rigs at 1x on this machine;
catalog ingest by N concurrent writers into PostgreSQL (the lab's Tiled server) against
SQLite (the same Tiled server on SQLite files); time from a sample on the IOC to its
visibility through the Tiled server.

    pip install -e ".[test]"
    python benchmarks/lab_scale.py [--rigs 1 2 4 8] [--window 60] [--writers 1 2 4 8]
                                   [--figure docs/figures/lab_scale.png]

For each lab size: ``ssb lab up --rigs N --speed 1``; every rig runs a C/10 charge at
20 MPa logging a sample every second (through its RE Manager, queued over HTTP); for
``--window`` s of wall time: the CPU of every process of the lab by part (IOCs, RE
managers, RE workers, httpservers, Tiled, PostgreSQL, Redis, overview, supervisor), the
overview's freshness (age of each tile's newest value, polled 4 times a second) and, on
rig 1, each sample's time from the IOC logging it (a monitor on ``Cyc:Buf:NextSeq-RB``)
to the Tiled server returning it. Then every run is stopped through its queue and its
stored samples are checked against the IOC's sequence numbers (none missing), and the
resident memory of every part is taken.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL = "Set pressure to 20 MPa\nCharge at C/10 for 10 hours (1 second period)"
GROUPS = {  # part name in lab.json -> group
    "postgres": "PostgreSQL",
    "redis": "Redis",
    "tiled": "Tiled",
    "supervisor": "supervisor",
    "overview": "overview",
    "ioc": "IOC",
    "http": "httpserver",
    "manager": "RE manager",  # the watchdog and the manager; the worker apart
}
PER_RIG = ("IOC", "RE manager", "RE worker", "httpserver")


def free_base(rigs: int) -> int:
    from ssb_lab.layout import Layout

    for _ in range(100):
        base = random.randrange(10000, 32000, 10)
        if not Layout(Path("/nonexistent"), rigs, base).busy_ports():
            return base
    raise RuntimeError("no free ports")


def processes_by_group(state: dict) -> dict[str, list[psutil.Process]]:
    groups = defaultdict(list)
    for part in state["parts"]:
        group = GROUPS.get(part["name"]) or GROUPS[part["name"].split("-")[-1]]
        top = psutil.Process(part["pid"])
        if group == "RE manager":
            children = sorted(top.children(), key=lambda p: p.create_time())
            groups["RE manager"] += [top, *children[:1]]
            groups["RE worker"] += children[1:]
        else:
            groups[group] += [top, *top.children(recursive=True)]
    return groups


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for p in processes:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def rss_mb(processes: list[psutil.Process]) -> float:
    total = 0
    for p in processes:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total / 1e6


class SampleLatency:
    """Wall time of each sample on rig 1's IOC (NextSeq monitor) and when the Tiled server
    first returns it."""

    def __init__(self, layout, catalog):
        from caproto.threading.client import Context

        self.appeared: dict[int, float] = {}
        self.visible: dict[int, float] = {}
        self.catalog = catalog
        self.context = Context()
        (pv,) = self.context.get_pvs(layout.rig(1).prefix + "Cyc:Buf:NextSeq-RB")
        self.sub = pv.subscribe()
        self.sub.add_callback(self._logged)
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, daemon=True)

    def _logged(self, sub, response) -> None:
        self.appeared.setdefault(int(response.data[0]) - 1, time.time())

    def start(self) -> None:
        self._poller.start()

    def _poll(self) -> None:
        from tiled.queries import Key

        run = None
        while not self._stop.wait(0.25):
            try:
                if run is None:
                    run = self.catalog.search(Key("rig") == "rig1").values().last()
                seq = run["samples"].read()["seq"].values
            except Exception:
                continue
            now = time.time()
            for s in seq.astype(int):
                self.visible.setdefault(int(s), now)

    def latencies(self) -> np.ndarray:
        self._stop.set()
        self._poller.join()
        self.context.disconnect()
        common = sorted(set(self.appeared) & set(self.visible))
        return np.array([self.visible[s] - self.appeared[s] for s in common[1:]])


def screenshot(url: str, path: str) -> None:
    """The overview as a browser shows it (Debian's Chromium, driven by Playwright)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=shutil.which("chromium"),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.goto(url)
        page.wait_for_selector(".tile")
        page.wait_for_timeout(2000)
        page.screenshot(path=path, full_page=True)
        browser.close()


def measure_lab(rigs: int, window: float, workdir: Path, shot: str | None = None) -> dict:
    from bluesky_queueserver_api import BPlan

    from ssb_lab import connect, lab_catalog
    from ssb_lab.stack import down, up
    from ssb_plans import cell_metadata
    from ssb_plans.demo import DEMO_CELL

    directory = workdir / f"lab{rigs}"
    started = time.monotonic()
    layout = up(directory, rigs, base_port=free_base(rigs), speed=1.0, progress=lambda _: None)
    up_s = time.monotonic() - started
    state = json.loads(layout.state_file.read_text())
    result: dict = {"rigs": rigs, "up_s": up_s}
    apis = [connect(i, directory) for i in range(1, rigs + 1)]
    catalog = lab_catalog(directory)
    os.environ["EPICS_CA_ADDR_LIST"] = f"127.0.0.1:{layout.rig(1).ca_port}"
    os.environ["EPICS_CA_AUTO_ADDR_LIST"] = "NO"
    latency = SampleLatency(layout, catalog)
    try:
        for i, api in enumerate(apis, 1):
            md = {**cell_metadata({**DEMO_CELL, "cell_id": f"SCALE-{rigs}-{i}"}),
                  "purpose": "material analysis", "operator": "benchmark"}  # fmt: skip
            api.item_add(BPlan("run_protocol", "rig", PROTOCOL, md=md))
            api.queue_start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # every rig charging
            rigs_now = httpx.get(f"{layout.overview_uri}/api/lab", timeout=5).json()["rigs"]
            if all(r.get("step") == 2 and r.get("current", 0) > 0 for r in rigs_now):
                break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"not every rig started charging: {rigs_now}")
        latency.start()
        groups = processes_by_group(state)
        cpu0 = {g: cpu_seconds(ps) for g, ps in groups.items()}
        t0 = time.monotonic()
        ages, answers = [], []
        while time.monotonic() - t0 < window:
            asked = time.time()
            view = httpx.get(f"{layout.overview_uri}/api/lab", timeout=5).json()["rigs"]
            answers.append(time.time() - asked)
            ages.append(max(time.time() - r["updated"] for r in view))
            time.sleep(0.25)
        elapsed = time.monotonic() - t0
        if shot:
            screenshot(layout.overview_uri, shot)
        result["cpu_percent"] = {
            g: 100 * (cpu_seconds(ps) - cpu0[g]) / elapsed for g, ps in groups.items()
        }
        result["rss_mb"] = {g: rss_mb(ps) for g, ps in groups.items()}
        result["overview_age_s"] = {"median": float(np.median(ages)), "max": float(max(ages))}
        result["overview_answer_s"] = {"median": float(np.median(answers)),
                                       "max": float(max(answers))}  # fmt: skip
        lat = latency.latencies()
        result["latency_s"] = {"n": len(lat), "median": float(np.median(lat)),
                               "p95": float(np.percentile(lat, 95)),
                               "max": float(lat.max())}  # fmt: skip
        for api in apis:  # stop every run through its queue
            api.re_pause(option="immediate")
        for api in apis:
            api.wait_for_condition(lambda s: s["manager_state"] == "paused", timeout=60)
            api.re_stop()
        for api in apis:
            api.wait_for_idle(timeout=60)
        from tiled.queries import Key

        stored = []
        for i in range(1, rigs + 1):
            run = catalog.search(Key("cell_id") == f"SCALE-{rigs}-{i}").values().last()
            seq = np.sort(run["samples"].read()["seq"].values.astype(int))
            stored.append({"samples": len(seq), "gaps": int((np.diff(seq) != 1).sum())})
        result["stored"] = stored
    finally:
        for api in apis:
            api.close()
        catalog.context.close()
        down(directory, progress=lambda _: None)
    return result


WRITER = """
import sys, time
import numpy as np
from event_model import compose_run
from bluesky_tiled_plugins import TiledWriter
from ssb_analysis.catalog import open_catalog

url, key, events, page = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
client = open_catalog(url, api_key=key)
writer = TiledWriter(client, batch_size=10_000)
run = compose_run(metadata={"cell_id": "INGEST", "purpose": "material analysis",
                            "operator": "benchmark"})
writer("start", run.start_doc)
keys = {k: {"dtype": "number", "shape": [], "source": "bench"}
        for k in ("voltage", "current", "pressure", "gap", "force", "test_time")}
desc = run.compose_descriptor(name="samples", data_keys=keys)
writer("descriptor", desc.descriptor_doc)
t0 = time.monotonic()
for first in range(0, events, page):
    n = min(page, events - first)
    data = {k: list(np.random.random(n)) for k in keys}
    ts = {k: [time.time()] * n for k in keys}
    writer("event_page", desc.compose_event_page(data=data, timestamps=ts,
                                                   seq_num=list(range(first + 1, first + n + 1)),
                                                   time=[time.time()] * n))
writer("stop", run.compose_stop())
print(time.monotonic() - t0)
client.context.close()
"""


def tiled_on_sqlite(directory: Path, key: str) -> tuple[subprocess.Popen, str]:
    (directory / "data").mkdir(parents=True)
    config = directory / "config.yml"
    config.write_text(json.dumps({
        "authentication": {"single_user_api_key": key},
        "trees": [{"path": "/", "tree": "catalog", "args": {
            "uri": f"sqlite:///{directory}/catalog.db",
            "writable_storage": [str(directory / "data"), f"sqlite:///{directory}/tables.db"],
            "init_if_not_exists": True,
            "specs": [{"name": "CatalogOfBlueskyRuns", "version": "3.0"}]}}],
    }))  # fmt: skip
    port = free_base(1)
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "tiled"), "serve", "config", str(config),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return server, f"{url}/api"
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError("tiled on SQLite did not start")


def ingest(url: str, key: str, writers: int, events: int, page: int) -> float:
    """Events per second, all writers together (each one run of ``events``)."""
    t0 = time.monotonic()
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, url, key, str(events), str(page)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(writers)
    ]  # fmt: skip
    for p in procs:
        _, err = p.communicate(timeout=600)
        if p.returncode:
            raise RuntimeError(err[-2000:])
    return writers * events / (time.monotonic() - t0)


def measure_ingest(workdir: Path, counts: list[int], events: int, page: int) -> dict:
    from ssb_lab.stack import down, up

    directory = workdir / "ingest-lab"
    layout = up(directory, 1, base_port=free_base(1), speed=1.0, progress=lambda _: None)
    sqlite_key = "benchkey0"
    server, sqlite_url = tiled_on_sqlite(workdir / "sqlite", sqlite_key)
    results = {"postgresql": {}, "sqlite": {}}
    try:
        for n in counts:  # side by side: the two stores alternate at each writer count
            results["postgresql"][n] = ingest(
                layout.tiled_uri, layout.key("tiled-api-key"), n, events, page
            )
            results["sqlite"][n] = ingest(sqlite_url, sqlite_key, n, events, page)
            print(f"  ingest {n} writers: PostgreSQL {results['postgresql'][n]:.0f}/s, "
                  f"SQLite {results['sqlite'][n]:.0f}/s", flush=True)  # fmt: skip
    finally:
        server.terminate()
        server.wait(30)
        down(directory, progress=lambda _: None)
    return results


def figure(labs: list[dict], ingest_results: dict, path: str) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    n = [r["rigs"] for r in labs]
    groups = sorted({g for r in labs for g in r["cpu_percent"]})
    bottom = np.zeros(len(n))
    for g in groups:
        values = np.array([r["cpu_percent"].get(g, 0) for r in labs])
        axes[0].bar([str(k) for k in n], values, bottom=bottom, label=g)
        bottom += values
    axes[0].set(xlabel="rigs at 1x", ylabel="CPU / % of one core (2 cores = 200 %)",
                title="CPU of the whole lab, by part")  # fmt: skip
    axes[0].legend(fontsize=7, ncol=2)
    bottom = np.zeros(len(n))
    for g in groups:
        values = np.array([r["rss_mb"].get(g, 0) for r in labs]) / 1000
        axes[1].bar([str(k) for k in n], values, bottom=bottom, label=g)
        bottom += values
    axes[1].set(xlabel="rigs at 1x", ylabel="resident memory / GB",
                title="memory of the whole lab, by part")  # fmt: skip
    counts = sorted(ingest_results["postgresql"])
    for store, marker in (("postgresql", "o-"), ("sqlite", "s--")):
        axes[2].plot(counts, [ingest_results[store][c] for c in counts], marker,
                     label=store)  # fmt: skip
    axes[2].set(
        xlabel="concurrent writers",
        ylabel="events / s (all writers)",
        title="catalog ingest through the Tiled server",
        xscale="log",
    )
    axes[2].set_xticks(counts, [str(c) for c in counts])
    axes[2].xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rigs", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--events", type=int, default=20_000, help="per writer")
    parser.add_argument("--page", type=int, default=500, help="rows per event page")
    parser.add_argument("--figure")
    parser.add_argument("--screenshot", help="the overview of the largest lab, as a PNG")
    parser.add_argument("--json", help="write the numbers here too")
    parser.add_argument("--replot", metavar="JSON", help="only draw --figure from a --json")
    args = parser.parse_args()
    if args.replot:
        saved = json.loads(Path(args.replot).read_text())
        ingested = {k: {int(n): v for n, v in d.items()} for k, d in saved["ingest"].items()}
        figure(saved["labs"], ingested, args.figure)
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="ssb-lab-bench-"))
    os.chmod(workdir, 0o755)  # PostgreSQL runs as `postgres` when we are root
    try:
        labs = []
        for rigs in args.rigs:
            shot = args.screenshot if rigs == max(args.rigs) else None
            r = measure_lab(rigs, args.window, workdir, shot)
            labs.append(r)
            cpu, rss = r["cpu_percent"], r["rss_mb"]
            per_rig = {g: (cpu.get(g, 0) / rigs, rss.get(g, 0) / rigs) for g in PER_RIG}
            shared = {g: (cpu[g], rss[g]) for g in cpu if g not in PER_RIG}
            print(
                f"{rigs} rigs: up in {r['up_s']:.0f} s; lab CPU {sum(cpu.values()):.0f} % "
                f"of a core, memory {sum(rss.values()) / 1000:.2f} GB",
                flush=True,
            )
            print(
                "  per rig: "
                + ", ".join(f"{g} {c:.1f} % {m:.0f} MB" for g, (c, m) in per_rig.items())
            )
            print(
                "  shared:  "
                + ", ".join(f"{g} {c:.1f} % {m:.0f} MB" for g, (c, m) in shared.items())
            )
            print(
                f"  overview: newest value {r['overview_age_s']['median']:.2f} s old "
                f"(max {r['overview_age_s']['max']:.2f}), answered in "
                f"{1000 * r['overview_answer_s']['median']:.0f} ms "
                f"(max {1000 * r['overview_answer_s']['max']:.0f})"
            )
            lat = r["latency_s"]
            print(
                f"  sample -> visible through Tiled: median {lat['median']:.2f} s, p95 "
                f"{lat['p95']:.2f} s, max {lat['max']:.2f} s ({lat['n']} samples)"
            )
            print(f"  stored: {r['stored']}", flush=True)  # fmt: skip
        ingested = measure_ingest(workdir, args.writers, args.events, args.page)
        if args.figure:
            figure(labs, ingested, args.figure)
        if args.json:
            Path(args.json).write_text(json.dumps({"labs": labs, "ingest": ingested}, indent=1))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
