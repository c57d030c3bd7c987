"""The protocol language: PyBaMM ``Experiment`` step strings, plus pressure, impedance
and repeat blocks, one step per line.

    # Si | LPSCl | NMC formation under pressure
    Set pressure to 100 MPa
    Hold pressure at 100 MPa for 10 minutes
    Repeat 3 times:
        Charge at C/10 until 4.2 V
        Hold at 4.2 V until C/50
        Rest for 1 hour
        Discharge at C/10 until 2.5 V
    Measure impedance from 1 MHz to 100 mHz
    Ramp pressure to 50 MPa at 0.5 MPa/s
    Hold gap

Electrochemical steps mean what PyBaMM means: ``Charge``/``Discharge at`` a current (A),
C-rate (``C/10``, ``1C``, ``0.5 C``), power (W) or resistance (Ohm); ``Hold at`` a
voltage; ``Rest``; ``for`` a duration; ``until`` a voltage or a current/C-rate
(optionally ``<``/``>``), joined with ``or``; an optional ``(1 minute period)``. Units
take an ``m`` prefix; ``m`` alone is minutes.
``Hold gap`` locks the press where it is (a constant-gap fixture) until the next pressure
step.

:func:`parse` gives typed steps (:class:`Electro`, :class:`PressureStep`,
:class:`Impedance`, :class:`Repeat`) in a :class:`Protocol`; ``str(protocol)`` prints it
back so that ``parse(str(p)) == p``. Errors name the line, the column and what was
expected.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field

from ssb_contract import table
from ssb_contract.table import MAX_DEPTH, MAX_STEPS

TIME_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "m": 60.0,  # as PyBaMM reads it
    "min": 60.0,
    "mins": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hrs": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
}
ELECTRO_UNITS = {  # unit -> (quantity, factor to SI)
    "A": ("current", 1.0),
    "mA": ("current", 1e-3),
    "V": ("voltage", 1.0),
    "mV": ("voltage", 1e-3),
    "W": ("power", 1.0),
    "mW": ("power", 1e-3),
    "Ohm": ("resistance", 1.0),
    "mOhm": ("resistance", 1e-3),
}
PRESSURE_UNITS = {"MPa": 1.0, "kPa": 1e-3, "Pa": 1e-6, "GPa": 1e3, "bar": 0.1}
RATE_UNITS = {"MPa/s": 1.0, "MPa/min": 1 / 60, "kPa/s": 1e-3}
FREQUENCY_UNITS = {"Hz": 1.0, "mHz": 1e-3, "kHz": 1e3, "MHz": 1e6}
SYMBOL = {"current": "A", "voltage": "V", "power": "W", "resistance": "Ohm"}

# Resource limits: a protocol is checked before anything is built from it.
# MAX_STEPS, MAX_DEPTH: the sequencer's table limits (ssb_contract.table)
MAX_DURATION = 5 * 365.25 * 86400.0  # s: five years, longer than any cell test
MAX_CHARACTERS = 1_000_000  # protocol text


class ProtocolError(ValueError):
    """A protocol that cannot be used; says where (line, column) and what was expected."""

    def __init__(self, line: int, column: int, message: str):
        self.line, self.column = line, column
        super().__init__(f"line {line}, column {column}: {message}")


# --- typed steps ---------------------------------------------------------------------------


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))


def _scaled(x: float, units: list[tuple[str, float]]) -> str:
    """``x`` in the largest unit that shows it exactly (so that it parses back equal)."""
    for name, factor in units:
        value = x / factor
        if value >= 1 and float(value).is_integer() and value * factor == x:
            return f"{_num(value)} {name}"
    return f"{_num(x)} {units[-1][0]}"


def _duration_text(seconds: float) -> str:
    text = _scaled(seconds, [("hours", 3600.0), ("minutes", 60.0), ("seconds", 1.0)])
    return text[:-1] if text.startswith("1 ") else text  # "1 hour", "1 minute"


def _frequency_text(hz: float) -> str:
    return _scaled(hz, [("MHz", 1e6), ("kHz", 1e3), ("Hz", 1.0), ("mHz", 1e-3)])


@dataclass(frozen=True)
class Quantity:
    """An amount: ``kind`` is current (A), c_rate (1/h), voltage (V), power (W) or
    resistance (Ohm)."""

    kind: str
    value: float

    def __str__(self) -> str:
        if self.kind == "c_rate":
            n = round(1 / self.value) if self.value < 1 else 0
            if n > 1 and 1 / n == self.value:
                return f"C/{n}"
            return f"{_num(self.value)}C"
        return f"{_num(self.value)} {SYMBOL[self.kind]}"


@dataclass(frozen=True)
class Until:
    """A termination: ``quantity`` reached; ``op`` is ``<``, ``>`` or None (the step's
    direction decides, as in PyBaMM)."""

    quantity: Quantity
    op: str | None = None

    def __str__(self) -> str:
        return f"until {self.op + ' ' if self.op else ''}{self.quantity}"


@dataclass(frozen=True)
class Electro:
    action: str  # charge | discharge | hold | rest
    amount: Quantity | None = None  # None for rest
    duration: float | None = None  # s
    until: tuple[Until, ...] = ()
    period: float | None = None  # s between logged samples
    line: int = field(default=0, compare=False)

    def __str__(self) -> str:
        parts = [self.action.capitalize()]
        if self.amount is not None:
            parts.append(f"at {self.amount}")
        ends = [f"for {_duration_text(self.duration)}"] if self.duration is not None else []
        ends += [str(u) for u in self.until]
        if ends:
            parts.append(" or ".join(ends))
        if self.period is not None:
            parts.append(f"({_duration_text(self.period)} period)")
        return " ".join(parts)


@dataclass(frozen=True)
class PressureStep:
    action: str  # set | ramp | hold
    pressure: float  # MPa
    rate: float | None = None  # MPa/s, ramp only
    duration: float | None = None  # s, hold only
    line: int = field(default=0, compare=False)

    def __str__(self) -> str:
        if self.action == "set":
            return f"Set pressure to {_num(self.pressure)} MPa"
        if self.action == "ramp":
            rate = math.nan if self.rate is None else self.rate  # a ramp has its rate
            return f"Ramp pressure to {_num(self.pressure)} MPa at {_num(rate)} MPa/s"
        held = math.nan if self.duration is None else self.duration  # a hold has its time
        return f"Hold pressure at {_num(self.pressure)} MPa for {_duration_text(held)}"


@dataclass(frozen=True)
class GapHold:
    """Lock the piston: the gap is held and the pressure follows the cell."""

    line: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return "Hold gap"


@dataclass(frozen=True)
class Impedance:
    f_start: float  # Hz
    f_end: float  # Hz
    line: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return (
            f"Measure impedance from {_frequency_text(self.f_start)} to "
            f"{_frequency_text(self.f_end)}"
        )


@dataclass(frozen=True)
class Repeat(table.Repeat):
    """A ``Repeat n times:`` block; numbered as the sequencer numbers it
    (:func:`ssb_contract.table.expand`)."""

    line: int = field(default=0, compare=False)

    def lines(self, indent: str) -> list[str]:
        out = [f"{indent}Repeat {self.count} times:"]
        for step in self.steps:
            out += _step_lines(step, indent + "    ")
        return out


Step = Electro | PressureStep | GapHold | Impedance | Repeat


def _step_lines(step: Step, indent: str) -> list[str]:
    return step.lines(indent) if isinstance(step, Repeat) else [f"{indent}{step}"]


@dataclass(frozen=True)
class Protocol:
    steps: tuple
    title: str = ""  # the comment line above the first step, if any: what the run is

    def __str__(self) -> str:
        head = [f"# {self.title}"] if self.title else []
        lines = [line for step in self.steps for line in _step_lines(step, "")]
        return "\n".join(head + lines) + "\n"

    def flat(self) -> list[Step]:
        """Every step in execution order, repeats unrolled."""
        return [step for _, _, step in table.expand(self.steps)]

    @property
    def expanded_steps(self) -> int:
        """How many steps :meth:`flat` gives, counted without unrolling."""
        return table.size(self.steps)


# --- tokens and the parser -------------------------------------------------------------------

_TOKEN = re.compile(
    r"""(?P<crate>C/\d+(?:\.\d+)?|\d+(?:\.\d+)?C(?![A-Za-z]))
      | (?P<number>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)
      | (?P<word>[A-Za-z]+(?:/[A-Za-z]+)?)
      | (?P<symbol>[<>():])""",
    re.VERBOSE | re.ASCII,  # digits and letters as typed in ASCII; look-alikes are refused
)


def _unexpected(char: str) -> str:
    """Name a character the language does not take; a look-alike (a fullwidth digit, a
    Cyrillic letter) is named, since it looks right on screen."""
    if char.isascii():
        return f"unexpected {char!r}"
    name = unicodedata.name(char, f"U+{ord(char):04X}")
    return f"unexpected {char!r} ({name}): type it in plain ASCII"


@dataclass
class _Token:
    kind: str
    text: str
    column: int  # 1-based


class _Cursor:
    def __init__(self, text: str, line: int, offset: int):
        self.line, self.tokens, self.i = line, [], 0
        pos = 0
        while pos < len(text):
            if text[pos].isspace():
                pos += 1
                continue
            match = _TOKEN.match(text, pos)
            if match is None:
                raise ProtocolError(line, offset + pos + 1, _unexpected(text[pos]))
            self.tokens.append(_Token(match.lastgroup or "", match.group(), offset + pos + 1))
            pos = match.end()
        self.end_column = offset + len(text) + 1

    def peek(self) -> _Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def next_text(self) -> str:
        """The next token's text ("" at the end of the line)."""
        token = self.peek()
        return "" if token is None else token.text

    def next_column(self) -> int:
        """Where the next token starts (the end of the line at its end)."""
        token = self.peek()
        return self.end_column if token is None else token.column

    def fail(self, expected: str) -> ProtocolError:
        token = self.peek()
        got = f"got {token.text!r}" if token else "the line ended"
        column = token.column if token else self.end_column
        return ProtocolError(self.line, column, f"expected {expected}, {got}")

    def word(self, *options: str) -> str:
        token = self.peek()
        if token is None or token.kind != "word" or token.text.lower() not in options:
            raise self.fail(" or ".join(repr(o) for o in options))
        self.i += 1
        return token.text.lower()

    def accept(self, *options: str) -> str | None:
        token = self.peek()
        if token is not None and token.text.lower() in options:
            self.i += 1
            return token.text.lower()
        return None

    def number(self, what: str = "a number", positive: bool = False) -> float:
        token = self.peek()
        if token is None or token.kind != "number":
            raise self.fail(what)
        self.i += 1
        value = float(token.text)
        if not math.isfinite(value):
            raise ProtocolError(self.line, token.column, f"{token.text} is not a finite number")
        if positive and not value > 0:
            raise ProtocolError(self.line, token.column, f"{what} must be above 0")
        return value

    def unit(self, table: Mapping[str, float | tuple], what: str):
        token = self.peek()
        if token is None or token.kind != "word" or token.text not in table:
            raise self.fail(f"a unit of {what} ({', '.join(table)})")
        self.i += 1
        return table[token.text]

    def done(self) -> None:
        if self.peek() is not None:
            raise self.fail("the end of the line")


