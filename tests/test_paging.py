"""The page arithmetic both sides of the wire use (ssb_contract.paging), on a ring in memory."""

import random

import pytest

from ssb_contract.paging import PAGES, Lost, Page, Paging, follow


class Ring:
    """A ring of numbered records served in pages, as the IOC serves them."""

    def __init__(self, kept: int):
        self.paging = Paging(kept)
        self.next = 0

    def log(self, n: int) -> None:
        self.next += n

    def fetch(self, index: int) -> Page[list[int]]:
        page, numbers = self.paging.held(index, self.next)
        return Page(page, list(numbers), [n * 10 for n in numbers])


def read(ring: Ring, start: int) -> tuple[list[int], list[Lost], int]:
    got, lost, number = [], [], start
    for item in follow(ring.paging, start, ring.next, ring.fetch):
        if isinstance(item, Lost):
            lost.append(item)
            number = item.last + 1
        else:
            got.extend(r // 10 for r in item)
            number = got[-1] + 1
    return got, lost, number


@pytest.mark.parametrize("kept", [1, 7, 30, 31, 100, 1000, 100_000])
def test_each_page_pv_shows_one_page_and_the_ring_spans_fewer_than_all(kept):
    ring = Ring(kept)
    for logged in (0, 1, kept // 2, kept, kept + 1, 3 * kept + 5):
        ring.next = logged
        spans = [ring.paging.held(i, logged)[1] for i in range(PAGES)]
        held = sorted(n for span in spans for n in span)
        assert held == list(range(max(0, logged - kept), logged))  # each record once


def test_readers_interleaved_with_logging_get_every_record_once_each():
    rng = random.Random(7)
    ring = Ring(5_000)
    readers = [0, 0, 0]
    seen: list[list[int]] = [[], [], []]
    for _ in range(400):
        ring.log(rng.randint(0, 300))
        who = rng.randrange(3)
        got, lost, readers[who] = read(ring, readers[who])
        assert not lost
        seen[who].extend(got)
    for i in range(3):
        got, lost, readers[i] = read(ring, readers[i])
        seen[i].extend(got)
        assert seen[i] == list(range(ring.next))


@pytest.mark.parametrize("behind", [1, 299, 5_000, 12_345, 1_000_000])
def test_a_reader_left_behind_is_told_exactly_what_it_lost(behind):
    ring = Ring(5_000)
    ring.log(100)
    got, lost, number = read(ring, 0)
    assert got == list(range(100)) and not lost
    ring.log(5_000 + behind)
    got, lost, number = read(ring, number)
    assert sum(gap.count for gap in lost) == behind
    assert lost[0].first == 100 and lost[-1].last + 1 == got[0]
    assert got == list(range(ring.next - 5_000, ring.next)) and number == ring.next


def test_a_reader_ahead_of_the_instrument_reads_nothing():
    ring = Ring(100)
    ring.log(10)
    assert read(ring, 10) == ([], [], 10)
    assert list(follow(ring.paging, 50, 60, ring.fetch)) == []  # a restarted instrument


def test_a_ring_keeps_at_least_one_record():
    with pytest.raises(ValueError, match="at least one record"):
        Paging(0)


class ArrayRing(Ring):
    """The same ring, its pages as the devices get them from the wire: numpy arrays."""

    def fetch(self, index: int) -> Page:
        import numpy as np

        page = super().fetch(index)
        return Page(page.number, np.asarray(page.numbers, dtype=np.int64), page.records)


@pytest.mark.parametrize("ring_type", [Ring, ArrayRing])
def test_a_reader_outrun_by_the_ring_gets_exact_losses_with_lists_or_arrays(ring_type):
    """Pages emptied by the ring (every record let go) and full ones alike, whether the
    record numbers come as a list or as a numpy array (whose truth value is an error)."""
    ring = ring_type(100)
    reader = 0
    ring.log(50)
    got, lost, reader = read(ring, reader)
    assert got == list(range(50)) and not lost
    ring.log(1000)  # the reader falls ten rings behind
    got, lost, reader = read(ring, reader)
    assert sum(item.count for item in lost) + len(got) == 1000
    assert got == list(range(1050 - len(got), 1050))  # what is held, each once
    assert reader == 1050
