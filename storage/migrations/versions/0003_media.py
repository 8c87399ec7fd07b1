"""media: the bytes of photos and voice messages residents sent, kept past the platform's expiry;
attachments found by their ref

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 06:19:13
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "media",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("content_type", sqlmodel.sql.sqltypes.AutoString(length=127), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        # BLOB on SQLite, bytea on PostgreSQL.
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.create_index("ix_media_sha256", ["sha256"], unique=False)
    with op.batch_alter_table("attachment", schema=None) as batch_op:
        batch_op.create_index("ix_attachment_ref", ["ref"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("attachment", schema=None) as batch_op:
        batch_op.drop_index("ix_attachment_ref")
    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.drop_index("ix_media_sha256")
    op.drop_table("media")
