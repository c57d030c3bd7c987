"""Real-instrument backends: rig files, the Modbus codec, and the IOC driving emulated
instruments over Modbus TCP (both topologies), with the emulators' faults."""

from __future__ import annotations

import json
import math
import struct
import time
from pathlib import Path

import numpy as np
import pytest
from caproto import AlarmSeverity, AlarmStatus, ChannelType
from conftest import RunningIOC, run_cli

from ssb_ioc.backends import RigFileError, link, load_rig_file
from ssb_ioc.backends.link import CommError, Link
from ssb_ioc.backends.modbus import decode, encode, garbled
from ssb_ioc.backends.rigfile import Register, parse_rig
from ssb_ioc.core.channel import SAMPLE_FIELDS
from ssb_ioc.emulate import EmulatorThread
from ssb_ioc.launch import rig_file_on_free_ports

RIGS = Path(__file__).parent.parent / "rigs"


# --- the register codec ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "fmt"),
    [("int16", "h"), ("uint16", "H"), ("int32", "i"), ("uint32", "I"), ("float32", "f"),
     ("float64", "d")],
)  # fmt: skip
@pytest.mark.parametrize("word_order", ["big", "little"])
@pytest.mark.parametrize("byte_order", ["big", "little"])
def test_codec_matches_the_wire_layout(kind, fmt, word_order, byte_order):
    """The words on the wire are the value's big-endian bytes, with words and bytes
    swapped as the register says; engineering = raw * scale + offset."""
    reg = Register("x", 0, type=kind, scale=0.5, offset=1.0, word_order=word_order,
                   byte_order=byte_order)  # fmt: skip
    raw = 1234 if kind != "int16" else -1234
    packed = struct.pack(">" + fmt, raw)
    words = [int.from_bytes(packed[i : i + 2], "big") for i in range(0, len(packed), 2)]
    if word_order == "little":
        words.reverse()
    if byte_order == "little":
        words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    assert encode(reg, raw * 0.5 + 1.0) == words
    assert decode(reg, words) == (raw, raw * 0.5 + 1.0)


def test_codec_refuses_what_does_not_fit():
    with pytest.raises(ValueError, match="does not fit a int16"):
        encode(Register("command", 0, type="int16", scale=0.01), 400.0)
    with pytest.raises(ValueError, match="not a finite number"):
        encode(Register("setpoint", 0), math.nan)


def test_garbled_frames_are_told_from_replies():
    reply = bytes([0, 7, 0, 0, 0, 7, 1, 4, 4, 0, 1, 0, 2])  # read input: 2 registers
    assert garbled(reply) == ""
    assert garbled(reply[:7] + bytes([0x84, 2])[:1] + reply[8:]) == ""  # exception reply
    assert "function code 0x7b" in garbled(reply[:7] + bytes([0x7B]) + reply[8:])
    assert "does not frame" in garbled(reply[:-1])
    assert "shorter than a header" in garbled(reply[:5])


def test_a_failing_link_backs_off_doubling_to_five_seconds_and_an_answer_resets_it(
    monkeypatch,
):
    """A dead instrument is asked again after 0.25, 0.5, 1, 2, 4, 5, 5 ... s, not every
    scan; until then the attempt fails at once with the reason and the wait left."""
    now = [100.0]
    monkeypatch.setattr(link.time, "monotonic", lambda: now[0])
    press = Link("press at 127.0.0.1:502")
    waits = []
    for _ in range(8):
        with pytest.raises(CommError, match="no connection"):
            press.fail("no connection")
        start = now[0]
        while True:
            try:
                press.may_retry()
                break
            except CommError as ex:
                assert "no connection (retrying in" in str(ex)
                now[0] += 0.05
        waits.append(round(now[0] - start, 2))
    assert waits == pytest.approx([0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0], abs=0.06)
    press.ok()
    with pytest.raises(CommError):
        press.fail("no connection")
    now[0] += 0.25
    press.may_retry()  # back to the first wait
    assert press.error == "no connection"


