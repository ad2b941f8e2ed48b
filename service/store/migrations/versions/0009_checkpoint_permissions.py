"""checkpoint_permissions: fine-tuned models and checkpoints shared with other organizations

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 06:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "checkpoint_permissions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("model_name", sa.String(720), nullable=False, index=True),
        sa.Column("owner_organization_id", sa.String(128), nullable=False),
        sa.Column("organization_id", sa.String(128), nullable=False, index=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("model_name", "organization_id"),
    )


def downgrade() -> None:
    op.drop_table("checkpoint_permissions")