def _amount(cur: _Cursor) -> Quantity:
    token = cur.peek()
    if token is not None and token.kind == "crate":
        cur.i += 1
        text = token.text
        number = float(text[2:] if text.startswith("C/") else text[:-1])
        if not (math.isfinite(number) and number > 0):
            raise ProtocolError(cur.line, token.column, f"{text} is not a C-rate above 0")
        return Quantity("c_rate", 1.0 / number if text.startswith("C/") else number)
    value = cur.number("a current, C-rate, voltage, power or resistance", positive=True)
    if cur.accept("c") is not None:  # "0.5 C", as PyBaMM writes it
        return Quantity("c_rate", value)
    kind, factor = cur.unit(ELECTRO_UNITS, "current, voltage, power or resistance")
    return Quantity(kind, value * factor)


def _duration(cur: _Cursor) -> float:
    column = cur.next_column()
    seconds = cur.number("a duration", positive=True) * cur.unit(TIME_UNITS, "time")
    if seconds > MAX_DURATION:
        raise ProtocolError(
            cur.line, column, f"{seconds / 86400 / 365.25:.3g} years is longer than 5 years"
        )
    return seconds


def _electro(cur: _Cursor, action: str, line: int) -> Electro:
    amount = None
    if action != "rest":
        cur.word("at")
        amount = _amount(cur)
        if action == "hold" and amount.kind != "voltage":
            raise ProtocolError(line, cur.tokens[cur.i - 1].column, "Hold needs a voltage")
    duration, period = None, None
    until: list[Until] = []
    while cur.peek() is not None and cur.next_text() != "(":
        if duration is None and not until and cur.accept("for"):
            duration = _duration(cur)
        elif cur.accept("until"):
            op = cur.next_text() if cur.next_text() in ("<", ">") else None
            if op:
                cur.i += 1
            until.append(Until(_amount(cur), op))
        else:
            raise cur.fail(
                "'for', 'until' or '('" if not until and duration is None else "'or' or '('"
            )
        if not cur.accept("or"):
            break
    if cur.accept("("):
        period = _duration(cur)
        cur.word("period")
        if not cur.accept(")"):
            raise cur.fail("')'")
    cur.done()
    if action == "rest" and duration is None and not until:
        raise ProtocolError(line, cur.end_column, "Rest needs 'for' a duration or 'until'")
    return Electro(action, amount, duration, tuple(until), period, line=line)


