"""DIMSE event handlers: DIMSE in, archive call, status out. Errors become statuses here only."""

from __future__ import annotations

import io
import logging
import os
import socket
import struct
from collections.abc import Iterator
from typing import Any

import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword
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


def response_keywords(identifier: Dataset, level: Level) -> list[str]:
    """The keys a C-FIND response carries: those requested, and the unique keys of the level
    and the levels above it (PS3.4 C.4.1.2.3)."""
    keywords = [e.keyword for e in identifier if e.keyword and e.keyword not in _SKIPPED_KEYS]
    for current in LEVEL_ORDER[: LEVEL_ORDER.index(level) + 1]:
        if current != Level.PATIENT or level == Level.PATIENT:
            key = unique_key(current).keyword
            if key not in keywords:
                keywords.append(key)
    return keywords


def _response_value(keyword: str, row: dict[str, Any], retrieve_ae_title: str) -> Any:
    if keyword == "RetrieveAETitle":
        return retrieve_ae_title
    if keyword == "InstanceAvailability":
        return "ONLINE"
    return row.get(keyword)


def response_identifier(identifier: Dataset, keywords: list[str], row: dict[str, Any],
                        level: Level, retrieve_ae_title: str) -> Dataset:
    """A C-FIND response carrying ``keywords`` (see ``response_keywords``)."""
    ds = Dataset()
    ds.QueryRetrieveLevel = level.value
    is_unicode = False
    for keyword in keywords:
        if keyword in identifier and identifier[keyword].VR == "SQ":
            setattr(ds, keyword, [])
            continue
        value = _response_value(keyword, row, retrieve_ae_title)
        if value is None:
            setattr(ds, keyword, None)
            continue
        text = str(value)
        if dictionary_VR(keyword) == "US":  # Rows, Columns, BitsAllocated: binary numbers
            numbers = [int(v) for v in text.split("\\") if v]
            setattr(ds, keyword, numbers if len(numbers) > 1 else numbers[0] if numbers else "")
            continue
        is_unicode = is_unicode or not text.isascii()
        setattr(ds, keyword, text.split("\\") if "\\" in text else text)
    if is_unicode:
        ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


# Text VRs encoded as they are (UTF-8 when not ASCII) and padded with a space; UI with NUL.
_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST",
                       "TM", "UC", "UI", "UR", "UT"})
_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT"})


def identifier_layout(identifier: Dataset, keywords: list[str]
                      ) -> list[tuple[int, str, str]] | None:
    """(tag, keyword, VR) of a response identifier in tag order, for ``encode_identifier``;
    None when a key has a VR that only pydicom encodes (binary values, ambiguous VRs)."""
    layout = [(0x00080052, "QueryRetrieveLevel", "CS")]
    for keyword in keywords:
        tag = tag_for_keyword(keyword)
        vr = ("SQ" if keyword in identifier and identifier[keyword].VR == "SQ"
              else dictionary_VR(tag) if tag is not None else "")
        if tag is None or (vr not in _TEXT_VRS and vr not in ("US", "SQ")):
            return None
        layout.append((tag, keyword, vr))
    return sorted(layout)


