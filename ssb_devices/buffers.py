"""Rows logged on the instrument, collected in bulk through Bluesky's flyer interface.

``kickoff()`` starts from the next row the instrument logs; ``collect_pages()`` yields
every row logged since the last collect, in pages, so a long run stores every sample
without one RunEngine message per sample. The IOC side is
:mod:`ssb_ioc.server.buffers`: put a sequence number to ``ReadFrom-SP``, read
``Count-RB`` rows from ``Rows-RB``. Rows the instrument overwrote before they were read
are counted in :attr:`RowLog.lost`, each run of them kept in :attr:`RowLog.gaps` (the
sequence numbers and the times of the rows either side), and logged as a warning; the
plan records them in the run. After each page the reader puts the next row it needs to
``Keep-SP``: a simulated rig slows its clock rather than overwrite it.
"""

from __future__ import annotations

import logging
import time
from typing import ClassVar

import numpy as np
from ophyd import Component as Cpt
from ophyd import Device, EpicsSignal, EpicsSignalRO, Kind
from ophyd.status import Status

logger = logging.getLogger(__name__)
LATE_READ_TIMEOUT = 5.0  # s: a second chance for a read a busy, connected IOC answers late


def _read(signal):
    """The signal's value from the IOC; a read that times out while the channel stays
    connected is tried once more (a loaded machine), a lost IOC fails at once."""
    try:
        return signal.get(use_monitor=False)
    except TimeoutError:
        if not signal.connected:
            raise
        logger.warning("%s answered late; reading it again", signal.pvname)
        return signal.get(use_monitor=False, timeout=LATE_READ_TIMEOUT)


def finished(obj) -> Status:
    status = Status(obj=obj)
    status.set_finished()
    return status


class RowLog(Device):
    """A buffer of rows on the instrument as a flyer (stream :attr:`stream`)."""

    fields: ClassVar[tuple[str, ...]] = ()  # the row's columns, ``seq`` first
    units: ClassVar[dict[str, str]] = {}
    integer_fields: ClassVar[tuple[str, ...]] = ("seq",)
    stream: ClassVar[str] = ""

    next_seq = Cpt(EpicsSignalRO, "NextSeq-RB", kind=Kind.omitted)
    oldest_seq = Cpt(EpicsSignalRO, "OldestSeq-RB", kind=Kind.omitted)
    read_from = Cpt(EpicsSignal, "ReadFrom-SP", kind=Kind.omitted, put_complete=True)
    count = Cpt(EpicsSignalRO, "Count-RB", kind=Kind.omitted)
    rows = Cpt(EpicsSignalRO, "Rows-RB", kind=Kind.omitted, auto_monitor=False)
    keep = Cpt(EpicsSignal, "Keep-SP", kind=Kind.omitted)
    time_field: ClassVar[str] = "time"  # the column that dates a row

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._next: int | None = None
        self.resume_at: int | None = None  # where the next kickoff begins, if set
        self.lost = 0  # rows overwritten on the instrument before they were read
        self.gaps: list[dict] = []  # each run of lost rows: seqs, and the times around it
        self._last_time = float("nan")  # of the newest row read

    def kickoff(self, start: int | None = None) -> Status:
        """Begin at row ``start``, else :attr:`resume_at` (once; set by a process that
        attaches), else the next one the instrument logs."""
        start = self.resume_at if start is None else start
        self.resume_at = None
        self._next = int(self.next_seq.get(use_monitor=False)) if start is None else start
        self.keep.put(self._next)
        return finished(self)

    def complete(self) -> Status:
        return finished(self)

    def field_units(self, field: str) -> str:
        return self.units.get(field, "")

    def field_source(self, field: str) -> str:
        return f"PV:{self.rows.pvname}"

    def describe_collect(self) -> dict:
        keys = {}
        for field in self.fields:
            integer = field in self.integer_fields
            keys[field] = {
                "source": self.field_source(field),
                "dtype": "integer" if integer else "number",
                "shape": [],
                "units": self.field_units(field),
                "dtype_numpy": "<i8" if integer else "<f8",
            }
        return {self.stream: keys}

    def read_pages(self):
        """Rows logged since the last read and up to now, as dicts of arrays (one per
        page); what the instrument logs meanwhile waits for the next read."""
        if self._next is None:
            raise RuntimeError(f"{self.name}: kickoff() before collecting")
        width = len(self.fields)
        end = int(_read(self.next_seq))
        while self._next < end:
            self.read_from.set(self._next).wait(timeout=10)
            n = int(_read(self.count))
            if n == 0:
                return
            rows = np.asarray(_read(self.rows), dtype=float)
            rows = rows[: n * width].reshape(n, width)
            columns = {field: rows[:, i] for i, field in enumerate(self.fields)}
            first = int(columns["seq"][0])
            if first > self._next:
                self._lost(first, float(columns[self.time_field][0]))
            self._next = int(columns["seq"][-1]) + 1
            self._last_time = float(columns[self.time_field][-1])
            self.keep.put(self._next)  # a simulated rig waits for us rather than overwrite
            yield columns

    def _lost(self, first: int, time_after: float) -> None:
        n = first - self._next
        self.lost += n
        self.gaps.append(
            {
                "first_seq": self._next,
                "last_seq": first - 1,
                "rows": n,
                "time_before": self._last_time,  # the newest row read before the gap
                "time_after": time_after,  # the first row read after it
            }
        )
        logger.warning(
            "%s: %d rows (seq %d..%d) were overwritten on the instrument before they were "
            "read; the run records the loss (collect more often or enlarge the buffer)",
            self.name,
            n,
            self._next,
            first - 1,
        )

    def collect_pages(self):
        for columns in self.read_pages():
            now = time.time()
            data = {
                field: (
                    values.astype(int).tolist()
                    if field in self.integer_fields
                    else values.tolist()
                )
                for field, values in columns.items()
            }
            n = len(data["seq"])
            yield {
                "data": data,
                "timestamps": {field: [now] * n for field in data},
                "time": [now] * n,
            }
