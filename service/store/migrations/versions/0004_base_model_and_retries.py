"""jobs.base_model and checkpoints.base_model (backfilled), jobs.trainer_retries

The base model of a job was recovered from its `ft:` name with a regex wherever it was needed; it is
now stored once, when the job is created. `trainer_retries` counts the times a trainer that died
without reporting was started again (OPENTUNE_TRAINER_MAX_RETRIES).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 08:00:00
"""

import re

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_CHECKPOINT_SUFFIX = re.compile(r":ckpt-step-\d+$")


def _base_of(name: str) -> str:
    """The base of `ft:{base}:{org}:{suffix}:{id}[:ckpt-step-N]` (organization, suffix and id never
    contain ':'), as the service computed it before this revision. Frozen here on purpose."""
    return _CHECKPOINT_SUFFIX.sub("", name).removeprefix("ft:").rsplit(":", 3)[0]


def upgrade() -> None:
    # Columns only added (NOT NULL with a default, then filled in), never altered: on SQLite, altering
    # a column recreates the table, and dropping the old `jobs` would cascade to events and checkpoints.
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("base_model", sa.String(512), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("trainer_retries", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("checkpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("base_model", sa.String(512), nullable=False, server_default=""))

    bind = op.get_bind()
    jobs = sa.table(
        "jobs",
        sa.column("id", sa.String),
        sa.column("model_name", sa.String),
        sa.column("base_model", sa.String),
    )
    for job_id, model_name in bind.execute(sa.select(jobs.c.id, jobs.c.model_name)).all():
        bind.execute(jobs.update().where(jobs.c.id == job_id).values(base_model=_base_of(model_name)))
    checkpoints = sa.table(
        "checkpoints",
        sa.column("id", sa.String),
        sa.column("fine_tuned_model_checkpoint", sa.String),
        sa.column("base_model", sa.String),
    )
    rows = bind.execute(sa.select(checkpoints.c.id, checkpoints.c.fine_tuned_model_checkpoint)).all()
    for checkpoint_id, name in rows:
        bind.execute(
            checkpoints.update().where(checkpoints.c.id == checkpoint_id).values(base_model=_base_of(name))
        )


def downgrade() -> None:
    with op.batch_alter_table("checkpoints", schema=None) as batch_op:
        batch_op.drop_column("base_model")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("trainer_retries")
        batch_op.drop_column("base_model")
