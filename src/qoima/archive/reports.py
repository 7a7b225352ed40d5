"""Radiology reports: drafts, signing as a DICOM SR through the ingest path, addenda.

Only the reader who holds the study's claim may write or sign; a signed report never changes,
later text goes into addenda, each stored as its own SR that names the signed one as predecessor.
"""

from __future__ import annotations

import io
import logging
import time
from typing import Any

import highdicom as hd
import pydicom
from highdicom.sr import (
    CodedConcept,
    ContainerContentItem,
    ObserverContext,
    PersonObserverIdentifyingAttributes,
    RelationshipTypeValues,
    TextContentItem,
)
from pydicom.sr.codedict import codes

from qoima.archive.archive import Archive
from qoima.archive.worklist import require_claim
from qoima.dicom.attributes import Level
from qoima.dicom.query import Condition, Query
from qoima.errors import Conflict, NotFound
from qoima.index import reports as index_reports
from qoima.index import worklist as index_worklist
from qoima.index.reports import ReportDraft

logger = logging.getLogger(__name__)

REPORT_ORIGIN = "web:report"
_DIAGNOSTIC_IMAGING_REPORT = CodedConcept("18748-4", "LN", "Diagnostic imaging report")
_FINDING = CodedConcept("121071", "DCM", "Finding")
_IMPRESSION = CodedConcept("121073", "DCM", "Impression")
_ADDENDUM = CodedConcept("55107-7", "LN", "Addendum")
_COMMENT = CodedConcept("121106", "DCM", "Comment")
_SR_SERIES_NUMBER = 900
TEMPLATES = {
    "fluorography": ["normal", "suspected_tb", "pneumonia", "nodule_mass", "other"],
    "mammography": ["birads_0", "birads_1", "birads_2", "birads_3", "birads_4", "birads_5",
                    "birads_6"],
}
AGREEMENTS = ("agree", "disagree")
__all__ = ["ReportDraft", "add_addendum", "get_report", "save_draft", "sign_report"]


def get_report(archive: Archive, study_instance_uid: str) -> dict[str, Any] | None:
    return archive.database.read(
        lambda conn: index_reports.find_report(conn, study_instance_uid))


def save_draft(archive: Archive, study_instance_uid: str, author: str, draft: ReportDraft) -> None:
    """Save the claimer's draft; Conflict when another reader holds the claim or it is signed."""
    if draft.ai_agreement not in (None, *AGREEMENTS):
        raise Conflict(f"ai_agreement must be one of {AGREEMENTS}")

    def work(conn: Any) -> None:
        require_claim(conn, study_instance_uid, author, time.time())
        index_reports.save_draft(conn, study_instance_uid, author, draft, time.time())

    archive.database.write(work)


def _evidence(archive: Archive, study_instance_uid: str) -> pydicom.Dataset:
    """The header of one original image of the study: the SR copies patient and study from it."""
    query = Query(Level.IMAGE, (Condition("StudyInstanceUID", "uid_list",
                                          values=(study_instance_uid,)),))
    for stored in archive.instances_for(query):
        if stored.sop_class_uid.startswith("1.2.840.10008.5.1.4.1.1.88"):
            continue  # SR: reports and AI results are not evidence
        data = archive.read_instance(stored)
        return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    raise NotFound(f"study {study_instance_uid} has no image to report on")


def person_name(author: str) -> str:
    """A DICOM PN for a reader's typed name: the last word as family name."""
    parts = author.replace("^", " ").split()
    if len(parts) < 2:
        return f"{author.strip()}^"
    return f"{parts[-1]}^{' '.join(parts[:-1])}"


def _observer(author: str) -> list[Any]:
    return list(ObserverContext(
        observer_type=codes.DCM.Person,
        observer_identifying_attributes=PersonObserverIdentifyingAttributes(
            name=person_name(author))))


