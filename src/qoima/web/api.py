"""The JSON REST API of the web app under /api. Reads and writes through archive only."""

from __future__ import annotations

import datetime
import functools
import json
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from qoima.archive import access
from qoima.archive import reports as archive_reports
from qoima.archive import worklist as archive_worklist
from qoima.archive.archive import Archive
from qoima.archive.reports import ReportDraft
from qoima.archive.worklist import COUNT_CAP, WorklistFilter
from qoima.dicom.iin import InvalidIinError, parse_iin
from qoima.errors import InvalidQuery, NotFound, QoimaError, http_status
from qoima.web.demo import ATTRIBUTION
from qoima.web.users import current_user

logger = logging.getLogger(__name__)
I18N_DIR = Path(__file__).parent / "i18n"
LANGUAGES = ("kk", "ru", "en")
_DATE = re.compile(r"^\d{8}$")
Endpoint = Callable[[Request], Awaitable[Response]]


def _json_errors(endpoint: Endpoint) -> Endpoint:
    """The one place where archive errors become HTTP statuses for /api."""

    @functools.wraps(endpoint)
    async def wrapper(request: Request) -> Response:
        try:
            return await endpoint(request)
        except HTTPException as exc:
            return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
        except InvalidIinError as exc:
            return JSONResponse({"error": str(exc), "reason": exc.reason}, status_code=400)
        except QoimaError as exc:
            status = http_status(exc)
            if status is not None:
                return JSONResponse({"error": str(exc)}, status_code=status)
            logger.exception("api error on %s", request.url.path)
            return JSONResponse({"error": "internal error"}, status_code=500)
        except Exception:
            logger.exception("api error on %s", request.url.path)
            return JSONResponse({"error": "internal error"}, status_code=500)

    return wrapper


