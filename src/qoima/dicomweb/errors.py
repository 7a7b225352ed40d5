"""The one place where DICOMweb errors become HTTP answers (status + application/problem+json)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from qoima.errors import QoimaError, http_status

logger = logging.getLogger(__name__)

HTTP_BAD_REQUEST = 400
HTTP_NOT_ACCEPTABLE = 406
HTTP_PAYLOAD_TOO_LARGE = 413
HTTP_URI_TOO_LONG = 414
HTTP_UNSUPPORTED_MEDIA_TYPE = 415
HTTP_INTERNAL_ERROR = 500


class DicomwebError(QoimaError):
    """An HTTP-level refusal that has no archive meaning (bad Accept, bad Content-Type)."""

    status_code = HTTP_BAD_REQUEST


class BadRequestError(DicomwebError):
    status_code = HTTP_BAD_REQUEST


class NotAcceptableError(DicomwebError):
    status_code = HTTP_NOT_ACCEPTABLE


class UnsupportedMediaTypeError(DicomwebError):
    status_code = HTTP_UNSUPPORTED_MEDIA_TYPE


class PayloadTooLargeError(DicomwebError):
    status_code = HTTP_PAYLOAD_TOO_LARGE


class UriTooLongError(DicomwebError):
    status_code = HTTP_URI_TOO_LONG


def status_for(exc: BaseException) -> int:
    if isinstance(exc, DicomwebError):
        return exc.status_code
    if isinstance(exc, HTTPException):
        return exc.status_code
    return http_status(exc) or HTTP_INTERNAL_ERROR


async def handle_error(request: Request, exc: Exception) -> Response:
    """Starlette exception handler: any error -> status and a problem+json body (RFC 9457)."""
    status = status_for(exc)
    if status == HTTP_INTERNAL_ERROR:
        logger.error("DICOMweb %s %s failed", request.method, request.url.path, exc_info=exc)
        detail = "internal error"
    else:
        detail = str(exc.detail) if isinstance(exc, HTTPException) else str(exc)
        logger.info("DICOMweb %s %s -> %d: %s", request.method, request.url.path, status,
                    detail[:200])
    return JSONResponse({"status": status, "title": _title(status), "detail": detail},
                        status_code=status, media_type="application/problem+json")


def _title(status: int) -> str:
    from http import HTTPStatus

    return HTTPStatus(status).phrase


Endpoint = Callable[[Request], Awaitable[Response]]


def answers_errors(endpoint: Endpoint) -> Endpoint:
    """Route endpoints through ``handle_error``; our routes live inside another app's router."""

    @functools.wraps(endpoint)
    async def wrapped(request: Request) -> Response:
        try:
            return await endpoint(request)
        except Exception as exc:
            return await handle_error(request, exc)

    return wrapped
