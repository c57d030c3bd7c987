"""``ssb lab up | status | down``: start, show and stop every part of a lab.

Parts, in the order they start (and the reverse order they stop): PostgreSQL, Redis, the
Tiled server on PostgreSQL, one IOC per rig, one RE Manager per rig (its worker opened,
ready for a queue), one bluesky-httpserver per rig, and the overview page. What was
started is written to ``DIR/lab.json`` as it starts, so ``down`` stops exactly those
processes (each known by pid and start time) and nothing else, even after a failed
``up``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from ssb_ioc.launch import beating, instruments_listen, loopback_ca_env

from . import http_access, postgres, processes
from .layout import Layout, RigPlaces
from .permissions import write_permissions

READY_TIMEOUT = 120.0  # s: a worker importing the suite on a loaded 2-core machine


class LabError(RuntimeError):
    """A lab that cannot be started, shown or stopped; says why and what to do."""


@dataclass
class Part:
    """One started process of the lab."""

    name: str
    address: str
    pid: int
    created: float
    log: str

    @property
    def started(self) -> processes.Started:
        return processes.Started(self.pid, self.created)


# -- the state file -------------------------------------------------------------------
def read_state(directory: Path) -> dict | None:
    path = directory / "lab.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as ex:
        raise LabError(f"{path} is not a lab state file ({ex}); remove it by hand") from None


def lab_state(directory: Path) -> dict:
    """The state of the lab in ``directory``; a directory without one is refused."""
    state = read_state(directory)
    if state is None:
        raise LabError(f"{directory} holds no lab (no lab.json): start one with ssb lab up")
    return state


def layout_of(directory: Path, state: dict) -> Layout:
    return Layout(directory, state["rigs"], state["base_port"], bool(state.get("emulate")))


def parts_of(state: dict) -> list[Part]:
    return [Part(**p) for p in state.get("parts", [])]


class _Recorder:
    """The state file, rewritten after every part started."""

    def __init__(self, layout: Layout, options: dict, progress: Callable[[str], None]):
        self.layout = layout
        self.progress = progress
        self.state = {
            "rigs": layout.rigs,
            "base_port": layout.base_port,
            **options,
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "parts": [],
        }
        self.parts: list[Part] = []

    def add(self, part: Part) -> None:
        self.parts.append(part)
        self.state["parts"] = [asdict(p) for p in self.parts]
        tmp = self.layout.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=1))
        tmp.replace(self.layout.state_file)


# -- up -------------------------------------------------------------------------------
def _executable(name: str) -> str:
    """A console script of this environment (beside the Python running us)."""
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else (shutil.which(name) or name)


def _redis_server() -> str:
    found = shutil.which("redis-server")
    if not found:
        raise LabError(
            "Redis is not installed: install it (Debian/Ubuntu: apt-get install redis-server; "
            "conda: conda install -c conda-forge redis) and run `ssb lab up` again"
        )
    return found


def _redis_ready(port: int) -> bool:
    import redis

    return bool(redis.Redis(host="127.0.0.1", port=port, socket_timeout=1).ping())


def _http_ok(url: str, key: str | None = None) -> bool:
    headers = {"Authorization": f"Apikey {key}"} if key else {}
    return httpx.get(url, headers=headers, timeout=2).status_code == 200


def _tiled_config(layout: Layout, password: str, key: str) -> Path:
    port = layout.postgres_port
    data = layout.directory / "tiled-data"
    data.mkdir(parents=True, exist_ok=True)
    config = {
        "authentication": {"single_user_api_key": key},
        "trees": [
            {
                "path": "/",
                "tree": "catalog",
                "args": {
                    "uri": postgres.uri(port, password, "catalog", "postgresql+asyncpg"),
                    "writable_storage": [str(data), postgres.uri(port, password, "tables")],
                    "init_if_not_exists": True,
                    "specs": [{"name": "CatalogOfBlueskyRuns", "version": "3.0"}],
                },
            }
        ],
    }
    return _private_file(layout.directory / "tiled.yml", json.dumps(config, indent=1))


def _private_file(path: Path, text: str) -> Path:
    """A file only its owner reads (it holds a key or a password); JSON is YAML too."""
    path.unlink(missing_ok=True)
    path.touch(mode=0o600)
    path.write_text(text)
    return path


def _http_config(layout: Layout, rig: RigPlaces) -> Path:
    config = {
        "qserver_zmq_configuration": {
            "control_address": rig.zmq_control_addr,
            "info_address": rig.zmq_info_addr,
        },
        **http_access.config_sections(layout),
    }
    return _private_file(layout.rig_dir(rig) / "httpserver.yml", json.dumps(config, indent=1))


def _start_http(recorder: _Recorder, rig: RigPlaces) -> None:
    config = _http_config(recorder.layout, rig)
    argv = [_executable("start-bluesky-httpserver"), "--host", "127.0.0.1",
            "--port", str(rig.http_port), "--config_path", str(config)]  # fmt: skip
    _start(recorder, f"{rig.name}-http", rig.http_uri, argv)


def rig_client_env(layout: Layout, rig: RigPlaces) -> dict[str, str]:
    """The environment of a process that works with ``rig``: its IOC on Channel Access,
    the lab's catalog with its key."""
    return {
        **loopback_ca_env(rig.ca_port),
        "SSB_LAB_RIG": rig.name,
        "SSB_LAB_PREFIX": rig.prefix,
        "SSB_LAB_MD": str(layout.rig_dir(rig) / "runengine-md"),
        "SSB_CATALOG": layout.tiled_uri,
        "SSB_CATALOG_API_KEY": layout.key("tiled-api-key"),
    }


