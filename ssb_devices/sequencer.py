"""The protocol sequencer on the instrument (``Seq:`` PVs), as a movable.

``set(table)`` uploads a table (JSON text), starts it and returns a status that completes
when the sequence stops, however it stops (``Done``, ``Aborted``, ``Failed``, or ``Held``
by an IOC restart): the plan reads :attr:`Sequencer.state` and ``reason`` to tell which.
``set(None)`` follows the sequence already on the instrument (resuming it if it is paused
or held): that is how a new process attaches to a running experiment. The status fails
with :class:`~ssb_devices.press.RigDisconnected` if the IOC goes away.

On a pause or a suspension the RunEngine calls ``stop(success=True)`` and ``pause()``:
the sequence pauses on the instrument (open circuit, press holding); ``resume()`` runs
the rest of the interrupted step. ``stop()`` (a RunEngine stop or abort) aborts it.

A sequence belongs to the client that uploaded it (or to the one that takes it over by
following it, ``set(None)``): its commands carry the owner's key (``Seq:OwnerKey-RB``),
and a device that does not own the running sequence touches nothing of it.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from ophyd import Component as Cpt
from ophyd import Device, EpicsSignal, EpicsSignalRO, Kind
from ophyd.status import DeviceStatus
from ophyd.utils import DisconnectedError

from ssb_contract.paging import Lost, Page, Paging, follow
from ssb_contract.records import RESULTS_KEPT
from ssb_contract.refusals import Refusal
from ssb_contract.states import SEQUENCE_ACTIVE

from .buffers import page_signals, read_fresh
from .compat import tell_watchers
from .press import RigDisconnected
from .refusals import LastRefusal, PutRefused, PutTimedOut, put_confirmed

logger = logging.getLogger(__name__)

ENDED = ("Done", "Aborted", "Failed", "Held")  # states that end a client's status
ACTIVE = SEQUENCE_ACTIVE


class SequenceRefused(RuntimeError):
    """The IOC refused a table or a sequencer command; the message says why, ``code``
    (:class:`ssb_contract.refusals.Refusal`) which kind."""

    code: Refusal | None = None


class SequenceStatus(DeviceStatus):
    """Done when the sequence on the instrument stops (see :class:`Sequencer`); its
    progress (``watch``) is in steps completed of the table's."""

    def __init__(self, device, table: str | None, **kwargs):
        # a failure is the IOC's going away: nothing to stop then
        super().__init__(device, call_stop_on_failure=False, **kwargs)
        self.table = table
        self.since: float | None = None  # IOC time of the state read after starting

    def watch(self, func) -> None:
        super().watch(func)
        self.progress()

    def progress(self) -> None:
        """Tell the watchers (progress bars) how many steps are done."""
        device = self.device
        try:
            done, total = device.completed.get(), device.steps.get()
        except (TimeoutError, DisconnectedError):
            return  # the IOC went away: the connection callback fails this status
        if not self.done and total:
            tell_watchers(self, name="protocol", current=done, initial=0, target=total,
                          unit="steps")  # fmt: skip


