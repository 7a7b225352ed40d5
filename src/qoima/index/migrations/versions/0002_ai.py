"""ai: study.ai_scheduled_at (AI scheduler bookkeeping)

Revision ID: 0002_ai
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_ai"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ai_scheduled_at", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.drop_column("ai_scheduled_at")
