"""Why the instrument refused a put, as a code both sides know.

A refused put fails its put-completion on the wire (``ECA_PUTFAIL``); the PV group it
belongs to then shows the code on ``<Group>:Refusal-RB`` and the IOC's words on
``<Group>:RefusalMsg-RB`` (``Rig:Msg-RB`` stays the human log of every group). The
names below are the enum strings of ``Refusal-RB``, in order.
"""

from __future__ import annotations

from enum import IntEnum


class Refusal(IntEnum):
    """The kind of a refusal: what a client can do about it differs by kind."""

    NONE = 0  # nothing refused since the IOC started
    ACCESS = 1  # this client may not write this PV (read-only, or the access rules)
    INVALID = 2  # not a value of the PV's kind: not a number, not a state, malformed text
    LIMIT = 3  # a number outside the PV's or the instrument's limits
    STATE = 4  # not allowed in the instrument's present state or mode
    OWNED = 5  # a running sequence belongs to another client (or the key is wrong)
    INTERLOCK = 6  # a latched interlock or safety trip: reset it first
    LINK = 7  # the instrument behind the IOC does not answer
    UNSUPPORTED = 8  # this backend cannot do it (a real instrument keeps its own time)


REFUSAL_NAMES: tuple[str, ...] = tuple(code.name for code in Refusal)


class Refused(ValueError):
    """A put the instrument refuses, with its kind; the message says why and what to do.

    The IOC's own errors derive from it, so each raise site names its kind once."""

    code: Refusal = Refusal.INVALID  # a subclass's default kind

    def __init__(self, message: str, code: Refusal | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code


def refusal_of(ex: BaseException) -> Refusal:
    """The kind of a refusal raised by any layer (``INVALID`` for a plain ValueError,
    ``STATE`` for anything else the IOC did not classify)."""
    code = getattr(ex, "code", None)
    if isinstance(code, Refusal):
        return code
    return Refusal.INVALID if isinstance(ex, ValueError) else Refusal.STATE
