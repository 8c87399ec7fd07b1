"""chat lines: the web chat's conversation, kept across reloads

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 06:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chatline",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("address", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("direction", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("text", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("buttons", sa.JSON(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("chatline", schema=None) as batch_op:
        batch_op.create_index("ix_chatline_address", ["channel", "address", "created_at", "id"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("chatline", schema=None) as batch_op:
        batch_op.drop_index("ix_chatline_address")
    op.drop_table("chatline")
