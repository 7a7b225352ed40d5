"""STOW-RS (PS3.18 10.5): multipart/related application/dicom in, the one ingest path, a
PS3.18 Table 10.5.3-1 response out. Never a 200 when something was not stored."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from qoima.archive import Archive, StoreResult
from qoima.dicom.json_model import dataset_to_json
from qoima.dicomweb import multipart
from qoima.dicomweb.errors import (
    BadRequestError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from qoima.dicomweb.uids import path_uid
from qoima.errors import BackendUnavailable, Conflict, InvalidDicom, QoimaError

logger = logging.getLogger(__name__)

MEDIA_TYPE_DICOM = "application/dicom"
MEDIA_TYPE_DICOM_JSON = "application/dicom+json"
# PS3.18 Table 10.5.3-2 failure reasons (PS3.4 Annex B.2.3 storage statuses)
FAILURE_PROCESSING = 0x0110
FAILURE_DUPLICATE_SOP_INSTANCE = 0x0111  # PS3.7 C.4.2: same UID, different content
FAILURE_OUT_OF_RESOURCES = 0xA700
FAILURE_CANNOT_UNDERSTAND = 0xC000
FAILURE_STUDY_UID_MISMATCH = 0xC409  # instance not in the study named by the request URI
STORE_PARALLEL_BATCHES = 3
BATCH_BYTES = 16 * 1024 * 1024
HTTP_OK = 200
HTTP_ACCEPTED = 202
HTTP_CONFLICT = 409


@dataclass(frozen=True)
class PartOutcome:
    sop_class_uid: str
    sop_instance_uid: str
    result: StoreResult | None = None
    failure_reason: int = 0


def _peek_uids(data: bytes) -> tuple[str, str]:
    """Best-effort SOP Class/Instance UIDs of a part that could not be stored."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True,
                             specific_tags=["SOPClassUID", "SOPInstanceUID"])
        return (str(ds.get("SOPClassUID", "") or "")[:64],
                str(ds.get("SOPInstanceUID", "") or "")[:64])
    except Exception:
        return "", ""


def _in_other_study(data: bytes, study_instance_uid: str) -> bool:
    """PS3.18 10.5.1.2: instances of another study than the URL's are refused."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True,
                             specific_tags=["StudyInstanceUID"])
        return str(ds.get("StudyInstanceUID", "")).strip() != study_instance_uid
    except Exception:
        return False  # unreadable: the archive says why


def _outcome(data: bytes, result: StoreResult | QoimaError) -> PartOutcome:
    if isinstance(result, StoreResult):
        return PartOutcome(result.sop_class_uid, result.sop_instance_uid, result=result)
    reason = {InvalidDicom: FAILURE_CANNOT_UNDERSTAND, Conflict: FAILURE_DUPLICATE_SOP_INSTANCE,
              BackendUnavailable: FAILURE_OUT_OF_RESOURCES}.get(type(result), FAILURE_PROCESSING)
    logger.info("STOW part refused (0x%04X): %s", reason, result)
    return PartOutcome(*_peek_uids(data), failure_reason=reason)


def store_parts(archive: Archive, datas: list[bytes], origin: str,
                study_instance_uid: str | None) -> list[PartOutcome]:
    """Store parts through ``archive.store_instances`` (one index commit for all of them);
    failures become FailureReasons, in the parts' order."""
    outcomes: list[PartOutcome | None] = [None] * len(datas)
    indexes = []
    for index, data in enumerate(datas):
        if study_instance_uid is not None and _in_other_study(data, study_instance_uid):
            outcomes[index] = PartOutcome(*_peek_uids(data),
                                          failure_reason=FAILURE_STUDY_UID_MISMATCH)
        else:
            indexes.append(index)
    results: list[StoreResult | QoimaError]
    try:
        results = archive.store_instances([datas[i] for i in indexes], origin)
    except BackendUnavailable as exc:
        logger.exception("STOW parts not stored: backend unavailable")
        results = [exc] * len(indexes)
    for index, result in zip(indexes, results, strict=True):
        outcomes[index] = _outcome(datas[index], result)
    return [outcome for outcome in outcomes if outcome is not None]


def _response_dataset(outcomes: list[PartOutcome], base_url: str) -> Dataset:
    ds = Dataset()
    stored = [o for o in outcomes if o.result is not None]
    failed = [o for o in outcomes if o.result is None]
    study_uids = {o.result.study_instance_uid for o in stored if o.result}
    if len(study_uids) == 1:
        ds.RetrieveURL = f"{base_url}/studies/{next(iter(study_uids))}"
    if failed:
        items = []
        for outcome in failed:
            item = Dataset()
            item.ReferencedSOPClassUID = outcome.sop_class_uid
            item.ReferencedSOPInstanceUID = outcome.sop_instance_uid
            item.FailureReason = outcome.failure_reason
            items.append(item)
        ds.FailedSOPSequence = items
    if stored:
        items = []
        for result in (o.result for o in stored):
            if result is None:
                continue
            item = Dataset()
            item.ReferencedSOPClassUID = result.sop_class_uid
            item.ReferencedSOPInstanceUID = result.sop_instance_uid
            item.RetrieveURL = (f"{base_url}/studies/{result.study_instance_uid}/series/"
                                f"{result.series_instance_uid}/instances/"
                                f"{result.sop_instance_uid}")
            items.append(item)
        ds.ReferencedSOPSequence = items
    return ds


