"""A ring's page PVs (``Page0-RB`` .. ``Page31-RB``), filled when a client reads them.

Each page PV computes its value at the read from the ring, as :mod:`ssb_contract.paging`
lays it out, so a read changes nothing and no reader sees another's answer. The group
that owns the ring gives each page's value through a method (``page_value(index)``).
"""

from __future__ import annotations

from caproto.server import SubGroup

from ssb_contract.paging import HEADER, PAGES, Paging, page_name

from .pvs import RigPVGroup, array, text


def _page(index: int, max_length: int, doc: str, method: str):
    async def get(group, instance):
        return getattr(group.parent, method)(index)

    pv = array(page_name(index), "mixed", f"{doc}, one page (ssb_contract.paging)", max_length)
    return pv.getter(get)


def pages(
    max_kept: int, width: int, doc: str, prefix: str = "", method: str = "page_value"
) -> SubGroup:
    """The page PVs (``{prefix}Page<k>-RB``) of a ring of up to ``max_kept`` rows of
    ``width`` floats (or records of at most ``width`` floats each), whose values the
    owning group's ``method(index)`` gives."""
    max_length = HEADER + Paging(max_kept).size * width
    namespace = {f"page{k}": _page(k, max_length, doc, method) for k in range(PAGES)}
    namespace["__doc__"] = f"{page_name(0)} .. {page_name(PAGES - 1)}: {doc}"
    return SubGroup(type("Pages", (RigPVGroup,), namespace), prefix=prefix)


def _text_page(index: int, max_length: int, doc: str, method: str):
    async def get(group, instance):
        return getattr(group.parent, method)(index, max_length)

    pv = text(page_name(index), f"{doc}, one page (ssb_contract.paging)", max_length=max_length)
    return pv.getter(get)


def text_pages(max_length: int, doc: str, prefix: str, method: str) -> SubGroup:
    """Page PVs holding JSON (``{"page": m, "records": [...]}``), each at most
    ``max_length`` characters: ``method(index, max_length)`` gives the text."""
    namespace = {f"page{k}": _text_page(k, max_length, doc, method) for k in range(PAGES)}
    namespace["__doc__"] = f"{page_name(0)} .. {page_name(PAGES - 1)}: {doc}"
    return SubGroup(type("TextPages", (RigPVGroup,), namespace), prefix=prefix)
