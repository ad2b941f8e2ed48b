"""model_exports: fine-tuned models exported as merged weights (POST /v1/models/{model}/exports)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 06:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_exports",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("organization_id", sa.String(128), nullable=False, index=True),
        sa.Column("model", sa.String(720), nullable=False, index=True),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
        sa.Column("file_id", sa.String(64), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("owner", sa.String(256), nullable=True),
        sa.Column("lease_expires_at", sa.Float(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("model_exports")