def _int_param(request: Request, name: str, default: int, maximum: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit():
        raise InvalidQuery(f"{name} must be a non-negative integer")
    return min(int(raw), maximum)


def _date_param(request: Request, name: str) -> str | None:
    raw = request.query_params.get(name, "").replace("-", "")
    if not raw:
        return None
    if not _DATE.match(raw):
        raise InvalidQuery(f"{name} must be a date YYYY-MM-DD")
    return raw


def _choice(request: Request, name: str, choices: tuple[str, ...], default: str | None
            ) -> str | None:
    raw = request.query_params.get(name) or default
    if raw is not None and raw not in choices:
        raise InvalidQuery(f"{name} must be one of {', '.join(choices)}")
    return raw


def build_api_routes(archive: Archive) -> list[BaseRoute]:
    async def worklist(request: Request) -> Response:
        criteria = WorklistFilter(
            region=request.query_params.get("region") or None,
            institution_name=request.query_params.get("facility") or None,
            modality=request.query_params.get("modality") or None,
            date_from=_date_param(request, "date_from"),
            date_to=_date_param(request, "date_to"),
            ai=_choice(request, "ai", ("flagged", "clear", "pending"), None),
            status=_choice(request, "status", ("unreported", "claimed", "draft", "signed", "all"),
                           "unreported") or "unreported",
            patient_id=request.query_params.get("iin") or None,
            limit=_int_param(request, "limit", 50, 500),
            offset=_int_param(request, "offset", 0, 10**9),
            scope=access.current_read_scope(),  # issue 6: in SQL, so pages and totals are exact
        )
        rows, total = await run_in_threadpool(archive_worklist.worklist, archive, criteria)
        rows = await run_in_threadpool(access.only_visible, archive, rows)  # issue 6: scope
        return JSONResponse({"items": rows, "total": min(total, COUNT_CAP),
                             "is_total_capped": total > COUNT_CAP,
                             "offset": criteria.offset, "limit": criteria.limit})

    async def facets(_request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(archive_worklist.facets, archive))

    async def study(request: Request) -> Response:
        uid = request.path_params["study"]
        details = await run_in_threadpool(archive_worklist.study_details, archive, uid)
        details["report"] = await run_in_threadpool(archive_reports.get_report, archive, uid)
        return JSONResponse(details)

    async def claim(request: Request) -> Response:
        user = current_user(request)
        uid = request.path_params["study"]
        if request.method == "DELETE":
            await run_in_threadpool(archive_worklist.release_claim, archive, uid, user)
            return JSONResponse({"released": True})
        expires_at = await run_in_threadpool(archive_worklist.claim_study, archive, uid, user)
        return JSONResponse({"owner": user, "expires_at": expires_at})

    async def report(request: Request) -> Response:
        user = current_user(request)
        uid = request.path_params["study"]
        body = await json_body(request)
        draft = ReportDraft(
            template=_text(body, "template", 64) or None,
            findings=_text(body, "findings", 20000), impression=_text(body, "impression", 20000),
            ai_agreement=_text(body, "ai_agreement", 16) or None,
            ai_finding=_text(body, "ai_finding", 200) or None)
        await run_in_threadpool(archive_reports.save_draft, archive, uid, user, draft)
        return JSONResponse({"status": "draft"})

    async def sign(request: Request) -> Response:
        user = current_user(request)
        uid = request.path_params["study"]
        sr_uid = await run_in_threadpool(archive_reports.sign_report, archive, uid, user)
        return JSONResponse({"status": "signed", "sr_sop_instance_uid": sr_uid})

    async def addendum(request: Request) -> Response:
        user = current_user(request)
        uid = request.path_params["study"]
        text = _text(await json_body(request), "text", 20000)
        sr_uid = await run_in_threadpool(archive_reports.add_addendum, archive, uid, user, text)
        return JSONResponse({"sr_sop_instance_uid": sr_uid})

    async def patient(request: Request) -> Response:
        iin = parse_iin(request.path_params["iin"])
        studies = await run_in_threadpool(archive_worklist.patient_studies, archive, iin.value)
        studies = await run_in_threadpool(access.only_visible, archive, studies)  # issue 6
        return JSONResponse({"iin": iin.value, "birth_date": iin.birth_date.isoformat(),
                             "sex": iin.sex, "studies": studies})

    async def series_instances(request: Request) -> Response:
        uids = await run_in_threadpool(archive_worklist.series_instances, archive,
                                       request.path_params["series"])
        return JSONResponse({"instances": uids})

    async def i18n(request: Request) -> Response:
        language = request.path_params["lang"]
        if language not in LANGUAGES:
            raise NotFound(f"language {language!r} not available")
        catalog = json.loads((I18N_DIR / f"{language}.json").read_text(encoding="utf-8"))
        return JSONResponse(catalog)

    async def about(_request: Request) -> Response:
        return JSONResponse({"attribution": ATTRIBUTION, "languages": list(LANGUAGES),
                             "templates": archive_reports.TEMPLATES,
                             "today": datetime.datetime.now(datetime.UTC).date().isoformat()})

    async def ai_feedback(_request: Request) -> Response:
        rows = await run_in_threadpool(archive_reports.ai_feedback, archive)
        return JSONResponse({"items": rows})

    routes = [
        ("/api/worklist", worklist, ["GET"]),
        ("/api/facets", facets, ["GET"]),
        ("/api/about", about, ["GET"]),
        ("/api/i18n/{lang}", i18n, ["GET"]),
        ("/api/studies/{study}", study, ["GET"]),
        ("/api/studies/{study}/claim", claim, ["POST", "DELETE"]),
        ("/api/studies/{study}/report", report, ["PUT"]),
        ("/api/studies/{study}/report/sign", sign, ["POST"]),
        ("/api/studies/{study}/report/addenda", addendum, ["POST"]),
        ("/api/patients/{iin}", patient, ["GET"]),
        ("/api/series/{series}/instances", series_instances, ["GET"]),
        ("/api/ai-feedback", ai_feedback, ["GET"]),
    ]
    return [Route(path, _json_errors(endpoint), methods=methods)
            for path, endpoint, methods in routes]


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object; InvalidQuery (a 400) for anything else."""
    try:
        body = await request.json()
    except ValueError as exc:
        raise InvalidQuery("the request body must be JSON") from exc
    if not isinstance(body, dict):
        raise InvalidQuery("the request body must be a JSON object")
    return body


def _text(body: dict[str, Any], name: str, max_length: int) -> str:
    value = body.get(name) or ""
    if not isinstance(value, str):
        raise InvalidQuery(f"{name} must be text")
    return value[:max_length]
