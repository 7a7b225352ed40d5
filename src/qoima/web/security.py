"""REST endpoints of issue 6: audit trail (read, verify, FHIR), "who viewed my images",
break-glass access and de-identified export. Roles are checked by ``web.auth`` before these run."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from qoima.archive import access
from qoima.archive import audit as archive_audit
from qoima.archive import export as archive_export
from qoima.archive.archive import Archive
from qoima.errors import Forbidden, InvalidQuery, NotFound, QoimaError
from qoima.web.api import json_body


def _error(exc: QoimaError) -> Response:
    status = 403 if isinstance(exc, Forbidden) else 404 if isinstance(exc, NotFound) else 400
    return JSONResponse({"error": str(exc)}, status_code=status)


def security_routes(archive: Archive) -> list[BaseRoute]:
    async def audit_events(request: Request) -> Response:
        after = request.query_params.get("after", "0")
        if not after.isdigit():
            return JSONResponse({"error": "after must be a record id"}, status_code=400)
        rows = await run_in_threadpool(archive_audit.events, archive, int(after), 1000)
        if request.query_params.get("format") == "fhir":
            entries = [{"resource": archive_audit.to_fhir(row)} for row in rows]
            return JSONResponse({"resourceType": "Bundle", "type": "collection",
                                 "entry": entries})
        return JSONResponse({"items": rows})

    async def audit_verify(_request: Request) -> Response:
        result = await run_in_threadpool(archive_audit.verify, archive)
        return JSONResponse({"intact": result.is_intact, "records": result.records,
                             "head_hash": result.head_hash, "first_bad_id": result.first_bad_id,
                             "problem": result.problem},
                            status_code=200 if result.is_intact else 409)

    async def who_viewed(request: Request) -> Response:
        patient_id = request.path_params["patient"]
        rows = await run_in_threadpool(archive_audit.who_viewed, archive, patient_id)
        return JSONResponse({"accesses": rows})

    async def break_glass(request: Request) -> Response:
        principal = access.current_principal()
        try:
            body = await json_body(request)
            if principal is None:
                raise Forbidden("break-glass needs a signed-in user")
            patient_id = str(body.get("patient_id", ""))[:64]
            reason = str(body.get("reason", ""))[:1000]
            if not patient_id:
                raise InvalidQuery("patient_id is required")
            await run_in_threadpool(access.break_glass, archive, principal, patient_id, reason)
        except QoimaError as exc:
            return _error(exc)
        await run_in_threadpool(archive_audit.record, archive, principal, "break-glass",
                                "success", patient_ids=[patient_id], detail=reason)
        return JSONResponse({"granted": True, "hours": access.BREAK_GLASS_TTL_S / 3600})

    async def export(request: Request) -> Response:
        try:
            body = await json_body(request)
            query = archive_export.study_query(body.get("query"))
            project = str(body.get("project", ""))
            data, result = await run_in_threadpool(
                lambda: archive_export.export_to_zip(
                    archive, project, query,
                    include_burned_in=bool(body.get("include_burned_in"))))
        except QoimaError as exc:
            return _error(exc)
        return Response(data, media_type="application/zip", headers={
            "Content-Disposition": 'attachment; filename="export.zip"',
            "X-Exported": str(result.exported),
            "X-Skipped-Burned-In": str(result.skipped_burned_in)})

    return [
        Route("/api/audit/events", audit_events, methods=["GET"]),
        Route("/api/audit/verify", audit_verify, methods=["GET"]),
        Route("/api/audit/patients/{patient}", who_viewed, methods=["GET"]),
        Route("/api/break-glass", break_glass, methods=["POST"]),
        Route("/api/export", export, methods=["POST"]),
    ]
