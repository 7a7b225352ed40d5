"""WADO-URI (PS3.18 9): ``/wado?requestType=WADO&studyUID=..&seriesUID=..&objectUID=..`` for
legacy viewers; the same retrieval and rendering code as WADO-RS."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from qoima.archive import Archive
from qoima.dicom.query import Condition
from qoima.dicom.rendering import MEDIA_TYPE_JPEG, MEDIA_TYPE_PNG, RenderOptions, Window
from qoima.dicomweb.errors import BadRequestError, NotAcceptableError, UriTooLongError
from qoima.dicomweb.qido import MAX_QUERY_STRING_BYTES
from qoima.dicomweb.transcoding import WRITABLE_SYNTAXES
from qoima.dicomweb.uids import check_uid
from qoima.dicomweb.wado import (
    CHUNK_BYTES,
    DEFAULT_TRANSFER_SYNTAX,
    HeaderCache,
    find_instances,
    render_instance,
    transcode_instance,
)

MEDIA_TYPE_DICOM = "application/dicom"
_OFFERED = (MEDIA_TYPE_JPEG, MEDIA_TYPE_PNG, MEDIA_TYPE_DICOM)


def _number(name: str, raw: str | None, *, is_float: bool = False) -> float | None:
    if raw is None or raw == "":
        return None
    try:
        return float(raw) if is_float else int(raw)
    except ValueError as exc:
        raise BadRequestError(f"{name} must be a number") from exc


async def retrieve(request: Request, archive: Archive, headers: HeaderCache) -> Response:
    """GET /wado: one object, as DICOM or as a rendered JPEG/PNG."""
    if len(request.url.query) > MAX_QUERY_STRING_BYTES:
        raise UriTooLongError(f"query string longer than {MAX_QUERY_STRING_BYTES} bytes")
    params = request.query_params
    if params.get("requestType") != "WADO":
        raise BadRequestError("requestType must be WADO")
    uids = []
    for name in ("studyUID", "seriesUID", "objectUID"):
        if not params.get(name):
            raise BadRequestError(f"{name} is required")
        uids.append(check_uid(params[name], name))
    # PS3.18 9.1.2.1.3: contentType is a list in preference order; default image/jpeg
    wanted = [t.split(";")[0].strip().lower()
              for t in params.get("contentType", MEDIA_TYPE_JPEG).split(",")]
    content_type = next((t for t in wanted if t in _OFFERED or t == "*/*"), None)
    if content_type is None:
        raise NotAcceptableError(f"contentType must be one of {', '.join(_OFFERED)}")
    if content_type == "*/*":
        content_type = MEDIA_TYPE_JPEG
    conditions = (Condition("StudyInstanceUID", "uid_list", values=(uids[0],)),
                  Condition("SeriesInstanceUID", "uid_list", values=(uids[1],)),
                  Condition("SOPInstanceUID", "uid_list", values=(uids[2],)))
    instances = await run_in_threadpool(find_instances, archive, conditions)
    stored = instances[0]
    if content_type == MEDIA_TYPE_DICOM:
        transfer_syntax = params.get("transferSyntax", DEFAULT_TRANSFER_SYNTAX)
        if transfer_syntax in ("*", stored.transfer_syntax_uid):
            chunks = await run_in_threadpool(archive.stream_instance, stored, CHUNK_BYTES)
            return StreamingResponse(chunks, media_type=MEDIA_TYPE_DICOM,
                                     headers={"Content-Length": str(stored.size_bytes)})
        if transfer_syntax not in WRITABLE_SYNTAXES:
            raise NotAcceptableError(f"transferSyntax {transfer_syntax[:64]} is not supported")
        data = await run_in_threadpool(transcode_instance, archive, stored, transfer_syntax)
        return Response(data, media_type=MEDIA_TYPE_DICOM)
    window = None
    center = _number("windowCenter", params.get("windowCenter"), is_float=True)
    width = _number("windowWidth", params.get("windowWidth"), is_float=True)
    if center is not None and width is not None:
        if width < 1:
            raise BadRequestError("windowWidth must be at least 1")
        window = Window(center, width)
    rows = _number("rows", params.get("rows"))
    columns = _number("columns", params.get("columns"))
    viewport = None
    if rows is not None or columns is not None:
        viewport = (int(columns or rows or 0), int(rows or columns or 0))
        if not (0 < viewport[0] <= 8192 and 0 < viewport[1] <= 8192):
            raise BadRequestError("rows and columns must be 1 to 8192")
    quality = _number("imageQuality", params.get("imageQuality")) or 90
    if not 1 <= quality <= 100:
        raise BadRequestError("imageQuality must be 1 to 100")
    frame_number = int(_number("frameNumber", params.get("frameNumber")) or 1)
    options = RenderOptions(content_type, window, viewport, int(quality))
    data = await run_in_threadpool(render_instance, archive, headers, stored, frame_number,
                                   options)
    return Response(data, media_type=content_type)
