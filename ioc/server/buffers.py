"""Rows logged on the instrument, read in bulk by sequence number (one PV group per buffer).

A client puts the first sequence number it wants to ``ReadFrom-SP`` (the put completes
once ``Rows-RB`` holds up to ``ROWS_READ`` rows from there), reads ``Count-RB`` rows from
``Rows-RB`` and goes on from the last sequence number + 1. Rows the ring overwrote
before they were read show as a jump in sequence numbers, never as silent loss.
"""

from __future__ import annotations

from typing import ClassVar

from ssb_ioc.sim.cycler import SampleBuffer

from .pvs import RigPVGroup, array, counter, publish, setting

ROWS_READ = 140_000  # elements per bulk read (10,000 cycler samples of 14 fields)


class RowBufferGroup(RigPVGroup):
    """NextSeq-RB, OldestSeq-RB   sequence numbers of the next row and the oldest held
    ReadFrom-SP                  fill Rows-RB from this sequence number
    Count-RB                     rows in Rows-RB
    Rows-RB                      the rows, flattened; fields as named by the owner
    """

    fields: ClassVar[tuple[str, ...]] = ()

    next_seq_rb = counter("NextSeq-RB", "Next row's sequence no.")
    oldest_seq_rb = counter("OldestSeq-RB", "Oldest row held")
    read_from_sp = setting("ReadFrom-SP", "", 0.0, 1e15, "Fill Rows-RB from this seq", 0)
    count_rb = counter("Count-RB", "Rows in Rows-RB")
    rows_rb = array("Rows-RB", "", "Rows of the buffer, flattened (one read)", ROWS_READ)

    def buffer(self) -> SampleBuffer:
        raise NotImplementedError

    @read_from_sp.putter
    async def read_from_sp(self, instance, value):
        buffer = self.buffer()
        rows = buffer.since(int(value), limit=ROWS_READ // buffer.width)
        await self.rows_rb.write(rows.ravel() if len(rows) else [0.0])
        await self.count_rb.write(len(rows))
        return value

    async def update(self) -> None:
        buffer = self.buffer()
        await publish(self.next_seq_rb, buffer.next_seq)
        await publish(self.oldest_seq_rb, buffer.oldest_seq)
