"""outbox media: the kept photos a notice carries (a case card to staff), sent before its text

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 07:12:36
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        # Pending notices queued before the upgrade carry no photos.
        batch_op.add_column(sa.Column("media", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("media")
