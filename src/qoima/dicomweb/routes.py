"""The DICOMweb routes under /dicomweb (STOW-RS, QIDO-RS, WADO-RS) and /wado (WADO-URI)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from qoima.archive import Archive
from qoima.dicom.attributes import Level
from qoima.dicomweb import qido, stow, wado, wado_uri
from qoima.dicomweb.errors import answers_errors

_STUDY = "/dicomweb/studies/{study}"
_SERIES = _STUDY + "/series/{series}"
_INSTANCE = _SERIES + "/instances/{instance}"
_FRAMES = _INSTANCE + "/frames/{frames}"

Handler = Callable[[Request], Awaitable[Response]]


class DicomwebSettings(Protocol):
    """What the routes read from Settings (config itself sits above the adapters)."""

    @property
    def max_instance_bytes(self) -> int: ...


def routes(archive: Archive, settings: DicomwebSettings) -> list[BaseRoute]:
    """Every DICOMweb endpoint, each answering errors through ``dicomweb.errors``."""
    headers = wado.HeaderCache()
    max_part_bytes = settings.max_instance_bytes

    async def store(request: Request) -> Response:
        return await stow.store_instances(request, archive, max_part_bytes)

    def search(level: Level) -> Handler:
        async def handler(request: Request) -> Response:
            return await qido.search(request, archive, level)
        return handler

    async def retrieve(request: Request) -> Response:
        return await wado.retrieve_instances(request, archive)

    async def metadata(request: Request) -> Response:
        return await wado.retrieve_metadata(request, archive, headers)

    async def frames(request: Request) -> Response:
        return await wado.retrieve_frames(request, archive)

    async def bulkdata(request: Request) -> Response:
        return await wado.retrieve_bulkdata(request, archive)

    async def rendered(request: Request) -> Response:
        return await wado.retrieve_rendered(request, archive, headers)

    async def thumbnail(request: Request) -> Response:
        return await wado.retrieve_thumbnail(request, archive, headers)

    async def legacy(request: Request) -> Response:
        return await wado_uri.retrieve(request, archive, headers)

    table: list[tuple[str, Handler, list[str]]] = [
        ("/dicomweb/studies", store, ["POST"]),
        (_STUDY, store, ["POST"]),
        ("/dicomweb/studies", search(Level.STUDY), ["GET"]),
        ("/dicomweb/series", search(Level.SERIES), ["GET"]),
        ("/dicomweb/instances", search(Level.IMAGE), ["GET"]),
        (_STUDY + "/series", search(Level.SERIES), ["GET"]),
        (_STUDY + "/instances", search(Level.IMAGE), ["GET"]),
        (_SERIES + "/instances", search(Level.IMAGE), ["GET"]),
        (_STUDY, retrieve, ["GET"]),
        (_SERIES, retrieve, ["GET"]),
        (_INSTANCE, retrieve, ["GET"]),
        (_STUDY + "/metadata", metadata, ["GET"]),
        (_SERIES + "/metadata", metadata, ["GET"]),
        (_INSTANCE + "/metadata", metadata, ["GET"]),
        (_FRAMES, frames, ["GET"]),
        (_INSTANCE + "/bulkdata/{tag}", bulkdata, ["GET"]),
        (_STUDY + "/rendered", rendered, ["GET"]),
        (_SERIES + "/rendered", rendered, ["GET"]),
        (_INSTANCE + "/rendered", rendered, ["GET"]),
        (_FRAMES + "/rendered", rendered, ["GET"]),
        (_STUDY + "/thumbnail", thumbnail, ["GET"]),
        (_SERIES + "/thumbnail", thumbnail, ["GET"]),
        (_INSTANCE + "/thumbnail", thumbnail, ["GET"]),
        (_FRAMES + "/thumbnail", thumbnail, ["GET"]),
        ("/wado", legacy, ["GET"]),
    ]
    return [Route(path, answers_errors(handler), methods=methods)
            for path, handler, methods in table]
