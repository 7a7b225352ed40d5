"""QIDO-RS (PS3.18 10.6): query parameters become one ``dicom.Query``; the archive searches;
rows become DICOM JSON. The database is never touched here."""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from qoima.archive import Archive
from qoima.dicom.attributes import (
    BY_KEYWORD,
    COMPUTED_BY_KEYWORD,
    LEVEL_ORDER,
    Level,
    attributes_at,
)
from qoima.dicom.json_model import keyword_for, row_to_json
from qoima.dicom.query import Condition, Query, parse_condition
from qoima.dicomweb import multipart
from qoima.dicomweb.accept import wants_dicom_xml
from qoima.dicomweb.errors import BadRequestError, UriTooLongError
from qoima.dicomweb.stow import dicomweb_base
from qoima.dicomweb.uids import path_uid

logger = logging.getLogger(__name__)

MEDIA_TYPE_DICOM_JSON = "application/dicom+json"
MAX_QUERY_STRING_BYTES = 8192
MAX_RESULTS = 10_000  # per response; more need limit/offset paging
MAX_OFFSET = 1 << 31
WARNING_PREFIX = "299 qoima:"
# PS3.18 8.3.4: parameters that are not matching keys
_CONTROL_PARAMETERS = {"limit", "offset", "includefield", "fuzzymatching", "accept", "charset"}

# PS3.18 Tables 10.6.3-3, -4 and -5: the return keys every match carries
STUDY_RETURN_KEYS = (
    "SpecificCharacterSet", "StudyDate", "StudyTime", "AccessionNumber", "InstanceAvailability",
    "ModalitiesInStudy", "ReferringPhysicianName", "RetrieveURL", "PatientName", "PatientID",
    "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyID", "StudyDescription",
    "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances")
SERIES_RETURN_KEYS = (
    "SpecificCharacterSet", "Modality", "SeriesDescription", "RetrieveURL", "StudyInstanceUID",
    "SeriesInstanceUID", "SeriesNumber", "NumberOfSeriesRelatedInstances",
    "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime")
INSTANCE_RETURN_KEYS = (
    "SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "InstanceAvailability",
    "RetrieveURL", "StudyInstanceUID", "SeriesInstanceUID", "InstanceNumber", "Rows", "Columns",
    "BitsAllocated", "NumberOfFrames")
_RETURN_KEYS = {Level.STUDY: STUDY_RETURN_KEYS, Level.SERIES: SERIES_RETURN_KEYS,
                Level.IMAGE: INSTANCE_RETURN_KEYS}