def _start(
    recorder: _Recorder,
    name: str,
    address: str,
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    user: str | None = None,
) -> processes.Started:
    log = recorder.layout.logs / f"{name}.log"
    started = processes.start(argv, log, env=env, cwd=recorder.layout.directory, user=user)
    recorder.add(Part(name, address, started.pid, started.created, str(log)))
    return started


def _wait(recorder: _Recorder, name: str, ready: Callable[[], bool]) -> None:
    part = next(p for p in recorder.parts if p.name == name)
    processes.wait_ready(part.started, ready, READY_TIMEOUT, name, Path(part.log))


def _ioc_ready(rig: RigPlaces) -> bool:
    return beating(("127.0.0.1", rig.ca_port), f"{rig.prefix}Rig:Beat-RB")


def up(
    directory: Path,
    rigs: int,
    *,
    base_port: int | None = None,
    speed: float = 1.0,
    cell: str = "si-nmc",
    emulate: Path | None = None,
    progress: Callable[[str], None] = print,
) -> Layout:
    """Start a lab of ``rigs`` rigs in ``directory``; returns once every part answers.
    ``emulate``: a rig file (``rigs/emulated.toml``): each rig is then ``ssb-emulate``'s
    instruments behind their wire protocols, driven by ``ssb-ioc --rig``."""
    from .layout import DEFAULT_BASE_PORT

    directory = directory.expanduser().resolve()
    state = read_state(directory)
    if state is not None:
        alive = [p.name for p in parts_of(state) if p.started.alive()]
        if alive:
            raise LabError(
                f"a lab is already up in {directory} (started {state.get('started')}; "
                f"running: {', '.join(alive)}): `ssb lab status` shows it, `ssb lab down` "
                "stops it"
            )
    if emulate is not None:
        from ssb_ioc.backends import RigFileError, load_rig_file

        emulate = Path(emulate).expanduser().resolve()
        try:
            load_rig_file(emulate)
        except (RigFileError, OSError) as ex:
            raise LabError(f"--emulate {emulate}: {ex}") from None
    layout = Layout(directory, rigs, base_port or DEFAULT_BASE_PORT, emulated=emulate is not None)
    busy = layout.busy_ports()
    if busy:
        raise LabError(
            f"ports in use: {', '.join(busy)}; stop what holds them or choose another "
            f"--base-port (the lab needs {layout.base_port}..{max(layout.ports())})"
        )
    redis_server = _redis_server()
    postgres.binaries()  # refuses now, with how to install it, if PostgreSQL is missing
    directory.mkdir(parents=True, exist_ok=True)
    layout.logs.mkdir(exist_ok=True)
    options = {"speed": speed, "cell": cell, "emulate": str(emulate) if emulate else None}
    recorder = _Recorder(layout, options, progress)
    try:
        _bring_up(recorder, redis_server, speed, cell, emulate, progress)
    except BaseException:
        if layout.state_file.exists():  # stop first: saying so may fail (a closed pipe)
            down(directory, progress=lambda _: None)
            with contextlib.suppress(Exception):
                progress("starting failed: stopped what was started")
        raise
    return layout


