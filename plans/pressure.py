"""Pressure plans: set, ramp, hold and step the stack pressure, recording as they go.

Durations and recording intervals are experiment time, kept by the rig's clock (the
IOC); nothing here sleeps. Recording resolves to the IOC's update period times the speed
factor (50 ms x speed), and every reading carries the rig's own clock.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.protocols import Readable
from bluesky.utils import FailedStatus, MsgGenerator
from ophyd.utils.errors import DisconnectedError

from ssb_devices import Rig, RigDisconnected

from .metadata import validate_run_metadata


def start_metadata(
    rig: Rig,
    plan_name: str,
    plan_args: dict[str, Any],
    md: dict[str, Any] | None,
    detectors: Sequence[Readable] = (),
) -> dict:
    """The start document a plan asks for (checked for what it already contains)."""
    _md = {
        "plan_name": plan_name,
        "plan_args": plan_args,
        "rig_prefix": rig.prefix,
        "detectors": [rig.name, *(d.name for d in detectors)],
        "hints": {"dimensions": [([rig.clock.time.name], "primary")]},
    }
    _md.update(md or {})
    validate_run_metadata(_md, partial=True)
    return _md


# --- stubs -------------------------------------------------------------------------------


def record(rig: Rig, detectors: Sequence[Readable] = ()) -> MsgGenerator:
    """One reading of the rig (and any detectors) into the primary stream, then a
    checkpoint: a pause or a suspension resumes from there, with the next wait (whose
    target has then passed) and a fresh reading, never a duplicate one."""
    ret = yield from bps.trigger_and_read([rig, *detectors])
    yield from bps.checkpoint()
    return ret


def _reason(failed: FailedStatus) -> BaseException | None:
    status = failed.args[0] if failed.args else None
    exception = getattr(status, "exception", None)  # a status that failed keeps why
    return exception() if callable(exception) else None


def wait_for_reason(group: str) -> MsgGenerator:
    """``bps.wait``, but a failed status raises the device's own exception (e.g. why the
    IOC refused a move), so that the run's stop document carries that reason."""
    try:
        yield from bps.wait(group=group)
    except FailedStatus as failed:
        reason = _reason(failed)
        if reason is None:
            raise
        raise reason from failed


def raise_reasons(plan_function):
    """Decorate a plan so that a status failing while it does something else (the
    RunEngine raises ``FailedStatus`` from whatever message comes next) raises the
    device's own exception instead, as :func:`wait_for_reason` does; and a read the IOC
    never answers raises :class:`RigDisconnected`."""

    @functools.wraps(plan_function)
    def wrapper(*args, **kwargs):
        try:
            return (yield from plan_function(*args, **kwargs))
        except FailedStatus as failed:
            reason = _reason(failed)
            if reason is None:
                raise
            raise reason from failed
        except (TimeoutError, DisconnectedError) as lost:  # the IOC never answered, or went
            why = f"no answer from the rig ({lost}); is the IOC running?"
            raise RigDisconnected(why) from lost

    return wrapper


def wait_until(rig: Rig, experiment_time: float, hold: bool = False) -> MsgGenerator:
    """Wait until the rig's clock reads ``experiment_time`` seconds; with ``hold`` (a
    simulated rig, see :func:`on_held_clock`) the clock then stands still there until
    the plan's next wait, so the plan acts at that time whatever the speed factor."""
    if hold:
        yield from bps.abs_set(rig.clock.hold_at, experiment_time, group="ssb-clock")
        yield from wait_for_reason("ssb-clock")
        now = yield from bps.rd(rig.clock.time, default_value=experiment_time)
        if now >= experiment_time - 1e-6:
            return  # else the hold lapsed or a pause released it: wait on the clock
    yield from bps.abs_set(rig.clock, experiment_time, group="ssb-clock")
    yield from wait_for_reason("ssb-clock")


def on_held_clock(rig: Rig, body) -> MsgGenerator:
    """Run the plan ``body(hold)``, ``hold`` True on a simulated rig: its waits hold the
    clock where they end (:func:`wait_until`), so every reading is taken at its time even
    when the plan's round trip is minutes of experiment time. The hold is released
    however the plan ends."""
    simulated = yield from bps.rd(rig.clock.simulated, default_value="No")
    hold = simulated == "Yes"

    def release():
        if hold and rig.clock.hold_at.connected:
            yield from bps.abs_set(rig.clock.hold_at, 0)

    return (yield from bpp.finalize_wrapper(body(hold), release()))


def regulate(rig: Rig) -> MsgGenerator:
    """Put the press in Pressure mode (holding what it measures now) if it is not."""
    mode = yield from bps.rd(rig.press.mode, default_value="Off")
    if mode != "Pressure":
        yield from bps.mv(rig.press.mode, "Pressure")


def move_recording(
    rig: Rig,
    pressure: float,
    interval: float,
    detectors: Sequence[Readable] = (),
    hold: bool = False,
) -> MsgGenerator:
    """Move to ``pressure`` (at the press's ramp rate), recording every ``interval`` s of
    experiment time until the IOC reports the pressure settled."""
    yield from regulate(rig)
    status = yield from bps.abs_set(rig.press, pressure, group="ssb-move")
    while status is not None and not status.done:  # None: a simulator, no RunEngine
        now = yield from bps.rd(rig.clock.time, default_value=0.0)
        yield from record(rig, detectors)
        yield from wait_until(rig, now + interval, hold)
    yield from wait_for_reason("ssb-move")  # raises if the IOC refused or the link died
    yield from record(rig, detectors)


