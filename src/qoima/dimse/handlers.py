"""DIMSE event handlers: DIMSE in, archive call, status out. Errors become statuses here only."""

from __future__ import annotations

import io
import logging
import os
import socket
from collections.abc import Iterator
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import build_context, evt
from pynetdicom.events import Event
from pynetdicom.presentation import PresentationContext

from qoima.archive import Archive, StoredInstance
from qoima.dicom import header
from qoima.dicom.attributes import (
    BY_KEYWORD,
    COMPUTED_BY_KEYWORD,
    LEVEL_ORDER,
    Level,
    unique_key,
)
from qoima.dicom.query import Query, parse_condition
from qoima.dimse import reactor, statuses
from qoima.errors import InvalidQuery, NotFound, QoimaError

logger = logging.getLogger(__name__)
_SKIPPED_KEYS = {"QueryRetrieveLevel", "SpecificCharacterSet"}
_STUDY_ROOT_FIND_PREFIX = "1.2.840.10008.5.1.4.1.2.2."


def _origin(event: Event, service: str) -> str:
    requestor = event.assoc.requestor
    return f"dimse-{service}:{requestor.ae_title}@{requestor.address}"


def _raw_value(value: Any) -> str:
    if isinstance(value, MultiValue):
        return "\\".join(str(v) for v in value)
    return "" if value is None else str(value)


def query_from_identifier(identifier: Dataset, abstract_syntax: str) -> Query:
    """PS3.4 C.4.1.1.3: the identifier's non-empty keys are matching keys at or above its level."""
    level_text = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
    try:
        level = Level(level_text)
    except ValueError as exc:
        raise InvalidQuery(f"QueryRetrieveLevel {level_text[:16]!r} is not supported") from exc
    if level == Level.PATIENT and abstract_syntax.startswith(_STUDY_ROOT_FIND_PREFIX):
        raise InvalidQuery("the Study Root model has no PATIENT level")
    conditions = []
    for element in identifier:
        keyword = element.keyword
        if not keyword or keyword in _SKIPPED_KEYS or element.VR == "SQ":
            continue
        raw = _raw_value(element.value).strip()
        if not raw:
            continue
        if keyword in BY_KEYWORD or keyword in COMPUTED_BY_KEYWORD:
            conditions.append(parse_condition(keyword, raw))
        else:
            logger.debug("ignoring unsupported matching key %s", keyword)
    return Query(level, tuple(conditions))


def response_identifier(identifier: Dataset, row: dict[str, Any], level: Level,
                        retrieve_ae_title: str) -> Dataset:
    """A C-FIND response carrying the requested keys (and the level's unique keys)."""
    ds = Dataset()
    ds.QueryRetrieveLevel = level.value
    keywords = [e.keyword for e in identifier if e.keyword and e.keyword not in _SKIPPED_KEYS]
    for current in LEVEL_ORDER[: LEVEL_ORDER.index(level) + 1]:
        if current != Level.PATIENT or level == Level.PATIENT:
            key = unique_key(current).keyword
            if key not in keywords:
                keywords.append(key)
    is_unicode = False
    for keyword in keywords:
        if keyword in identifier and identifier[keyword].VR == "SQ":
            setattr(ds, keyword, [])
            continue
        value = row.get(keyword)
        if keyword == "RetrieveAETitle":
            value = retrieve_ae_title
        if keyword == "InstanceAvailability":
            value = "ONLINE"
        if value is None:
            setattr(ds, keyword, "")
            continue
        text = str(value)
        is_unicode = is_unicode or not text.isascii()
        setattr(ds, keyword, text.split("\\") if "\\" in text else text)
    if is_unicode:
        ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