def status_for_outcomes(outcomes: list[PartOutcome]) -> int:
    """PS3.18 10.5.3: 200 all stored, 202 some stored, 409 none stored."""
    stored = sum(1 for o in outcomes if o.result is not None)
    if stored == len(outcomes):
        return HTTP_OK
    return HTTP_ACCEPTED if stored else HTTP_CONFLICT


def _origin(request: Request) -> str:
    client = request.client
    return f"stow-rs:{client.host if client else 'unknown'}"


def dicomweb_base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/dicomweb"


async def store_instances(request: Request, archive: Archive, max_part_bytes: int) -> Response:
    """POST /studies[/{study}]."""
    study_instance_uid = path_uid(request, "study") if "study" in request.path_params else None
    origin = _origin(request)
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() == MEDIA_TYPE_DICOM:
        data = await _read_body(request, max_part_bytes)
        if not data:
            raise BadRequestError("empty request body")
        outcomes = await run_in_threadpool(store_parts, archive, [data], origin,
                                           study_instance_uid)
        return _answer(outcomes, request)
    part_type, boundary = multipart.boundary_of(content_type)
    if part_type and part_type != MEDIA_TYPE_DICOM:
        raise UnsupportedMediaTypeError(f"STOW-RS accepts parts of type {MEDIA_TYPE_DICOM}, "
                                        f"not {part_type[:60]!r}")
    parts = await multipart.read_parts(request.stream(), boundary, max_part_bytes=max_part_bytes)
    try:
        if not parts:
            raise BadRequestError("multipart body has no parts")
        for part in parts:
            declared = part.content_type.split(";")[0].strip().lower()
            if declared and declared != MEDIA_TYPE_DICOM:
                raise UnsupportedMediaTypeError(f"part of type {declared[:60]!r}; only "
                                                f"{MEDIA_TYPE_DICOM} is accepted")

        def store_spooled(batch: list[multipart.Part]) -> list[PartOutcome]:
            datas = []
            for part in batch:
                datas.append(part.read())
                part.close()  # the spooled copy goes as soon as the bytes are read
            return store_parts(archive, datas, origin, study_instance_uid)

        outcomes = await _store_parts(parts, store_spooled)
    finally:
        for part in parts:
            part.close()
    return _answer(outcomes, request)


def _batches(parts: list[multipart.Part]) -> list[list[multipart.Part]]:
    """Consecutive parts in batches of at most BATCH_BYTES (a larger part alone)."""
    batches: list[list[multipart.Part]] = []
    size = 0
    for part in parts:
        if not batches or size + part.size_bytes > BATCH_BYTES:
            batches.append([])
            size = 0
        batches[-1].append(part)
        size += part.size_bytes
    return batches


async def _store_parts(parts: list[multipart.Part],
                       store: Callable[[list[multipart.Part]], list[PartOutcome]]
                       ) -> list[PartOutcome]:
    """Store the parts in batches (one index commit each), up to STORE_PARALLEL_BATCHES at a
    time: one batch's fsyncs and commit overlap another's parsing. A part above BATCH_BYTES
    is stored alone, so at most one large instance is in memory. Outcomes keep the parts'
    order."""
    batches = _batches(parts)
    outcomes: list[list[PartOutcome]] = [[] for _ in batches]
    running: set[asyncio.Future[None]] = set()

    async def run(index: int, batch: list[multipart.Part]) -> None:
        outcomes[index] = await run_in_threadpool(store, batch)

    for index, batch in enumerate(batches):
        is_large = sum(part.size_bytes for part in batch) > BATCH_BYTES
        while len(running) > (0 if is_large else STORE_PARALLEL_BATCHES - 1):
            done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        if is_large:
            await run(index, batch)
        else:
            running.add(asyncio.ensure_future(run(index, batch)))
    if running:
        await asyncio.gather(*running)
    return [outcome for batch_outcomes in outcomes for outcome in batch_outcomes]


async def _read_body(request: Request, max_bytes: int) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise PayloadTooLargeError(f"body exceeds {max_bytes} bytes")
    return bytes(body)


def _answer(outcomes: list[PartOutcome], request: Request) -> Response:
    body: dict[str, Any] = dataset_to_json(_response_dataset(outcomes, dicomweb_base(request)))
    status = status_for_outcomes(outcomes)
    logger.info("STOW-RS: %d parts, %d stored -> %d", len(outcomes),
                sum(1 for o in outcomes if o.result is not None), status)
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE_DICOM_JSON)
