"""Rows logged on the instrument, read in bulk by sequence number (one PV group per buffer).

A client puts the first sequence number it wants to ``ReadFrom-SP`` (the put completes
once ``Rows-RB`` holds up to ``ROWS_READ`` rows from there), reads ``Count-RB`` rows from
``Rows-RB`` and goes on from the last sequence number + 1. Rows the ring overwrote
before they were read show as a jump in sequence numbers, never as silent loss.
"""

from __future__ import annotations

import math
import time
from typing import ClassVar

from ssb_ioc.sim.cycler import SampleBuffer

from .pvs import RigPVGroup, array, counter, publish, setting

ROWS_READ = 140_000  # elements per bulk read (10,000 cycler samples of 14 fields)
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


class RowBufferGroup(RigPVGroup):
    """NextSeq-RB, OldestSeq-RB   sequence numbers of the next row and the oldest held
    ReadFrom-SP                  fill Rows-RB from this sequence number
    Count-RB                     rows in Rows-RB
    Rows-RB                      the rows, flattened; fields as named by the owner
    Keep-SP                      the oldest row the reader still needs: the simulation
                                 slows rather than overwrite it (put it again within
                                 10 s of wall time)
    """

    fields: ClassVar[tuple[str, ...]] = ()

    next_seq_rb = counter("NextSeq-RB", "Next row's sequence no.")
    oldest_seq_rb = counter("OldestSeq-RB", "Oldest row held")
    read_from_sp = setting("ReadFrom-SP", "1", 0.0, 1e15, "Fill Rows-RB from this seq", 0)
    count_rb = counter("Count-RB", "Rows in Rows-RB")
    rows_rb = array("Rows-RB", "mixed", "Rows of the buffer, flattened (one read)", ROWS_READ)
    keep_sp = setting("Keep-SP", "1", 0.0, 1e15, "Oldest row still needed (slows the sim)", 0)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.keep = Keep()

    def buffer(self) -> SampleBuffer:
        raise NotImplementedError

    @read_from_sp.putter
    async def read_from_sp(self, instance, value):
        buffer = self.buffer()
        rows = buffer.since(int(value), limit=ROWS_READ // buffer.width)
        await self.rows_rb.write(rows.ravel() if len(rows) else [0.0])
        await self.count_rb.write(len(rows))
        return value

    @keep_sp.putter
    async def keep_sp(self, instance, value):
        self.keep.set(value)
        return value

    async def update(self) -> None:
        buffer = self.buffer()
        await publish(self.next_seq_rb, buffer.next_seq)
        await publish(self.oldest_seq_rb, buffer.oldest_seq)