# --- rig files -------------------------------------------------------------------------------
def _rig(**press) -> dict:
    registers = {
        "pressure": {"address": 0, "table": "input"},
        "position": {"address": 2, "table": "input"},
        "setpoint": {"address": 0},
        "mode": {"address": 2, "type": "uint16"},
    }
    return {
        "rig": {"name": "r"},
        "press": {"driver": "modbus", "host": "127.0.0.1", "registers": registers, **press},
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["press"].pop("host"), "press.host: missing"),
        (lambda d: d["press"].update(driver="serial"), "press.driver: 'serial'"),
        (lambda d: d["press"]["registers"].pop("setpoint"), "registers: missing setpoint"),
        (lambda d: d["press"]["registers"].update(torque={"address": 9}), "unknown torque"),
        (lambda d: d["press"]["registers"]["mode"].update(address=70000), "address: 70000"),
        (lambda d: d["press"]["registers"]["setpoint"].update(table="input"), "must be a holding"),
        (lambda d: d["press"]["registers"]["position"].update(address=1), "overlap"),
        (lambda d: d["press"]["registers"]["pressure"].update(unit="bar"), "scaled to 'MPa'"),
        (lambda d: d["press"]["registers"]["pressure"].update(scale=0.0), "scale: must not be 0"),
        (lambda d: d["press"]["registers"]["pressure"].update(type="float16"), "float16"),
        (lambda d: d["press"].update(topology="ioc"), "registers: missing command"),
        (lambda d: d["press"].update(timeout=math.nan), "not a finite number"),
        (lambda d: d["rig"].update(clock="press"), "no 'clock' register"),
        (lambda d: d["rig"].update(link_timeout=0), r"rig.link_timeout: 0 s outside \(0, 300\]"),
        (lambda d: d["rig"].update(link_timeout=3600), r"rig.link_timeout: 3600 s outside"),
        (lambda d: d["rig"].update(link_timeout="5 s"), "rig.link_timeout: '5 s'"),
        (lambda d: d.update(extra={}), "unknown keys extra"),
        (lambda d: d.update(rig=5), r"rig: expected a table \(\[rig\]\), not 5"),
        (lambda d: d["press"].update(loop=5), r"press.loop: expected a table"),
        (lambda d: d.update(emulator={"speed": "fast"}), "emulator.speed: 'fast' is not a number"),
        (lambda d: d.update(emulator={"speed": -1}), r"emulator.speed: -1 outside"),
        (lambda d: d.update(emulator={"sped": 2}), "unknown keys sped"),
    ],
)
def test_rig_file_refusals_name_the_key(change, message):
    data = _rig()
    change(data)
    with pytest.raises(RigFileError, match=message):
        parse_rig(data)


def test_shipped_rig_files_load_and_every_field_is_documented():
    """Every key the shipped rig files use (commented-out ones included) is explained in
    docs/instruments.md, and each file loads."""
    import re
    import tomllib

    docs = (RIGS.parent / "docs" / "instruments.md").read_text()

    def keys(table: dict) -> set[str]:
        found = set()
        for key, value in table.items():
            found.add(key)
            if isinstance(value, dict) and key != "registers":
                found |= keys(value)
            elif key == "registers":
                found |= {k for spec in value.values() for k in spec}
        return found

    used: set[str] = set()
    for path in sorted(RIGS.glob("*.toml")):
        load_rig_file(path)
        text = path.read_text()
        used |= keys(tomllib.loads(text))
        for line in re.findall(r"^# (\w+ = .*)$", text, re.M):  # commented-out fields
            try:
                field = tomllib.loads(line)
            except tomllib.TOMLDecodeError:
                continue  # prose
            used |= keys(field) | {k for v in field.values() if isinstance(v, dict) for k in v}
    register_names = {"pressure", "position", "gap", "force", "clock", "setpoint", "mode",
                      "command", "signal"}  # fmt: skip
    spans = " ".join(re.findall(r"`[^`\n]+`|\[[\w.]+\]", docs))  # `code` and [tables]
    undocumented = sorted(k for k in used - register_names if not re.search(rf"\b{k}\b", spans))
    assert not undocumented, f"docs/instruments.md does not explain {undocumented}"
    assert {"username", "speed", "word_order", "loop"} <= used  # the walk found them


