"""Puts whose status says what the IOC answered: done, refused (with the kind and the
IOC's reason) or not answered in time.

The IOC fails a refused put-with-completion (``ECA_PUTFAIL``) and shows the kind
(:class:`ssb_contract.refusals.Refusal`) and its words on the group's ``Refusal-RB`` and
``RefusalMsg-RB`` before it answers, so the reason read after the failure is this put's.
"""

from __future__ import annotations

import threading

from ophyd import Component as Cpt
from ophyd import Device, EpicsSignal, EpicsSignalRO, Kind
from ophyd.status import Status
from ophyd.utils import InvalidState

from ssb_contract.refusals import Refusal

from .compat import write_with_status


class PutRefused(RuntimeError):
    """The IOC refused a put; ``code`` is the kind, the message the IOC's reason."""

    def __init__(self, pvname: str, code: Refusal | None, reason: str):
        kind = f" ({code.name.lower()})" if code is not None else ""
        super().__init__(f"{pvname} refused{kind}: {reason}")
        self.pvname, self.code, self.reason = pvname, code, reason


class PutTimedOut(TimeoutError):
    """The IOC did not answer a put in time (not a refusal: it may be gone)."""


class LastRefusal(Device):
    """A PV group's last refused put, as the IOC shows it (``<group>:Refusal-RB``)."""

    code = Cpt(EpicsSignalRO, "Refusal-RB", string=True, kind=Kind.omitted, auto_monitor=False)
    message = Cpt(
        EpicsSignalRO, "RefusalMsg-RB", string=True, kind=Kind.omitted, auto_monitor=False
    )

    def read_refusal(self, pvname: str) -> tuple[Refusal, str]:
        """The kind and reason of the refusal of ``pvname`` just answered."""
        message = self.message.get(use_monitor=False)
        code = Refusal[self.code.get(use_monitor=False)]
        if not message.startswith(f"{pvname} refused"):  # another put refused since
            return code, f"(a later refusal replaced the reason; see Rig:Msg-RB) {message}"
        return code, message.split(" refused: ", 1)[-1]


def put_confirmed(signal, value, *, refusals: LastRefusal, timeout: float | None) -> Status:
    """Put with completion; the status finishes when the IOC has done it, fails with
    :class:`PutRefused` when the IOC refuses it, with :class:`PutTimedOut` when it does
    not answer within ``timeout`` s (None: wait as long as the IOC takes)."""
    status = Status(obj=signal)
    pvname = signal.setpoint_pvname if hasattr(signal, "setpoint_pvname") else signal.pvname

    def answered(ok: bool, response) -> None:
        if ok:
            _settle(status)
            return

        try:  # a thread of our own (compat): CA reads may wait here
            code, reason = refusals.read_refusal(pvname)
        except Exception as ex:  # gone since, or an IOC without refusal PVs
            code, reason = None, f"the IOC gave no reason ({type(ex).__name__}: {ex})"
        _settle(status, PutRefused(pvname, code, reason))

    write_with_status(signal, value, answered, timeout=None)
    if timeout is not None:

        def too_late() -> None:
            _settle(
                status,
                PutTimedOut(f"{pvname}: no answer within {timeout:g} s; is the IOC running?"),
            )

        timer = threading.Timer(timeout, too_late)
        timer.daemon = True
        timer.start()
        status.add_callback(lambda st: timer.cancel())
    return status


def _settle(status: Status, exc: Exception | None = None) -> None:
    """Finish ``status`` unless the answer, the timer or a lost link did first."""
    try:
        if exc is None:
            status.set_finished()
        else:
            status.set_exception(exc)
    except InvalidState:
        pass


class ConfirmedSignal(EpicsSignal):
    """An EpicsSignal whose ``set`` fails when the IOC refuses the put (ophyd's own
    completes it as done). ``refusals`` names the PV group that shows why, relative to
    the device's prefix (``"Press:"``)."""

    def __init__(self, read_pv, *, refusals: str, **kwargs):
        kwargs.setdefault("put_complete", True)
        super().__init__(read_pv, **kwargs)
        self._refusals_at = refusals
        self._refusals: LastRefusal | None = None

    def set(self, value, *, timeout=None, settle_time=None) -> Status:
        """Put with completion: done, :class:`PutRefused` or :class:`PutTimedOut`."""
        self.check_value(value)
        return put_confirmed(self, value, refusals=self.refusals, timeout=timeout)

    @property
    def refusals(self) -> LastRefusal:
        """The group's refusal PVs: the parent device's own when it has them for this
        group, else made here (and destroyed with this signal)."""
        prefix = self.parent.prefix if self.parent is not None else ""
        shared = getattr(self.parent, "refusals", None)
        if isinstance(shared, LastRefusal) and shared.prefix == prefix + self._refusals_at:
            return shared
        if self._refusals is None:
            self._refusals = LastRefusal(prefix + self._refusals_at, name=f"{self.name}_refusals")
        return self._refusals

    def destroy(self) -> None:
        """Also let go of the refusal PVs made here: a PV left behind is searched for
        again, forever, once its IOC is gone."""
        if self._refusals is not None:
            self._refusals.destroy()
            self._refusals = None
        super().destroy()
