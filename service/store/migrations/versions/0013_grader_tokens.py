"""grader_tokens: reinforcement jobs' trainers call the organization's models for model graders

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08 06:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "grader_tokens",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column(
            "job_id",
            sa.String(64),
            sa.ForeignKey("jobs.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("grader_tokens")