class DimseHandlers:
    """Handlers bound to one archive."""

    def __init__(self, archive: Archive, ae_title: str) -> None:
        self.archive = archive
        self.ae_title = ae_title

    def handle_c_echo(self, event: Event) -> int:
        return statuses.STATUS_SUCCESS

    def handle_c_store(self, event: Event) -> int | Dataset:
        """Store as received; success is sent only after blob and index rows are durable."""
        try:
            request = event.request
            data = header.part10(request.DataSet.getvalue(), str(request.AffectedSOPClassUID),
                                 str(request.AffectedSOPInstanceUID),
                                 str(event.context.transfer_syntax))
            result = self.archive.store_instance(data, _origin(event, "store"))
        except QoimaError as exc:
            status = statuses.store_status_for(exc)
            logger.error("C-STORE from %s refused (0x%04X): %s",
                         event.assoc.requestor.ae_title, status, exc)
            return _status(status, str(exc))
        except Exception as exc:
            logger.exception("C-STORE from %s failed", event.assoc.requestor.ae_title)
            return _status(statuses.STATUS_CANNOT_UNDERSTAND,
                           f"internal error: {type(exc).__name__}")
        if result.is_duplicate:
            logger.info("C-STORE duplicate %s (identical) acknowledged", result.sop_instance_uid)
        return statuses.STATUS_SUCCESS

    def handle_c_find(self, event: Event) -> Iterator[tuple[int, Dataset | None]]:
        try:
            query = query_from_identifier(event.identifier, str(event.context.abstract_syntax))
            rows = self.archive.find(query)
        except QoimaError as exc:
            logger.error("C-FIND from %s failed: %s", event.assoc.requestor.ae_title, exc)
            yield _status(statuses.query_status_for(exc), str(exc)), None
            return
        except Exception as exc:
            logger.exception("C-FIND from %s failed", event.assoc.requestor.ae_title)
            yield _status(statuses.STATUS_UNABLE_TO_PROCESS, type(exc).__name__), None
            return
        logger.info("C-FIND %s level=%s matches=%d", event.assoc.requestor.ae_title,
                    query.level.value, len(rows))
        for row in rows:
            if event.is_cancelled:
                yield statuses.STATUS_CANCEL, None
                return
            yield statuses.STATUS_PENDING, response_identifier(
                event.identifier, row, query.level, self.ae_title)

    def _instances(self, event: Event) -> list[StoredInstance]:
        query = query_from_identifier(event.identifier, str(event.context.abstract_syntax))
        if not query.conditions:
            raise InvalidQuery("retrieve without any unique key")
        return self.archive.instances_for(query)

    def _datasets(self, event: Event, instances: list[StoredInstance]
                  ) -> Iterator[tuple[int, Dataset | None]]:
        """The instances to send, as stored; ``reactor.StoredFile`` decodes one only when the
        peer accepted no context for its transfer syntax."""
        for stored in instances:
            if event.is_cancelled:
                yield statuses.STATUS_CANCEL, None
                return
            path = self.archive.local_path(stored)
            if path is not None and os.path.exists(path):
                yield statuses.STATUS_PENDING, reactor.StoredFile(
                    path, stored.sop_class_uid, stored.sop_instance_uid,
                    stored.transfer_syntax_uid)
                continue
            try:
                data = self.archive.read_instance(stored)
            except NotFound:
                logger.error("blob missing for instance %s", stored.sop_instance_uid)
                continue
            yield statuses.STATUS_PENDING, pydicom.dcmread(io.BytesIO(data))

    def handle_c_get(self, event: Event) -> Iterator[Any]:
        try:
            instances = self._instances(event)
        except QoimaError as exc:
            logger.error("C-GET from %s failed: %s", event.assoc.requestor.ae_title, exc)
            yield 0
            yield _status(statuses.query_status_for(exc), str(exc)), None
            return
        logger.info("C-GET %s instances=%d", event.assoc.requestor.ae_title, len(instances))
        yield len(instances)
        yield from self._datasets(event, instances)

    def handle_c_move(self, event: Event) -> Iterator[Any]:
        destination = str(event.move_destination).strip()
        try:
            remote = self.archive.remote_ae(destination)
        except NotFound:
            logger.error("C-MOVE from %s to unknown destination %r",
                         event.assoc.requestor.ae_title, destination)
            yield None, None  # pynetdicom answers 0xA801 Move Destination Unknown
            return
        try:
            instances = self._instances(event)
        except QoimaError as exc:
            logger.error("C-MOVE from %s failed: %s", event.assoc.requestor.ae_title, exc)
            yield remote.host, remote.port
            yield 0
            yield _status(statuses.query_status_for(exc), str(exc)), None
            return
        logger.info("C-MOVE %s -> %s instances=%d", event.assoc.requestor.ae_title,
                    destination, len(instances))
        yield remote.host, remote.port, {"contexts": move_contexts(instances),
                                         "evt_handlers": [(evt.EVT_CONN_OPEN, set_no_delay)]}
        yield len(instances)
        yield from self._datasets(event, instances)


def move_contexts(instances: list[StoredInstance]) -> list[PresentationContext]:
    """Storage contexts to propose to a C-MOVE destination: each stored transfer syntax, and
    uncompressed as a fallback (at most 128 contexts, PS3.8 9.3.2.2)."""
    contexts: dict[tuple[str, tuple[str, ...]], None] = {}
    for stored in instances:
        contexts[(stored.sop_class_uid, (stored.transfer_syntax_uid,))] = None
        contexts[(stored.sop_class_uid, (ExplicitVRLittleEndian, ImplicitVRLittleEndian))] = None
    out = []
    for sop_class, syntaxes in list(contexts)[:128]:
        out.append(build_context(sop_class, list(syntaxes)))
    return out


def set_no_delay(event: Event) -> None:
    """Turn Nagle off: with delayed ACKs it costs ~40 ms per DIMSE message exchange."""
    sock = event.assoc.dul.socket
    if sock is not None and sock.socket is not None:
        sock.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _status(code: int, comment: str) -> Dataset:
    ds = Dataset()
    ds.Status = code
    # ErrorComment is LO: 64 characters at most, no PHI (messages carry UIDs only).
    ds.ErrorComment = comment[:64]
    return ds