def _pressure_step(cur: _Cursor, action: str, line: int) -> PressureStep:
    cur.word("pressure")
    cur.word({"set": "to", "ramp": "to", "hold": "at"}[action])
    pressure = cur.number("a pressure") * cur.unit(PRESSURE_UNITS, "pressure")
    rate = duration = None
    if action == "ramp":
        cur.word("at")
        rate = cur.number("a ramp rate", positive=True) * cur.unit(RATE_UNITS, "pressure rate")
    elif action == "hold":
        cur.word("for")
        duration = _duration(cur)
    cur.done()
    return PressureStep(action, pressure, rate, duration, line=line)


def _impedance(cur: _Cursor, line: int) -> Impedance:
    cur.word("impedance")
    cur.word("from")
    f_start = cur.number("a frequency", positive=True) * cur.unit(FREQUENCY_UNITS, "frequency")
    cur.word("to")
    column = cur.next_column()
    f_end = cur.number("a frequency", positive=True) * cur.unit(FREQUENCY_UNITS, "frequency")
    cur.done()
    if f_end == f_start:
        raise ProtocolError(line, column, "an impedance sweep needs two different frequencies")
    return Impedance(f_start, f_end, line=line)


def _step(cur: _Cursor, line: int) -> Step:
    first = cur.word("charge", "discharge", "hold", "rest", "set", "ramp", "measure")
    if first in ("set", "ramp"):
        return _pressure_step(cur, first, line)
    if first == "hold" and cur.next_text().lower() == "pressure":
        return _pressure_step(cur, "hold", line)
    if first == "hold" and cur.next_text().lower() == "gap":
        cur.i += 1
        cur.done()
        return GapHold(line=line)
    if first == "measure":
        return _impedance(cur, line)
    return _electro(cur, first, line)