def encode_identifier(layout: list[tuple[int, str, str]], row: dict[str, Any], level: Level,
                      retrieve_ae_title: str, implicit_vr: bool) -> bytes:
    """The bytes pydicom writes for ``response_identifier`` in little endian (implicit or
    explicit VR): a C-FIND response built in microseconds instead of a Dataset per match."""
    parts: list[bytes] = []
    is_unicode = False
    for tag, keyword, vr in layout:
        if keyword == "QueryRetrieveLevel":
            raw = level.value.encode("ascii")
        elif vr == "SQ":
            raw = b""
        else:
            value = _response_value(keyword, row, retrieve_ae_title)
            text = "" if value is None else str(value)
            if vr == "US":
                raw = b"".join(struct.pack("<H", int(v)) for v in text.split("\\") if v)
            else:
                is_unicode = is_unicode or not text.isascii()
                raw = text.encode("utf-8")
        if len(raw) % 2:
            raw += b"\0" if vr == "UI" else b" "
        group, element = tag >> 16, tag & 0xFFFF
        if implicit_vr:
            parts.append(struct.pack("<HHI", group, element, len(raw)) + raw)
        elif vr in _LONG_VRS:
            parts.append(struct.pack("<HH2sHI", group, element, vr.encode(), 0, len(raw)) + raw)
        else:
            parts.append(struct.pack("<HH2sH", group, element, vr.encode(), len(raw)) + raw)
    if is_unicode:  # (0008,0005) sorts first
        parts.insert(0, (struct.pack("<HHI", 0x0008, 0x0005, 10) if implicit_vr else
                         struct.pack("<HH2sH", 0x0008, 0x0005, b"CS", 10)) + b"ISO_IR 192")
    return b"".join(parts)


class DimseHandlers:
    """Handlers bound to one archive."""

    def __init__(self, archive: Archive, ae_title: str) -> None:
        self.archive = archive
        self.ae_title = ae_title
        # C-STORE outcomes per association (stored, duplicates, refused), logged when its
        # connection closes: one line per association rather than one per instance
        self._store_counts: dict[int, list[int]] = {}

    def handle_c_echo(self, event: Event) -> int:
        return statuses.STATUS_SUCCESS

    def handle_c_store(self, event: Event) -> int | Dataset:
        """Store as received; success is sent only after blob and index rows are durable."""
        counts = self._store_counts.setdefault(id(event.assoc), [0, 0, 0])
        try:
            request = event.request
            if isinstance(request.DataSet, reactor.Part10DataSet):  # gathered behind its meta
                data = request.DataSet.part10()
            else:
                data = header.part10(request.DataSet.getvalue(),
                                     str(request.AffectedSOPClassUID),
                                     str(request.AffectedSOPInstanceUID),
                                     str(event.context.transfer_syntax))
            result = self.archive.store_instance(data, _origin(event, "store"))
        except QoimaError as exc:
            counts[2] += 1
            status = statuses.store_status_for(exc)
            logger.error("C-STORE from %s refused (0x%04X): %s",
                         event.assoc.requestor.ae_title, status, exc)
            return _status(status, str(exc))
        except Exception as exc:
            counts[2] += 1
            logger.exception("C-STORE from %s failed", event.assoc.requestor.ae_title)
            return _status(statuses.STATUS_CANNOT_UNDERSTAND,
                           f"internal error: {type(exc).__name__}")
        counts[1 if result.is_duplicate else 0] += 1
        return statuses.STATUS_SUCCESS

    def log_stores(self, event: Event) -> None:
        """When an association's connection closes (released, aborted or dropped: the one
        event every ending raises, so no entry outlives its association): what its
        C-STOREs did."""
        counts = self._store_counts.pop(id(event.assoc), None)
        if counts is not None:
            logger.info("C-STORE association from %s ended: %d stored, %d duplicates, "
                        "%d refused", _origin(event, "store").partition(":")[2], *counts)

    def handle_c_find(self, event: Event
                      ) -> Iterator[tuple[int, Dataset | reactor.EncodedIdentifier | None]]:
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
        keywords = response_keywords(event.identifier, query.level)
        syntax = event.context.transfer_syntax
        layout = (identifier_layout(event.identifier, keywords)
                  if syntax in (ImplicitVRLittleEndian, ExplicitVRLittleEndian)
                  and reactor.sends_encoded_identifiers() else None)
        for row in rows:
            if event.is_cancelled:
                yield statuses.STATUS_CANCEL, None
                return
            if layout is None:
                yield statuses.STATUS_PENDING, response_identifier(
                    event.identifier, keywords, row, query.level, self.ae_title)
            else:
                yield statuses.STATUS_PENDING, reactor.EncodedIdentifier(encode_identifier(
                    layout, row, query.level, self.ae_title,
                    syntax == ImplicitVRLittleEndian))

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
