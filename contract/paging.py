"""Numbered records an instrument keeps in a ring, read in pages that no reader changes.

The instrument numbers the records of each kind (samples, events, spectra, step results)
from 0 and keeps the newest ``kept`` of them. It serves them through :data:`PAGES` page
PVs: page PV ``k`` holds the records numbered ``m * size`` to ``(m + 1) * size - 1`` that
are still held, for the newest page number ``m`` with ``m % PAGES == k`` that has begun.
Nothing is put before a read and nothing is kept per reader, so any number of readers
(a plan, ``ssb attach``, the lab's overview) read the same ring at the same time and each
gets exactly the records it asked for. Records the ring let go before a reader came for
them are reported to it as :class:`Lost`, never skipped in silence.

A page's value starts with its header, ``[page number, records in it]``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, cast

PAGES = 32  # page PVs per ring: the ring spans at most PAGES - 1 pages, so each is one
HEADER = 2  # elements before a float page's records: page number, records in the page


class Records(Protocol):
    """What a page's records (and their numbers) are: a list, a tuple or an array."""

    def __len__(self) -> int: ...
    def __getitem__(self, index: Any, /) -> Any: ...


R = TypeVar("R", bound=Records)


def page_name(index: int) -> str:
    """The PV suffix of page ``index`` (``Page7-RB``)."""
    return f"Page{index}-RB"


@dataclass(frozen=True)
class Paging:
    """How a ring of ``kept`` records is cut into pages."""

    kept: int

    def __post_init__(self) -> None:
        if self.kept < 1:
            raise ValueError(f"a ring keeps at least one record, not {self.kept}")

    @property
    def size(self) -> int:
        """Records per page: the ring's records touch at most PAGES - 1 page numbers."""
        return -(-self.kept // (PAGES - 2))

    def page(self, number: int) -> int:
        return number // self.size

    def numbers(self, page: int) -> range:
        return range(page * self.size, (page + 1) * self.size)

    def held_page(self, index: int, next_number: int) -> int:
        """The page number page PV ``index`` shows when ``next_number`` records have been
        logged: the newest one begun there, or -1 if none has."""
        newest = self.page(next_number - 1) if next_number else -1
        if newest < index:
            return -1
        return newest - (newest - index) % PAGES

    def held(self, index: int, next_number: int) -> tuple[int, range]:
        """Page number and the record numbers page PV ``index`` holds now."""
        page = self.held_page(index, next_number)
        if page < 0:
            return page, range(0)
        oldest = max(0, next_number - self.kept)
        span = self.numbers(page)
        return page, range(max(span.start, oldest), min(span.stop, next_number))


@dataclass(frozen=True)
class Page(Generic[R]):
    """One page as read: its number, its records' numbers and the records."""

    number: int
    numbers: Records  # of ints
    records: R


@dataclass(frozen=True)
class Lost:
    """Records ``first`` to ``last`` were let go on the instrument before they were read."""

    first: int
    last: int

    @property
    def count(self) -> int:
        return self.last - self.first + 1


def follow(
    paging: Paging, start: int, end: int, fetch: Callable[[int], Page[R]]
) -> Iterator[R | Lost]:
    """Read records ``start`` on, up to at least ``end - 1`` (``end``: the instrument's
    next record number read before): yields the records of each page read, oldest first,
    and a :class:`Lost` for each run of records no longer held. ``fetch(index)`` reads
    page PV ``index``. The caller goes on from the last record's number + 1."""
    number = start
    while number < end:
        page = paging.page(number)
        stop = paging.numbers(page).stop
        got = fetch(page % PAGES)
        if got.number < page:
            return  # not begun: nothing from ``number`` on has been logged
        if got.number > page:  # a later page took its place: this one was let go
            yield Lost(number, stop - 1)
            number = stop
            continue
        i = bisect_left(got.numbers, number)
        if i == len(got.numbers):
            if len(got.numbers):  # a list, or a numpy array from the wire
                return  # nothing new on this page
            yield Lost(number, stop - 1)  # the whole page was let go, and not yet replaced
            number = stop
            continue
        first = int(got.numbers[i])
        if first > number:
            yield Lost(number, first - 1)
        yield cast(R, got.records[i:])  # a list's or an array's slice: its own type
        number = int(got.numbers[-1]) + 1
        if number < stop:
            return  # the page is still filling: that is all there is
