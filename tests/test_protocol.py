"""The protocol language: PyBaMM forms, pressure/impedance/repeat steps, round trips,
errors with positions, limits and summaries."""

import re
import textwrap

import pytest

import ssb_plans.protocol as protocol_module
from ssb_plans.protocol import (
    Electro,
    GapHold,
    Impedance,
    PressureStep,
    Protocol,
    ProtocolError,
    Quantity,
    Repeat,
    RigLimits,
    Until,
    check,
    parse,
    summarize,
)

# The example in the module's docstring: the documentation must parse.
EXAMPLE = textwrap.dedent(protocol_module.__doc__.split("\n\n")[1])


def one(text):
    (step,) = parse(text).steps
    return step


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Discharge at C/10 until 2.5 V",
            Electro(
                "discharge", Quantity("c_rate", 0.1), until=(Until(Quantity("voltage", 2.5)),)
            ),
        ),
        (
            "Charge at 200 mA for 45 minutes",
            Electro("charge", Quantity("current", 0.2), duration=2700.0),
        ),
        (
            "Hold at 4.2 V until C/50",
            Electro("hold", Quantity("voltage", 4.2), until=(Until(Quantity("c_rate", 0.02)),)),
        ),
        ("Rest for 1 hour", Electro("rest", duration=3600.0)),
        (
            "Discharge at C/3 for 2 hours or until 2.5 V",
            Electro(
                "discharge",
                Quantity("c_rate", 1 / 3),
                duration=7200.0,
                until=(Until(Quantity("voltage", 2.5)),),
            ),
        ),
        (
            "Charge at 1 A until 4.1 V (1 minute period)",
            Electro(
                "charge",
                Quantity("current", 1.0),
                until=(Until(Quantity("voltage", 4.1)),),
                period=60.0,
            ),
        ),
        ("Discharge at 2 W for 30 s", Electro("discharge", Quantity("power", 2.0), duration=30.0)),
        (
            "Discharge at 5 Ohm for 10 sec",
            Electro("discharge", Quantity("resistance", 5.0), duration=10.0),
        ),
        (
            "Discharge at 500 mW for 1 hr",
            Electro("discharge", Quantity("power", 0.5), duration=3600.0),
        ),
        (
            "Charge at 1C until > 4.2 V",
            Electro(
                "charge", Quantity("c_rate", 1.0), until=(Until(Quantity("voltage", 4.2), ">"),)
            ),
        ),
        (
            "Hold at 4100 mV until < 50 mA",
            Electro(
                "hold", Quantity("voltage", 4.1), until=(Until(Quantity("current", 0.05), "<"),)
            ),
        ),
        ("Rest until 3.9 V", Electro("rest", until=(Until(Quantity("voltage", 3.9)),))),
        (
            "discharge at 0.5C for 3 seconds",
            Electro("discharge", Quantity("c_rate", 0.5), duration=3.0),
        ),
    ],
)
def test_pybamm_step_forms_parse_with_pybamm_meaning(text, expected):
    assert one(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Set pressure to 100 MPa", PressureStep("set", 100.0)),
        ("Ramp pressure to 50 MPa at 0.5 MPa/s", PressureStep("ramp", 50.0, rate=0.5)),
        ("Ramp pressure to 500 kPa at 30 MPa/min", PressureStep("ramp", 0.5, rate=0.5)),
        ("Hold pressure at 100 MPa for 10 minutes", PressureStep("hold", 100.0, duration=600.0)),
        ("Measure impedance from 1 MHz to 100 mHz", Impedance(1e6, 0.1)),
    ],
)
def test_pressure_and_impedance_steps(text, expected):
    assert one(text) == expected


def test_repeats_nest_and_comments_and_blank_lines_are_ignored():
    p = parse(
        "Repeat 2 times:\n  Rest for 1 s\n\n  # note\n  Repeat 3 times:\n"
        "      Charge at 1 A for 2 s\n  Rest for 3 s\nSet pressure to 5 MPa\n"
    )
    outer = p.steps[0]
    assert isinstance(outer, Repeat) and outer.count == 2
    assert isinstance(outer.steps[1], Repeat) and outer.steps[1].count == 3
    assert len(p.flat()) == 2 * (1 + 3 + 1) + 1


def test_the_example_protocol_parses_and_round_trips():
    protocol = parse(EXAMPLE)
    assert len(protocol.steps) == 6
    assert isinstance(protocol.steps[-1], GapHold) and str(protocol.steps[-1]) == "Hold gap"
    assert parse(str(protocol)) == protocol
    assert str(parse(str(protocol))) == str(protocol)


def test_protocols_built_in_python_print_and_parse_back():
    built = Protocol(
        (
            PressureStep("set", 62.4),
            Repeat(
                2,
                (
                    Electro(
                        "charge",
                        Quantity("c_rate", 1 / 3),
                        until=(Until(Quantity("voltage", 4.2)),),
                        period=30.0,
                    ),
                    Electro(
                        "hold",
                        Quantity("voltage", 4.2),
                        duration=600.0,
                        until=(Until(Quantity("current", 1e-5), "<"),),
                    ),
                ),
            ),
            Impedance(7e6, 0.01),
        )
    )
    assert parse(str(built)) == built