def _bring_up(recorder: _Recorder, redis_server: str, speed, cell, emulate, progress) -> None:
    layout = recorder.layout
    password = layout.key("postgres-password")
    tiled_key = layout.key("tiled-api-key")

    data = postgres.data_directory(layout.directory)
    if postgres.initialise(data, password):
        progress(f"PostgreSQL: made a cluster in {data}")
    _start(
        recorder,
        "postgres",
        f"127.0.0.1:{layout.postgres_port}",
        postgres.server_command(data, layout.postgres_port),
        user=postgres.run_as(),
    )
    _wait(recorder, "postgres", lambda: postgres.ready(layout.postgres_port, password))
    postgres.ensure_databases(layout.postgres_port, password)
    progress(f"PostgreSQL   127.0.0.1:{layout.postgres_port}")

    redis_dir = layout.directory / "redis"
    redis_dir.mkdir(exist_ok=True)
    _start(
        recorder,
        "redis",
        f"127.0.0.1:{layout.redis_port}",
        [
            redis_server,
            "--port",
            str(layout.redis_port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(redis_dir),
            "--save",
            "60 1",  # the queues and histories survive a restart of the lab
            "--daemonize",
            "no",
        ],
    )
    _wait(recorder, "redis", lambda: _redis_ready(layout.redis_port))
    progress(f"Redis        127.0.0.1:{layout.redis_port}")

    config = _tiled_config(layout, password, tiled_key)
    _start(
        recorder,
        "tiled",
        layout.tiled_uri,
        [
            _executable("tiled"),
            "serve",
            "config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(layout.tiled_port),
        ],
    )

    for rig in layout.all_rigs():
        rig_dir = layout.rig_dir(rig)
        rig_dir.mkdir(exist_ok=True)
        serves = ["--cell", cell]
        if emulate is not None:
            serves = ["--rig", _start_emulator(recorder, rig, emulate, speed)]
        _start(
            recorder,
            f"{rig.name}-ioc",
            f"{rig.prefix} CA 127.0.0.1:{rig.ca_port}",
            [
                sys.executable, "-m", "ssb_ioc.cli",
                "--prefix", rig.prefix, *serves, "--speed", str(speed),
                "--seed", str(rig.number), "--autosave", str(rig_dir / "autosave"),
            ],
            env=loopback_ca_env(rig.ca_port),
        )  # fmt: skip
    _wait(recorder, "tiled", lambda: _http_ok(f"http://127.0.0.1:{layout.tiled_port}/healthz"))
    progress(f"Tiled        {layout.tiled_uri} (PostgreSQL catalog)")
    for rig in layout.all_rigs():
        _wait(recorder, f"{rig.name}-ioc", functools.partial(_ioc_ready, rig))
        progress(f"{rig.name} IOC     {rig.prefix} on CA port {rig.ca_port}")

    plans_file, groups_file = write_permissions(layout.directory)
    for rig in layout.all_rigs():
        _start(
            recorder,
            f"{rig.name}-manager",
            rig.zmq_control_addr,
            [
                _executable("start-re-manager"),
                "--startup-module",
                "ssb_lab.profile",
                "--existing-plans-devices",
                str(plans_file),
                "--update-existing-plans-devices",
                "NEVER",
                "--user-group-permissions",
                str(groups_file),
                "--redis-addr",
                f"127.0.0.1:{layout.redis_port}",
                "--redis-name-prefix",
                f"ssb_lab_{rig.name}",
                "--zmq-control-addr",
                f"tcp://127.0.0.1:{rig.zmq_control}",
                "--zmq-info-addr",
                f"tcp://127.0.0.1:{rig.zmq_info}",
                "--zmq-publish-console",
                "ON",
                "--keep-re",
            ],
            env=rig_client_env(layout, rig),
        )
    managers = {}
    for rig in layout.all_rigs():
        managers[rig.name] = manager_api(rig)
        _wait(recorder, f"{rig.name}-manager", managers[rig.name].status)
    for api in managers.values():
        status = api.status()
        if not status["worker_environment_exists"]:
            api.environment_open()
    for rig in layout.all_rigs():
        api = managers[rig.name]
        _wait(recorder, f"{rig.name}-manager", functools.partial(_environment_open, api))
        api.close()
        progress(f"{rig.name} manager {rig.zmq_control_addr} (worker open)")

    _start(
        recorder,
        "supervisor",
        "(restarts dead RE workers)",
        [sys.executable, "-m", "ssb_lab.supervisor", "--dir", str(layout.directory)],
        env={"SSB_CATALOG_API_KEY": tiled_key},
    )

    first, *others = layout.all_rigs()  # the first makes the shared account database
    _start_http(recorder, first)
    _wait(recorder, f"{first.name}-http", lambda: http_access.can_log_in(first.http_uri, layout))
    http_access.ensure_keys(first.http_uri, layout)
    for rig in others:
        _start_http(recorder, rig)
    http_key = layout.key("http-api-key")
    for rig in layout.all_rigs():
        _wait(
            recorder,
            f"{rig.name}-http",
            functools.partial(_http_ok, f"{rig.http_uri}/api/status", http_key),
        )
        progress(f"{rig.name} HTTP    {rig.http_uri}")

    _start(
        recorder,
        "overview",
        layout.overview_uri,
        [sys.executable, "-m", "ssb_lab.overview", "--dir", str(layout.directory)],
        env={"SSB_CATALOG_API_KEY": tiled_key},
    )
    _wait(recorder, "overview", lambda: _http_ok(f"{layout.overview_uri}/healthz"))
    progress(f"overview     {layout.overview_uri}")


def _start_emulator(recorder: _Recorder, rig: RigPlaces, template: Path, speed: float) -> str:
    """``ssb-emulate`` for ``rig`` on its instrument ports; returns its rig file."""
    from ssb_ioc.launch import rig_file_on_free_ports

    rig_dir = recorder.layout.rig_dir(rig)
    rig_file = rig_file_on_free_ports(template, rig_dir, iter(rig.instrument_ports))
    name = f"{rig.name}-emulator"
    _start(
        recorder,
        name,
        f"127.0.0.1:{rig.instrument_ports.start}+",
        [sys.executable, "-m", "ssb_ioc.emulate.emulator", rig_file, "--speed", str(speed),
         "--seed", str(rig.number)],
    )  # fmt: skip
    _wait(recorder, name, lambda: instruments_listen(rig_file))
    recorder.progress(f"{rig.name} instruments emulated from {template.name}: {rig_file}")
    return rig_file


def _environment_open(api) -> bool:
    status = api.status()
    if status["worker_environment_state"] == "error" or (
        status["manager_state"] == "idle" and not status["worker_environment_exists"]
    ):
        raise LabError(
            f"the worker did not open its environment: {status['worker_environment_state']}"
        )
    return status["worker_environment_exists"] and status["manager_state"] == "idle"


def manager_api(rig: RigPlaces):
    """queueserver-api's client of ``rig``'s RE Manager (0MQ, on this machine)."""
    from bluesky_queueserver_api.zmq import REManagerAPI

    return REManagerAPI(zmq_control_addr=rig.zmq_control_addr, zmq_info_addr=rig.zmq_info_addr)


# -- status and down ------------------------------------------------------------------
@dataclass
class PartStatus:
    name: str
    address: str
    running: bool
    detail: str


def status(directory: Path) -> list[PartStatus]:
    """Each recorded part: its address, whether it runs, and (managers) its queue."""
    directory = directory.expanduser().resolve()
    state = read_state(directory)
    if state is None:
        raise LabError(f"no lab in {directory} (`ssb lab up` starts one)")
    layout = layout_of(directory, state)
    events = last_events(directory)
    shown = []
    for part in parts_of(state):
        running = part.started.alive()
        detail = f"pid {part.pid}" if running else f"not running (log: {part.log})"
        if running and part.name.endswith("-manager"):
            rig = layout.rig(int(part.name[3:].split("-")[0]))
            detail += "; " + _queue_detail(rig)
            if rig.name in events:
                detail += f"; last: {events[rig.name]}"
        shown.append(PartStatus(part.name, part.address, running, detail))
    return shown


def _queue_detail(rig: RigPlaces) -> str:
    api = manager_api(rig)
    try:
        s = api.status()
    except Exception as ex:
        return f"no answer ({ex})"
    finally:
        api.close()
    worker = "worker open" if s["worker_environment_exists"] else "worker CLOSED"
    return f"{s['manager_state']}, {worker}, {s['items_in_queue']} queued"


def last_events(directory: Path) -> dict[str, str]:
    """Each rig's newest entry in the lab's event log, as a line."""
    from .supervisor import read_events

    newest = {}
    for entry in read_events(directory):
        when = time.strftime("%H:%M:%S", time.localtime(entry["time"]))
        newest[entry["rig"]] = f"{entry['event']} at {when}: {entry['detail']}"
    return newest


def format_status(rows: list[PartStatus]) -> str:
    width = max(len(r.name) for r in rows)
    awidth = max(len(r.address) for r in rows)
    return "\n".join(
        f"{r.name:<{width}}  {r.address:<{awidth}}  {'up  ' if r.running else 'DOWN'}  {r.detail}"
        for r in rows
    )


STOP_ORDER = [  # clients first, stores last
    {"overview", "http", "supervisor"},
    {"manager"},
    {"ioc", "emulator"},
    {"tiled"},
    {"redis", "postgres"},
]
STOP_SIGNAL = {  # (signal, to the children too)
    "postgres": (signal.SIGINT, False),  # fast shutdown: the postmaster stops its backends
    "manager": (signal.SIGTERM, False),  # queueserver's watchdog stops its manager and worker
}


def _kind(name: str) -> str:
    return name.rsplit("-", 1)[-1]


def down(directory: Path, progress: Callable[[str], None] = print) -> int:
    """Stop every recorded part, newest first; returns how many were running."""
    directory = directory.expanduser().resolve()
    state = read_state(directory)
    if state is None:
        raise LabError(f"no lab in {directory}: nothing to stop")
    layout = layout_of(directory, state)
    for part in parts_of(state):
        if part.name.endswith("-manager") and part.started.alive():
            rig = layout.rig(int(part.name[3:].split("-")[0]))
            if _queue_detail(rig).startswith(("executing", "paused")):
                progress(
                    f"{rig.name} was running a plan: its run is left without a stop document "
                    "and the IOC keeps the protocol (Held); after `ssb lab up`, queue "
                    "`attach` to go on"
                )
    stopped = 0
    parts = parts_of(state)
    for tier in STOP_ORDER:  # each tier at once, the tiers one after the other
        chosen = [p for p in parts if _kind(p.name) in tier]
        if not chosen:
            continue
        ran = processes.stop_all([(p.started, *STOP_SIGNAL.get(_kind(p.name),
                                                                (signal.SIGTERM, True)))
                                  for p in chosen])  # fmt: skip
        for part, was in zip(chosen, ran, strict=True):
            progress(f"{part.name}: {'stopped' if was else 'was not running'}")
        stopped += sum(ran)
    (directory / "lab.json").unlink()
    return stopped
