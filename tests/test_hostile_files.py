"""Hostile and clumsy files: protocols that would exhaust memory or crash, cell files that
would start an impossible rig. Each is refused at once, naming where and why."""

from __future__ import annotations

import re
import time

import pytest
from conftest import run_cli

from ssb_ioc.sim import CellFileError, load_cell_file
from ssb_plans.protocol import (
    MAX_STEPS,
    ProtocolError,
    RigLimits,
    check,
    parse,
    summarize,
)

NESTED_50 = "".join("  " * i + "Repeat 2 times:\n" for i in range(50)) + "  " * 50 + "Rest 1\n"
NESTED_1000 = "".join(" " * i + "Repeat 2 times:\n" for i in range(1000)) + " " * 1000 + "R\n"


@pytest.mark.parametrize(
    ("text", "line", "column", "words"),
    [
        ("Repeat 1000000000 times:\n    Rest for 1 s\n", 1, 8, "1,000,000,000 steps"),
        ("Repeat 1000 times:\n  Repeat 1001 times:\n    Rest for 1 s\n", 1, 1, "1,001,000"),
        (NESTED_50, 11, 21, "nested more than 10 deep"),
        (NESTED_1000, 11, 11, "nested more than 10 deep"),
        ("Charge at C/0 until 4.2 V\n", 1, 11, "C/0 is not a C-rate"),
        ("Charge at 0C until 4.2 V\n", 1, 11, "0C is not a C-rate"),
        ("Charge at 0 mA until 4.2 V\n", 1, 11, "must be above 0"),
        ("Rest for 1e999 hours\n", 1, 10, "1e999 is not a finite number"),
        ("Rest for 0 s\n", 1, 10, "a duration must be above 0"),
        ("Rest for 100000 hours\n", 1, 10, "longer than 5 years"),
        ("Measure impedance from 1 Hz to 1 Hz\n", 1, 32, "two different frequencies"),
        ("Measure impedance from 0 Hz to 1 Hz\n", 1, 24, "must be above 0"),
        ("Rest for 1 hour (0 seconds period)\n", 1, 18, "must be above 0"),
        ("Ramp pressure to 10 MPa at 0 MPa/s\n", 1, 28, "must be above 0"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00", 1, 1, "not a text protocol file"),
        ("Rest for 1 hour\n".encode("utf-16"), 1, 1, "not a text protocol file"),
        (b"Rest for 1 hour\n\x00", 2, 1, "not a text protocol file (a NUL byte)"),
        ("Rest for 1 s\n" * 100_000, 1, 1, "characters; at most"),
    ],
)
def test_hostile_protocols_are_refused_where_they_fail_within_a_second(text, line, column, words):
    started = time.monotonic()
    with pytest.raises(ProtocolError) as info:
        parse(text)
    assert time.monotonic() - started < 1.0
    assert (info.value.line, info.value.column) == (line, column), str(info.value)
    assert words in str(info.value)


def test_logging_periods_are_checked_against_the_rig_before_a_run():
    with pytest.raises(ProtocolError, match=re.escape("logging period 0.001 s outside 0.01")):
        check(parse("Rest for 1 hour (0.001 seconds period)\n"), RigLimits())
    check(parse("Rest for 1 hour (1 second period)\n"), RigLimits())


def test_the_largest_protocol_allowed_is_summarized_without_unrolling_it():
    text = "Repeat 1000 times:\n  Repeat 250 times:\n    Charge at C/2 for 1 min\n" * 4
    started = time.monotonic()
    protocol = parse(text)
    summary = summarize(protocol)
    assert time.monotonic() - started < 1.0
    assert summary.steps == protocol.expanded_steps == MAX_STEPS
    assert summary.duration_s == pytest.approx(MAX_STEPS * 60)


def test_summary_multiplies_repeats_as_unrolling_would():
    text = (
        "Set pressure to 50 MPa\nRepeat 3 times:\n  Ramp pressure to 100 MPa at 1 MPa/s\n"
        "  Rest for 10 s\n  Ramp pressure to 60 MPa at 1 MPa/s\n"
    )
    protocol = parse(text)
    summary = summarize(protocol)
    # first ramp 50 s, later ones 40 s; each back down 40 s; 5 s for the set
    assert summary.duration_s == pytest.approx(5 + (50 + 40 + 40 * 2 + 40 * 2) + 3 * 10)
    assert summary.steps == len(protocol.flat()) == 10


def _ssb_run(path):
    return run_cli("ssb_plans.cli", "run", str(path), "--prefix", "NONE:")


def test_ssb_run_refuses_a_binary_file_in_one_line(tmp_path):
    path = tmp_path / "image.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    result = _ssb_run(path)
    assert result.returncode == 2
    assert "line 1, column 1: not a text protocol file" in result.stderr
    assert "Traceback" not in result.stderr


def test_ssb_run_refuses_a_binary_cell_description_before_connecting(tmp_path):
    protocol = tmp_path / "p.txt"
    protocol.write_text("Rest for 1 hour\n")
    cell = tmp_path / "cell.toml"
    cell.write_bytes("cell_id = 'A1'\n".encode("utf-16"))
    result = run_cli("ssb_plans.cli", "run", str(protocol), "--cell", str(cell))
    assert result.returncode == 2
    assert "not a text (UTF-8 TOML/JSON) cell description" in result.stderr
    assert "Traceback" not in result.stderr


# --- cell files ------------------------------------------------------------------------


def si_text() -> str:
    from importlib import resources

    return resources.files("ssb_ioc").joinpath("presets/si-nmc.toml").read_text()


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        ('area = "0.785 cm^2"', 'area = "1e-30 cm^2"', "cell.area: 1e-30 cm**2 is impossible"),
        ('area = "0.785 cm^2"', 'area = "0.02 cm^2"', "could never settle"),
        ('area = "0.785 cm^2"', 'area = "1000 cm^2"', "<= 100): lab cells are"),
    ],
)
def test_implausible_cells_are_refused_with_field_and_bound(tmp_path, old, new, words):
    path = tmp_path / "cell.toml"
    path.write_text(si_text().replace(old, new, 1))
    with pytest.raises(CellFileError, match=re.escape(words)):
        load_cell_file(path)


@pytest.mark.parametrize(
    ("section", "words"),
    [
        ("[cycler]\nbuffer_size = 1e8\n", "cycler.buffer_size: 1e+08 is impossible"),
        ("[cycler]\nbuffer_size = 1000.5\n", "whole number"),
        ('[load_cell]\nsample_rate = "1 MHz"\n', "load_cell.sample_rate"),
        ('[simulation]\ncell_step = "1 ns"\n', "simulation.cell_step"),
    ],
)
def test_rig_sections_have_plausibility_bounds(tmp_path, section, words):
    path = tmp_path / "cell.toml"
    path.write_text(si_text() + "\n" + section)
    with pytest.raises(CellFileError, match=re.escape(words)):
        load_cell_file(path)


@pytest.mark.parametrize(
    "data", [b"\x89PNG\r\n\x1a\n\x00\x01", "[cell]\nname = 'x'\n".encode("utf-16")]
)
def test_undecodable_cell_files_get_one_line(tmp_path, data):
    path = tmp_path / "cell.toml"
    path.write_bytes(data)
    result = run_cli("ssb_ioc.cli", "--cell", str(path))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "not a text cell file" in result.stderr
