"""Rows logged on the instrument, collected in bulk through Bluesky's flyer interface.

``kickoff()`` starts from the next row the instrument logs; ``collect_pages()`` yields
every row logged since the last collect, in pages, so a long run stores every sample
without one RunEngine message per sample. The rows come from the buffer's page PVs
(:mod:`ssb_contract.paging`), which no read changes: any number of readers follow the
same buffer at once. Rows the instrument overwrote before they were read
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
from ophyd import DynamicDeviceComponent as DDC
from ophyd.status import Status

from ssb_contract.paging import HEADER, PAGES, Lost, Page, Paging, follow, page_name
from ssb_contract.records import Record

logger = logging.getLogger(__name__)
LATE_READ_TIMEOUT = 5.0  # s: a second chance for a read a busy, connected IOC answers late


def read_fresh(signal):
    """The signal's value from the IOC; a read that times out while the channel stays
    connected is tried once more (a loaded machine), a lost IOC fails at once."""
    try:
        return signal.get(use_monitor=False)
    except TimeoutError:
        if not signal.connected:
            raise
        logger.warning("%s answered late; reading it again", signal.pvname)
        return signal.get(use_monitor=False, timeout=LATE_READ_TIMEOUT)


def page_signals(string: bool = False, prefix: str = "") -> DDC:
    """The page PVs of a ring (``{prefix}Page<k>-RB``), read with a get each (never
    monitored); ``string``: pages of JSON text."""
    options = {"kind": "omitted", "auto_monitor": False, "string": string}
    return DDC({f"page{k}": (EpicsSignalRO, prefix + page_name(k), options) for k in range(PAGES)})


def finished(obj) -> Status:
    status = Status(obj=obj)
    status.set_finished()
    return status


class RowLog(Device):
    """A buffer of rows on the instrument as a flyer (stream :attr:`stream`)."""

    record: ClassVar[Record]  # the row's fields, in wire order (ssb_contract.records)
    stream: ClassVar[str] = ""

    next_seq = Cpt(EpicsSignalRO, "NextSeq-RB", kind=Kind.omitted)
    oldest_seq = Cpt(EpicsSignalRO, "OldestSeq-RB", kind=Kind.omitted)
    kept = Cpt(EpicsSignalRO, "Kept-RB", kind=Kind.omitted)
    pages = page_signals()
    keep = Cpt(EpicsSignal, "Keep-SP", kind=Kind.omitted)
    time_field: ClassVar[str] = "time"  # the column that dates a row

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._next: int | None = None
        self.resume_at: int | None = None  # where the next kickoff begins, if set
        self.lost = 0  # rows overwritten on the instrument before they were read
        self.gaps: list[dict] = []  # each run of lost rows: seqs, and the times around it
        self._last_time = float("nan")  # of the newest row read
        self._open_gap: dict | None = None  # the gap in gaps still being counted

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

    @property
    def fields(self) -> tuple[str, ...]:
        return self.record.fields

    @property
    def integer_fields(self) -> tuple[str, ...]:
        return self.record.integers

    def field_units(self, field: str) -> str:
        unit = self.record.units[field]
        return "" if unit == "by kind" else unit  # an event's magnitude: see its kind

    def field_source(self, field: str) -> str:
        return f"PV:{self.prefix}Page*-RB"

    def describe_collect(self) -> dict:
        keys: dict[str, dict] = {}
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

    def _fetch(self, index: int) -> Page[np.ndarray]:
        value = np.asarray(read_fresh(getattr(self.pages, f"page{index}")), dtype=float)
        page, n = int(value[0]), int(value[1])
        rows = value[HEADER : HEADER + n * len(self.fields)].reshape(n, len(self.fields))
        return Page(page, rows[:, 0].astype(np.int64), rows)

    def read_pages(self):
        """Rows logged since the last read and up to now, as dicts of arrays (one per
        page); what the instrument logs meanwhile waits for the next read."""
        if self._next is None:
            raise RuntimeError(f"{self.name}: kickoff() before collecting")
        end = int(read_fresh(self.next_seq))
        paging = Paging(int(read_fresh(self.kept)))
        try:
            for item in follow(paging, self._next, end, self._fetch):
                if isinstance(item, Lost):
                    self._lost(item)
                    continue
                columns = {field: item[:, i] for i, field in enumerate(self.fields)}
                self._found(float(columns[self.time_field][0]))
                self._next = int(columns["seq"][-1]) + 1
                self._last_time = float(columns[self.time_field][-1])
                self.keep.put(self._next)  # a simulated rig waits for us rather than overwrite
                yield columns
        finally:
            self._found(float("nan"))

    def _lost(self, lost: Lost) -> None:
        """Count rows the instrument let go; runs of them that touch are one gap."""
        self.lost += lost.count
        self._next = lost.last + 1
        gap = self._open_gap
        if gap is not None and gap["last_seq"] + 1 == lost.first:
            gap["last_seq"], gap["rows"] = lost.last, gap["rows"] + lost.count
            return
        self._found(float("nan"))
        self._open_gap = {
            "first_seq": lost.first,
            "last_seq": lost.last,
            "rows": lost.count,
            "time_before": self._last_time,  # the newest row read before the gap
            "time_after": float("nan"),  # the first row read after it (when read)
        }
        self.gaps.append(self._open_gap)

    def _found(self, time_after: float) -> None:
        """Close the gap being counted, if any: rows after it were read (or reading stops)."""
        gap, self._open_gap = self._open_gap, None
        if gap is None:
            return
        gap["time_after"] = time_after
        logger.warning(
            "%s: %d rows (seq %d..%d) were overwritten on the instrument before they were "
            "read; the run records the loss (collect more often or enlarge the buffer)",
            self.name,
            gap["rows"],
            gap["first_seq"],
            gap["last_seq"],
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
