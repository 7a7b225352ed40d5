"""Report rows: drafts, signing, addenda and the reader's agreement with the AI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select, update

from qoima.errors import Conflict, NotFound
from qoima.index.tables import report, report_addendum


@dataclass(frozen=True)
class ReportDraft:
    template: str | None
    findings: str
    impression: str
    ai_agreement: str | None  # agree, disagree or None
    ai_finding: str | None


def find_report(conn: Connection, study_instance_uid: str) -> dict[str, Any] | None:
    """The report of a study with its addenda, or None when nobody has started one."""
    row = conn.execute(select(report).where(report.c.study_instance_uid == study_instance_uid)
                       ).first()
    if row is None:
        return None
    result = dict(row._mapping)
    addenda = conn.execute(select(report_addendum).where(report_addendum.c.report_id == row.id)
                           .order_by(report_addendum.c.id))
    result["addenda"] = [dict(a._mapping) for a in addenda]
    return result


def save_draft(conn: Connection, study_instance_uid: str, author: str, draft: ReportDraft,
               now: float) -> None:
    values = {"template": draft.template, "findings": draft.findings,
              "impression": draft.impression, "ai_agreement": draft.ai_agreement,
              "ai_finding": draft.ai_finding, "author": author, "updated_at": now}
    current = conn.execute(select(report.c.status).where(
        report.c.study_instance_uid == study_instance_uid).with_for_update()).first()
    if current is None:
        conn.execute(insert(report).values(study_instance_uid=study_instance_uid, status="draft",
                                           created_at=now, **values))
        return
    if current.status == "signed":
        raise Conflict(f"report of study {study_instance_uid} is signed; add an addendum")
    conn.execute(update(report).where(report.c.study_instance_uid == study_instance_uid)
                 .values(**values))


def mark_signed(conn: Connection, study_instance_uid: str, author: str, sr_sop_instance_uid: str,
                now: float) -> None:
    updated = conn.execute(update(report)
                           .where(report.c.study_instance_uid == study_instance_uid,
                                  report.c.status == "draft")
                           .values(status="signed", author=author, signed_at=now, updated_at=now,
                                   sr_sop_instance_uid=sr_sop_instance_uid))
    if updated.rowcount != 1:
        raise Conflict(f"report of study {study_instance_uid} is not an unsigned draft")


def add_addendum(conn: Connection, study_instance_uid: str, text: str, author: str,
                 sr_sop_instance_uid: str, now: float) -> None:
    report_id = conn.execute(select(report.c.id).where(
        report.c.study_instance_uid == study_instance_uid, report.c.status == "signed")).scalar()
    if report_id is None:
        raise NotFound(f"study {study_instance_uid} has no signed report")
    conn.execute(insert(report_addendum).values(report_id=report_id, text=text, author=author,
                                                sr_sop_instance_uid=sr_sop_instance_uid,
                                                created_at=now))


def ai_feedback(conn: Connection, limit: int = 1000) -> list[dict[str, Any]]:
    """Signed reports' agreement with the AI: the ground truth for AI metrics."""
    statement = (select(report.c.study_instance_uid, report.c.ai_finding, report.c.ai_agreement,
                        report.c.template, report.c.signed_at)
                 .where(report.c.status == "signed", report.c.ai_agreement.is_not(None))
                 .order_by(report.c.signed_at.desc()).limit(limit))
    return [dict(row._mapping) for row in conn.execute(statement)]
