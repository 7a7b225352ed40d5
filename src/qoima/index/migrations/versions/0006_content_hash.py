"""An instance's content hash names its algorithm: ``sha256:...`` for the rows stored so far,
``blake3:...`` for what is stored from now on (the column was ``sha256``).

Revision ID: 0006_content_hash
Revises: 0005_study_patient_name
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_content_hash"
down_revision = "0005_study_patient_name"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":  # no lengths there: a rename only
        op.alter_column("instance", "sha256", new_column_name="content_hash")
    else:
        op.alter_column("instance", "sha256", new_column_name="content_hash",
                        type_=sa.String(80), existing_type=sa.String(64),
                        existing_nullable=False)
    op.execute("UPDATE instance SET content_hash = 'sha256:' || content_hash")


def downgrade() -> None:
    """Both prefixes are 7 characters. A row hashed with BLAKE3 keeps that digest, which the
    older code compares as SHA-256: an identical re-send of it is then refused as a conflict."""
    op.execute("UPDATE instance SET content_hash = substr(content_hash, 8)")
    if op.get_bind().dialect.name == "sqlite":
        op.alter_column("instance", "content_hash", new_column_name="sha256")
    else:
        op.alter_column("instance", "content_hash", new_column_name="sha256",
                        type_=sa.String(64), existing_type=sa.String(80),
                        existing_nullable=False)
