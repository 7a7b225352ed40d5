"""web app: study claims, reports, addenda, facility regions, worklist order index

Revision ID: 0003_web
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_web"
down_revision = "0001"
branch_labels = None
depends_on = None


def _text(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "study_claim",
        sa.Column("study_instance_uid", _text(64), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("claimed_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("study_instance_uid", name="pk_study_claim"),
    )
    op.create_table(
        "report",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_instance_uid", _text(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("template", sa.String(64), nullable=True),
        sa.Column("findings", sa.Text(), nullable=True),
        sa.Column("impression", sa.Text(), nullable=True),
        sa.Column("ai_agreement", sa.String(16), nullable=True),
        sa.Column("ai_finding", sa.String(200), nullable=True),
        sa.Column("author", sa.String(128), nullable=False),
        sa.Column("sr_sop_instance_uid", _text(64), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("signed_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_report"),
        sa.UniqueConstraint("study_instance_uid", name="uq_report_study_instance_uid"),
    )
    op.create_index("ix_report_status", "report", ["status"])
    op.create_table(
        "report_addendum",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("author", sa.String(128), nullable=False),
        sa.Column("sr_sop_instance_uid", _text(64), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["report_id"], ["report.id"],
                                name="fk_report_addendum_report_id"),
        sa.PrimaryKeyConstraint("id", name="pk_report_addendum"),
    )
    op.create_index("ix_report_addendum_report_id", "report_addendum", ["report_id"])
    op.create_table(
        "facility_region",
        sa.Column("institution_name", _text(64), nullable=False),
        sa.Column("region", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("institution_name", name="pk_facility_region"),
    )
    op.create_index("ix_study_worklist_order", "study",
                    [sa.text("coalesce(ai_priority, -1.0) DESC"), "created_at"])


def downgrade() -> None:
    op.drop_index("ix_study_worklist_order", table_name="study")
    op.drop_table("facility_region")
    op.drop_index("ix_report_addendum_report_id", table_name="report_addendum")
    op.drop_table("report_addendum")
    op.drop_index("ix_report_status", table_name="report")
    op.drop_table("report")
    op.drop_table("study_claim")
