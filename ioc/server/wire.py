"""What a Channel Access put may carry to a PV, checked before caproto converts it.

Any CA client may send any DBR type with any element count to any PV. caproto converts
what it can: a DBR_DOUBLE of 1e10 or NaN written to an enum becomes index 0, an
out-of-range DBR_LONG index is stored and leaves the PV unreadable, a 0.5 written to a
push button becomes 0. So the rig looks at the raw request first and refuses anything
that is not one plain value of the PV's kind, saying why:

- an enum takes one of its state names, or a whole index in range (an integer or a
  whole float);
- a number takes one finite number (a string must parse as one);
- a whole number (push buttons, counters) takes one finite whole number;
- text takes a string (or characters) that fits;
- only plain DBR types are written (as EPICS' rsrv): a DBR_CTRL_DOUBLE would otherwise
  carry new control limits into the PV with its value.

Pure functions: the PV layer (:mod:`.pvs`) calls :func:`check_put` and reports.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from caproto import ChannelType, native_type

from ssb_contract.refusals import Refused

PLAIN_TYPES = (
    ChannelType.STRING,
    ChannelType.INT,
    ChannelType.FLOAT,
    ChannelType.ENUM,
    ChannelType.CHAR,
    ChannelType.LONG,
    ChannelType.DOUBLE,
)
ALARM_ACKS = (ChannelType.PUT_ACKT, ChannelType.PUT_ACKS)  # acknowledgement settings
NUMERIC_TYPES = (ChannelType.CHAR, ChannelType.INT, ChannelType.LONG, ChannelType.ENUM)
FLOAT_TYPES = (ChannelType.FLOAT, ChannelType.DOUBLE)


class PutRefused(Refused):
    """A put the PV cannot honour; the message says why, for ``Rig:Msg-RB``."""


def shown(data, data_type: ChannelType) -> str:
    """The value as a person would write it, for messages."""
    try:
        values = list(_decoded(data, data_type))
        if len(values) == 1:
            return repr(values[0]) if isinstance(values[0], str) else f"{values[0]:g}"
        if native_type(data_type) == ChannelType.CHAR and len(values) <= 64:
            text = bytes(int(v) & 0xFF for v in values).split(b"\0", 1)[0]
            return repr(text.decode("latin-1"))
        return f"an array of {len(values)} values"
    except (TypeError, ValueError):
        return f"a DBR_{data_type.name} value"


def _decoded(data, data_type: ChannelType):
    if native_type(data_type) == ChannelType.STRING:
        for item in data:
            raw = item if isinstance(item, bytes | bytearray) else str(item).encode()
            yield raw.split(b"\0", 1)[0].decode("latin-1")
    else:
        yield from (v.item() if hasattr(v, "item") else v for v in data)


def check_put(
    kind: str,
    data,
    data_type: ChannelType,
    *,
    enum_strings: Sequence[str] = (),
    max_length: int = 1,
) -> None:
    """Raise :class:`PutRefused` unless ``data`` (as sent, of ``data_type``) is a value a
    PV of ``kind`` ("enum", "float", "int" or "text") can take."""
    if data_type in ALARM_ACKS:
        return
    if data_type not in PLAIN_TYPES:  # a DBR_CTRL_ put would carry limits of its own
        raise PutRefused(f"DBR_{data_type.name} cannot be written: send a plain DBR type")
    native = native_type(data_type)
    values = list(_decoded(data, data_type))
    if kind == "text":
        if native not in (ChannelType.STRING, ChannelType.CHAR):
            raise PutRefused(f"expected text, got {native.name}")
        if not values:  # caproto cannot convert zero elements (a ValueError deep inside)
            raise PutRefused("an empty put (no elements): send the text, or one NUL to clear")
        size = len(values[0]) if native == ChannelType.STRING and values else len(values)
        if size > max_length:
            raise PutRefused(f"text of {size} characters is longer than {max_length}")
        return
    if len(values) != 1:
        raise PutRefused(f"expected one value, got {len(values)}")
    (value,) = values
    if kind == "enum":
        _check_enum(value, native, enum_strings)
    elif kind == "float":
        _number(value, native)
    elif kind == "int":
        number = _number(value, native)
        if not number.is_integer():
            raise PutRefused(f"expected a whole number, got {number:g}")
    else:
        raise ValueError(f"unknown PV kind {kind!r}")


def _number(value, native: ChannelType) -> float:
    if native == ChannelType.STRING:
        try:
            value = float(value.strip())
        except ValueError:
            raise PutRefused(f"{value!r} is not a number") from None
    number = float(value)
    if not math.isfinite(number):
        raise PutRefused(f"{number} is not a finite number")
    return number


def _check_enum(value, native: ChannelType, choices: Sequence[str]) -> None:
    names = ", ".join(f"{i} {c}" for i, c in enumerate(choices))
    if native == ChannelType.STRING:
        if value in choices:
            return
        raise PutRefused(f"{value!r} is not one of {names}")
    elif native in NUMERIC_TYPES or native in FLOAT_TYPES:
        index = float(value)
    else:
        raise PutRefused(f"expected a state name or index, got {native.name}")
    if not math.isfinite(index) or not index.is_integer() or not 0 <= index < len(choices):
        raise PutRefused(f"{index:g} is not a state index ({names})")


def as_char_array(data, data_type: ChannelType):
    """A DBR_STRING put to a long-string (CHAR array) PV, as the CHAR put caproto can
    take: its server refuses the conversion with an empty CaprotoConversionError, and
    ``caput`` without ``-S`` sends text so. Other puts pass unchanged."""
    if native_type(data_type) != ChannelType.STRING:
        return data, data_type
    (text,) = list(_decoded(data, data_type))[:1] or [""]
    raw = text.encode("latin-1") or b"\0"
    return np.frombuffer(raw, dtype=np.uint8), ChannelType.CHAR
