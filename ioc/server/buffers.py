"""Rows logged on the instrument, read in bulk by sequence number (one PV group per buffer).

A client reads the page PVs that hold the rows it wants (:mod:`ssb_contract.paging`:
``Page<k>-RB`` = [page number, rows, then the rows flattened]); reads change nothing,
so any number of clients read the same buffer at once. Rows the ring overwrote before
they were read show as a jump in sequence numbers, never as silent loss.
"""

from __future__ import annotations

# caproto's `@pv.putter` redefines the name, as a property setter does (mypy knows only
# property's):
# mypy: disable-error-code="no-redef"
import math
import time
from typing import ClassVar

import numpy as np

from ssb_contract.paging import Paging
from ssb_ioc.core.channel import SampleBuffer

from .pages import pages
from .pvs import RigPVGroup, counter, publish, setting

KEEP_LEASE = 10.0  # s of wall time a reader's Keep-SP holds without being put again
PACE_FILL = 0.75  # the simulation waits before unread rows fill this much of a ring


class Keep:
    """The oldest row a reader still needs (``Keep-SP``): the simulation slows its clock
    rather than overwrite it, as long as the reader puts it again within ``KEEP_LEASE``
    s. Real instruments cannot wait: their reader must keep up, and what it misses is
    counted as lost. The newest put wins (one acquisition reads a rig's buffers)."""

    def __init__(self):
        self.seq: int | None = None
        self.put_at = -math.inf

    def set(self, seq: float) -> None:
        self.seq, self.put_at = int(seq), time.monotonic()

    def holds_back(self, buffer: SampleBuffer, now: float) -> bool:
        """Rows from ``seq`` on would soon be overwritten: time must wait."""
        if self.seq is None or now - self.put_at > KEEP_LEASE:
            return False
        return buffer.next_seq - max(self.seq, buffer.oldest_seq) >= PACE_FILL * buffer.size


def page_of(buffer: SampleBuffer, index: int) -> np.ndarray:
    """Page PV ``index`` of ``buffer`` as it reads now: header, then the rows."""
    page, numbers = Paging(buffer.size).held(index, buffer.next_seq)
    rows = buffer.since(numbers.start, limit=len(numbers)) if numbers else np.empty(0)
    return np.concatenate(([float(page), float(len(numbers))], rows.ravel()))


def row_pages(max_kept: int, width: int):
    return pages(max_kept, width, "rows of the buffer, by sequence number")


class RowBufferGroup(RigPVGroup):
    """NextSeq-RB, OldestSeq-RB   sequence numbers of the next row and the oldest held
    Kept-RB                      rows the ring holds (the pages' layout follows from it)
    Page0-RB .. Page31-RB        [page, rows, then the rows flattened]: fields as named
                                 by the owner, seq first (ssb_contract.paging)
    Keep-SP                      the oldest row the reader still needs: the simulation
                                 slows rather than overwrite it (put it again within
                                 10 s of wall time)
    """

    fields: ClassVar[tuple[str, ...]] = ()

    next_seq_rb = counter("NextSeq-RB", "Next row's sequence no.")
    oldest_seq_rb = counter("OldestSeq-RB", "Oldest row held")
    kept_rb = counter("Kept-RB", "Rows the ring holds")
    keep_sp = setting("Keep-SP", "1", 0.0, 1e15, "Oldest row still needed (slows the sim)", 0)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.keep = Keep()

    def buffer(self) -> SampleBuffer:
        raise NotImplementedError

    def page_value(self, index: int) -> np.ndarray:
        return page_of(self.buffer(), index)

    @keep_sp.putter
    async def keep_sp(self, instance, value):
        self.keep.set(value)
        return value

    async def update(self) -> None:
        buffer = self.buffer()
        await publish(self.next_seq_rb, buffer.next_seq)
        await publish(self.oldest_seq_rb, buffer.oldest_seq)
        await publish(self.kept_rb, buffer.size)