def read_protocol(data: bytes | str) -> str:
    """Protocol text from a file's bytes: refuses binary or undecodable input, where it is."""
    if isinstance(data, str):
        return data.removeprefix("\ufeff")  # a byte-order mark (Notepad) is no text
    try:
        text = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
    except UnicodeDecodeError as ex:
        bad, why = ex.start, "not UTF-8"
    else:
        bad, why = data.find(b"\0"), "a NUL byte"
    if bad >= 0:
        line, column = _position(data, bad)
        raise ProtocolError(line, column, f"not a text protocol file ({why})")
    return text


def _position(data: bytes, offset: int) -> tuple[int, int]:
    line_start = data.rfind(b"\n", 0, offset) + 1
    return data.count(b"\n", 0, offset) + 1, offset - line_start + 1


def parse(text: str | bytes) -> Protocol:
    """Parse protocol text; raises :class:`ProtocolError` at the first problem.

    Resource limits hold before anything is built: at most ``MAX_CHARACTERS`` of text,
    ``MAX_DEPTH`` nested repeats and ``MAX_STEPS`` steps once repeats are unrolled."""
    text = read_protocol(text)
    if len(text) > MAX_CHARACTERS:
        raise ProtocolError(
            1, 1, f"a protocol of {len(text):,} characters; at most {MAX_CHARACTERS:,}"
        )
    stack: list[tuple[int, list]] = []  # (indent, steps) of each open block, root first
    expect_block = False
    last_line = 0
    title = ""
    for number, raw in enumerate(text.splitlines(), start=1):
        content = raw.split("#", 1)[0].rstrip()
        if not content.strip():
            if not stack and not title and raw.strip().startswith("#"):
                title = _printable(raw.strip().lstrip("#").strip())[:200]
            continue
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            raise ProtocolError(number, 1, "indent with spaces, not tabs")
        indent = len(content) - len(content.lstrip())
        body = content.strip()
        if not stack:
            stack.append((indent, []))  # the first step sets the margin
        elif expect_block:
            if indent <= stack[-1][0]:
                raise ProtocolError(number, indent + 1, "expected an indented step under Repeat")
            stack.append((indent, []))
        while len(stack) > 1 and indent < stack[-1][0]:
            _close(stack)
        if indent != stack[-1][0]:
            raise ProtocolError(number, indent + 1, "indentation does not match any block")
        expect_block = False
        cur = _Cursor(body, number, indent)
        if cur.next_text().lower() == "repeat":
            if len(stack) > MAX_DEPTH:
                raise ProtocolError(
                    number, indent + 1, f"Repeat blocks nested more than {MAX_DEPTH} deep"
                )
            cur.i += 1
            count = cur.number("a repeat count")
            if count < 1 or not float(count).is_integer():
                raise ProtocolError(
                    number, cur.tokens[1].column, "repeat count must be a whole number >= 1"
                )
            if count > MAX_STEPS:
                raise ProtocolError(number, cur.tokens[1].column, _too_many(count))
            cur.word("times", "time")
            if not cur.accept(":"):
                raise cur.fail("':'")
            cur.done()
            stack[-1][1].append(Repeat(int(count), (), line=number))
            expect_block = True
        else:
            stack[-1][1].append(_step(cur, number))
        last_line = number
    if expect_block:
        raise ProtocolError(last_line + 1, 1, "expected an indented step under Repeat")
    if not stack:
        raise ProtocolError(1, 1, "the protocol has no steps")
    while len(stack) > 1:
        _close(stack)
    protocol = Protocol(tuple(stack[0][1]), title)
    if protocol.expanded_steps > MAX_STEPS:
        raise ProtocolError(last_line, 1, f"the protocol {_too_many(protocol.expanded_steps)}")
    return protocol


