"""Patient name as recorded in each study (names change; matching follows the study's own).

Also merges the feature branches 0002_ai, 0003_web and 0004_security into one head.

Revision ID: 0005_study_patient_name
Revises: 0002_ai, 0003_web, 0004_security
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_study_patient_name"
down_revision = ("0002_ai", "0003_web", "0004_security")
branch_labels = None
depends_on = None


def _text(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("study") as batch:
        batch.add_column(sa.Column("patient_name", _text(324), nullable=True))
        batch.add_column(sa.Column("patient_name_norm", _text(324), nullable=True))
    op.execute("UPDATE study SET patient_name = (SELECT patient.patient_name FROM patient "
               "WHERE patient.id = study.patient_id_fk), patient_name_norm = (SELECT "
               "patient.patient_name_norm FROM patient WHERE patient.id = study.patient_id_fk)")
    op.create_index("ix_study_patient_name_norm", "study", ["patient_name_norm"])


def downgrade() -> None:
    op.drop_index("ix_study_patient_name_norm", "study")
    with op.batch_alter_table("study") as batch:
        batch.drop_column("patient_name_norm")
        batch.drop_column("patient_name")