def build_report_sr(evidence: pydicom.Dataset, author: str, items: list[tuple[CodedConcept, str]],
                    predecessor: pydicom.Dataset | None = None) -> hd.sr.EnhancedSR:
    """An Enhanced SR holding the report text, with the reader as observer and verifier."""
    content = ContainerContentItem(name=_DIAGNOSTIC_IMAGING_REPORT, template_id="2000")
    children = _observer(author)
    children += [TextContentItem(name=concept, value=text[:10000] or "-",
                                 relationship_type=RelationshipTypeValues.CONTAINS)
                 for concept, text in items]
    content.ContentSequence = hd.sr.ContentSequence(children, is_root=False)
    sr = hd.sr.EnhancedSR(
        evidence=[evidence], content=content,
        series_instance_uid=hd.UID(), series_number=_SR_SERIES_NUMBER,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="Qoima",
        is_complete=True, is_final=True, is_verified=True,
        verifying_observer_name=person_name(author),
        verifying_organization=str(evidence.get("InstitutionName", "") or "Qoima"),
        series_description="Radiology report",
        previous_versions=[predecessor] if predecessor is not None else None,
        record_evidence=True,
    )
    sr.SpecificCharacterSet = "ISO_IR 192"  # Kazakh and Russian text: UTF-8
    return sr


def _store_sr(archive: Archive, sr: hd.sr.EnhancedSR) -> str:
    buffer = io.BytesIO()
    sr.save_as(buffer, enforce_file_format=True)
    result = archive.store_instance(buffer.getvalue(), REPORT_ORIGIN)
    return result.sop_instance_uid


def _report_items(current: dict[str, Any]) -> list[tuple[CodedConcept, str]]:
    findings = str(current.get("findings") or "")
    items = [(_FINDING, findings), (_IMPRESSION, str(current.get("impression") or ""))]
    if current.get("ai_agreement"):
        items.append((_COMMENT, f"AI finding {current.get('ai_finding') or '-'}: "
                                f"reader {current['ai_agreement']}s"))
    return items


def sign_report(archive: Archive, study_instance_uid: str, author: str) -> str:
    """Store the draft as an SR in the study, mark it signed, release the claim; the SR UID."""
    current = get_report(archive, study_instance_uid)
    if current is None:
        raise NotFound(f"study {study_instance_uid} has no draft report")
    if current["status"] == "signed":
        raise Conflict(f"report of study {study_instance_uid} is already signed")
    archive.database.read(
        lambda conn: require_claim(conn, study_instance_uid, author, time.time()))
    sr = build_report_sr(_evidence(archive, study_instance_uid), author, _report_items(current))
    sr_uid = _store_sr(archive, sr)

    def work(conn: Any) -> None:
        index_reports.mark_signed(conn, study_instance_uid, author, sr_uid, time.time())
        index_worklist.release_claim(conn, study_instance_uid, author)

    archive.database.write(work)
    logger.info("report signed study=%s sr=%s", study_instance_uid, sr_uid)
    return sr_uid


def add_addendum(archive: Archive, study_instance_uid: str, author: str, text: str) -> str:
    """Append an addendum to a signed report, stored as a new SR; returns its UID."""
    current = get_report(archive, study_instance_uid)
    if current is None or current["status"] != "signed":
        raise Conflict(f"study {study_instance_uid} has no signed report to add to")
    if not text.strip():
        raise Conflict("an addendum needs text")
    predecessor = archive.get_instance(current["sr_sop_instance_uid"])
    predecessor_ds = pydicom.dcmread(io.BytesIO(archive.read_instance(predecessor)))
    items = [*_report_items(current), (_ADDENDUM, text)]
    sr = build_report_sr(_evidence(archive, study_instance_uid), author, items, predecessor_ds)
    sr_uid = _store_sr(archive, sr)
    archive.database.write(lambda conn: index_reports.add_addendum(
        conn, study_instance_uid, text, author, sr_uid, time.time()))
    logger.info("addendum stored study=%s sr=%s", study_instance_uid, sr_uid)
    return sr_uid


def ai_feedback(archive: Archive) -> list[dict[str, Any]]:
    """Readers' agreement with the AI on signed reports (ground truth for AI metrics)."""
    return archive.database.read(index_reports.ai_feedback)