def _printable(text: str) -> str:
    """Only what a terminal shows as it is (no escape sequences from a file)."""
    return "".join(c for c in text if c.isprintable())


def _too_many(steps: float) -> str:
    return (
        f"expands to {steps:,.0f} steps; at most {MAX_STEPS:,} "
        f"(years of cycling): split it into several protocols"
    )


def _close(stack) -> None:
    """End the innermost Repeat block; refuse it if it unrolls to too many steps."""
    _, steps = stack.pop()
    parent = stack[-1][1]
    header = parent[-1]
    block = Repeat(header.count, tuple(steps), line=header.line)
    expanded = table.size((block,))
    if expanded > MAX_STEPS:
        raise ProtocolError(header.line, 1, f"Repeat {header.count} times {_too_many(expanded)}")
    parent[-1] = block


# --- checks against the rig, and a summary ---------------------------------------------------


@dataclass(frozen=True)
class RigLimits:
    max_pressure: float = 200.0  # MPa
    max_ramp_rate: float = 50.0  # MPa/s
    v_min: float = 2.0
    v_max: float = 4.5
    i_max: float = 0.02  # A
    capacity_mAh: float = 2.0  # to turn C-rates into currents
    log_period_min: float = 0.01  # s, the cycler's logging period range
    log_period_max: float = 86400.0


def current_of(quantity: Quantity, capacity_mAh: float) -> float:
    """A for a current or C-rate quantity."""
    if quantity.kind == "c_rate":
        return quantity.value * capacity_mAh * 1e-3
    return quantity.value


def check(protocol: Protocol, limits: RigLimits) -> None:
    """Refuse values outside the rig's limits, naming the line (column 1)."""
    for step in _all_steps(protocol.steps):
        line = step.line

        def refuse(message: str, line: int = line) -> None:
            raise ProtocolError(line, 1, message)

        if isinstance(step, PressureStep):
            if not 0 <= step.pressure <= limits.max_pressure:
                refuse(f"{_num(step.pressure)} MPa outside 0..{_num(limits.max_pressure)} MPa")
            if step.rate is not None and not 0 < step.rate <= limits.max_ramp_rate:
                refuse(
                    f"ramp rate {_num(step.rate)} MPa/s outside "
                    f"(0, {_num(limits.max_ramp_rate)}] MPa/s"
                )
        elif isinstance(step, Electro) and step.amount is not None:
            q = step.amount
            if q.kind in ("current", "c_rate"):
                amps = current_of(q, limits.capacity_mAh)
                if not 0 < amps <= limits.i_max:
                    refuse(f"current {amps:g} A outside (0, {limits.i_max:g}] A")
            elif q.kind == "voltage" and not limits.v_min <= q.value <= limits.v_max:
                refuse(f"{_num(q.value)} V outside {limits.v_min:g}..{limits.v_max:g} V")
            elif q.kind in ("power", "resistance") and not q.value > 0:
                refuse(f"{q} must be positive")
        elif isinstance(step, Impedance):
            for f in (step.f_start, step.f_end):
                if not 1e-3 <= f <= 1e7:
                    refuse(f"frequency {f:g} Hz outside 1 mHz..10 MHz")
        if isinstance(step, Electro):
            for u in step.until:
                if u.quantity.kind == "voltage" and not (
                    limits.v_min <= u.quantity.value <= limits.v_max
                ):
                    refuse(f"until {u.quantity} outside {limits.v_min:g}..{limits.v_max:g} V")
            if step.duration is not None and not step.duration > 0:
                refuse("a duration must be positive")
            lo, hi = limits.log_period_min, limits.log_period_max
            if step.period is not None and not lo <= step.period <= hi:
                refuse(f"logging period {step.period:g} s outside {lo:g}..{hi:g} s")