class Sequencer(Device):
    """Protocol sequencer (``Seq:``), built from the rig prefix."""

    table = Cpt(
        EpicsSignal,
        "Seq:Table-SP",
        string=True,
        kind=Kind.omitted,
        auto_monitor=False,
        put_complete=True,
    )
    owner = Cpt(EpicsSignalRO, "Seq:Owner-RB", string=True, kind=Kind.omitted, auto_monitor=False)
    start_at = Cpt(EpicsSignal, "Seq:StartAt-SP", kind=Kind.omitted, put_complete=True)
    start_cmd = Cpt(EpicsSignal, "Seq:Start-Cmd", kind=Kind.omitted, put_complete=True)
    pause_cmd = Cpt(EpicsSignal, "Seq:Pause-Cmd", kind=Kind.omitted, put_complete=True)
    resume_cmd = Cpt(EpicsSignal, "Seq:Resume-Cmd", kind=Kind.omitted, put_complete=True)
    abort_cmd = Cpt(EpicsSignal, "Seq:Abort-Cmd", kind=Kind.omitted, put_complete=True)
    state = Cpt(EpicsSignalRO, "Seq:State-RB", string=True, kind=Kind.omitted)
    reason = Cpt(EpicsSignalRO, "Seq:Reason-RB", string=True, kind=Kind.omitted)
    steps = Cpt(EpicsSignalRO, "Seq:Steps-RB", kind=Kind.omitted)
    step = Cpt(EpicsSignalRO, "Seq:Step-RB", kind=Kind.normal)
    cycle = Cpt(EpicsSignalRO, "Seq:Cycle-RB", kind=Kind.omitted)
    step_text = Cpt(EpicsSignalRO, "Seq:StepText-RB", string=True, kind=Kind.omitted)
    completed = Cpt(EpicsSignalRO, "Seq:Completed-RB", kind=Kind.omitted)
    results = page_signals(string=True, prefix="Seq:Results:")
    owner_key = Cpt(EpicsSignalRO, "Seq:OwnerKey-RB", kind=Kind.omitted, auto_monitor=False)
    message = Cpt(EpicsSignalRO, "Rig:Msg-RB", string=True, kind=Kind.omitted)
    refusals = Cpt(LastRefusal, "Seq:", kind=Kind.omitted)

    def __init__(self, prefix: str = "", *, name: str, **kwargs):
        super().__init__(prefix, name=name, **kwargs)
        self._key = 0  # the key of the sequence this device owns (0: none)
        self._status: SequenceStatus | None = None
        self._lock = threading.Lock()
        self.state.subscribe(self._on_state, run=False)
        self.completed.subscribe(self._on_completed, run=False)
        self.state.subscribe(self._on_connection, event_type="meta", run=False)

    # --- running -------------------------------------------------------------------------
    def set(self, table: str | None) -> SequenceStatus:
        """Upload ``table`` and start it, or (``None``) follow the sequence already there."""
        with self._lock:
            pending = self._status
            if pending is not None and not pending.done and pending.table == table:
                return pending  # the same request again (a RunEngine rewind)
            status = SequenceStatus(self, table)
            self._status = status
        if table is not None:
            self._command(self.table, table, timeout=30)
            self._key = int(self.owner_key.get(use_monitor=False))  # ours from now on
            self._command(self.start_at, 1)
            self._command(self.start_cmd, 1)
        else:  # follow the sequence there: take it over
            self._key = int(self.owner_key.get(use_monitor=False))
            if self.state.get(use_monitor=False) in ("Paused", "Held"):
                self._command(self.resume_cmd, self._key or 1)
        value = self.state.get(use_monitor=False)
        status.since = self.state.timestamp  # older monitor updates are a past sequence's
        self._on_state(value=value, timestamp=status.since)
        return status

    def _command(self, signal, value, timeout: float = 10) -> None:
        """Put ``value`` and wait for the IOC's answer: a refusal raises
        :class:`SequenceRefused` (its ``code`` the contract's kind) with the IOC's reason,
        no answer within ``timeout`` s raises :class:`RigDisconnected`."""
        try:
            put_confirmed(signal, value, refusals=self.refusals, timeout=timeout).wait()
        except PutRefused as ex:
            refused = SequenceRefused(str(ex))
            refused.code = ex.code
            raise refused from None
        except PutTimedOut as ex:
            raise RigDisconnected(str(ex)) from None

    def _on_state(self, value: str = "", timestamp: float = 0.0, **kwargs) -> None:
        status = self._status
        if status is None or status.done or status.since is None or timestamp < status.since:
            return
        if value in ENDED or (value == "Idle" and status.table is None):
            status.set_finished()

    def _on_completed(self, **kwargs) -> None:
        status = self._status
        if status is not None and not status.done:
            status.progress()

    def _on_connection(self, connected: bool = True, **kwargs) -> None:
        status = self._status
        if not connected and status is not None and not status.done:
            status.set_exception(
                RigDisconnected(
                    f"{self.name}: lost {self.state.pvname} while the protocol ran on the "
                    "instrument; is the IOC running? If only the link broke, the protocol "
                    "goes on there and `ssb attach` follows it again; a restarted IOC holds "
                    "it (`ssb attach` resumes it)"
                )
            )

    def _results_page(self, index: int) -> Page[list[dict[str, Any]]]:
        page = json.loads(read_fresh(getattr(self.results, f"page{index}")) or '{"page": -1}')
        records = page.get("records", [])
        return Page(int(page["page"]), [int(r["n"]) for r in records], records)

    def read_results(self, first: int) -> list[dict[str, Any]]:
        """Records of the steps completed from completion number ``first`` on, as far as
        the instrument still holds them (a reader this far behind is told in the log)."""
        end = int(read_fresh(self.completed)) + 1
        records: list[dict[str, Any]] = []
        for item in follow(Paging(RESULTS_KEPT), first, end, self._results_page):
            if isinstance(item, Lost):
                logger.warning(
                    "%s: the records of steps %d..%d are no longer held on the instrument",
                    self.name, item.first, item.last,
                )  # fmt: skip
            else:
                records.extend(item)
        return records

    @property
    def key(self) -> int:
        """The owner's key of the sequence this device uploaded or took over (0: none)."""
        return self._key

    def let_go(self) -> None:
        """Leave the sequence to run on without this device: nothing it does from now on
        (the RunEngine's stop at a plan's end included) touches it. An acquisition that
        cannot record detaches so; ``ssb attach`` takes the sequence over later."""
        self._key = -1

    # --- interruptions -----------------------------------------------------------------
    def owns(self) -> bool:
        """The sequence on the instrument is the one this device uploaded or took over."""
        if self._key < 0:
            return False  # let go
        key = int(self.owner_key.get(use_monitor=False))
        return key == 0 or key == self._key

    def stop(self, *, success: bool = False) -> None:
        """``success=True`` (the RunEngine's pause or suspension): pause the sequence;
        otherwise abort it (open circuit, press holding). Another client's sequence is
        left alone, and so is an instrument that does not answer (nothing to command)."""
        if not self.state.connected:
            return
        if success:
            self.pause()
            return
        if self.state.get(use_monitor=False) in ACTIVE and self.owns():
            self._command(self.abort_cmd, self._key or 1)

    def pause(self) -> None:
        if self.state.connected and self.state.get(use_monitor=False) == "Running" and self.owns():
            self._command(self.pause_cmd, self._key or 1)

    def resume(self) -> None:
        if self.state.get(use_monitor=False) == "Paused" and self.owns():
            self._command(self.resume_cmd, self._key or 1)
