"""imported_models: LoRA adapters uploaded as models (POST /v1/models/import)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 06:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "imported_models",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("organization_id", sa.String(128), nullable=False, index=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("model_name", sa.String(700), nullable=False, unique=True),
        sa.Column("base_model", sa.String(512), nullable=False),
        sa.Column("suffix", sa.String(64), nullable=True),
        sa.Column("filename", sa.String(512), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("imported_models")
