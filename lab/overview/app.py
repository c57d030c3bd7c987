"""The lab overview: one page of rig tiles, fed by ``/api/lab`` a few times a second, and
each rig's latest run as figures from the catalog.

    /                      the page (its assets are shipped in ``static/``: no internet)
    /api/lab               every rig's snapshot (JSON)
    /rigs/{rig}/latest     the rig's newest run in the catalog: metadata and figures
    /healthz               200 once the server runs
"""

from __future__ import annotations

import html
import logging
import threading
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .monitor import LabMonitor

STATIC = Path(__file__).parent / "static"
log = logging.getLogger(__name__)


class Figures:
    """Reports of runs rendered once into ``cache`` (a finished run never changes; a
    running one is drawn anew at each visit)."""

    def __init__(self, catalog_uri: str, api_key: str | None, cache: Path):
        self.catalog_uri, self.api_key, self.cache = catalog_uri, api_key, cache
        self._lock = threading.Lock()  # matplotlib and one catalog client: one at a time

    def latest(self, rig: str) -> tuple[dict, Path | None]:
        from tiled.queries import Key

        from ssb_analysis.catalog import open_catalog
        from ssb_analysis.report import write_report
        from ssb_analysis.runs import stop_document

        with self._lock:
            catalog = open_catalog(self.catalog_uri, api_key=self.api_key)
            try:
                found = catalog.search(Key("rig") == rig)
                if len(found) == 0:
                    return {}, None
                run = found[-1]
                start, stop = dict(run.start), stop_document(run)  # None while it runs
                target = self.cache / rig / start["uid"]
                page = next(target.glob("*/report.md"), None) if stop else None
                if page is None:
                    page = write_report(run, target)
                return {"start": start, "stop": dict(stop) if stop else None}, page
            finally:
                catalog.context.close()


def build_app(monitor: LabMonitor, figures: Figures) -> Starlette:
    async def index(request: Request):
        return FileResponse(STATIC / "index.html")

    async def lab(request: Request):
        return JSONResponse({"rigs": monitor.snapshot()})

    async def health(request: Request):
        return PlainTextResponse("ok")

    def latest(request: Request):  # sync: rendered in starlette's thread pool
        rig = request.path_params["rig"]
        if rig not in monitor.views:
            return HTMLResponse(_page(rig, f"<p>No rig {html.escape(rig)} in this lab.</p>"), 404)
        try:
            docs, page = figures.latest(rig)
        except Exception as ex:  # the catalog down: say so on the page, not a stack trace
            log.exception("latest run of %s", rig)
            return HTMLResponse(
                _page(rig, f"<p class=error>The catalog did not answer: {html.escape(str(ex))}"
                      "</p>"), 503)  # fmt: skip
        if page is None:
            return HTMLResponse(_page(rig, "<p>No run of this rig in the catalog yet.</p>"))
        return HTMLResponse(_page(rig, _report_html(rig, docs, page)))

    def figure(request: Request):
        rig, uid, folder, name = (request.path_params[k] for k in ("rig", "uid", "folder", "name"))
        path = (figures.cache / rig / uid / folder / name).resolve()
        if not path.is_relative_to(figures.cache.resolve()) or path.suffix != ".png":
            return PlainTextResponse("not found", 404)
        if not path.exists():
            return PlainTextResponse("not found", 404)
        return FileResponse(path, media_type="image/png")

    return Starlette(
        routes=[
            Route("/", index),
            Route("/api/lab", lab),
            Route("/healthz", health),
            Route("/rigs/{rig}/latest", latest),
            Route("/rigs/{rig}/figures/{uid}/{folder}/{name}", figure),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]
    )


def _page(rig: str, body: str) -> str:
    return (
        "<!doctype html><html><head><meta charset=utf-8>"
        f"<title>{html.escape(rig)}: latest run</title>"
        "<link rel=stylesheet href=/static/overview.css></head>"
        f"<body class=run><p><a href=/>&larr; lab overview</a></p>{body}</body></html>"
    )


def _report_html(rig: str, docs: dict, page: Path) -> str:
    start, stop = docs["start"], docs["stop"]
    exit_status = stop["exit_status"] if stop else "running"
    rows = [
        ("plan", start.get("plan_name")),
        ("scan", start.get("scan_id")),
        ("uid", start["uid"]),
        ("cell", start.get("cell_id")),
        ("purpose", start.get("purpose")),
        ("operator", start.get("operator")),
        ("study", start.get("study_id") or start.get("study", "")),
        (
            "exit status",
            exit_status + (f": {stop.get('reason')}" if stop and stop.get("reason") else ""),
        ),
    ]
    table = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows
    )
    images = "".join(
        f"<figure><img src='/rigs/{rig}/figures/{start['uid']}/{page.parent.name}/{png.name}' "
        f"alt='{png.stem}'><figcaption>{png.stem}</figcaption></figure>"
        for png in sorted(page.parent.glob("*.png"))
    )
    return (
        f"<h1>{html.escape(rig)}: {html.escape(str(start.get('plan_name')))} "
        f"(scan {start.get('scan_id')})</h1><table class=meta>{table}</table>{images}"
        f"<details><summary>key numbers</summary><pre>{html.escape(page.read_text())}</pre>"
        "</details>"
    )
