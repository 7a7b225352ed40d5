"""De-identified export: the instances matching a query, de-identified for one project.

Pseudonyms, UIDs and the date shift come from the project's secret (created on first use and
kept in the index), so two exports of one project line up and neither leads back to the patient.
Instances that may show identifying text in their pixels are left out unless asked for.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom

from qoima.archive import access
from qoima.archive import audit as archive_audit
from qoima.archive.archive import Archive
from qoima.dicom.attributes import Level
from qoima.dicom.deidentify import deidentify
from qoima.dicom.query import Query, parse_condition
from qoima.errors import InvalidQuery
from qoima.index import users as index_users

logger = logging.getLogger(__name__)


@dataclass
class ExportResult:
    exported: int = 0
    skipped_burned_in: int = 0
    failed: int = 0
    studies: set[str] = field(default_factory=set)  # original UIDs, for the audit trail only
    files: list[str] = field(default_factory=list)  # relative paths of what was written

    def manifest(self, project: str) -> dict[str, object]:
        return {"project": project, "exported": self.exported,
                "skipped_burned_in": self.skipped_burned_in, "failed": self.failed,
                "profile": "PS3.15 E.1 Basic; Retain Longitudinal Modified Dates; "
                           "Clean Descriptors", "files": self.files}


def study_query(filters: Any) -> Query:
    """A study-level Query from ``{"StudyInstanceUID": "...", "Modality": "CR", ...}``."""
    if not isinstance(filters, dict) or not filters:
        raise InvalidQuery("query must be a non-empty object of matching keys")
    return Query(Level.STUDY, tuple(parse_condition(str(k), str(v)) for k, v in filters.items()))


def project_secret(archive: Archive, project: str) -> str:
    if not project or len(project) > 64:
        raise InvalidQuery("a project name has 1 to 64 characters")
    candidate = secrets.token_hex(32)
    return archive.database.write(
        lambda conn: index_users.project_secret(conn, project, candidate, time.time()))


def deidentified_instances(archive: Archive, project: str, query: Query, *,
                           include_burned_in: bool = False, result: ExportResult
                           ) -> Iterator[tuple[str, bytes]]:
    """(relative path, Part 10 bytes) for each exported instance; fills ``result``."""
    access.require("export")
    secret = project_secret(archive, project)
    # The export sees every study: its output is de-identified, and the role check is above.
    for stored in Archive.instances_for(archive, query):
        try:
            ds = pydicom.dcmread(io.BytesIO(archive.read_instance(stored)))
            deidentified = deidentify(ds, secret)
        except Exception:
            logger.exception("de-identification failed for %s", stored.sop_instance_uid)
            result.failed += 1
            continue
        if deidentified.has_burned_in_risk and not include_burned_in:
            result.skipped_burned_in += 1
            continue
        out = deidentified.dataset
        buffer = io.BytesIO()
        out.save_as(buffer, enforce_file_format=True)
        path = f"{out.StudyInstanceUID}/{out.SeriesInstanceUID}/{out.SOPInstanceUID}.dcm"
        result.exported += 1
        result.studies.add(stored.study_instance_uid)
        result.files.append(path)
        yield path, buffer.getvalue()


def export_to_folder(archive: Archive, project: str, query: Query, out_dir: Path, *,
                     include_burned_in: bool = False) -> ExportResult:
    """Write de-identified files and ``manifest.json`` under ``out_dir``; audited."""
    result = ExportResult()
    try:
        for path, data in deidentified_instances(archive, project, query,
                                                 include_burned_in=include_burned_in,
                                                 result=result):
            target = out_dir / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        (out_dir / "manifest.json").write_text(json.dumps(result.manifest(project), indent=1))
    finally:
        _audit(archive, project, result)
    return result


def export_to_zip(archive: Archive, project: str, query: Query, *,
                  include_burned_in: bool = False) -> tuple[bytes, ExportResult]:
    """The same export as one zip (for the REST endpoint); audited."""
    result = ExportResult()
    buffer = io.BytesIO()
    try:
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive_zip:
            for path, data in deidentified_instances(archive, project, query,
                                                     include_burned_in=include_burned_in,
                                                     result=result):
                archive_zip.writestr(path, data)
            archive_zip.writestr("manifest.json", json.dumps(result.manifest(project), indent=1))
    finally:
        _audit(archive, project, result)
    return buffer.getvalue(), result


def _audit(archive: Archive, project: str, result: ExportResult) -> None:
    archive_audit.record(archive, access.current_principal(), "export",
                         "success" if result.failed == 0 else "failed",
                         study_instance_uids=result.studies,
                         detail=f"de-identified export project={project} "
                                f"exported={result.exported} burned_in_skipped="
                                f"{result.skipped_burned_in} failed={result.failed}")
