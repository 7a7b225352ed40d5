"""SQLAlchemy Core tables. Columns for indexed attributes come from dicom.attributes.

Person names are also kept case-folded (``*_norm``) so that matching is case-insensitive by
character for Cyrillic and Kazakh letters on every backend. Text matching columns use the "C"
collation on PostgreSQL so that prefix ranges use the index.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    literal_column,
)
from sqlalchemy.types import TypeEngine

from qoima.dicom.attributes import Level, attributes_at

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _text(length: int) -> TypeEngine[str]:
    return String(length).with_variant(String(length, collation="C"), "postgresql")


def _columns(level: Level) -> list[Column[object]]:
    columns: list[Column[object]] = []
    for attribute in attributes_at(level):
        if attribute.vr in ("US", "IS"):
            columns.append(Column(attribute.column, Integer, nullable=True))
        else:
            length = 64 if attribute.vr in ("UI", "SH", "LO", "CS", "AS", "DA", "TM") else 324
            columns.append(Column(attribute.column, _text(length), nullable=True))
        if attribute.vr == "PN":
            columns.append(Column(f"{attribute.column}_norm", _text(324), nullable=True))
    return columns


patient = Table(
    "patient",
    metadata,
    Column("id", Integer, primary_key=True),
    *_columns(Level.PATIENT),
    Column("patient_key", _text(200), nullable=False, unique=True),  # PatientID + issuer
    Column("created_at", Float, nullable=False),
    Index("ix_patient_patient_id", "patient_id"),
    Index("ix_patient_patient_name_norm", "patient_name_norm"),
    Index("ix_patient_patient_birth_date", "patient_birth_date"),
)

study = Table(
    "study",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("patient_id_fk", Integer, ForeignKey("patient.id"), nullable=False),
    *_columns(Level.STUDY),
    # PatientName as this study recorded it: names change (marriage), and study-level
    # matching follows each study's own value, as the ground truth of QIDO clients expects.
    Column("patient_name", _text(324), nullable=True),
    Column("patient_name_norm", _text(324), nullable=True),
    Column("modalities_in_study", _text(200), nullable=True),  # "\\CR\\DX\\" for LIKE matching
    Column("sop_classes_in_study", Text, nullable=True),
    Column("number_of_series", Integer, nullable=False, default=0),
    Column("number_of_instances", Integer, nullable=False, default=0),
    Column("size_bytes", BigInteger, nullable=False, default=0),
    Column("ai_priority", Float, nullable=True),  # set by AI results; worklist sorts by it
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),  # last instance received: stability clock
    UniqueConstraint("study_instance_uid"),
    Index("ix_study_patient_id_fk", "patient_id_fk"),
    Index("ix_study_study_date", "study_date"),
    Index("ix_study_accession_number", "accession_number"),
    Index("ix_study_modalities_in_study", "modalities_in_study"),
    Index("ix_study_updated_at", "updated_at"),
    Index("ix_study_referring_physician_name_norm", "referring_physician_name_norm"),
    Index("ix_study_institution_name", "institution_name"),
    Index("ix_study_patient_name_norm", "patient_name_norm"),
)

series = Table(
    "series",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("study_id_fk", Integer, ForeignKey("study.id"), nullable=False),
    *_columns(Level.SERIES),
    Column("number_of_instances", Integer, nullable=False, default=0),
    Column("size_bytes", BigInteger, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("series_instance_uid"),
    Index("ix_series_study_id_fk", "study_id_fk"),
    Index("ix_series_modality", "modality"),
)

instance = Table(
    "instance",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("series_id_fk", Integer, ForeignKey("series.id"), nullable=False),
    *_columns(Level.IMAGE),
    Column("transfer_syntax_uid", _text(64), nullable=False),
    Column("blob_key", String(32), nullable=False, unique=True),
    Column("size_bytes", BigInteger, nullable=False),
    Column("content_hash", String(80), nullable=False),  # "blake3:..." or "sha256:..."
    Column("origin", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("sop_instance_uid"),
    Index("ix_instance_series_id_fk", "series_id_fk"),
)

changes = Table(
    "changes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("study_instance_uid", _text(64), nullable=False),
    Column("sop_instance_uid", _text(64), nullable=True),
    Column("created_at", Float, nullable=False),
    Index("ix_changes_study_instance_uid", "study_instance_uid"),
)

remote_ae = Table(
    "remote_ae",
    metadata,
    Column("ae_title", String(16), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("port", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("study_instance_uid", _text(64), nullable=False),
    Column("pipeline", String(100), nullable=False),
    Column("model_version", String(50), nullable=False),
    Column("status", String(16), nullable=False),  # pending, running, done, failed, skipped
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False),
    Column("error", Text, nullable=True),
    Column("result", Text, nullable=True),  # JSON summary of the findings
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("study_instance_uid", "pipeline", "model_version",
                     name="uq_jobs_study_pipeline_version"),
    Index("ix_jobs_status_next_attempt_at", "status", "next_attempt_at"),
)

# Web app (issue 5): claims, reports, addenda and the facility -> region map --------------------

study_claim = Table(
    "study_claim",
    metadata,
    Column("study_instance_uid", _text(64), primary_key=True),
    Column("owner", String(128), nullable=False),
    Column("claimed_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)

report = Table(
    "report",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("study_instance_uid", _text(64), nullable=False),
    Column("status", String(16), nullable=False),  # draft, signed
    Column("template", String(64), nullable=True),
    Column("findings", Text, nullable=True),
    Column("impression", Text, nullable=True),
    Column("ai_agreement", String(16), nullable=True),  # agree, disagree; AI ground truth
    Column("ai_finding", String(200), nullable=True),  # what the AI said when the reader judged it
    Column("author", String(128), nullable=False),
    Column("sr_sop_instance_uid", _text(64), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("signed_at", Float, nullable=True),
    UniqueConstraint("study_instance_uid"),
    Index("ix_report_status", "status"),
)

report_addendum = Table(
    "report_addendum",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("report_id", Integer, ForeignKey("report.id"), nullable=False),
    Column("text", Text, nullable=False),
    Column("author", String(128), nullable=False),
    Column("sr_sop_instance_uid", _text(64), nullable=True),
    Column("created_at", Float, nullable=False),
    Index("ix_report_addendum_report_id", "report_id"),
)

facility_region = Table(
    "facility_region",
    metadata,
    Column("institution_name", _text(64), primary_key=True),
    Column("region", String(128), nullable=False),
)

# Worklist order: AI priority (unscored last), then waiting time.
WORKLIST_PRIORITY = func.coalesce(study.c.ai_priority, literal_column("-1.0"))
Index("ix_study_worklist_order", WORKLIST_PRIORITY.desc(), study.c.created_at)

# AI (issue 4): when the scheduler last looked at the study; older than updated_at = look again.
study.append_column(Column("ai_scheduled_at", Float, nullable=True))

# Security (issue 6): users, tokens, sessions, reading pools, access grants, DIMSE peers,
# export projects and the hash-chained audit trail ----------------------------------------------

app_user = Table(
    "app_user",
    metadata,
    Column("username", String(128), primary_key=True),
    Column("password_hash", String(256), nullable=True),  # argon2id; NULL: tokens/OIDC only
    Column("role", String(32), nullable=False),
    Column("institution_name", String(64), nullable=True),  # the user's facility
    Column("region", String(64), nullable=True),
    Column("is_active", Integer, nullable=False, default=1),
    Column("created_at", Float, nullable=False),
)

api_token = Table(
    "api_token",
    metadata,
    Column("token_hash", String(64), primary_key=True),  # sha256 of the secret
    Column("username", String(128), ForeignKey("app_user.username"), nullable=False),
    Column("label", String(128), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=True),
)

user_session = Table(
    "user_session",
    metadata,
    Column("session_hash", String(64), primary_key=True),
    Column("username", String(128), ForeignKey("app_user.username"), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)

reading_pool = Table(
    "reading_pool",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("member", String(128), primary_key=True),  # "user:NAME", "facility:X", "region:Y"
)

access_grant = Table(
    "access_grant",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("grantee", String(128), nullable=False),  # "user:NAME" or "facility:NAME"
    Column("patient_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # break_glass, consent
    Column("reason", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Index("ix_access_grant_grantee", "grantee"),
)

dimse_peer = Table(
    "dimse_peer",
    metadata,
    Column("ae_title", String(16), primary_key=True),
    Column("institution_name", String(64), nullable=True),
    Column("role", String(32), nullable=False),
    Column("addresses", Text, nullable=False),  # space-separated IPs/CIDRs; empty: refused
)

export_project = Table(
    "export_project",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("secret", String(64), nullable=False),  # HMAC key: pseudonyms, UIDs, date shifts
    Column("created_at", Float, nullable=False),
)

audit_event = Table(
    "audit_event",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("occurred_at", Float, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("role", String(32), nullable=False),
    Column("via", String(16), nullable=False),  # session, token, jwt, dimse, open, cli, system
    Column("source_address", String(128), nullable=False),
    Column("action", String(32), nullable=False),
    Column("outcome", String(16), nullable=False),  # success, denied, failed
    Column("patient_ids", Text, nullable=False),  # JSON list
    Column("study_instance_uids", Text, nullable=False),  # JSON list
    Column("detail", Text, nullable=False),
    Column("previous_hash", String(64), nullable=False),
    Column("record_hash", String(64), nullable=False),
)

audit_patient = Table(
    "audit_patient",
    metadata,
    Column("event_id", Integer, ForeignKey("audit_event.id"), primary_key=True),
    Column("patient_id", String(64), primary_key=True),
    Index("ix_audit_patient_patient_id", "patient_id"),
)