def _all_steps(steps):
    for step in steps:
        if isinstance(step, Repeat):
            yield from _all_steps(step.steps)
        else:
            yield step


@dataclass(frozen=True)
class Summary:
    steps: int  # executed, repeats unrolled
    cycles: int  # outermost repeat count (1 if none)
    duration_s: float  # estimate
    samples: int  # estimate at the logging period
    bytes: int

    def __str__(self) -> str:
        return (
            f"{self.steps} steps, {self.cycles} cycle(s), about "
            f"{self.duration_s / 3600:.1f} h, ~{self.samples:,} samples "
            f"(~{self.bytes / 1e6:.1f} MB)"
        )


def summarize(
    protocol: Protocol,
    limits: RigLimits = RigLimits(),
    log_period: float = 10.0,
    columns: int = 14,
) -> Summary:
    """Steps, cycles, and an estimate of duration and data volume: a step ``for`` T takes
    T; a C-rate step until a voltage takes 1/C hours (a full charge or discharge); a CV
    hold until a current takes 1 h; a ramp takes |dP|/rate; an impedance sweep a few
    periods of each frequency (10 points per decade)."""
    duration, samples, _ = _tally(protocol.steps, limits, log_period, 0.0, {})
    repeats = [s for s in protocol.steps if isinstance(s, Repeat)]
    cycles = max((r.count for r in repeats), default=1)
    steps = protocol.expanded_steps
    return Summary(steps, cycles, duration, samples, samples * columns * 8)


def _tally(steps, limits: RigLimits, log_period: float, pressure: float, memo: dict):
    """(duration s, samples, pressure after) of ``steps`` started at ``pressure``, with
    repeats multiplied out rather than unrolled: every iteration after the first starts
    where the first ended, so two tallies of a block give them all."""
    key = (id(steps), pressure)
    if key in memo:
        return memo[key]
    duration, samples, start = 0.0, 0, pressure
    for step in steps:
        if isinstance(step, Repeat):
            t, n, pressure = _tally(step.steps, limits, log_period, pressure, memo)
            if step.count > 1:
                t2, n2, pressure = _tally(step.steps, limits, log_period, pressure, memo)
                t, n = t + (step.count - 1) * t2, n + (step.count - 1) * n2
            duration, samples = duration + t, samples + n
            continue
        t = _estimate(step, limits, pressure)
        if isinstance(step, PressureStep):
            pressure = step.pressure
        duration += t
        period = getattr(step, "period", None) or log_period
        samples += math.ceil(t / period) + 1
    memo[(id(steps), start)] = duration, samples, pressure
    return duration, samples, pressure


def _estimate(step: Step, limits: RigLimits, pressure: float) -> float:
    if isinstance(step, PressureStep):
        if step.action == "ramp":
            return abs(step.pressure - pressure) / (step.rate or math.inf)  # parsed: a rate
        return step.duration or 5.0
    if isinstance(step, GapHold):
        return 0.0
    if isinstance(step, Impedance):
        decades = abs(math.log10(step.f_start / step.f_end))
        freqs = [step.f_end * 10 ** (k / 10) for k in range(int(decades * 10) + 1)]
        return sum(3.0 / f for f in freqs)
    if not isinstance(step, Electro):  # a Repeat is estimated through its body
        raise TypeError(f"no estimate for {type(step).__name__}")
    if step.duration is not None:
        return step.duration
    if step.amount is not None and step.amount.kind in ("c_rate", "current"):
        amps = current_of(step.amount, limits.capacity_mAh)
        return limits.capacity_mAh * 1e-3 / amps * 3600.0
    return 3600.0