def _int_parameter(name: str, raw: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError as exc:
        raise BadRequestError(f"{name} must be an integer, not {raw[:20]!r}") from exc
    if not low <= value <= high:
        raise BadRequestError(f"{name} must be between {low} and {high}")
    return value


def _available_keywords(level: Level) -> list[str]:
    """Everything the index can return at ``level`` (includefield=all)."""
    keywords: list[str] = []
    for current in LEVEL_ORDER[: LEVEL_ORDER.index(level) + 1]:
        keywords += [a.keyword for a in attributes_at(current)]
        if current != Level.PATIENT:
            keywords += [c.keyword for c in COMPUTED_BY_KEYWORD.values() if c.level == current]
    return keywords


class QidoRequest:
    """Parsed QIDO-RS parameters: the Query plus what to return and what to warn about."""

    def __init__(self, request: Request, level: Level) -> None:
        if len(request.url.query) > MAX_QUERY_STRING_BYTES:
            raise UriTooLongError(f"query string longer than {MAX_QUERY_STRING_BYTES} bytes")
        self.level = level
        self.warnings: list[str] = []
        self.include: list[str] = list(_RETURN_KEYS[level])
        if level != Level.STUDY and "study" not in request.path_params:
            # PS3.18 10.6.3.3: queries across studies also return the study's keys
            self.include += list(STUDY_RETURN_KEYS)
        if level == Level.IMAGE and "series" not in request.path_params:
            self.include += list(SERIES_RETURN_KEYS)
        self.limit = MAX_RESULTS
        self.has_limit = False
        self.offset = 0
        conditions: dict[str, Condition] = {}
        for name in ("study", "series"):
            if name in request.path_params:
                keyword = "StudyInstanceUID" if name == "study" else "SeriesInstanceUID"
                conditions[keyword] = Condition(keyword, "uid_list",
                                                values=(path_uid(request, name),))
        for name, raw in request.query_params.multi_items():
            self._parameter(name, raw, conditions)
        self.query = Query(level, tuple(conditions.values()), tuple(self.include),
                           limit=self.limit + 1, offset=self.offset)

    def _parameter(self, name: str, raw: str, conditions: dict[str, Condition]) -> None:
        if name == "limit":
            self.limit = _int_parameter(name, raw, 1, MAX_OFFSET)
            self.has_limit = True
            if self.limit > MAX_RESULTS:
                self.warnings.append(f"{WARNING_PREFIX} limit is capped at {MAX_RESULTS}")
                self.limit = MAX_RESULTS
        elif name == "offset":
            self.offset = _int_parameter(name, raw, 0, MAX_OFFSET)
        elif name == "fuzzymatching":
            if raw.lower() not in ("true", "false"):
                raise BadRequestError("fuzzymatching must be true or false")
            if raw.lower() == "true":
                self.warnings.append(f"{WARNING_PREFIX} fuzzymatching is not supported; "
                                     "exact matching was used")
        elif name == "includefield":
            for field in (f.strip() for f in raw.split(",") if f.strip()):
                self._include(field)
        elif name in _CONTROL_PARAMETERS:
            return
        else:
            self._matching_key(name, raw, conditions)

    def _include(self, field: str) -> None:
        if field == "all":
            self.include += _available_keywords(self.level)
            return
        keyword = self._keyword(field)
        if keyword in BY_KEYWORD or keyword in COMPUTED_BY_KEYWORD:
            self.include.append(keyword)
        else:
            self.warnings.append(f"{WARNING_PREFIX} {keyword} is not kept in the index and "
                                 "is not returned")

    @staticmethod
    def _keyword(name: str) -> str:
        if "." in name:
            raise BadRequestError(f"nested attribute {name[:60]!r} is not supported")
        try:
            return keyword_for(name)
        except KeyError as exc:
            raise BadRequestError(f"unknown attribute {name[:60]!r}") from exc

    def _matching_key(self, name: str, raw: str, conditions: dict[str, Condition]) -> None:
        keyword = self._keyword(name)
        if keyword not in BY_KEYWORD and keyword not in COMPUTED_BY_KEYWORD:
            # PS3.18 8.3.4.1: unsupported matching keys are ignored, with a warning
            self.warnings.append(f"{WARNING_PREFIX} {keyword} is not supported as a matching "
                                 "key and was ignored")
            return
        if keyword in conditions:
            raise BadRequestError(f"{keyword} given more than once")
        conditions[keyword] = parse_condition(keyword, raw)
        self.include.append(keyword)


def _retrieve_url(base: str, level: Level, row: dict[str, Any]) -> str:
    url = f"{base}/studies/{row['StudyInstanceUID']}"
    if level in (Level.SERIES, Level.IMAGE):
        url += f"/series/{row['SeriesInstanceUID']}"
    if level == Level.IMAGE:
        url += f"/instances/{row['SOPInstanceUID']}"
    return url


def rows_to_json(rows: list[dict[str, Any]], level: Level, include: list[str], base: str
                 ) -> list[dict[str, Any]]:
    keywords = tuple(dict.fromkeys(include))
    out = []
    for row in rows:
        row["RetrieveURL"] = _retrieve_url(base, level, row)
        row["InstanceAvailability"] = "ONLINE"
        row["SpecificCharacterSet"] = "ISO_IR 192"  # JSON is UTF-8
        out.append(row_to_json(row, keywords))
    return out


async def search(request: Request, archive: Archive, level: Level) -> Response:
    """GET /studies, /series, /instances and their nested forms."""
    accept = request.query_params.get("accept") or request.headers.get("accept")
    xml = wants_dicom_xml(accept)
    qido = QidoRequest(request, level)
    rows = await run_in_threadpool(archive.find, qido.query)
    if len(rows) > qido.limit:
        rows = rows[: qido.limit]
        if not qido.has_limit:
            qido.warnings.append(f"{WARNING_PREFIX} there are more than {qido.limit} matches; "
                                 "use limit and offset to page")
    body = rows_to_json(rows, level, qido.include, dicomweb_base(request))
    headers = {"Warning": ", ".join(qido.warnings)} if qido.warnings else {}
    logger.debug("QIDO-RS %s: %d matches", level.value, len(body))
    if xml:
        return multipart.dicom_xml_response(body, headers)
    return Response(json.dumps(body, ensure_ascii=False, separators=(",", ":")),
                    media_type=MEDIA_TYPE_DICOM_JSON, headers=headers)
