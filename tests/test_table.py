"""The protocol table of the contract: one JSON form both sides read, and one numbering
of steps that the plan and the IOC's sequencer share (no IOC process: pure logic)."""

from __future__ import annotations

import json

import pytest

from ssb_contract import table
from ssb_contract.refusals import Refusal
from ssb_contract.table import (
    CyclerStep,
    HoldGap,
    Repeat,
    RunCycler,
    SetPressure,
    Table,
    TableError,
    Termination,
)
from ssb_ioc.core.sequencer import SequenceError, load_table
from ssb_ioc.sim import Rig, load_cell_file
from ssb_plans.cycling import plan_steps, sequence_table
from ssb_plans.protocol import parse

PROTOCOL = """\
Set pressure to 50 MPa
Rest for 1 minute
Repeat 3 times:
    Charge at C/5 until 4.2 V
    Hold at 4.2 V until 0.1 mA
    Repeat 2 times:
        Discharge at 1 mA for 10 minutes
    Measure impedance from 100 kHz to 1 Hz
Ramp pressure to 80 MPa at 1 MPa/s
Hold pressure at 80 MPa for 5 minutes
Hold gap
"""


def charge(text: str = "CC") -> RunCycler:
    terms = (Termination("Voltage", 4.2, "Rising"), Termination("Time", 600.0))
    return RunCycler(CyclerStep("CC", current=1e-3, terminations=terms), text, period=2.0)


def test_a_table_survives_its_json_form():
    original = Table(
        (
            SetPressure("set", 50.0, text="P 50"),
            Repeat(2, (charge(), Repeat(3, (HoldGap("gap"),)))),
            SetPressure("ramp", 80.0, rate=0.5),
            SetPressure("hold", 80.0, duration=30.0),
            RunCycler(CyclerStep("PEIS", f_start=1e5, f_end=1.0, points_per_decade=7)),
        ),
        fast_steps=frozenset({2, 3}),
        hold_steps="all",
        owner={"sequence_id": "abc", "plan": "run_protocol"},
    )
    again = Table.from_json(original.to_json())
    assert again == original
    assert again.to_json() == original.to_json()
    assert again.total == original.total == 1 + 2 * (1 + 3) + 3


def test_the_plan_and_the_sequencer_number_steps_alike():
    """The plan's step numbers (and cycles) are those the instrument logs its samples
    with: both come from the one expansion, over the plan's tree and over the table."""
    protocol = parse(PROTOCOL)
    planned = plan_steps(protocol, capacity=5.0, i_max=0.02)
    loaded = Table.from_json(sequence_table(protocol, planned))
    on_instrument = [(i, c, s.text) for i, c, s in loaded.expand()]
    in_plan = [(p.index, p.cycle, p.text) for p in planned]
    assert on_instrument == in_plan
    assert len(in_plan) == protocol.expanded_steps == loaded.total == 2 + 3 * 5 + 3
    assert [c for _, c, _ in on_instrument] == [0, 0, *[1] * 5, *[2] * 5, *[3] * 5, 3, 3, 3]


def test_expand_from_a_later_step_skips_whole_repeats():
    steps = (HoldGap("a"), Repeat(1000, (HoldGap("b"), HoldGap("c"))), HoldGap("d"))
    assert [(i, c, s.text) for i, c, s in table.expand(steps, 2000)] == [
        (2000, 1000, "b"),
        (2001, 1000, "c"),
        (2002, 1000, "d"),
    ]
    assert table.size(steps) == 2002


def test_the_protocols_repeat_is_the_contracts():
    block = parse("Repeat 2 times:\n    Rest for 1 s\n").steps[0]
    assert isinstance(block, Repeat) and block.count == 2


def doc(*steps, **extra) -> str:
    return json.dumps({"version": 1, "steps": list(steps), **extra})


REST = {"do": "cycler", "step": {"kind": "rest", "terminations": [["time", 1, "Auto"]]}}


@pytest.mark.parametrize(
    ("source", "words", "code"),
    [
        (b"\xff{", "not UTF-8", Refusal.INVALID),
        ("[1, 2", "not JSON", Refusal.INVALID),
        ("[]", "expected a JSON object", Refusal.INVALID),
        (json.dumps({"version": 2, "steps": [REST]}), "version 2, expected 1", Refusal.INVALID),
        (doc(), "steps: expected a non-empty list", Refusal.INVALID),
        (doc(REST, {"do": "dance"}), "steps[1].do: 'dance'", Refusal.INVALID),
        (doc({"repeat": True, "steps": [REST]}), "steps[0].repeat", Refusal.INVALID),
        (doc({"repeat": 10**6 + 1, "steps": [REST]}), "at most 1000000", Refusal.LIMIT),
        (
            doc({"do": "cycler", "step": {"kind": "jog"}}),
            "steps[0].step.kind: 'jog' is not one of",
            Refusal.INVALID,
        ),
        (
            doc({"do": "cycler", "step": {"kind": "cc", "current": float("nan")}}),
            "steps[0].step.current: nan outside",
            Refusal.LIMIT,
        ),
        (
            doc({"do": "cycler", "step": {"kind": "rest", "terminations": [["time", 1, "Up"]]}}),
            "steps[0].step.terminations[0]: direction 'Up'",
            Refusal.INVALID,
        ),
        (
            doc({"do": "cycler", "step": {"kind": "rest", "terminations": [["time", 1]] * 4}}),
            "at most 3",
            Refusal.INVALID,
        ),
        (doc({"do": "pressure", "action": "push"}), "steps[0].action: 'push'", Refusal.INVALID),
        (
            doc({"do": "pressure", "action": "ramp", "pressure": 5, "rate": "fast"}),
            "steps[0].rate: expected a number",
            Refusal.INVALID,
        ),
        (doc({"do": "gap", "period": 0}), "steps[0].period: 0 outside", Refusal.LIMIT),
        (doc(REST, owner=[1]), "owner: expected an object", Refusal.INVALID),
        (doc(REST, fast_steps=[0]), "fast_steps: expected step numbers", Refusal.INVALID),
    ],
)
def test_a_malformed_table_is_refused_naming_its_entry(source, words, code):
    with pytest.raises(TableError) as refused:
        Table.from_json(source)
    assert words in str(refused.value)
    assert refused.value.code == code


def test_the_rig_checks_what_the_contract_cannot_know():
    """Well-formed but beyond this rig: its set-point range, its ramp rate and its
    channel's limits are the IOC's to judge, with the same path."""
    rig = Rig(load_cell_file("si-nmc"), seed=1)
    high = rig.max_setpoint + 1
    for step, words in [
        ({"do": "pressure", "action": "set", "pressure": high}, "steps[0].pressure"),
        ({"do": "pressure", "action": "ramp", "pressure": 5, "rate": 1e6}, "steps[0].rate"),
        (
            {"text": "too much", "do": "cycler", "step": {"kind": "cc", "current": 5.0}},
            "steps[0] (too much): current 5 A outside",
        ),
    ]:
        Table.from_json(doc(step))  # well formed
        with pytest.raises(SequenceError) as refused:
            load_table(rig, doc(step))
        assert words in str(refused.value) and refused.value.code == Refusal.LIMIT
