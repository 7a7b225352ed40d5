"""The web app's pages: one HTML shell for the single-page app, its bundle and the API routes."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from qoima.archive.archive import Archive
from qoima.web.api import build_api_routes
from qoima.web.demo import ATTRIBUTION, load_demo

WEB_DIR = Path(__file__).parent
_templates = Environment(loader=FileSystemLoader(WEB_DIR / "templates"),
                         autoescape=select_autoescape(["html"]))


def web_routes(archive: Archive, *, is_demo: bool = False) -> list[BaseRoute]:
    """Routes of the web UI (``/``, ``/static``) and its API (``/api``); ``is_demo`` first
    loads the demo studies."""
    if is_demo:
        load_demo(archive)

    async def index(_request: Request) -> Response:
        html = _templates.get_template("index.html").render(attribution=ATTRIBUTION)
        return HTMLResponse(html, headers={"Cache-Control": "no-cache"})

    async def to_index(_request: Request) -> Response:
        return RedirectResponse("/")

    return [
        Route("/", index),
        Route("/ui", to_index),
        # The viewer bundle is 4 MB (1.2 MB gzipped): worth compressing for clinics on slow links.
        Mount("/static", GZipMiddleware(StaticFiles(directory=WEB_DIR / "static"),
                                        minimum_size=1024), name="static"),
        *build_api_routes(archive),
    ]
