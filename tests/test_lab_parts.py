"""The lab's parts that need no running lab: its ports and keys, its refusals before
anything starts, what makes a tile red, the user groups, the process bookkeeping."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from ssb_ioc.launch import rig_file_on_free_ports
from ssb_lab import connect, lab_catalog, processes
from ssb_lab.layout import Layout
from ssb_lab.overview.monitor import level
from ssb_lab.permissions import SUITE_PLANS, write_permissions
from ssb_lab.stack import LabError, down, lab_state, status, up

ROOT = Path(__file__).resolve().parents[1]


def test_ports_follow_one_rule_from_the_base():
    layout = Layout(Path("/lab"), 3, 7100)
    assert (layout.postgres_port, layout.redis_port, layout.tiled_port) == (7100, 7101, 7102)
    assert layout.overview_uri == "http://127.0.0.1:7103"
    rig2 = layout.rig(2)
    assert (rig2.ca_port, rig2.zmq_control, rig2.zmq_info, rig2.http_port) == (
        7120, 7122, 7123, 7124,
    )  # fmt: skip
    assert rig2.prefix == "LAB2:" and rig2.name == "rig2"
    assert len(layout.ports()) == 4 + 4 * 3  # every port distinct
    emulated = Layout(Path("/lab"), 3, 7100, emulated=True)
    assert set(emulated.rig(3).instrument_ports) <= set(emulated.ports())
    assert len(emulated.ports()) == 4 + 9 * 3


@pytest.mark.parametrize(
    ("rigs", "base", "message"),
    [(0, 7100, "1 to 16 rigs"), (17, 7100, "1 to 16 rigs"), (2, 80, "base port 80")],
)
def test_impossible_labs_are_refused(rigs, base, message):
    with pytest.raises(ValueError, match=message):
        Layout(Path("/lab"), rigs, base)


def test_keys_are_made_once_and_only_their_owner_reads_them(tmp_path):
    layout = Layout(tmp_path, 1)
    key = layout.key("tiled-api-key")
    assert key.isalnum() and len(key) == 48  # httpserver accepts alphanumeric keys only
    assert layout.key("tiled-api-key") == key  # kept, not made anew
    assert layout.key("http-api-key") != key
    mode = stat.S_IMODE((tmp_path / "keys" / "tiled-api-key").stat().st_mode)
    assert mode == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700


def test_a_port_in_use_is_named_and_nothing_starts(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        base = taken - 2  # the lab's Tiled port
        with pytest.raises(LabError, match=rf"{taken} \(Tiled\)"):
            up(tmp_path / "lab", 1, base_port=base, progress=lambda _: None)
    assert not (tmp_path / "lab" / "lab.json").exists()


def test_a_bad_emulation_rig_file_is_refused_before_anything_starts(tmp_path):
    bad = tmp_path / "rig.toml"
    bad.write_text("[rig]\nname = 3\n")
    with pytest.raises(LabError, match="--emulate"):
        up(tmp_path / "lab", 1, base_port=7100, emulate=bad, progress=lambda _: None)
    assert not (tmp_path / "lab").exists()


def test_no_lab_is_said_plainly(tmp_path):
    with pytest.raises(LabError, match="no lab in"):
        status(tmp_path)
    with pytest.raises(LabError, match="nothing to stop"):
        down(tmp_path)
    with pytest.raises(LabError, match="ssb lab up"):
        connect(1, tmp_path)
    with pytest.raises(LabError, match="ssb lab up"):
        lab_catalog(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "ssb_plans.cli", "lab", "status", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "no lab in" in done.stderr


def test_a_corrupt_state_file_is_refused_with_what_to_do(tmp_path):
    (tmp_path / "lab.json").write_text("{not json")
    with pytest.raises(LabError, match="remove it by hand"):
        status(tmp_path)


def test_down_stops_only_what_it_started(tmp_path):
    """A recorded process whose pid now belongs to another process (different start time)
    is left alone; the recorded one is stopped."""
    mine = processes.start([sys.executable, "-c", "import time; time.sleep(60)"],
                           tmp_path / "mine.log")  # fmt: skip
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        state = {
            "rigs": 1,
            "base_port": 7100,
            "parts": [
                {"name": "redis", "address": "-", "pid": mine.pid, "created": mine.created,
                 "log": "-"},
                {"name": "tiled", "address": "-", "pid": stranger.pid,
                 "created": psutil.Process(stranger.pid).create_time() - 100, "log": "-"},
            ],
        }  # fmt: skip
        (tmp_path / "lab.json").write_text(json.dumps(state))
        shown = {s.name: s.running for s in status(tmp_path)}
        assert shown == {"redis": True, "tiled": False}  # not the process it started
        assert down(tmp_path, progress=lambda _: None) == 1
        assert not mine.alive()
        assert stranger.poll() is None  # untouched
        assert not (tmp_path / "lab.json").exists()
    finally:
        stranger.kill()
        stranger.wait()
        if mine.alive():
            os.kill(mine.pid, 9)


def test_a_process_that_dies_while_starting_is_reported_with_its_log(tmp_path):
    log = tmp_path / "x.log"
    started = processes.start([sys.executable, "-c", "print('port 5 taken'); raise SystemExit(3)"],
                              log)  # fmt: skip
    with pytest.raises(RuntimeError, match="port 5 taken"):
        processes.wait_ready(started, lambda: False, 30, "thing", log)


def _view(**values):
    base = {"online": True, "alarms": [], "queue": {"manager": "idle", "worker": True,
            "queued": 0}, "state": "Running", "interlock": "OK", "tripped": "OK"}  # fmt: skip
    return {**base, **values}


@pytest.mark.parametrize(
    ("view", "severity", "expected", "why"),
    [
        (_view(), 0, "ok", ""),
        (_view(online=False), 0, "fault", "IOC not answering"),
        (_view(interlock="Tripped", interlock_reason="over-pressure"), 0, "fault",
         "interlock: over-pressure"),
        (_view(tripped="Tripped", trip_reason="voltage"), 0, "fault", "cycler trip"),
        (_view(alarms=["Press:Pressure-RB MAJOR"]), 2, "fault", "alarm"),
        (_view(alarms=["Press:Pressure-RB INVALID"]), 3, "fault", "alarm"),
        (_view(queue={"manager": "unreachable"}), 0, "fault", "RE Manager"),
        (_view(queue={"manager": "idle", "worker": False, "queued": 2}), 0, "fault",
         "worker closed"),
        (_view(alarms=["Cyc:Voltage-RB MINOR"]), 1, "attention", "alarm"),
        (_view(state="Paused"), 0, "attention", "sequence paused"),
        (_view(queue={"manager": "paused", "worker": True, "queued": 0}), 0, "attention",
         "queue paused"),
    ],
)  # fmt: skip
def test_what_turns_a_tile_red_or_amber(view, severity, expected, why):
    got, reason = level(view, severity)
    assert got == expected and why in reason


def test_observers_may_not_write_and_operators_may_run_the_suite(tmp_path):
    """The two files `ssb lab up` writes, judged by queueserver's own rules: what the
    startup module declares, and which group may queue what on which device."""
    from bluesky_queueserver.manager.profile_ops import (
        load_allowed_plans_and_devices,
        validate_plan,
    )

    plans, groups = write_permissions(tmp_path)
    allowed_plans, allowed_devices = load_allowed_plans_and_devices(
        path_existing_plans_and_devices=str(plans), path_user_group_permissions=str(groups)
    )
    assert set(allowed_plans["primary"]) == {*SUITE_PLANS, "count", "mv"}
    assert set(allowed_plans["observer"]) == {"count"}
    assert "rig" in allowed_devices["observer"] and "rig" in allowed_devices["primary"]

    def may(group: str, name: str, *args, **kwargs) -> bool:
        plan = {"name": name, "args": list(args), "kwargs": kwargs, "user_group": group}
        ok, _ = validate_plan(plan, allowed_plans=allowed_plans[group],
                              allowed_devices=allowed_devices[group])  # fmt: skip
        return ok

    assert may("primary", "set_pressure", "rig", 20.0) and may("primary", "mv", "rig", 1)
    assert may("observer", "count", ["rig"])
    # the plans' own type hints, as the queue checks them (parameter annotations)
    assert may("primary", "run_protocol", "rig", "Rest for 1 s", fast_steps="all")
    assert may("primary", "run_protocol", "rig", "Rest for 1 s", fast_steps=[2, 3])
    assert may("primary", "pressure_steps", "rig", [10.0, 20.0], hold=60)
    for name, args, kwargs in (
        ("set_pressure", ("rig", "high"), {}),
        ("run_protocol", ("rig", "Rest for 1 s"), {"fast_steps": "some"}),
        ("pressure_steps", ("rig", ["ten"]), {"hold": 60}),
    ):
        assert not may("primary", name, *args, **kwargs), (name, args, kwargs)
    for name, args in (("mv", ("rig", 1)), ("set_pressure", ("rig", 20.0)),
                       ("run_protocol", ("rig", "Rest for 1 s"))):  # fmt: skip
        assert not may("observer", name, *args), name


def test_emulated_rig_files_take_the_rigs_own_ports(tmp_path):
    path = rig_file_on_free_ports(ROOT / "rigs" / "emulated.toml", tmp_path, iter([9105, 9106]))
    text = Path(path).read_text()
    assert "port = 9105" in text and "port = 9106" in text
    assert f'step_dir = "{tmp_path / "steps"}"' in text


def test_a_started_process_outlives_its_starter_and_is_known_again(tmp_path):
    started = processes.start([sys.executable, "-c", "import time; time.sleep(30)"],
                              tmp_path / "s.log")  # fmt: skip
    try:
        assert started.alive()
        assert os.getsid(started.pid) == started.pid  # a session of its own
        again = processes.Started(started.pid, started.created)
        assert again.alive()
        assert processes.stop(again)
        deadline = time.monotonic() + 10
        while started.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not started.alive()
        assert not processes.stop(again)  # already gone
    finally:
        if started.alive():
            os.kill(started.pid, 9)


def test_a_missing_redis_is_refused_with_how_to_install_it(tmp_path, monkeypatch):
    base = next(b for b in range(12000, 32000, 170) if not Layout(tmp_path, 1, b).busy_ports())
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server anywhere
    with pytest.raises(LabError, match="apt-get install redis-server"):
        up(tmp_path / "lab", 1, base_port=base, progress=lambda _: None)
    assert not (tmp_path / "lab").exists()


@pytest.mark.parametrize("catalog", ["server", "directory"])
def test_a_beamline_profile_imports_the_rigs_devices_and_plans(catalog, tmp_path):
    """The README's recipe for a beamline's own startup script: ``from ssb_lab.profile
    import *`` with the lab's variables gives the rig's device, the suite's plans and a
    RunEngine that stores into the catalog, each run labelled with the rig."""
    script = (
        "from ssb_lab.profile import *\n"
        "from ssb_lab.profile import RIG_NAME\n"
        "import json, sys\n"
        "print(json.dumps({'prefix': rig.prefix, 'rig': RE.md.get('rig', RIG_NAME),\n"
        "    'plans': sorted(n for n in dir() if not n.startswith('_')),\n"
        "    'sparse': sys.modules.get('sparse', 'absent') is None}))\n"
    )
    env = {
        **os.environ,
        "SSB_LAB_RIG": "bl7-press",
        "SSB_LAB_PREFIX": "BL7:",
        "SSB_LAB_MD": str(tmp_path / "md"),
    }
    if catalog == "server":  # the listing mode: the names, no server to reach
        env.update(SSB_CATALOG="http://127.0.0.1:1/api", SSB_LAB_LISTING="1")
    else:  # a beamline's own catalog in a directory: the embedded server needs sparse
        env.update(SSB_CATALOG=str(tmp_path / "catalog"))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["prefix"] == "BL7:" and found["rig"] == "bl7-press"
    assert {"RE", "rig", "run_protocol", "attach", "set_pressure", "count"} <= set(found["plans"])
    assert found["sparse"] is (catalog == "server")  # kept out where it can be


def test_a_folder_without_a_lab_is_refused_by_name(tmp_path):
    """The supervisor started on a folder that holds no lab says so and what to do."""
    with pytest.raises(LabError, match=r"holds no lab .*ssb lab up"):
        lab_state(tmp_path)
    (tmp_path / "lab.json").write_text("{not json")
    with pytest.raises(LabError, match="is not a lab state file"):
        lab_state(tmp_path)


def test_a_plan_parameter_of_a_type_the_queue_is_not_told_of_fails_at_import():
    """lab/profile.py annotates every plan parameter for queueserver from one table of
    types; a parameter of a new type is refused by name, not let through unchecked."""
    script = (
        "from ssb_lab.profile import _for_queue\n"
        "def plan(rig, when: complex = 1j):\n"
        "    yield from ()\n"
        "_for_queue(plan)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "SSB_LAB_LISTING": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "TypeError: plan(when: <class 'complex'>): no queue type for it" in result.stderr
