"""Hostile puts from an independent Channel Access client (caproto's threading client, not
our ophyd devices): every writable PV of the IOC gets every wrong kind of value, every
read-only PV gets a write. Each must be refused, change nothing, leave the PV readable and
say why on Rig:Msg-RB (naming the PV and the value)."""

from __future__ import annotations

import math
import queue

import numpy as np
import pytest
from caproto import AccessRights, AlarmSeverity, AlarmStatus, ChannelType

from ssb_contract.records import SAMPLE
from ssb_ioc.server import RigIOC
from ssb_ioc.sim import Rig, load_cell_file

pytestmark = pytest.mark.network

D, L, S = ChannelType.DOUBLE, ChannelType.LONG, ChannelType.STRING


def hostile_values(kind: str, states: int) -> list[tuple[list, ChannelType, str]]:
    """(data, DBR type, what the message must contain) for a PV of ``kind``."""
    common = [
        ([b"abc"], S, "'abc'"),
        ([1.0, 2.0], D, "got 2"),
        ([1.0], ChannelType.STS_DOUBLE, "plain DBR type"),  # would carry alarm fields
    ]
    if kind == "enum":
        return [
            ([1e10], D, "not a state index"),
            ([math.nan], D, "not a state index"),
            ([math.inf], D, "not a state index"),
            ([0.5], D, "not a state index"),
            ([65536], L, "not a state index"),
            ([-1], L, "not a state index"),
            ([states], L, "not a state index"),
            ([b"Bogus"], S, "not one of"),
            ([0, 1], L, "got 2"),
        ]
    if kind == "int":
        return [*common, ([0.5], D, "whole number"), ([math.nan], D, "not a finite number")]
    return [
        *common,
        ([math.nan], D, "not a finite number"),
        ([math.inf], D, "not a finite number"),
        ([-math.inf], D, "not a finite number"),
        ([b"1e999"], S, "not a finite number"),
    ]


class Messages:
    """The IOC's message PV (Rig:Msg-RB) as a queue of the texts posted after subscribing."""

    def __init__(self, ioc, name: str = "Rig:Msg-RB"):
        self.queue: queue.Queue[str] = queue.Queue()
        self.sub = ioc.pv(name).subscribe()

        def on_update(sub, response):
            self.queue.put(bytes(response.data).rstrip(b"\0").decode())

        self.callback = on_update  # caproto holds callbacks by weak reference
        self.sub.add_callback(on_update)
        if ioc.text(name):  # caproto's client drops the first update if empty
            self.queue.get(timeout=5)

    def next(self) -> str:
        return self.queue.get(timeout=5)


def pv_names(prefix: str) -> list[str]:
    return list(RigIOC(prefix=prefix, backend=Rig(load_cell_file("si-nmc"))).pvdb)


def kind_of(pv) -> tuple[str, int]:
    native = pv.channel.native_data_type
    if native == ChannelType.ENUM:
        states = len(pv.read(data_type=ChannelType.CTRL_ENUM).metadata.enum_strings)
        return "enum", states
    if native == ChannelType.CHAR:
        return "text", 0
    return ("int" if native == ChannelType.LONG else "float"), 0


def snapshot(pv):
    return pv.read(data_type=ChannelType.STRING, timeout=5).data


def test_every_writable_pv_refuses_every_hostile_value(ioc):
    messages = Messages(ioc)
    writable = read_only = 0
    for name in pv_names(ioc.prefix):
        pv = ioc.pv(name[len(ioc.prefix) :])
        short = name[len(ioc.prefix) :]
        if AccessRights.WRITE not in pv.access_rights:
            read_only += 1
            before = snapshot(pv) if "Rows" not in name else None
            pv.write([1.0], data_type=D, wait=False)
            text = messages.next()
            assert text.startswith(f"{name} refused") and "read-only" in text, text
            continue
        kind, states = kind_of(pv)
        if kind == "text":
            continue
        writable += 1
        before = snapshot(pv)
        for data, data_type, words in hostile_values(kind, states):
            pv.write(data, data_type=data_type, wait=False)  # a client that does not wait
            text = messages.next()
            assert text.startswith(f"{name} refused"), (short, data, text)
            assert words in text, (short, data, text)
            assert snapshot(pv) == before, (short, data)  # readable and unchanged
        sts = pv.read(data_type=ChannelType.STS_STRING).metadata
        assert (sts.status, sts.severity) == (AlarmStatus.WRITE, AlarmSeverity.MAJOR_ALARM)
    assert writable >= 60 and read_only >= 60  # the sweep saw the whole IOC


def test_a_refused_enum_put_does_not_switch_the_press_off(ioc):
    ioc.put("Press:Mode-SP", "Pressure")
    ioc.put("Press:Pressure-SP", 80.0, timeout=20)
    messages = Messages(ioc)
    for value in (1e10, math.nan, 0.5, 65536.0):
        ioc.pv("Press:Mode-SP").write([value], data_type=D, wait=False)
        assert "not a state index" in messages.next()
    assert ioc.enum("Press:Mode-RB") == "Pressure"
    assert abs(ioc.get("Press:Pressure-RB") - 80.0) < 1.0


