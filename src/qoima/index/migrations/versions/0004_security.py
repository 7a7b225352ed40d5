"""security: users, tokens, sessions, reading pools, grants, DIMSE peers, export projects, audit

Revision ID: 0004_security
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_security"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "app_user",
        sa.Column("username", sa.String(128), nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=True),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("institution_name", sa.String(64), nullable=True),
        sa.Column("region", sa.String(64), nullable=True),
        sa.Column("is_active", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("username", name="pk_app_user"),
    )
    op.create_table(
        "api_token",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("username", sa.String(128), nullable=False),
        sa.Column("label", sa.String(128), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["username"], ["app_user.username"],
                                name="fk_api_token_username"),
        sa.PrimaryKeyConstraint("token_hash", name="pk_api_token"),
    )
    op.create_table(
        "user_session",
        sa.Column("session_hash", sa.String(64), nullable=False),
        sa.Column("username", sa.String(128), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["username"], ["app_user.username"],
                                name="fk_user_session_username"),
        sa.PrimaryKeyConstraint("session_hash", name="pk_user_session"),
    )
    op.create_table(
        "reading_pool",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("member", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("name", "member", name="pk_reading_pool"),
    )
    op.create_table(
        "access_grant",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("grantee", sa.String(128), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_access_grant"),
    )
    op.create_index("ix_access_grant_grantee", "access_grant", ["grantee"])
    op.create_table(
        "dimse_peer",
        sa.Column("ae_title", sa.String(16), nullable=False),
        sa.Column("institution_name", sa.String(64), nullable=True),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("addresses", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("ae_title", name="pk_dimse_peer"),
    )
    op.create_table(
        "export_project",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("secret", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_export_project"),
    )
    op.create_table(
        "audit_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("occurred_at", sa.Float(), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("via", sa.String(16), nullable=False),
        sa.Column("source_address", sa.String(128), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("patient_ids", sa.Text(), nullable=False),
        sa.Column("study_instance_uids", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("previous_hash", sa.String(64), nullable=False),
        sa.Column("record_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_event"),
    )
    op.create_table(
        "audit_patient",
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["audit_event.id"],
                                name="fk_audit_patient_event_id"),
        sa.PrimaryKeyConstraint("event_id", "patient_id", name="pk_audit_patient"),
    )
    op.create_index("ix_audit_patient_patient_id", "audit_patient", ["patient_id"])


def downgrade() -> None:
    op.drop_index("ix_audit_patient_patient_id", table_name="audit_patient")
    op.drop_table("audit_patient")
    op.drop_table("audit_event")
    op.drop_table("export_project")
    op.drop_table("dimse_peer")
    op.drop_index("ix_access_grant_grantee", table_name="access_grant")
    op.drop_table("access_grant")
    op.drop_table("reading_pool")
    op.drop_table("user_session")
    op.drop_table("api_token")
    op.drop_table("app_user")