def test_unreadable_rig_file_is_refused(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[rig\nname = ")
    with pytest.raises(RigFileError, match="not valid TOML"):
        load_rig_file(bad)
    bad.write_bytes(b'[rig]\nname = "\xff"')
    with pytest.raises(RigFileError, match="not a text file"):
        load_rig_file(bad)
    bad.write_text("# " + "x" * 1_000_001)
    with pytest.raises(RigFileError, match="is not a rig file"):
        load_rig_file(bad)
    with pytest.raises(RigFileError, match="cannot read"):
        load_rig_file(tmp_path / "missing.toml")


# --- the IOC on emulated instruments ----------------------------------------------------------
def severity(ioc, name: str) -> tuple[int, int, float]:
    meta = ioc.pv(name).read(data_type=ChannelType.TIME_DOUBLE, timeout=5.0).metadata
    return meta.severity, meta.status, meta.timestamp


@pytest.fixture(params=["emulated.toml", "emulated-ioc-loop.toml"])
def emulated(request, tmp_path, ca_context):
    """(IOC, emulator) for one topology; the IOC serves the emulated instruments."""
    path = rig_file_on_free_ports(RIGS / request.param, tmp_path)
    with EmulatorThread(load_rig_file(path), seed=1) as emulator:
        ioc = RunningIOC(ca_context, extra_args=["--rig", path]).start()
        ioc.rig_file = path
        try:
            yield ioc, emulator
        finally:
            ioc.stop()


def press_to(ioc, pressure: float, timeout: float = 30.0) -> None:
    if ioc.enum("Press:Mode-RB") != "Pressure":
        ioc.put("Press:Mode-SP", "Pressure")
    ioc.put("Press:Pressure-SP", pressure, timeout=timeout)


def test_pressure_move_completes_when_the_instrument_settles(emulated):
    ioc, emulator = emulated
    ioc.put("Press:RampRate-SP", 10.0)
    started = ioc.get("Rig:Time-RB")
    press_to(ioc, 20.0)
    took = ioc.get("Rig:Time-RB") - started
    measured = emulator.call(lambda: emulator.emulator.sim.press.pressure)
    assert abs(ioc.get("Press:Pressure-RB") - 20.0) <= 0.2
    assert abs(measured - 20.0) <= 0.3  # the instrument itself is there
    assert took >= 2.0 - 0.2  # the ramp at 10 MPa/s was followed, not jumped
    assert ioc.enum("Press:Settled-RB") == "Yes"
    assert severity(ioc, "Press:Pressure-RB")[0] == 0


MEASURED = ("Press:Pressure-RB", "Press:Force-RB", "Press:Settled-RB", "LC:Force-RB",
            "LC:Signal-RB", "LC:Overload-RB")  # fmt: skip
# What each lost instrument leaves unknown, alarmed INVALID/COMM; everything else is fresh.
STALE = {
    "controller": (*MEASURED, "Press:Position-RB", "Press:Gap-RB"),
    "drive": ("Press:Position-RB", "Press:Gap-RB", "Press:Output-RB"),
    "amplifier": (*MEASURED, "Press:Error-RB", "Press:Output-RB"),
}
FRESH = ("Press:Mode-RB", "Rig:Time-RB", "Rig:Interlock-RB", "Press:Pressure-SP")
CYCLER_STALE = ("Cyc:Voltage-RB", "Cyc:Current-RB", "Rig:CellVoltage-RB", "Cyc:StepCharge-RB",
                "Cyc:StepDischarge-RB", "Cyc:ChargeCapacity-RB", "Cyc:DischargeCapacity-RB",
                "Cyc:ChargeEnergy-RB", "Cyc:DischargeEnergy-RB")  # fmt: skip


def alarms(ioc, names) -> dict[str, tuple[int, int]]:
    return {name: severity(ioc, name)[:2] for name in names}


@pytest.mark.parametrize(
    ("template", "role", "stale", "unmeasured"),
    [
        ("emulated.toml", "press", STALE["controller"], "gap"),
        ("emulated-ioc-loop.toml", "press", STALE["drive"], "gap"),
        ("emulated-ioc-loop.toml", "load_cell", STALE["amplifier"], "pressure"),
    ],
    ids=["controller", "drive", "amplifier"],
)
def test_lost_link_alarms_locks_the_press_and_recovers(
    template, role, stale, unmeasured, tmp_path, ca_context
):
    path = rig_file_on_free_ports(RIGS / template, tmp_path)
    with EmulatorThread(load_rig_file(path), seed=1) as emulator:
        ioc = RunningIOC(ca_context, extra_args=["--rig", path]).start()
        try:
            lost_link(ioc, emulator, role, stale, unmeasured, controller=role == "press"
                      and template == "emulated.toml")  # fmt: skip
        finally:
            assert ioc.stop() == 0, ioc.stderr


def lost_link(ioc, emulator, role, stale, unmeasured, controller):
    sim = emulator.emulator.sim
    ioc.put("Cyc:LogPeriod-SP", 0.5)  # log often enough to see the outage in the record
    press_to(ioc, 15.0)
    emulator.fault(role, "drop")
    lost_at = time.time()
    # at once: the silent instrument's readbacks are stale, nothing else changes
    ioc.wait_for(lambda: ioc.enum("Rig:Link-RB") != "OK", 5.0, "the link's alarm")
    invalid = (AlarmSeverity.INVALID_ALARM, AlarmStatus.COMM)
    ioc.wait_for(lambda: alarms(ioc, stale) == dict.fromkeys(stale, invalid), 5.0, "stale")
    assert invalid not in alarms(ioc, FRESH).values()
    assert severity(ioc, stale[0])[2] <= lost_at  # the last good value keeps its own time
    # silent for the rig file's link_timeout (5 s): the safe state, not a latched trip
    ioc.wait_for(lambda: ioc.enum("Rig:Link-RB") == "Lost", 15.0, "the safe state")
    assert ioc.enum("Press:Mode-RB") == "Gap"  # piston locked, nothing released
    assert ioc.enum("Rig:Interlock-RB") == "OK"
    assert ioc.text("Rig:Status-RB").startswith("LINK LOST")
    assert severity(ioc, "Rig:Link-RB")[:2] == (AlarmSeverity.MAJOR_ALARM, AlarmStatus.COMM)
    assert ioc.get("Rig:MissedReplies-RB") >= 2
    from conftest import connected_rig

    rig = connected_rig(ioc.prefix)  # the same through the ophyd device
    try:
        assert rig.link.get() == "Lost" and rig.missed_replies.get() >= 2
    finally:
        rig.destroy()
    if not controller and role == "load_cell":  # the drive is told to hold still
        ioc.wait_for(lambda: emulator.call(lambda: sim.press.pid.command) == 0, 5, "a stop")
    # refused while the link is down, saying why
    ioc.put("Press:Mode-SP", "Pressure", wait=False)
    ioc.wait_for(lambda: "Pressure mode refused" in ioc.text("Rig:Msg-RB"), 5.0, "refusal")
    assert f"{role.replace('_', ' ')} at 127.0.0.1" in ioc.text("Rig:Msg-RB")
    assert ioc.enum("Press:Mode-RB") == "Gap"
    # experiment time goes on while the clock's instrument is silent (logging goes on)
    held_at = ioc.get("Rig:Time-RB")
    ioc.wait_for(lambda: ioc.get("Rig:Time-RB") > held_at + 2.0, 10.0, "time going on")
    assert emulator.call(lambda: sim.press.pressure) > 10.0  # the cell is still pressed
    emulator.fault(role, "")
    ioc.wait_for(lambda: severity(ioc, stale[0])[0] == 0, 15.0, "recovery")
    ioc.wait_for(lambda: ioc.enum("Rig:Link-RB") == "OK", 5.0, "the link back")
    assert invalid not in alarms(ioc, stale).values()
    # the instrument was told the safe state once it could hear it: a position hold, or
    # a running drive with its valve closed; it stays so until a client asks again
    assert int(emulator.call(lambda: sim.press.mode)) == (2 if controller else 1)
    assert ioc.enum("Press:Mode-RB") == "Gap"
    press_to(ioc, 10.0)
    assert abs(ioc.get("Press:Pressure-RB") - 10.0) <= 0.2
    # the record says what happened: samples while it was silent carry NaN for what it
    # measured
    rows = samples(ioc)
    column = rows[:, SAMPLE_FIELDS.index(unmeasured)]
    assert np.all(np.diff(rows[:, 0]) == 1)
    assert np.isnan(column).sum() >= 2 and np.isfinite(column[-1]) and np.isfinite(column[0])


@pytest.mark.parametrize(
    ("fault", "options", "says"),
    [
        ("slow", {"delay": 2.0}, "no reply"),
        ("exception", {"code": 4}, "Modbus exception 4 (server device failure)"),
        ("malformed", {}, "malformed reply to reading holding 0..2 (a header that does not frame"),
    ],
)
def test_emulator_faults_lock_the_press_with_the_reason(fault, options, says, tmp_path,
                                                        ca_context):  # fmt: skip
    """Each fault that lasts: its own words in the IOC's message, the alarms, the piston
    locked, the record whole (the samples while the press was silent say NaN), and
    recovery with no reset."""
    path = rig_file_on_free_ports(RIGS / "emulated.toml", tmp_path)
    with EmulatorThread(load_rig_file(path), seed=1) as emulator:
        ioc = RunningIOC(ca_context, extra_args=["--rig", path]).start()
        try:
            ioc.put("Cyc:LogPeriod-SP", 0.5)
            press_to(ioc, 12.0)
            emulator.fault("press", fault, **options)
            ioc.wait_for(lambda: says in ioc.text("Rig:Msg-RB"), 10.0, "the fault's words")
            ioc.wait_for(lambda: ioc.enum("Rig:Link-RB") == "Lost", 20.0, "the safe state")
            invalid = (AlarmSeverity.INVALID_ALARM, AlarmStatus.COMM)
            assert alarms(ioc, STALE["controller"]) == dict.fromkeys(STALE["controller"], invalid)
            assert ioc.enum("Press:Mode-RB") == "Gap"
            held_at = ioc.get("Rig:Time-RB")
            ioc.wait_for(lambda: ioc.get("Rig:Time-RB") > held_at + 2.0, 10.0, "time")
            emulator.fault("press", "")
            ioc.wait_for(lambda: severity(ioc, "Press:Pressure-RB")[0] == 0, 15.0, "recovery")
            assert ioc.enum("Rig:Interlock-RB") == "OK"  # nothing to reset
            press_to(ioc, 12.0)
            rows = samples(ioc)
            pressure = rows[:, SAMPLE_FIELDS.index("pressure")]
            assert np.all(np.diff(rows[:, 0]) == 1)
            assert np.isnan(pressure).sum() >= 2 and np.isfinite(pressure[-1])
        finally:
            assert ioc.stop() == 0, ioc.stderr


def test_check_prints_every_register(tmp_path):
    path = rig_file_on_free_ports(RIGS / "emulated-ioc-loop.toml", tmp_path)
    down = run_cli("ssb_ioc.cli", "--rig", path, "--check")
    assert down.returncode == 1
    assert "no connection" in down.stdout and "is it powered" in down.stdout
    with EmulatorThread(load_rig_file(path), seed=1):
        up = run_cli("ssb_ioc.cli", "--rig", path, "--check")
    assert up.returncode == 0, up.stdout + up.stderr
    lines = up.stdout.splitlines()
    for name in ("position", "gap", "clock", "command", "mode", "force", "signal"):
        row = next(line for line in lines if f" {name} " in line)
        assert row.rstrip().endswith("ok"), row
    force = next(line for line in lines if " force " in line).split()
    assert force[2:4] == ["input", "0"] and force[-2] == "kN"
    assert float(force[5]) * 0.0001 == pytest.approx(float(force[6]), rel=1e-4)


# --- the BTS cycler channel -------------------------------------------------------------------
def samples(ioc) -> np.ndarray:
    """Every sample the IOC holds, as rows of SAMPLE_FIELDS."""
    return ioc.rows("Cyc:Buf:", len(SAMPLE_FIELDS))


@pytest.fixture
def cycling(tmp_path, ca_context):
    """(IOC, emulator) of rigs/emulated.toml at 500x, charging the cell at 1 mA."""
    path = rig_file_on_free_ports(RIGS / "emulated.toml", tmp_path)
    with EmulatorThread(load_rig_file(path), speed=500.0, seed=1) as emulator:
        ioc = RunningIOC(ca_context, extra_args=["--rig", path]).start()
        try:
            press_to(ioc, 20.0)
            ioc.put("Rig:CellCurrent-SP", 1e-3)
            ioc.wait_for(lambda: ioc.get("Cyc:Current-RB") == pytest.approx(1e-3), 10, "charge")
            yield ioc, emulator
        finally:
            assert ioc.stop() == 0, ioc.stderr


@pytest.mark.parametrize(
    ("fault", "options", "says"),
    [
        ("drop", {}, "connection"),
        ("slow", {"delay": 3.0}, "no reply to"),
        ("malformed", {}, "malformed reply"),
    ],
)
def test_cycler_link_faults_alarm_and_lose_no_sample(cycling, fault, options, says):
    """The channel charges on while its link is down; the IOC alarms, keeps the press
    holding, and downloads every point the channel logged meanwhile once it is back."""
    ioc, emulator = cycling
    ioc.wait_for(lambda: ioc.get("Cyc:StepTime-RB") > 300, 20, "some charging")
    emulator.fault("cycler", fault, **options)
    ioc.wait_for(lambda: severity(ioc, "Cyc:Voltage-RB")[0] == AlarmSeverity.INVALID_ALARM,
                 15, "the alarm")  # fmt: skip
    assert says in ioc.text("Rig:Msg-RB")
    invalid = (AlarmSeverity.INVALID_ALARM, AlarmStatus.COMM)
    assert alarms(ioc, CYCLER_STALE) == dict.fromkeys(CYCLER_STALE, invalid)
    assert ioc.enum("Rig:Interlock-RB") == "OK"  # the press holds; the cell is not released
    lost_at = emulator.call(lambda: emulator.emulator.sim.time)
    ioc.wait_for(lambda: emulator.call(lambda: emulator.emulator.sim.time) > lost_at + 500,
                 10, "the channel logging on its own")  # fmt: skip
    emulator.fault("cycler", "")
    ioc.wait_for(lambda: severity(ioc, "Cyc:Voltage-RB")[0] == 0, 20, "recovery")
    assert invalid not in alarms(ioc, CYCLER_STALE).values()
    ioc.wait_for(lambda: ioc.get("Cyc:StepTime-RB") > lost_at + 600 - 300, 20, "catching up")
    rows = samples(ioc)
    seq, test_time = rows[:, 0], rows[:, 1]
    current = rows[:, SAMPLE_FIELDS.index("current")]
    charging = current > 0
    assert np.all(np.diff(seq) == 1) and np.all(np.diff(test_time) >= 0)
    # the channel logs every 10 s (at its simulation step): no 500 s hole where the link
    # was down
    assert np.diff(test_time[charging]).max() < 15.0
    assert ioc.enum("Cyc:Running-RB") == "Yes"


def channel(emulator):
    """(running, latest test id) on the emulated BTS channel itself."""
    bts = emulator.emulator.devices["cycler"]
    return emulator.call(lambda: (bts.rig.cycler.running, bts.test))


def test_a_stop_sent_while_the_link_is_down_reaches_the_channel(cycling):
    """A stop (a client's, an interlock's) is owed to the channel until it hears it: a
    channel left charging by a lost stop would be a cell nobody follows."""
    ioc, emulator = cycling

    def reason() -> str:
        return emulator.call(lambda: emulator.emulator.sim.cycler.reason)

    emulator.fault("cycler", "drop")
    ioc.wait_for(lambda: severity(ioc, "Cyc:Voltage-RB")[0] == AlarmSeverity.INVALID_ALARM,
                 15, "the alarm")  # fmt: skip
    ioc.put("Cyc:Stop-Cmd", 1)
    assert ioc.enum("Cyc:Running-RB") == "No"
    assert channel(emulator)[0]  # the channel cannot know yet
    emulator.fault("cycler", "")
    ioc.wait_for(lambda: reason() == "stopped by the BTS client", 20, "the owed stop")
    ioc.wait_for(lambda: severity(ioc, "Cyc:Voltage-RB")[0] == 0, 20, "recovery")
    assert ioc.enum("Rig:Interlock-RB") == "OK" and ioc.enum("Press:Mode-RB") == "Pressure"
    rows = samples(ioc)
    assert np.all(np.diff(rows[:, 0]) == 1)


def test_a_start_whose_reply_is_lost_is_followed_not_sent_twice(cycling):
    """The start reaches the channel but its reply is late: the IOC finds the new test on
    the channel once the link answers, follows it, and stores its points."""
    ioc, emulator = cycling
    ioc.put("Rig:CellCurrent-SP", 0.0)
    ioc.wait_for(lambda: not channel(emulator)[0], 10, "the channel at rest")
    _, before = channel(emulator)
    first = ioc.get("Cyc:Buf:NextSeq-RB")
    emulator.fault("cycler", "slow", delay=3.0, command="start")
    ioc.put("Rig:CellCurrent-SP", 1e-3, wait=False)
    ioc.wait_for(lambda: channel(emulator)[0], 20, "the start to reach the channel")
    started = emulator.call(lambda: emulator.emulator.sim.time)
    ioc.wait_for(lambda: "no reply to start" in ioc.text("Rig:Msg-RB"), 15, "the lost reply")
    emulator.fault("cycler", "")
    ioc.wait_for(lambda: severity(ioc, "Cyc:Voltage-RB")[0] == 0, 20, "recovery")
    ioc.wait_for(lambda: ioc.get("Cyc:Buf:NextSeq-RB") > first + 20, 20, "the new test's points")
    assert ioc.get("Cyc:Current-RB") == pytest.approx(1e-3)
    assert channel(emulator) == (True, before + 1)  # one start, not two
    rows = samples(ioc)
    assert np.all(np.diff(rows[:, 0]) == 1)
    new = rows[rows[:, 0] >= first]
    charging = new[new[:, SAMPLE_FIELDS.index("current")] > 0, 1]
    assert charging.size >= 10 and charging[0] <= started + 15.0  # from its start on


def test_a_step_the_channel_refuses_fails_the_protocol_with_the_reason(tmp_path, ca_context,
                                                                      session):  # fmt: skip
    from conftest import connected_rig

    from ssb_devices import StepRejected
    from ssb_plans.cycling import run_protocol

    path = rig_file_on_free_ports(RIGS / "emulated.toml", tmp_path)
    with EmulatorThread(load_rig_file(path), speed=500.0, seed=1) as emulator:
        ioc = RunningIOC(ca_context, extra_args=["--rig", path]).start()
        rig = connected_rig(ioc.prefix)
        try:
            emulator.fault("cycler", "refuse")
            protocol = "Set pressure to 20 MPa\nCharge at 1 mA for 1 hour\nRest for 1 hour"
            with pytest.raises(StepRejected, match="the cycler refused the step"):
                session.RE(run_protocol(rig, protocol))
            run = session.catalog[-1]
            assert run.stop["exit_status"] == "fail"
            assert "the cycler refused the step" in run.stop["reason"]
            assert ioc.enum("Press:Mode-RB") == "Pressure"  # the press still holds the cell
            assert abs(ioc.get("Press:Pressure-RB") - 20.0) < 0.5
            emulator.fault("cycler", "")  # a free channel runs the same protocol
            (uid,) = session.RE(run_protocol(rig, protocol))
            assert session.catalog[uid].stop["exit_status"] == "success"
        finally:
            rig.destroy()
            assert ioc.stop() == 0, ioc.stderr


def test_steps_bts_cannot_run_are_refused_before_anything_moves(tmp_path, ca_context):
    path = rig_file_on_free_ports(RIGS / "emulated.toml", tmp_path)
    with EmulatorThread(load_rig_file(path), seed=1):
        ioc = RunningIOC(ca_context, extra_args=["--rig", path]).start()
        try:
            eis = {"kind": "peis", "f_start": 1e5, "f_end": 1.0}
            table = {"version": 1, "steps": [{"do": "cycler", "step": eis}]}
            ioc.pv("Seq:Table-SP").write(
                json.dumps(table).encode(), wait=False, data_type=ChannelType.CHAR
            )
            ioc.wait_for(lambda: "impedance sweep" in ioc.text("Rig:Msg-RB"), 10, "refusal")
            assert "no impedance analyser" in ioc.text("Rig:Msg-RB")
            assert ioc.enum("Seq:State-RB") == "Idle" and ioc.get("Seq:Steps-RB") == 0
        finally:
            assert ioc.stop() == 0, ioc.stderr


def test_a_restarted_ioc_takes_the_press_over_as_it_finds_it(tmp_path, ca_context):
    """Stopping or restarting the IOC never releases a pressed cell: the controller holds
    on its own, and the new IOC adopts its mode and setpoint."""
    path = rig_file_on_free_ports(RIGS / "emulated.toml", tmp_path)
    with EmulatorThread(load_rig_file(path), speed=10.0, seed=1) as emulator:
        first = RunningIOC(ca_context, extra_args=["--rig", path]).start()
        press_to(first, 25.0)
        assert first.stop() == 0
        second = RunningIOC(ca_context, extra_args=["--rig", path]).start()
        try:
            assert "found the press in Pressure mode: taken over" in second.text("Rig:Msg-RB")
            assert second.enum("Press:Mode-RB") == "Pressure"
            assert second.get("Press:Pressure-SP") == pytest.approx(25.0)
            second.wait_for(lambda: second.enum("Press:Settled-RB") == "Yes", 10, "settled")
            sim = emulator.emulator.sim
            assert emulator.call(lambda: sim.press.target) == pytest.approx(25.0)
            assert emulator.call(lambda: sim.press.pressure) == pytest.approx(25.0, abs=0.3)
        finally:
            assert second.stop() == 0, second.stderr


def test_check_names_values_read_in_the_wrong_order():
    from ssb_ioc.backends.check import implausible

    assert implausible("clock", "float64", 1234.5, 1234.5) == ""
    assert implausible("clock", "float64", 0.0, 0.0) == ""
    assert "word and byte order" in implausible("clock", "float64", 1.6e-101, 1.6e-101)
    assert "implausible" in implausible("pressure", "float32", 3e25, 3e25)
    assert implausible("force", "int32", 1.0, 1e-3) == ""  # a count, scaled
    assert "expected 0..500" in implausible("setpoint", "float32", 900.0, 900.0)


def test_check_reads_the_cycler_channel_and_names_a_wrong_one(tmp_path):
    path = rig_file_on_free_ports(RIGS / "emulated.toml", tmp_path)
    with EmulatorThread(load_rig_file(path), seed=1):
        up = run_cli("ssb_ioc.cli", "--rig", path, "--check")
        assert up.returncode == 0, up.stdout
        rows = {line.split()[1]: line for line in up.stdout.splitlines() if "BTS" in line}
        assert rows["channel"].split()[6] == "finish" and rows["voltage"].endswith("ok")
        right = Path(path).read_text()
        Path(path).write_text(right.replace('"27-1-1-1"', '"27-9-9-9"'))
        down = run_cli("ssb_ioc.cli", "--rig", path, "--check")
        Path(path).write_text(right.replace("[cycler]\n", '[cycler]\npassword = "guess"\n'))
        refused = run_cli("ssb_ioc.cli", "--rig", path, "--check")
    assert down.returncode == 1
    assert "channel 27-9-9-9 is not on this server (it has: 27-1-1-1)" in down.stdout
    assert refused.returncode == 1
    assert "the BTS server refused the login (cycler.username, cycler.password)" in refused.stdout


def test_check_names_a_missing_cell_file_and_a_step_folder_it_cannot_write(tmp_path):
    import re

    path = rig_file_on_free_ports(RIGS / "emulated.toml", tmp_path)
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    with EmulatorThread(load_rig_file(path), seed=1):  # the instruments answer
        right = Path(path).read_text()
        wrong = right.replace('cell = "si-nmc"', f'cell = "{tmp_path}/gone.toml"')
        Path(path).write_text(re.sub(r"(?m)^step_dir = .*$", f'step_dir = "{blocked}/steps"',
                                     wrong))  # fmt: skip
        found = run_cli("ssb_ioc.cli", "--rig", path, "--check")
        Path(path).write_text(right)
        fine = run_cli("ssb_ioc.cli", "--rig", path, "--check")
    assert found.returncode == 1
    assert f"rig.cell: cell file refused: cannot read cell file {tmp_path}/gone.toml" in (
        found.stdout
    )
    assert f"cycler.step_dir: cannot write step files in {blocked}" in found.stdout
    assert fine.returncode == 0, fine.stdout
    assert re.search(r"(?m)^cycler +step_dir .* writable +ok$", fine.stdout), fine.stdout


def test_what_only_the_simulation_can_do_is_refused_on_instruments(tmp_path, ca_context):
    """Speed, fault injection and a tare of a controller's own load cell: each refused
    with the reason, nothing changed."""
    path = rig_file_on_free_ports(RIGS / "emulated.toml", tmp_path)
    with EmulatorThread(load_rig_file(path), seed=1):
        ioc = RunningIOC(ca_context, extra_args=["--rig", path]).start()
        try:
            for name, value, says in [
                ("Rig:Speed-SP", 100.0, "real instruments keep their own time"),
                ("Rig:InjectFault-Cmd", 1, "fault injection acts on the simulated cell"),
                ("LC:Tare-Cmd", 1, "the press controller zeroes its own load cell"),
            ]:
                ioc.put(name, value, wait=False)
                ioc.wait_for(lambda says=says: says in ioc.text("Rig:Msg-RB"), 5.0, says)
            assert ioc.get("Rig:Speed-SP") == 1.0
            assert ioc.get("LC:TareOffset-RB") == 0.0
            assert ioc.get("Rig:ActualSpeed-RB") < 5.0  # the emulator's clock, at 1x
        finally:
            assert ioc.stop() == 0, ioc.stderr


def test_bts_client_speaks_the_wire_format_byte_for_byte():
    """The BTS client against a peer written from the API's message formats (as the open
    aurora-neware client sends and parses them), not from our emulator's code: the same
    constants on both sides could hide a mistake in either."""
    import asyncio

    from ssb_ioc.backends.bts import BtsClient, Channel

    end = b"\n\n#\r\n"
    head = b'<?xml version="1.0" encoding="UTF-8" ?><bts version="1.0">'
    replies = {
        b"connect": b"<cmd>connect_resp</cmd><result>ok</result>",
        b"inquire": b'<cmd>inquire_resp</cmd><list count="1"><inquire ip="127.0.0.1" '
        b'devtype="27" devid="1" subdevid="1" chlid="1" workstatus="working" '
        b'voltage="3.7012" current="0.0010">true</inquire></list>',
        b"download": b'<cmd>donwload_resp</cmd><download testid="12" count="2"/><list count="2">'
        b'<data seq="1" testtime="10000" volt="3.70" curr="0.001" cap="0.0000027" eng="0.00001"/>'
        b'<data seq="2" testtime="20000" volt="3.71" curr="0.001" cap="0.0000055" eng="0.00002"/>'
        b"</list>",
    }
    received: list[bytes] = []

    async def exchange():
        hung_up = asyncio.Event()

        async def peer(reader, writer):
            try:
                while True:
                    frame = await reader.readuntil(end)
                    received.append(frame)
                    command = frame.split(b"<cmd>")[1].split(b"</cmd>")[0]
                    writer.write(b'<?xml version="1.0" encoding="UTF-8"?><bts version="1.0">'
                                 + replies[command] + b"</bts>" + end)  # fmt: skip
                    await writer.drain()
            except asyncio.IncompleteReadError:
                pass  # the client hung up
            finally:
                writer.close()
                await writer.wait_closed()
                hung_up.set()

        server = await asyncio.start_server(peer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = BtsClient("127.0.0.1", port, 2.0)
        channel = Channel.parse("27-1-1-1", "127.0.0.1")
        try:
            return await client.inquire(channel), await client.download(channel, 1, 1000)
        finally:
            client.close()
            await asyncio.wait_for(hung_up.wait(), 5)
            server.close()
            await server.wait_closed()

    status, (test, points) = asyncio.run(exchange())
    assert received[0] == (
        head + b"<cmd>connect</cmd><username>admin</username><password>neware</password>"
        b"<type>bfgs</type></bts>" + end
    )
    assert received[1] == (
        head + b'<cmd>inquire</cmd><list count="1"><inquire ip="127.0.0.1" devtype="27" '
        b'devid="1" subdevid="1" chlid="1" aux="0" barcode="1">true</inquire></list></bts>' + end
    )
    assert received[2] == (
        head + b'<cmd>download</cmd><download devtype="27" devid="1" subdevid="1" chlid="1" '
        b'auxid="0" testid="0" startpos="1" count="1000"/></bts>' + end
    )
    assert status["workstatus"] == "working" and float(status["voltage"]) == 3.7012
    assert test == 12 and [p["testtime"] for p in points] == ["10000", "20000"]


def test_a_protocol_rides_out_a_stutter_and_goes_on_after_a_lost_link(tmp_path, ca_context):
    """Under CPU load, slow replies are counted and nothing else; a press silent for the
    link timeout pauses the protocol (press locked, cell at open circuit) and, once it
    answers again, the protocol re-presses and finishes: one run, stored as a success,
    the hold written in the step's record."""
    import os
    import subprocess
    import sys

    from conftest import CA_ENV

    from ssb_analysis.catalog import open_catalog

    path = rig_file_on_free_ports(RIGS / "emulated.toml", tmp_path)
    (tmp_path / "cell.toml").write_text(
        'cell_id = "LINK-1"\nchemistry = "NMC811 | LPSCl | Si"\narea_cm2 = 0.785\n'
        "capacity_mAh = 2.0\n[layers_um]\ncathode = 60\nseparator = 500\nanode = 40\n"
    )
    (tmp_path / "p.txt").write_text("Set pressure to 20 MPa\nCharge at 0.3 mA for 3 hours\n")
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # a busy host
    with EmulatorThread(load_rig_file(path), speed=500.0, seed=1) as emulator:
        ioc = RunningIOC(ca_context, extra_args=["--rig", path]).start()
        env = {**os.environ, **CA_ENV, "XDG_DATA_HOME": str(tmp_path / "home")}
        run = subprocess.Popen(
            [sys.executable, "-m", "ssb_plans.cli", "run", str(tmp_path / "p.txt"), "--prefix",
             ioc.prefix, "--cell", str(tmp_path / "cell.toml"), "--catalog",
             str(tmp_path / "catalog")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            ioc.wait_for(lambda: ioc.enum("Cyc:Running-RB") == "Yes", 60, "the charge")
            emulator.fault("press", "slow", delay=1.0)  # each reply misses its 0.5 s
            ioc.wait_for(lambda: ioc.get("Rig:MissedReplies-RB") >= 2, 10, "missed replies")
            emulator.fault("press", "")
            ioc.wait_for(lambda: ioc.enum("Rig:Link-RB") == "OK", 10, "the link back")
            assert ioc.enum("Seq:State-RB") == "Running" and ioc.enum("Cyc:Running-RB") == "Yes"
            assert ioc.enum("Press:Mode-RB") == "Pressure"  # a stutter changes nothing
            emulator.fault("press", "drop")
            ioc.wait_for(lambda: ioc.enum("Rig:Link-RB") == "Lost", 20, "the safe state")
            ioc.wait_for(lambda: ioc.enum("Seq:State-RB") == "Paused", 5, "the protocol paused")
            assert "communication lost" in ioc.text("Seq:Reason-RB")
            assert ioc.enum("Press:Mode-RB") == "Gap" and ioc.enum("Cyc:Running-RB") == "No"
            assert ioc.enum("Rig:Interlock-RB") == "OK"
            emulator.fault("press", "")
            ioc.wait_for(lambda: ioc.enum("Seq:State-RB") == "Running", 20, "the protocol on")
            assert ioc.enum("Press:Mode-RB") == "Pressure"  # re-pressed to its 20 MPa
            out, err = run.communicate(timeout=300)
            assert run.returncode == 0, out + err
            catalog = open_catalog(tmp_path / "catalog")
            (stored,) = list(catalog.values())
            assert stored.stop["exit_status"] == "success"
            steps = stored["steps"].read()
            charge = steps.sel(time=steps["step_step"] == 2)
            record = str(charge["step_interruptions"].values[0])
            assert "communication lost" in record and "resumed" in record
            # the rest of the step, not the step again (the pause is counted on the
            # channel's last downloaded point: up to one download late)
            assert float(charge["step_duration"].values[0]) == pytest.approx(3 * 3600, rel=0.05)
            assert "soft_short" not in out + err  # the pause is no voltage event
            catalog.context.close()
        finally:
            burner.kill()
            burner.wait()
            if run.poll() is None:
                run.kill()
            assert ioc.stop() == 0, ioc.stderr