@pytest.mark.parametrize(
    ("text", "line", "column", "expected"),
    [
        ("Charge at 200 mAh for 1 hour", 1, 15, "a unit of current, voltage"),
        ("Charge 200 mA for 1 hour", 1, 8, "'at'"),
        ("Charge at 200 mA for 1 fortnight", 1, 24, "a unit of time"),
        ("Rest for 1 hour\nDischarge at C/10 untill 2.5 V", 2, 19, "'for', 'until' or '('"),
        ("Jump at 1 A", 1, 1, "'charge' or 'discharge'"),
        ("Set pressure to 100", 1, 20, "a unit of pressure"),
        ("Ramp pressure to 50 MPa", 1, 24, "'at'"),
        ("Hold at 1 A for 1 hour", 1, 11, "Hold needs a voltage"),
        ("Rest", 1, 5, "Rest needs"),
        ("Repeat 3 times:\nRest for 1 s", 2, 1, "indented step under Repeat"),
        ("Repeat 0 times:\n  Rest for 1 s", 1, 8, "whole number"),
        ("Charge at 1 A for 1 s (1 minute)", 1, 32, "'period'"),
        ("Measure impedance from 1 MHz to 100", 1, 36, "a unit of frequency"),
        ("Charge at 1 A for 1 s ; rest", 1, 23, "unexpected ';'"),
        ("  Rest for 1 s\n    Rest for 2 s", 2, 5, "indentation"),
        ("", 1, 1, "no steps"),
    ],
)
def test_malformed_lines_name_line_column_and_what_was_expected(text, line, column, expected):
    with pytest.raises(ProtocolError) as info:
        parse(text)
    assert (info.value.line, info.value.column) == (line, column), str(info.value)
    assert expected in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Set pressure to 250 MPa", "250 MPa outside 0..200 MPa"),
        ("Ramp pressure to 50 MPa at 100 MPa/s", "ramp rate 100 MPa/s"),
        ("Charge at 5C until 4.2 V", "current 0.01 A outside"),
        ("Rest for 1 s\nHold at 5 V until C/50", "5 V outside"),
        ("Discharge at C/10 until 1.5 V", "until 1.5 V outside"),
        ("Measure impedance from 100 MHz to 1 Hz", "frequency"),
    ],
)
def test_values_outside_the_rig_limits_are_refused_with_their_line(text, message):
    limits = RigLimits(
        max_pressure=200, max_ramp_rate=50, v_min=2.0, v_max=4.5, i_max=0.005, capacity_mAh=2.0
    )
    with pytest.raises(ProtocolError, match=message) as info:
        check(parse(text), limits)
    assert info.value.line == text.count("\n") + 1


def test_summary_counts_steps_cycles_duration_and_data():
    summary = summarize(parse(EXAMPLE), RigLimits(capacity_mAh=2.0), log_period=10.0)
    assert summary.steps == 2 + 3 * 4 + 3
    assert summary.cycles == 3
    # 10 min hold + 3 x (10 h + 1 h + 1 h + 10 h) + impedance + a 100 s ramp
    assert 3 * 22 * 3600 + 600 + 100 < summary.duration_s < 3 * 22 * 3600 + 600 + 100 + 7200
    assert summary.samples > summary.duration_s / 10
    assert "steps" in str(summary) and "MB" in str(summary)


@pytest.mark.parametrize(
    ("pybamm", "ours"),
    [  # PyBaMM's own example strings, read as PyBaMM reads them
        ("Charge at 0.5 C for 45 minutes", "Charge at C/2 for 45 minutes"),
        ("Charge at 1 C until 4.1V", "Charge at 1C until 4.1 V"),
        ("Discharge at 1 C for 10 m", "Discharge at 1C for 10 minutes"),
        ("Hold at 4.1 V until 50 mA", "Hold at 4.1 V until 0.05 A"),
    ],
)
def test_pybamm_step_strings_parse_as_pybamm_reads_them(pybamm, ours):
    assert parse(pybamm) == parse(ours)
    assert parse(str(parse(pybamm))) == parse(pybamm)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            "Rest for \uff11 hour",
            "unexpected '\uff11' (FULLWIDTH DIGIT ONE): type it in plain ASCII",
        ),
        ("Charge at \u0421/5 for 1 hour", "(CYRILLIC CAPITAL LETTER ES): type it in plain ASCII"),
        ("Rest for 1 h\u043eur", "(CYRILLIC SMALL LETTER O)"),
    ],
)
def test_look_alike_characters_are_refused_by_name(text, says):
    """A fullwidth digit and a Cyrillic letter look right on screen: both are refused the
    same way, naming the character."""
    with pytest.raises(ProtocolError, match=re.escape(says)):
        parse(text)


def test_a_byte_order_mark_is_no_text():
    """Notepad starts UTF-8 files with a byte-order mark."""
    for data in (b"\xef\xbb\xbfRest for 1 hour\n", "\ufeffRest for 1 hour\n"):
        (step,) = parse(data).steps
        assert step.duration == 3600.0
