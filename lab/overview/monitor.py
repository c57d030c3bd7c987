"""What the overview shows of each rig: its PVs (monitored over Channel Access) and its
queue (polled from its RE Manager), kept as one snapshot per rig.

A tile's level is what a person must act on: ``fault`` (red: the IOC unreachable, an
interlock or a cycler trip, a MAJOR or INVALID alarm, the RE Manager gone or its worker
closed with plans waiting), ``attention`` (amber: a MINOR alarm, a paused, held or
failed sequence, a paused queue), else ``ok``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from caproto import ChannelType

from ..layout import RigPlaces

# tile field -> PV suffix
FIELDS = {
    "state": "Seq:State-RB",
    "step": "Seq:Step-RB",
    "steps": "Seq:Steps-RB",
    "cycle": "Seq:Cycle-RB",
    "step_text": "Seq:StepText-RB",
    "voltage": "Cyc:Voltage-RB",
    "current": "Cyc:Current-RB",
    "charge": "Cyc:ChargeCapacity-RB",
    "discharge": "Cyc:DischargeCapacity-RB",
    "pressure": "Press:Pressure-RB",
    "pressure_sp": "Press:Pressure-SP",
    "gap": "Press:Gap-RB",
    "mode": "Press:Mode-RB",
    "interlock": "Rig:Interlock-RB",
    "interlock_reason": "Rig:InterlockReason-RB",
    "tripped": "Cyc:Tripped-RB",
    "trip_reason": "Cyc:TripReason-RB",
    "message": "Rig:Msg-RB",
    "last_event": "Evt:Last-RB",
    "events": "Evt:Count-RB",
    "time": "Rig:Time-RB",
}
ENUMS = {"state", "mode", "interlock", "tripped"}  # read as their strings
SEVERITY = ["NO_ALARM", "MINOR", "MAJOR", "INVALID"]


@dataclass
class RigView:
    """The latest of one rig, updated from monitor callbacks and the queue poller."""

    rig: RigPlaces
    values: dict[str, Any] = field(default_factory=dict)
    severities: dict[str, int] = field(default_factory=dict)
    connected: dict[str, bool] = field(default_factory=dict)
    queue: dict[str, Any] = field(default_factory=dict)
    updated: float = 0.0

    def snapshot(self) -> dict[str, Any]:
        alarms = [
            f"{FIELDS[f]} {SEVERITY[s]}" for f, s in sorted(self.severities.items()) if s > 0
        ]
        online = bool(self.connected) and all(self.connected.values())
        view = {
            "name": self.rig.name,
            "prefix": self.rig.prefix,
            "online": online,
            **self.values,
            "alarms": alarms,
            "queue": self.queue,
            "updated": self.updated,
        }
        view["level"], view["why"] = level(view, max(self.severities.values(), default=0))
        return view


def level(view: dict[str, Any], severity: int) -> tuple[str, str]:
    """(``fault`` | ``attention`` | ``ok``, the reason shown on the tile)."""
    queue = view["queue"]
    if not view["online"]:
        return "fault", "IOC not answering"
    if view.get("interlock") == "Tripped":
        return "fault", f"interlock: {view.get('interlock_reason') or 'tripped'}"
    if view.get("tripped") == "Tripped":
        return "fault", f"cycler trip: {view.get('trip_reason') or 'tripped'}"
    if severity >= 2:
        return "fault", "alarm: " + ", ".join(view["alarms"])
    if queue.get("manager") == "unreachable":
        return "fault", "RE Manager not answering"
    if not queue.get("worker", True) and queue.get("queued", 0):
        return "fault", "worker closed with plans waiting"
    if severity == 1:
        return "attention", "alarm: " + ", ".join(view["alarms"])
    if view.get("state") in ("Paused", "Held", "Failed"):
        return "attention", f"sequence {view['state'].lower()}"
    if queue.get("manager") == "paused":
        return "attention", "queue paused"
    return "ok", ""


class LabMonitor:
    """Monitors every rig's PVs and polls every RE Manager; ``snapshot()`` for the page."""

    def __init__(
        self, rigs: list[RigPlaces], directory: Path | None = None, queue_period: float = 1.0
    ):
        from caproto.threading.client import Context

        self.directory = directory  # the lab's: its event log (worker restarts)
        self._events: tuple[float, dict[str, str]] = (0.0, {})
        self.views = {rig.name: RigView(rig) for rig in rigs}
        self.context = Context()
        self._lock = threading.Lock()
        self._subscriptions: list = []
        self._callbacks: list = []  # caproto holds callbacks weakly: keep them alive here
        self._stop = threading.Event()
        self.queue_period = queue_period
        for view in self.views.values():
            self._watch(view)
        self._poller = threading.Thread(target=self._poll_queues, name="queues", daemon=True)
        self._poller.start()

    def _watch(self, view: RigView) -> None:
        names = {f: view.rig.prefix + suffix for f, suffix in FIELDS.items()}
        connection = self._connection(view, names)
        self._callbacks.append(connection)
        pvs = self.context.get_pvs(*names.values(), connection_state_callback=connection)
        for (name, _), pv in zip(names.items(), pvs, strict=True):
            view.connected[name] = False
            kind = ChannelType.TIME_STRING if name in ENUMS else "time"
            sub = pv.subscribe(data_type=kind)
            callback = self._update(view, name)
            self._callbacks.append(callback)
            sub.add_callback(callback)
            self._subscriptions.append(sub)

    def _connection(self, view: RigView, names: dict[str, str]):
        by_pv = {pv: f for f, pv in names.items()}

        def changed(pv, state: str) -> None:
            with self._lock:
                view.connected[by_pv[pv.name]] = state == "connected"

        return changed

    def _update(self, view: RigView, name: str):
        def updated(sub, response) -> None:
            data = response.data
            if response.data_type in (ChannelType.TIME_STRING, ChannelType.TIME_CHAR):
                raw = data[0] if response.data_type == ChannelType.TIME_STRING else bytes(data)
                value = raw.rstrip(b"\0").decode(errors="replace")
            else:
                value = float(data[0])
            with self._lock:
                view.values[name] = value
                view.severities[name] = int(response.metadata.severity)
                view.connected[name] = True
                view.updated = time.time()

        return updated

    def _poll_queues(self) -> None:
        from ..stack import manager_api

        apis = {name: manager_api(view.rig) for name, view in self.views.items()}
        try:
            while not self._stop.wait(self.queue_period):
                for name, api in apis.items():
                    queue = _queue_state(api)
                    with self._lock:
                        self.views[name].queue = queue
        finally:
            for api in apis.values():
                api.close()

    def snapshot(self) -> list[dict[str, Any]]:
        events = self._lab_events()
        with self._lock:
            views = [view.snapshot() for view in self.views.values()]
        for view in views:
            view["lab_event"] = events.get(view["name"], "")
        return views

    def _lab_events(self) -> dict[str, str]:
        """Each rig's newest line of the lab's event log (read again when it changed)."""
        if self.directory is None:
            return {}
        from ..stack import last_events

        try:
            changed = (self.directory / "events.jsonl").stat().st_mtime
        except OSError:
            return {}
        if changed != self._events[0]:
            self._events = (changed, last_events(self.directory))
        return self._events[1]

    def close(self) -> None:
        self._stop.set()
        self._poller.join(timeout=5)
        self.context.disconnect()


def _queue_state(api) -> dict[str, Any]:
    try:
        status = api.status()
        queue = api.queue_get() if status["items_in_queue"] or status["running_item_uid"] else {}
    except Exception:
        return {"manager": "unreachable"}
    running = queue.get("running_item") or {}
    return {
        "manager": status["manager_state"],
        "worker": status["worker_environment_exists"],
        "queued": status["items_in_queue"],
        "running": running.get("name", ""),
        "next": [item.get("name", "") for item in queue.get("items", [])[:3]],
        "history": status["items_in_history"],
    }