def test_the_next_good_put_clears_the_write_alarm(ioc):
    pv = ioc.pv("Press:KP-SP")
    assert pv.write([b"abc"], data_type=S, timeout=5.0).status.name == "ECA_PUTFAIL"
    assert pv.read(data_type=ChannelType.STS_DOUBLE).metadata.status == AlarmStatus.WRITE
    pv.write([12.5], wait=True, timeout=5)
    sts = pv.read(data_type=ChannelType.STS_DOUBLE).metadata
    assert (sts.status, sts.severity) == (AlarmStatus.NO_ALARM, AlarmSeverity.NO_ALARM)
    mode = ioc.pv("Press:Mode-SP")
    assert mode.write([7], data_type=L, timeout=5.0).status.name == "ECA_PUTFAIL"
    mode.write([b"Pressure"], data_type=S, wait=True, timeout=5)
    assert mode.read(data_type=ChannelType.STS_ENUM).metadata.severity == AlarmSeverity.NO_ALARM


@pytest.mark.parametrize(
    ("name", "data", "data_type", "expected"),
    [
        ("Press:Mode-SP", [2.0], D, "Gap"),  # a whole float index is an index
        ("Press:Mode-SP", [1], L, "Pressure"),
        ("Press:KP-SP", [b" 12.5 "], S, "12.5"),  # a string that is a number
        ("Press:Stop-Cmd", [1.0], D, "0"),  # the button acts and returns to 0
    ],
)
def test_plain_values_of_another_type_are_accepted(ioc, name, data, data_type, expected):
    pv = ioc.pv(name)
    pv.write(data, data_type=data_type, wait=True, timeout=5)
    assert snapshot(pv)[0].decode() == expected


def test_refusals_leave_the_data_buffer_intact(ioc):
    ioc.put("Rig:Speed-SP", 5000.0)
    ioc.put("Rig:CellCurrent-SP", 1e-3)
    ioc.wait_for(lambda: ioc.get("Cyc:Buf:NextSeq-RB") > 20, what="samples logged")
    before = ioc.rows("Cyc:Buf:", SAMPLE.width, 0)
    messages = Messages(ioc)
    for name in ("Cyc:Buf:Page0-RB", "Cyc:Buf:Kept-RB", "Cyc:Buf:NextSeq-RB"):
        ioc.pv(name).write([math.nan, 1.0], data_type=D, wait=False)
        assert "refused" in messages.next()
    after = ioc.rows("Cyc:Buf:", SAMPLE.width, 0)[: len(before)]
    np.testing.assert_array_equal(after, before)
    assert np.all(np.diff(after[:, 0]) == 1)


def test_check_put_is_a_pure_function_with_the_reason_in_its_error():
    from ssb_ioc.server.wire import PutRefused, check_put

    modes = ["Off", "Pressure", "Gap"]
    check_put("enum", [2.0], D, enum_strings=modes)
    check_put("enum", [b"Gap"], S, enum_strings=modes)
    check_put("enum", [1], ChannelType.PUT_ACKT, enum_strings=modes)  # alarm ack setting
    with pytest.raises(PutRefused, match="plain DBR type"):
        check_put("float", [1.0], ChannelType.CTRL_DOUBLE)
    with pytest.raises(PutRefused, match="longer than 4"):
        check_put("text", [b"hello"], S, max_length=4)
    with pytest.raises(PutRefused, match="expected text"):
        check_put("text", [1.0], D, max_length=4)


C = ChannelType.CHAR


@pytest.mark.parametrize(
    ("data", "data_type", "reason"),
    [
        (np.frombuffer(b"abc", dtype=np.uint8), C, "table: not JSON"),
        ([b"abc"], S, "table: not JSON"),
        (np.zeros(0, dtype=np.uint8), C, "an empty put (no elements)"),
        (np.frombuffer(b"[1,2]", dtype=np.uint8), C, "expected a JSON object with 'steps'"),
        (
            np.frombuffer(b'{"version": 1, "steps": "' + b"x" * 5000 + b'"}', dtype=np.uint8),
            C,
            "expected a non-empty list of steps",
        ),
    ],
    ids=["abc", "abc-as-string", "empty", "a-list", "long"],
)
def test_a_refused_table_says_the_reason_first_and_echoes_little(ioc, data, data_type, reason):
    messages = Messages(ioc)
    name = f"{ioc.prefix}Seq:Table-SP"
    ioc.pv("Seq:Table-SP").write(data, data_type=data_type, wait=False)
    text = messages.next()
    assert text.startswith(f"{name} refused: "), text
    assert reason in text.split(" (the put: ")[0], text  # the reason before the echo
    assert len(text) < len(name) + 250 and "np." not in text, text
    assert ioc.enum("Seq:State-RB") == "Idle"
