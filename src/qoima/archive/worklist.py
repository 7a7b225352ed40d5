"""Worklist use cases: the AI-prioritised list, study details, claims, patients by IIN."""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import Connection

from qoima.archive.archive import Archive
from qoima.errors import Conflict
from qoima.index import worklist as index_worklist
from qoima.index.worklist import COUNT_CAP, WorklistFilter

CLAIM_TTL_S = 15 * 60.0  # the viewer renews every minute; an abandoned claim lapses

__all__ = ["CLAIM_TTL_S", "COUNT_CAP", "WorklistFilter"]


def _with_ai(archive: Archive, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    uids = [row["study_instance_uid"] for row in rows]
    results = archive.database.read(lambda conn: index_worklist.ai_results(conn, uids))
    for row in rows:
        row["ai"] = [_ai_job(job) for job in results.get(row["study_instance_uid"], [])]
    return rows


def _ai_job(job: dict[str, Any]) -> dict[str, Any]:
    result: Any = None
    if job.get("result"):
        try:
            result = json.loads(job["result"])
        except ValueError:
            result = None
    return {"pipeline": job["pipeline"], "model_version": job["model_version"],
            "status": job["status"], "result": result, "error": job.get("error"),
            "updated_at": job["updated_at"]}


def worklist(archive: Archive, criteria: WorklistFilter) -> tuple[list[dict[str, Any]], int]:
    """One page of studies (unreported first by AI priority, then waiting time) and the total."""
    now = time.time()
    rows, total = archive.database.read(
        lambda conn: index_worklist.find_worklist(conn, criteria, now))
    return _with_ai(archive, rows), total


def study_details(archive: Archive, study_instance_uid: str) -> dict[str, Any]:
    """A study with its series, AI results and the patient's other (prior) studies."""
    now = time.time()

    def work(conn: Connection) -> dict[str, Any]:
        row = index_worklist.find_study(conn, study_instance_uid, now)
        row["series"] = index_worklist.study_series(conn, study_instance_uid)
        priors = (index_worklist.patient_studies(conn, row["patient_id"], now)
                  if row["patient_id"] else [])
        row["priors"] = [p for p in priors if p["study_instance_uid"] != study_instance_uid]
        for prior in row["priors"]:
            prior["series"] = index_worklist.study_series(conn, prior["study_instance_uid"])
        return row

    row = archive.database.read(work)
    _with_ai(archive, [row])
    return row


def series_instances(archive: Archive, series_instance_uid: str) -> list[str]:
    return archive.database.read(
        lambda conn: index_worklist.series_instances(conn, series_instance_uid))


def patient_studies(archive: Archive, patient_id: str) -> list[dict[str, Any]]:
    """Every study of one patient ID across facilities, newest first, with series and AI."""
    now = time.time()

    def work(conn: Connection) -> list[dict[str, Any]]:
        rows = index_worklist.patient_studies(conn, patient_id, now)
        for row in rows:
            row["series"] = index_worklist.study_series(conn, row["study_instance_uid"])
        return rows

    return _with_ai(archive, archive.database.read(work))


def facets(archive: Archive) -> dict[str, list[str]]:
    return archive.database.read(index_worklist.facets)


def set_facility_region(archive: Archive, institution_name: str, region: str) -> None:
    archive.database.write(
        lambda conn: index_worklist.set_facility_region(conn, institution_name, region))


def claim_study(archive: Archive, study_instance_uid: str, owner: str) -> float:
    """Claim or renew; Conflict when another reader holds it. Returns the expiry (epoch s)."""
    return archive.database.write(lambda conn: index_worklist.claim_study(
        conn, study_instance_uid, owner, time.time(), CLAIM_TTL_S))


def release_claim(archive: Archive, study_instance_uid: str, owner: str) -> None:
    archive.database.write(
        lambda conn: index_worklist.release_claim(conn, study_instance_uid, owner))


def require_claim(conn: Connection, study_instance_uid: str, owner: str, now: float) -> None:
    """Conflict unless ``owner`` holds a live claim on the study."""
    holder = index_worklist.claim_owner(conn, study_instance_uid, now)
    if holder != owner:
        raise Conflict(f"claim the study {study_instance_uid} before reporting"
                       if holder is None else f"study {study_instance_uid} is claimed by {holder}")
