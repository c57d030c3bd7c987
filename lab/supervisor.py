"""Keep each rig's queue going when its RE worker dies (``python -m ssb_lab.supervisor``).

bluesky-queueserver's manager does not notice a worker process that died (killed, out of
memory): it goes on reporting the plan as executing. The protocol itself runs on the
instrument and goes on; only its acquisition is lost. The supervisor watches each
manager's worker process, and when it is gone:

1. reports it in the lab's event log (``DIR/events.jsonl``), which ``ssb lab status``
   and the overview show;
2. destroys the environment: the manager records the plan as failed ("RE Worker
   environment was destroyed") and puts it back at the front of the queue;
3. if the rig's IOC still runs that protocol (sequence Running, Paused or Held), puts
   ``attach`` in its place, which continues the record of the same protocol in a new run
   linked to the lost one (the protocol is not started again);
4. opens a new environment and, if the queue was running, starts it again once the lost
   run is seen orphaned (its heartbeat stopped).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from .layout import HEARTBEAT, Layout, RigPlaces

PROTOCOL_PLANS = {
    "run_protocol",
    "attach",
    "minimum_pressure_study",
    "rate_capability",
    "pressure_impedance_scan",
}
LIVE_SEQUENCE = {"Running", "Paused", "Held"}
BUSY_STATES = {"creating_environment", "closing_environment", "destroying_environment"}


def record_event(directory: Path, rig: str, event: str, detail: str) -> dict[str, Any]:
    entry = {"time": time.time(), "rig": rig, "event": event, "detail": detail}
    with (directory / "events.jsonl").open("a") as f:
        f.write(json.dumps(entry) + "\n")
    return entry


def read_events(directory: Path, limit: int = 200) -> list[dict[str, Any]]:
    """The newest ``limit`` entries of the lab's event log."""
    path = directory / "events.jsonl"
    if not path.exists():
        return []
    lines = path.read_text().splitlines()[-limit:]
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a crash: skip it, keep the rest
    return events


def worker_alive(watchdog_pid: int) -> bool | None:
    """Whether the worker under the manager's watchdog process lives (None: no worker
    process is expected to be found, the watchdog itself is gone)."""
    try:
        children = psutil.Process(watchdog_pid).children()
    except psutil.Error:
        return None
    children.sort(key=lambda p: p.create_time())
    workers = children[1:]  # the first child is the manager, the next the worker
    for worker in workers:
        try:
            if worker.status() != psutil.STATUS_ZOMBIE:
                return True
        except psutil.Error:
            continue
    return False


class RigSupervisor:
    """One rig: its manager's 0MQ client, its sequencer's state PV, the recovery."""

    def __init__(self, layout: Layout, rig: RigPlaces, watchdog_pid: int, context):
        from .stack import manager_api

        self.layout, self.rig, self.watchdog_pid = layout, rig, watchdog_pid
        self.api = manager_api(rig)
        (self.sequence_state,) = context.get_pvs(rig.prefix + "Seq:State-RB")
        self.missing = 0

    def check(self) -> None:
        try:
            status = self.api.status()
        except Exception:
            return  # the manager restarts under its watchdog; nothing for us to do
        if not status["worker_environment_exists"] or status["manager_state"] in BUSY_STATES:
            self.missing = 0
            return
        alive = worker_alive(self.watchdog_pid)
        self.missing = 0 if alive or alive is None else self.missing + 1
        if self.missing >= 2:  # twice in a row: not a worker that is just starting
            self.missing = 0
            self.recover(status)

    def _state(self) -> str:
        from caproto import ChannelType

        try:
            reading = self.sequence_state.read(data_type=ChannelType.STRING, timeout=5)
            return reading.data[0].decode()
        except Exception:
            return "unknown (IOC not answering)"

    def _wait_orphaned(self, timeout: float = 60.0) -> None:
        """Until the rig's newest run no longer looks alive (its heartbeat stopped)."""
        from tiled.queries import Key

        from ssb_analysis.catalog import open_catalog
        from ssb_analysis.runs import status

        catalog = open_catalog(self.layout.tiled_uri, api_key=self.layout.key("tiled-api-key"))
        try:
            deadline = time.monotonic() + max(timeout, 3 * HEARTBEAT)
            while time.monotonic() < deadline:
                found = catalog.search(Key("rig") == self.rig.name)
                if not len(found) or status(found.values().last()) != "running":
                    return
                time.sleep(0.5)
        finally:
            catalog.context.close()

    def recover(self, status: dict[str, Any]) -> None:
        from bluesky_queueserver_api import BPlan

        directory, name = self.layout.directory, self.rig.name
        was_running = status["manager_state"] in ("executing_queue", "paused")
        record_event(directory, name, "worker died", f"while {status['manager_state']}")
        self.api.environment_destroy()
        self.api.wait_for_idle(timeout=60)
        items = self.api.queue_get()["items"]
        state = self._state()
        detail = f"environment reopened; sequence {state}"
        if items and items[0]["name"] in PROTOCOL_PLANS and state in LIVE_SEQUENCE:
            lost = items[0]
            self.api.item_remove(uid=lost["item_uid"])
            md = {"reattached_after": "RE worker died", "lost_item": lost["item_uid"]}
            self.api.item_add(BPlan("attach", "rig", md=md), pos="front")
            detail += f"; {lost['name']} replaced by attach (the protocol goes on)"
        self.api.environment_open()
        self.api.wait_for_idle(timeout=120)
        if was_running and self.api.queue_get()["items"]:
            self._wait_orphaned()  # attach refuses a run whose writer still looks alive
            self.api.queue_start()
            detail += "; queue started again"
        record_event(directory, name, "worker restarted", detail)


def run(directory: Path, period: float = 1.0, stop: threading.Event | None = None) -> None:
    from caproto.threading.client import Context

    from .stack import lab_state, layout_of, parts_of

    state = lab_state(directory)
    layout = layout_of(directory, state)
    pids = {p.name: p.pid for p in parts_of(state)}
    context = Context()
    rigs = [
        RigSupervisor(layout, rig, pids[f"{rig.name}-manager"], context)
        for rig in layout.all_rigs()
    ]
    stop = stop or threading.Event()
    while not stop.wait(period):
        for rig in rigs:
            try:
                rig.check()
            except Exception as ex:  # keep watching the other rigs
                record_event(directory, rig.rig.name, "supervisor error", str(ex))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ssb_lab.supervisor", description=__doc__)
    parser.add_argument("--dir", required=True, help="the lab directory")
    args = parser.parse_args(argv)
    directory = Path(args.dir).resolve()
    from .stack import lab_state, layout_of

    layout = layout_of(directory, lab_state(directory))
    os.environ.update(
        EPICS_CA_ADDR_LIST=" ".join(f"127.0.0.1:{r.ca_port}" for r in layout.all_rigs()),
        EPICS_CA_AUTO_ADDR_LIST="NO",
    )
    run(directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