def hold_recording(
    rig: Rig,
    duration: float,
    interval: float,
    detectors: Sequence[Readable] = (),
    hold: bool = False,
) -> MsgGenerator:
    """Let ``duration`` s of experiment time pass, recording every ``interval`` s."""
    start = yield from bps.rd(rig.clock.time, default_value=0.0)
    ticks = max(1, round(duration / interval))
    for k in range(1, ticks + 1):
        yield from wait_until(rig, start + min(k * interval, duration), hold)
        yield from record(rig, detectors)


def at_ramp_rate(rig: Rig, rate: float, plan: MsgGenerator) -> MsgGenerator:
    """Run ``plan`` with the press ramping at ``rate`` MPa/s (0 = steps), then put the
    previous rate back, also if the plan fails."""
    previous = yield from bps.rd(rig.press.ramp_rate, default_value=0.0)

    def restore():
        yield from bps.mv(rig.press.ramp_rate, previous)

    def with_rate():
        yield from bps.mv(rig.press.ramp_rate, rate)
        return (yield from plan)

    return (yield from bpp.finalize_wrapper(with_rate(), restore()))


def _check_positive(name: str, value: float) -> None:
    if not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name}: expected a positive number of seconds or MPa/s, got {value!r}")


def _check_pressure(rig: Rig, pressure: float) -> None:
    rig.press.check_value(pressure)


# --- plans -------------------------------------------------------------------------------


def set_pressure(
    rig: Rig,
    pressure: float,
    *,
    detectors: Sequence[Readable] = (),
    md: dict[str, Any] | None = None,
) -> MsgGenerator[str]:
    """Go to ``pressure`` MPa (a step, or a ramp at the press's ramp rate) and record the
    rig before and after; returns the run uid once the pressure has settled."""
    _check_pressure(rig, pressure)
    _md = start_metadata(rig, "set_pressure", {"pressure": pressure}, md, detectors)

    @bpp.stage_decorator([rig, *detectors])
    @bpp.run_decorator(md=_md)
    @raise_reasons
    def inner():
        yield from record(rig, detectors)
        yield from regulate(rig)
        yield from bps.abs_set(rig.press, pressure, group="ssb-move")
        yield from wait_for_reason("ssb-move")
        yield from record(rig, detectors)

    return (yield from inner())


def ramp_pressure(
    rig: Rig,
    pressure: float,
    rate: float,
    *,
    interval: float = 10.0,
    detectors: Sequence[Readable] = (),
    md: dict[str, Any] | None = None,
) -> MsgGenerator[str]:
    """Ramp to ``pressure`` MPa at ``rate`` MPa/s, recording every ``interval`` s of
    experiment time; the press's previous ramp rate is restored afterwards."""
    _check_pressure(rig, pressure)
    _check_positive("rate", rate)
    _check_positive("interval", interval)
    args = {"pressure": pressure, "rate": rate, "interval": interval}
    _md = start_metadata(rig, "ramp_pressure", args, md, detectors)

    @bpp.stage_decorator([rig, *detectors])
    @bpp.run_decorator(md=_md)
    @raise_reasons
    def inner():
        def ramp(hold):
            moving = move_recording(rig, pressure, interval, detectors, hold)
            return at_ramp_rate(rig, rate, moving)

        yield from on_held_clock(rig, ramp)

    return (yield from inner())


def hold_pressure(
    rig: Rig,
    duration: float,
    *,
    pressure: float | None = None,
    interval: float = 60.0,
    detectors: Sequence[Readable] = (),
    md: dict[str, Any] | None = None,
) -> MsgGenerator[str]:
    """Hold the pressure for ``duration`` s of experiment time (going to ``pressure`` MPa
    first if given), recording every ``interval`` s; the IOC's loop does the holding."""
    if pressure is not None:
        _check_pressure(rig, pressure)
    _check_positive("duration", duration)
    _check_positive("interval", interval)
    args = {"duration": duration, "pressure": pressure, "interval": interval}
    _md = start_metadata(rig, "hold_pressure", args, md, detectors)

    @bpp.stage_decorator([rig, *detectors])
    @bpp.run_decorator(md=_md)
    @raise_reasons
    def inner():
        def body(hold):
            if pressure is None:
                yield from regulate(rig)
                yield from record(rig, detectors)
            else:
                yield from move_recording(rig, pressure, interval, detectors, hold)
            yield from hold_recording(rig, duration, interval, detectors, hold)

        yield from on_held_clock(rig, body)

    return (yield from inner())


def pressure_steps(
    rig: Rig,
    pressures: Sequence[float],
    hold: float,
    *,
    rate: float | None = None,
    interval: float = 60.0,
    detectors: Sequence[Readable] = (),
    md: dict[str, Any] | None = None,
) -> MsgGenerator[str]:
    """Step through ``pressures`` (MPa), holding ``hold`` s of experiment time at each,
    in one run; with ``rate`` (MPa/s) each step is a ramp."""
    pressures = list(pressures)
    if not pressures:
        raise ValueError("pressures: give at least one pressure")
    for p in pressures:
        _check_pressure(rig, p)
    _check_positive("hold", hold)
    _check_positive("interval", interval)
    if rate is not None:
        _check_positive("rate", rate)
    args = {"pressures": pressures, "hold": hold, "rate": rate, "interval": interval}
    _md = start_metadata(rig, "pressure_steps", args, md, detectors)

    @bpp.stage_decorator([rig, *detectors])
    @bpp.run_decorator(md=_md)
    @raise_reasons
    def inner():
        def steps(held):
            for p in pressures:
                yield from move_recording(rig, p, interval, detectors, held)
                yield from hold_recording(rig, hold, interval, detectors, held)

        yield from on_held_clock(rig, lambda held: at_ramp_rate(rig, rate or 0.0, steps(held)))

    return (yield from inner())
